// amltrack UI: fills the page shells from the JSON API (docs/ui.md).
// Every piece of user data (run names, metric names, tags, file names, values) is inserted as text:
// through el() below, which only ever creates text nodes, or escaped for plotly, which reads HTML.
"use strict";

(() => {
  const BODY = document.body;
  const BASE = BODY.dataset.base || "";
  const STATUSES = ["running", "completed", "failed", "killed", "crashed"];
  const POLL_RUN_MS = 1000;
  const POLL_LIST_MS = 2000;

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    return append(e, children);
  }
  // Children as nodes or text (never HTML); arrays are flattened, null and false left out.
  function append(e, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function fill(e, ...children) {
    e.replaceChildren();
    return append(e, children);
  }
  const $ = (sel, root) => (root || document).querySelector(sel);
  const enc = encodeURIComponent;
  const encPath = (p) => p.split("/").map(enc).join("/");
  const api = (path) => BASE + "/api" + path;
  const runUrl = (id) => BASE + "/runs/" + enc(id);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // plotly draws titles, legends and hover labels from a subset of HTML: give it entities only.
  function plotlyText(s) {
    return String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
  }

  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  const etags = new Map();
  async function getJSON(url) {
    const prev = etags.get(url);
    const headers = prev ? { "If-None-Match": prev[0] } : {};
    const r = await fetch(url, { headers, cache: "no-store", credentials: "same-origin" });
    if (r.status === 304 && prev) return prev[1];
    if (!r.ok) {
      let msg = r.statusText;
      try { msg = (await r.json()).error.message; } catch (e) { /* not our JSON */ }
      throw new HttpError(r.status, msg);
    }
    const data = await r.json();
    const tag = r.headers.get("ETag");
    if (tag && r.status === 200) {
      if (etags.size > 500) etags.clear();
      etags.set(url, [tag, data]);
    }
    return data;
  }

  function fmtNum(v) {
    if (typeof v !== "number") return v === null || v === undefined ? "–" : String(v);
    if (Number.isInteger(v)) return v.toLocaleString("en-US");
    return Number(v.toPrecision(6)).toString();
  }
  function plural(n, word) {
    return fmtNum(n) + " " + word + (n === 1 ? "" : "s");
  }
  function fmtValue(v) {
    if (Array.isArray(v)) return "[" + v.length + " values]";
    if (typeof v === "number") return fmtNum(v);
    if (v === null || v === undefined) return "–";
    return String(v);
  }
  function fmtBytes(n) {
    if (typeof n !== "number") return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }
  function fmtDuration(s) {
    if (typeof s !== "number") return "–";
    if (s < 60) return s.toFixed(1) + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
  }
  function fmtTime(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    const p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function fmtTs(ts) {
    return typeof ts === "number" ? fmtTime(new Date(ts * 1000).toISOString()) : "–";
  }
  function statusBadge(status, extra) {
    const known = STATUSES.includes(status) ? status : "other";
    return el("span", { class: "status status-" + known, ...(extra || {}) }, status);
  }
  // A run's name, else its short id (the one the CLI's tables show, which the store accepts as a ref).
  function runLabel(r) {
    return r.name || r.short_id || r.id;
  }
  function message(text, cls) {
    return el("p", { class: cls || "note" }, text);
  }
  function showError(where, err) {
    fill(where, el("p", { class: "error" }, err.message || String(err)));
  }

  // ------------------------------------------------------------------ charts

  const CHART_CONFIG = {
    responsive: true,
    displaylogo: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"],
  };

  // One chart: one or several sources (run, metric), each one trace, downsampled by the server to
  // the chart's width and re-fetched for the zoomed range. "legend" titles the legend (compare: the metric).
  class SeriesChart {
    constructor(card, sources, legend) {
      this.card = card;
      this.sources = sources;
      this.legend = legend;
      this.log = false;
      this.range = null;
      this.div = el("div", { class: "chart" });
      this.info = el("span", { class: "chart-info" });
      this.logButton = el("button", {
        type: "button", class: "log-toggle", "aria-pressed": "false",
        onclick: () => this.toggleLog(),
      }, "log scale");
      card.append(el("div", { class: "chart-tools" }, this.logButton, this.info), this.div);
      this.pending = null;
      this.drawn = false;
    }

    width() {
      const w = this.div.clientWidth || 800;
      return Math.round(w * Math.min(window.devicePixelRatio || 1, 2));
    }

    async fetchSource(src) {
      let url = api("/runs/" + enc(src.run) + "/series?name=" + enc(src.name) + "&width=" + this.width());
      if (this.range) url += "&x0=" + this.range[0] + "&x1=" + this.range[1];
      for (;;) {
        const data = await getJSON(url);
        // The first drawing waits for the whole series; a live chart takes what there is so far.
        if (!data.building || (this.drawn && data.x)) return data;
        this.info.textContent = "indexing " + Math.floor(100 * data.building.offset / data.building.size) + "%";
        await sleep(200);
      }
    }

    async load() {
      if (this.pending) { this.again = true; return this.pending; }
      this.pending = (async () => {
        do {
          this.again = false;
          const results = await Promise.all(this.sources.map((s) => this.fetchSource(s).catch((e) => e)));
          this.draw(results);
        } while (this.again);
      })();
      try { await this.pending; } finally { this.pending = null; }
    }

    draw(results) {
      const traces = [];
      let count = 0, shown = 0, down = false, nonfinite = 0;
      results.forEach((data, i) => {
        const src = this.sources[i];
        if (data instanceof Error || !data.x) return;
        count += data.count || 0;
        shown += data.shown || 0;
        down = down || data.downsampled;
        nonfinite += data.nonfinite || 0;
        traces.push({
          type: "scatter", mode: data.x.length < 2 ? "markers" : "lines",
          x: data.x, y: data.y, name: plotlyText(src.label),
          line: { width: 1.5, shape: data.bools ? "hv" : "linear" },
          hovertemplate: "step %{x}<br>%{y:.6~g}<extra>%{fullData.name}</extra>",
        });
      });
      const layout = {
        height: 260, margin: { l: 60, r: 15, t: 10, b: 40 },
        xaxis: { title: { text: "step" }, zeroline: false },
        yaxis: { type: this.log ? "log" : "linear", zeroline: false },
        showlegend: this.sources.length > 1,
        legend: { orientation: "h", y: -0.25, title: this.legend ? { text: plotlyText(this.legend) } : undefined },
        hovermode: "closest", uirevision: "keep",
      };
      this.info.textContent = plural(count, "point") +
        (down ? ", showing " + fmtNum(shown) + " (min and max per pixel)" : "") +
        (nonfinite ? ", " + fmtNum(nonfinite) + " NaN or infinite not drawn" : "");
      this.div.dataset.traces = String(traces.length);
      this.div.dataset.points = String(count);
      if (!window.Plotly) {
        fill(this.div, message("Charts need plotly: pip install 'amltrack[ui]'", "error"));
        return;
      }
      Plotly.react(this.div, traces, layout, CHART_CONFIG);
      if (!this.drawn) {
        this.drawn = true;
        this.div.on("plotly_relayout", (ev) => this.onRelayout(ev));
      }
      this.card.dataset.ready = "1";
    }

    // Zooming asks the server again for the visible steps, at full resolution for that range.
    onRelayout(ev) {
      let range = null;
      if (ev["xaxis.range[0]"] !== undefined) range = [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
      else if (Array.isArray(ev["xaxis.range"])) range = ev["xaxis.range"];
      else if (!ev["xaxis.autorange"]) return;
      if (range) range = [Math.floor(range[0]), Math.ceil(range[1])];
      if (JSON.stringify(range) === JSON.stringify(this.range)) return;
      this.range = range;
      this.load();
    }

    toggleLog() {
      this.log = !this.log;
      this.logButton.setAttribute("aria-pressed", String(this.log));
      if (window.Plotly && this.drawn) Plotly.relayout(this.div, { "yaxis.type": this.log ? "log" : "linear" });
    }
  }

  // A list metric: one logged list drawn against its positions, with a slider over the records.
  class ListChart {
    constructor(card, run, name) {
      this.card = card; this.run = run; this.name = name;
      this.count = 0; this.index = -1;
      this.div = el("div", { class: "chart" });
      this.info = el("span", { class: "chart-info" });
      this.slider = el("input", {
        type: "range", min: "0", max: "0", value: "0", class: "list-slider", "aria-label": "record",
        oninput: () => { this.index = Number(this.slider.value); this.load(); },
      });
      card.append(el("div", { class: "chart-tools" }, this.slider, this.info), this.div);
    }

    async load(count) {
      if (count !== undefined) {
        const following = this.index < 0 || this.index === this.count - 1;
        this.count = count;
        if (following) this.index = count - 1;
      }
      const url = api("/runs/" + enc(this.run) + "/lists?name=" + enc(this.name) + "&index=" + this.index +
        "&width=" + Math.round(this.div.clientWidth || 800));
      const data = await getJSON(url);
      this.count = data.count; this.index = data.index;
      this.slider.max = String(data.count - 1);
      this.slider.value = String(data.index);
      this.slider.hidden = data.count < 2;
      this.info.textContent = "record " + (data.index + 1) + " of " + data.count + ", step " + data.step +
        ", " + fmtNum(data.length) + " values";
      this.div.dataset.traces = "1";
      if (!window.Plotly) return;
      Plotly.react(this.div, [{
        type: "scatter", mode: data.x.length < 2 ? "markers" : "lines+markers", x: data.x, y: data.y,
        name: plotlyText(this.name), marker: { size: 4 },
        hovertemplate: "[%{x}] %{y:.6~g}<extra></extra>",
      }], {
        height: 240, margin: { l: 60, r: 15, t: 10, b: 40 },
        xaxis: { title: { text: "position" } }, uirevision: "keep", showlegend: false,
      }, CHART_CONFIG);
      this.card.dataset.ready = "1";
    }
  }

  function chartCard(title, kind) {
    return el("section", { class: "card chart-card", dataset: { metric: title, kind } },
      el("h3", { class: "metric-name" }, title));
  }

  // Pages without charts load plotly.js once they are drawn and the browser is idle, so that the
  // run page opened from them finds it compiled (parsing 4.8 MB costs a slow machine 1 to 2 s).
  let plotlyLoading = null;
  function ensurePlotly() {
    if (window.Plotly || !BODY.dataset.plotly) return Promise.resolve();
    if (!plotlyLoading) {
      plotlyLoading = new Promise((resolve) => {
        const tag = el("script", { id: "plotly", src: BODY.dataset.plotly, async: true });
        tag.addEventListener("load", resolve);
        tag.addEventListener("error", resolve);
        document.head.append(tag);
      });
    }
    return plotlyLoading;
  }
  function warmCharts() {
    if ("requestIdleCallback" in window) requestIdleCallback(ensurePlotly, { timeout: 2000 });
    else setTimeout(ensurePlotly, 300);
  }

  // ------------------------------------------------------------------ runs page

  // static/runs.js: the runs table, its column chooser, pages and the Workbench chart (docs/ui.md).

  // ------------------------------------------------------------------ run page

  async function runPage(app, s) {
    const ref = BODY.dataset.run;
    let detail;
    try {
      [detail] = await Promise.all([getJSON(api("/runs/" + enc(ref))), ensurePlotly()]);
    } catch (e) {
      if (alive(s)) showError(app, e);
      return;
    }
    if (!alive(s)) return;
    const run = detail.run;
    const id = run.id;
    document.title = runLabel(run) + " · amltrack";
    const status = statusBadge(run.status, { id: "run-status" });
    const duration = el("span", { id: "run-duration" }, fmtDuration(run.duration_s));
    const charts = el("div", { id: "charts", class: "charts" });
    const lists = el("div", { id: "lists", class: "charts" });
    const strings = el("div", { id: "strings" });
    const artifacts = el("div", { id: "artifacts" });
    const progress = el("p", { id: "indexing", class: "note", hidden: true });
    const listsTitle = el("h2", { id: "lists-title", hidden: true }, "List metrics");
    const stringsTitle = el("h2", { id: "strings-title", hidden: true }, "Text metrics");
    fill(app,
      el("div", { class: "run-head" },
        el("h1", {}, runLabel(run)), status,
        el("a", { class: "button", href: BASE + "/compare?runs=" + enc(id) }, "Compare…")),
      el("p", { class: "id" }, id),
      metaSection(run, duration),
      el("h2", {}, "Metrics"), progress, charts,
      listsTitle, lists,
      stringsTitle, strings,
      el("h2", {}, "Artifacts"), artifacts,
    );
    renderArtifacts(artifacts, id, detail.artifacts);

    const numeric = new Map();
    const listCharts = new Map();
    let stringsCount = -1;

    async function loadMetrics() {
      for (;;) {
        const m = await getJSON(api("/runs/" + enc(id) + "/metrics"));
        if (!m.building) { progress.hidden = true; return m; }
        progress.hidden = false;
        progress.textContent = "Reading metrics.jsonl into the chart cache: " +
          Math.floor(100 * m.building.offset / m.building.size) + "% of " + fmtBytes(m.building.size);
        await sleep(100);
      }
    }

    function apply(metrics) {
      const loads = [];
      let strCount = 0;
      for (const m of metrics) {
        if (m.numbers && !numeric.has(m.name)) {
          const card = chartCard(m.name, "number");
          charts.append(card);
          numeric.set(m.name, { chart: new SeriesChart(card, [{ run: id, name: m.name, label: m.name }]), n: -1 });
        }
        const entry = numeric.get(m.name);
        if (entry && entry.n !== m.numbers) { entry.n = m.numbers; loads.push(entry.chart.load()); }
        if (m.lists && !listCharts.has(m.name)) {
          const card = chartCard(m.name, "list");
          lists.append(card);
          listCharts.set(m.name, { chart: new ListChart(card, id, m.name), n: -1 });
        }
        const le = listCharts.get(m.name);
        if (le && le.n !== m.lists) { le.n = m.lists; loads.push(le.chart.load(m.lists)); }
        strCount += m.strings || 0;
      }
      if (!metrics.length) fill(charts, message("No metrics logged."));
      listsTitle.hidden = listCharts.size === 0;
      if (strCount !== stringsCount) { stringsCount = strCount; loads.push(loadStrings()); }
      return Promise.all(loads);
    }

    async function loadStrings() {
      const data = await getJSON(api("/runs/" + enc(id) + "/strings?limit=100"));
      stringsTitle.hidden = data.strings.length === 0;
      const rows = [];
      for (const s of data.strings) {
        for (const r of s.rows) {
          rows.push(el("tr", { dataset: { metric: s.name } }, el("td", { class: "metric-name" }, s.name),
            el("td", { class: "num" }, r.step), el("td", { class: "value" }, r.value), el("td", {}, fmtTs(r.ts))));
        }
      }
      if (!rows.length) { fill(strings); return; }
      const notes = data.strings.filter((s) => s.count > s.rows.length)
        .map((s) => message("“" + s.name + "”: the last " + s.rows.length + " of " + s.count + " values"));
      fill(strings, el("table", { class: "strings", id: "strings-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Metric"), el("th", {}, "Step"), el("th", {}, "Value"),
          el("th", {}, "Time"))), el("tbody", {}, rows)), notes);
    }

    try {
      const m = await loadMetrics();
      await apply(m.metrics);
      if (!alive(s)) return;
      BODY.dataset.loaded = "1";
      if (run.status === "running") live(m.cursor);
    } catch (e) {
      showError(charts, e);
    }

    // Everything on the page that the end of the run changes: the badge and the metadata table.
    function showLive(p) {
      status.textContent = p.status;
      status.className = "status status-" + (STATUSES.includes(p.status) ? p.status : "other");
      duration.textContent = fmtDuration(p.duration_s);
      for (const [field, text] of [["Status", p.status], ["Ended", fmtTime(p.ended)]]) {
        const cell = $("#meta td[data-field='" + field + "']", app);
        if (cell) cell.textContent = text;
      }
    }

    // Live: one small request a second; charts re-fetch only when their counts changed.
    async function live(cursor) {
      for (;;) {
        await sleep(POLL_RUN_MS);
        if (!alive(s)) return;
        let p;
        try {
          p = await getJSON(api("/runs/" + enc(id) + "/poll?cursor=" + enc(cursor)));
        } catch (e) {
          continue;
        }
        showLive(p);
        if (p.changed) {
          const artifactsChanged = p.cursor.split(".")[3] !== cursor.split(".")[3];
          cursor = p.cursor;
          const metrics = Object.entries(p.counts).map(([name, c]) => ({ name, ...c }));
          try {
            await apply(metrics);
            if (artifactsChanged) {
              const d = await getJSON(api("/runs/" + enc(id)));
              renderArtifacts(artifacts, id, d.artifacts);
            }
          } catch (e) { /* the next poll tries again */ }
        }
        if (p.status !== "running") {
          const d = await getJSON(api("/runs/" + enc(id)));
          showLive(d.run);
          renderArtifacts(artifacts, id, d.artifacts);
          return;
        }
      }
    }
  }

  function metaSection(run, duration) {
    const git = run.git || null;
    const rows = [
      ["Experiment", run.experiment], ["Status", run.status], ["Started", fmtTime(run.created)],
      ["Ended", fmtTime(run.ended)], ["Duration", duration], ["Host", run.hostname], ["User", run.user],
      ["PID", run.pid], ["Python", run.python], ["Platform", run.platform],
      ["Command", Array.isArray(run.argv) ? run.argv.join(" ") : run.argv], ["Directory", run.cwd],
      ["Git", git ? (git.commit || "") + (git.branch ? " (" + git.branch + ")" : "") + (git.dirty ? ", dirty" : "") : null],
      ["Outputs", run.outputs], ["amltrack", run.amltrack_version],
    ].filter(([, v]) => v !== null && v !== undefined && v !== "");
    const table = (obj, cls) => el("table", { class: "kv-table " + cls }, el("tbody", {},
      Object.entries(obj).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, fmtValue(v))))));
    const parts = [el("table", { class: "kv-table meta", id: "meta" }, el("tbody", {},
      rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { dataset: { field: k } }, v)))))];
    const side = [];
    if (run.tags && Object.keys(run.tags).length) side.push(el("h3", {}, "Tags"), table(run.tags, "tags-table"));
    if (run.params && Object.keys(run.params).length) side.push(el("h3", {}, "Parameters"), table(run.params, "params-table"));
    const out = el("div", { class: "meta-grid" }, el("div", {}, parts), el("div", {}, side));
    const errors = [];
    if (run.error) {
      errors.push(el("div", { class: "run-error", id: "run-error" },
        el("strong", {}, (run.error.type || "Error") + ": " + (run.error.message || "")),
        run.error.traceback ? el("pre", {}, run.error.traceback) : null));
    }
    if (run.write_error) errors.push(el("p", { class: "error" }, "Write error: " + JSON.stringify(run.write_error)));
    return el("section", { class: "meta-section" }, out, errors);
  }

  // A file deleted from the outputs folder was not refused: it has its own status, its last copy
  // a download when the mirror kept it. Everything else that is not stored was refused.
  // stored and deleted are what they say; preexisting is a file that was in outputs/ before the run
  // and unchanged during it (not the run's, never copied); anything else was refused.
  function artifactKind(entry) {
    return ["stored", "deleted", "preexisting"].includes(entry.status) ? entry.status : "rejected";
  }

  function renderArtifacts(where, runId, entries) {
    if (!entries.length) { fill(where, message("No artifacts.")); return; }
    const root = { dirs: new Map(), files: [] };
    for (const a of entries) {
      const parts = a.path.split("/");
      let node = root;
      for (const p of parts.slice(0, -1)) {
        if (!node.dirs.has(p)) node.dirs.set(p, { dirs: new Map(), files: [] });
        node = node.dirs.get(p);
      }
      node.files.push({ name: parts[parts.length - 1], entry: a });
    }
    const totals = (node) => {
      let n = node.files.length, size = node.files.reduce((s, f) => s + (f.entry.size || 0), 0);
      for (const d of node.dirs.values()) { const t = totals(d); n += t[0]; size += t[1]; }
      return [n, size];
    };
    const list = (node) => el("ul", { class: "tree" },
      [...node.dirs.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, d]) => {
        const [n, size] = totals(d);
        return el("li", { class: "dir" }, el("details", { open: true },
          el("summary", {}, el("span", { class: "name" }, name + "/"),
            el("span", { class: "size" }, n + (n === 1 ? " file, " : " files, ") + fmtBytes(size))),
          list(d)));
      }),
      node.files.sort((a, b) => a.name.localeCompare(b.name)).map(({ name, entry }) => {
        const kind = artifactKind(entry);
        const label = kind === "stored" || entry.kept
          ? el("a", { class: "name download", href: api("/runs/" + enc(runId) + "/artifacts/" + encPath(entry.path)),
            download: name, dataset: { path: entry.path } }, name)
          : el("span", { class: "name" }, name);
        return el("li", { class: "file", dataset: { path: entry.path, status: entry.status } }, label,
          el("span", { class: "size" }, fmtBytes(entry.size)),
          el("span", { class: "status artifact-" + kind }, entry.status),
          entry.reason ? el("span", { class: "reason reason-" + kind }, entry.reason) : null);
      }));
    const rejected = entries.filter((a) => artifactKind(a) === "rejected");
    const deleted = entries.filter((a) => artifactKind(a) === "deleted").length;
    const preexisting = entries.filter((a) => artifactKind(a) === "preexisting").length;
    const stored = entries.length - rejected.length - deleted - preexisting;
    const parts = [
      message(stored + " stored, " + rejected.length + " rejected, " + (deleted ? deleted + " deleted, " : "") +
        (preexisting ? preexisting + " there before the run, " : "") + fmtBytes(totals(root)[1]) + " in all"),
      list(root),
    ];
    if (rejected.length) {
      parts.push(el("h3", {}, "Rejected files"), el("table", { class: "rejected", id: "rejected" },
        el("thead", {}, el("tr", {}, el("th", {}, "Path"), el("th", {}, "Size"), el("th", {}, "Reason"))),
        el("tbody", {}, rejected.map((a) => el("tr", {}, el("td", {}, a.path), el("td", { class: "num" }, fmtBytes(a.size)),
          el("td", {}, a.reason || a.status))))));
    }
    fill(where, ...parts);
  }

  // ------------------------------------------------------------------ compare page

  // static/compare.js: the table of what differs, the grid of charts, parallel coordinates and a scatter.

  // ------------------------------------------------------------------ assets page

  async function assetsPage(app, s) {
    document.title = "Assets · amltrack";
    let data;
    try { data = await getJSON(api("/assets")); } catch (e) { if (alive(s)) showError(app, e); return; }
    if (!alive(s)) return;
    const sections = data.assets.map((a) => el("section", { class: "card asset", dataset: { asset: a.name } },
      el("h2", {}, a.name),
      el("table", { class: "versions" },
        el("thead", {}, el("tr", {}, ["Version", "Created", "Source run", "Experiment", "Prefix", "Size", "Files"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, a.versions.slice().reverse().map((v) => el("tr", { dataset: { version: String(v.version) } },
          el("td", { class: "num" }, v.ref),
          el("td", {}, fmtTime(v.created)),
          el("td", {}, v.source_run ? el("a", { href: runUrl(v.source_run) }, v.source_run) : "–"),
          el("td", {}, v.experiment || "–"),
          el("td", {}, v.prefix || "–"),
          el("td", { class: "num" }, fmtBytes(v.size)),
          el("td", {}, el("details", {}, el("summary", {}, v.files.length + (v.files.length === 1 ? " file" : " files")),
            el("ul", { class: "tree" }, v.files.map((f) => el("li", { class: "file" },
              el("a", { class: "download", download: f.path.split("/").pop(),
                href: api("/assets/" + enc(a.name) + "/" + v.version + "/files/" + encPath(f.path)) }, f.path),
              el("span", { class: "size" }, fmtBytes(f.size)))))))))))));
    fill(app, el("h1", {}, "Assets"),
      sections.length ? sections : message("No assets yet: promote a run's artifacts with 'amltrack history promote', and 'amltrack sync' sends them to a server."));
    BODY.dataset.loaded = "1";
    warmCharts();
  }

  // ------------------------------------------------------------------ exact values

  // Params, steps and ids as they are: no thousands separators, no rounding.
  function fmtExact(v) {
    if (v === null || v === undefined) return "–";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  // The fewest significant digits, six at least, that keep the distinct numbers among `values`
  // distinct: a column of losses reads 0.251 and 0.252, and 0.2512341 only when a neighbour needs it.
  function distinctDigits(values) {
    const nums = [...new Set(values.filter((v) => typeof v === "number" && Number.isFinite(v)))];
    for (let p = 6; p < 17; p++) {
      if (new Set(nums.map((v) => Number(v.toPrecision(p)))).size === nums.length) return p;
    }
    return 17;
  }
  function fmtDigits(v, digits) {
    if (typeof v !== "number" || Number.isInteger(v) || !Number.isFinite(v)) return fmtExact(v);
    return String(Number(v.toPrecision(digits)));
  }

  // ------------------------------------------------------------------ navigation

  // Links between the UI's pages are followed without reloading the document, so plotly.js, once
  // compiled, serves every later page. Each page runs in a session; a page's timers and loops end
  // when another page replaces it. The runs and compare pages live in files of their own
  // (static/runs.js, static/compare.js), loaded before this one: they register in
  // window.amltrackPages and reach this file's helpers through window.amltrackUI.
  window.amltrackUI = Object.freeze({
    BODY, BASE, STATUSES, POLL_LIST_MS, CHART_CONFIG, el, append, fill, $, enc, api, runUrl, sleep, plotlyText,
    HttpError, getJSON, fmtNum, fmtValue, fmtDuration, fmtTime, fmtExact, distinctDigits, fmtDigits,
    statusBadge, runLabel, message, showError, SeriesChart, ensurePlotly, warmCharts, alive, go,
  });
  const pages = { run: runPage, assets: assetsPage, ...(window.amltrackPages || {}) };
  let session = 0;
  function alive(s) { return s === session; }

  function routeOf(path) {
    if (!path.startsWith(BASE + "/")) return null;
    const rest = path.slice(BASE.length);
    if (rest === "/") return { page: "runs" };
    if (rest === "/compare") return { page: "compare" };
    if (rest === "/assets") return { page: "assets" };
    const m = rest.match(/^\/runs\/([^/]+)$/);
    return m ? { page: "run", ref: decodeURIComponent(m[1]) } : null;
  }

  function show(page, ref) {
    session++;
    if (window.Plotly) for (const d of document.querySelectorAll(".js-plotly-plot")) Plotly.purge(d);
    delete BODY.dataset.loaded;
    BODY.dataset.page = page;
    if (ref !== undefined) BODY.dataset.run = ref;
    const nav = page === "run" ? "/" : "/" + (page === "runs" ? "" : page);
    for (const a of document.querySelectorAll("header.top nav a")) {
      if (new URL(a.href).pathname === BASE + nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const app = $("#app");
    pages[page](app, session);
  }

  function go(url) {
    history.pushState(null, "", url);
    const route = routeOf(location.pathname);
    if (!route) { location.reload(); return; }
    fill($("#app"), el("p", { class: "loading" }, "Loading…"));
    window.scrollTo(0, 0);
    show(route.page, route.ref);
  }

  document.addEventListener("click", (ev) => {
    if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const a = ev.target.closest("a[href]");
    if (!a || a.hasAttribute("download") || a.target) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || !routeOf(url.pathname)) return;
    ev.preventDefault();
    go(url.pathname + url.search);
  });
  window.addEventListener("popstate", () => {
    const route = routeOf(location.pathname);
    if (route) show(route.page, route.ref); else location.reload();
  });

  if (pages[BODY.dataset.page]) show(BODY.dataset.page);
})();
