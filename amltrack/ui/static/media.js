// amltrack UI: the cards of the rich kinds (docs/ui.md, "Images, tables, histograms"): an image with
// a step slider and its caption, a sortable and paginated table, histograms over steps, a confusion
// matrix heatmap. ui.js calls window.amltrackMedia(helpers) once and asks the result for cards.
// As in ui.js, user data is inserted as text only (through the el() it hands over), or escaped for plotly.
"use strict";

window.amltrackMedia = (h) => {
  const { el, fill, getJSON, api, enc, encPath, plotlyText, fmtNum } = h;
  const PAGE_ROWS = 25;
  const HIST_STEPS = 30;  // histograms drawn over steps at most: evenly picked, the last always
  const CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d", "toImage"] };

  const fileUrl = (run, path) => api("/runs/" + enc(run) + "/media/" + encPath(path));

  async function records(run, name, start, stop) {
    let url = api("/runs/" + enc(run) + "/media?name=" + enc(name));
    if (start !== undefined) url += "&start=" + start;
    if (stop !== undefined) url += "&stop=" + stop;
    return getJSON(url);
  }

  // A slider over a metric's records, and the step it is on: the image, table and matrix cards.
  function stepper(count, onpick) {
    const label = el("span", { class: "media-step" });
    const slider = el("input", {
      type: "range", min: 0, max: Math.max(count - 1, 0), value: Math.max(count - 1, 0),
      class: "media-slider", "aria-label": "step", hidden: count < 2,
      oninput: () => onpick(Number(slider.value)),
    });
    return { slider, label, box: el("div", { class: "media-tools" }, slider, label) };
  }

  // ------------------------------------------------------------ cards

  class ImageCard {
    constructor(card, run, name) {
      this.card = card; this.run = run; this.name = name; this.recs = [];
      this.img = el("img", { class: "media-image", alt: name });
      this.caption = el("figcaption", { class: "media-caption" });
      this.tools = el("div");
      card.append(this.tools, el("figure", { class: "media-figure" }, this.img, this.caption));
    }
    async load() {
      const d = await records(this.run, this.name);
      this.recs = d.records;
      const st = stepper(this.recs.length, (i) => this.show(i, st));
      fill(this.tools, st.box);
      this.show(this.recs.length - 1, st);
    }
    show(i, st) {
      const r = this.recs[i];
      if (!r) return;
      this.img.src = fileUrl(this.run, r.value.path);
      this.img.width = r.value.width; this.img.height = r.value.height;
      // Small images (MNIST digits, thumbnails) are drawn at 256 pixels wide at least, pixelated.
      this.img.style.width = Math.max(r.value.width, 256) + "px";
      this.caption.textContent = r.value.caption || "";
      st.label.textContent = "step " + r.step + " · " + (i + 1) + " of " + this.recs.length;
      this.card.dataset.step = r.step;
      this.card.dataset.ready = "1";
    }
  }

  // A table: the rows of the chosen log_table record, or every row log_row appended.
  class TableCard {
    constructor(card, run, name) {
      this.card = card; this.run = run; this.name = name;
      this.tools = el("div");
      this.body = el("div", { class: "table-wrap media-table" });
      card.append(this.tools, this.body);
      this.sort = null; this.page = 0;
    }
    async load() {
      const d = await records(this.run, this.name);
      const recs = d.records;
      const files = recs.filter((r) => r.value.path);
      if (files.length) {
        const st = stepper(files.length, async (i) => { st.label.textContent = "step " + files[i].step; await this.file(files[i]); });
        st.label.textContent = "step " + files[files.length - 1].step;
        fill(this.tools, st.box);
        await this.file(files[files.length - 1]);
      } else {
        const columns = [...new Set(recs.flatMap((r) => r.value.columns))];
        const rows = recs.flatMap((r) => r.value.data.map((row) => {
          const out = columns.map(() => null);
          r.value.columns.forEach((c, i) => { out[columns.indexOf(c)] = row[i]; });
          return [r.step, ...out];
        }));
        this.show(["step", ...columns], rows);
      }
    }
    async file(r) {
      const resp = await fetch(fileUrl(this.run, r.value.path), { credentials: "same-origin" });
      const body = await resp.json();
      this.show(body.columns, body.data);
    }
    show(columns, rows) {
      this.columns = columns; this.rows = rows; this.page = 0; this.sort = null;
      this.draw();
    }
    draw() {
      let rows = this.rows;
      if (this.sort) {
        const [k, dir] = this.sort;
        rows = [...rows].sort((a, b) => {
          const x = a[k], y = b[k];
          if (x === y) return 0;
          if (x === null) return 1;
          if (y === null) return -1;
          return (x < y ? -1 : 1) * dir;
        });
      }
      const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
      this.page = Math.min(this.page, pages - 1);
      const shown = rows.slice(this.page * PAGE_ROWS, (this.page + 1) * PAGE_ROWS);
      const head = this.columns.map((c, k) => el("th", {
        "aria-sort": this.sort && this.sort[0] === k ? (this.sort[1] > 0 ? "ascending" : "descending") : null,
      }, el("button", { type: "button", class: "sort", onclick: () => {
        this.sort = this.sort && this.sort[0] === k ? [k, -this.sort[1]] : [k, 1];
        this.page = 0; this.draw();
      } }, c)));
      const cell = (v) => el("td", { class: typeof v === "number" ? "num" : null },
        v === null ? "" : typeof v === "number" ? fmtNum(v) : String(v));
      const nav = el("div", { class: "media-pages" },
        el("button", { type: "button", class: "prev", disabled: this.page === 0,
          onclick: () => { this.page -= 1; this.draw(); } }, "‹"),
        el("span", { class: "page" }, "page " + (this.page + 1) + " of " + pages + " · " + rows.length + " rows"),
        el("button", { type: "button", class: "next", disabled: this.page >= pages - 1,
          onclick: () => { this.page += 1; this.draw(); } }, "›"));
      fill(this.body, el("table", {}, el("thead", {}, el("tr", {}, head)),
        el("tbody", {}, shown.map((r) => el("tr", {}, r.map(cell))))), nav);
      this.card.dataset.ready = "1";
    }
  }

  // Histograms over steps, overlaid: each step a line over its bins, the latest darkest (as
  // TensorBoard's overlay view); NaN and infinities, counted apart, under the chart.
  class HistogramCard {
    constructor(card, run, name) {
      this.card = card; this.run = run; this.name = name;
      this.div = el("div", { class: "chart" });
      this.note = el("p", { class: "note media-note" });
      card.append(this.div, this.note);
    }
    async load() {
      const first = await records(this.run, this.name, -1);
      const count = first.count;
      const picks = [];
      const n = Math.min(count, HIST_STEPS);
      for (let i = 0; i < n; i++) picks.push(Math.round(i * (count - 1) / Math.max(n - 1, 1)));
      const lo = picks[0];
      const d = count <= 10000 ? await records(this.run, this.name, lo) : first;
      const recs = picks.map((i) => d.records[i - d.start]).filter(Boolean);
      draw(this.div, histogramTraces(recs), { xaxis: { title: { text: "value" } }, yaxis: { title: { text: "count" } } });
      const last = recs[recs.length - 1].value;
      const apart = [["NaN", last.nan], ["+inf", last.inf], ["−inf", last["-inf"]]].filter((x) => x[1]);
      this.note.textContent = apart.length ? "step " + recs[recs.length - 1].step + ": " +
        apart.map((x) => x[1] + " " + x[0]).join(", ") + " counted apart" : "";
      this.card.dataset.steps = recs.length;
      this.card.dataset.ready = "1";
    }
  }

  function histogramTraces(recs, label) {
    return recs.map((r, i) => {
      const e = r.value.edges;
      const shade = recs.length === 1 ? 1 : 0.25 + 0.75 * i / (recs.length - 1);
      return {
        x: r.value.counts.map((_, k) => (e[k] + e[k + 1]) / 2), y: r.value.counts,
        type: "scatter", mode: "lines", line: { shape: "hvh", width: 1.5, color: "rgba(45,108,223," + shade + ")" },
        name: plotlyText((label ? label + " · " : "") + "step " + r.step),
      };
    });
  }

  class ConfusionCard {
    constructor(card, run, name) {
      this.card = card; this.run = run; this.name = name;
      this.tools = el("div");
      this.div = el("div", { class: "chart" });
      card.append(this.tools, this.div);
    }
    async load() {
      const d = await records(this.run, this.name, -200);
      const recs = d.records;
      const st = stepper(recs.length, (i) => this.show(recs[i], st));
      fill(this.tools, st.box);
      this.show(recs[recs.length - 1], st);
    }
    show(r, st) {
      st.label.textContent = "step " + r.step;
      draw(this.div, [heatmap(r.value)], {
        xaxis: { title: { text: "predicted" }, type: "category" },
        yaxis: { title: { text: "true" }, type: "category", autorange: "reversed" },
      });
      this.card.dataset.step = r.step;
      this.card.dataset.ready = "1";
    }
  }

  function heatmap(v) {
    const labels = v.labels.map(plotlyText);
    return {
      type: "heatmap", z: v.matrix, x: labels, y: labels, colorscale: "Blues", reversescale: true, hoverongaps: false,
      text: v.matrix.map((row) => row.map(String)), texttemplate: "%{text}",
      hovertemplate: "true %{y}<br>predicted %{x}<br>%{z}<extra></extra>",
    };
  }

  function draw(div, traces, layout) {
    if (!window.Plotly) { fill(div, el("p", { class: "note" }, "Charts need plotly: pip install 'amltrack[ui]'")); return; }
    window.Plotly.react(div, traces, { margin: { l: 60, r: 20, t: 10, b: 50 }, height: 300, showlegend: false, ...layout }, CONFIG);
  }

  const CARDS = { image: ImageCard, table: TableCard, histogram: HistogramCard, confusion_matrix: ConfusionCard };

  // The run page's card of metric ``name``: its kind is its last record's.
  async function runCard(run, name) {
    const last = await records(run, name, -1);
    const kind = last.records.length ? last.records[0].value.kind : null;
    const Card = CARDS[kind];
    const card = el("section", { class: "card media-card", dataset: { metric: name, kind } },
      el("h3", { class: "metric-name" }, name));
    if (!Card) { card.append(el("p", { class: "note" }, "a kind this page cannot show")); return { card, load: async () => {} }; }
    const c = new Card(card, run, name);
    return { card, kind, load: () => c.load() };
  }

  // The compare page: the metric in each run side by side, as each run's card shows it; histograms
  // of every run's last step overlaid in one chart besides.
  async function compare(where, runs, name) {
    const grid = el("div", { class: "media-compare" });
    fill(where, el("h3", { class: "metric-name" }, name), grid);
    const cards = await Promise.all(runs.map(async (r) => {
      const slot = el("div");  // the runs' cards in the order given, whichever is ready first
      grid.append(slot);
      try {
        const c = await runCard(r.id, name);
        c.card.querySelector("h3").textContent = r.label;
        c.card.dataset.run = r.id;
        slot.replaceWith(c.card);
        await c.load();
        return c;
      } catch (e) {
        slot.replaceWith(el("section", { class: "card media-card" }, el("h3", {}, r.label), el("p", { class: "note" }, e.message)));
        return null;
      }
    }));
    where.dataset.ready = "1";
    return cards;
  }

  return { runCard, compare };
};
