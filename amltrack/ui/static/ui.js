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

  // The rich kinds' cards (media.js), given this file's helpers.
  let mediaCards = null;
  function media() {
    if (!mediaCards && window.amltrackMedia) {
      mediaCards = window.amltrackMedia({ el, fill, getJSON, api, enc, encPath, plotlyText, fmtNum });
    }
    return mediaCards;
  }

  // ------------------------------------------------------------------ charts

  const CHART_CONFIG = {
    responsive: true,
    displaylogo: false,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toImage"],
  };
  const CHART_HEIGHT = 260;
  // plotly's own default colours, given to each source so its raw and smoothed lines share one.
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf"];
  const XAXES = { step: "step", wall: "wall time", relative: "relative time (s)" };
  const MAX_SMOOTHING = 0.999;

  // A number as JavaScript prints it: the fewest digits that read back as the same double (at most
  // 17 significant), no thousands separators, no rounding. For steps, params and hover values.
  function fmtExact(v) {
    if (typeof v === "number") return Object.is(v, -0) ? "0" : String(v);
    if (v !== null && typeof v === "object") return JSON.stringify(v);  // a param that is a list or a dict
    return v === null || v === undefined ? "–" : String(v);
  }

  // The URL's query with some keys changed (null removes one), kept without a reload or a history entry.
  function setQuery(changes) {
    const q = new URLSearchParams(location.search);
    for (const [k, v] of Object.entries(changes)) {
      q.delete(k);
      for (const x of v === null || v === undefined ? [] : [].concat(v)) q.append(k, x);
    }
    const s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : "") + location.hash);
  }

  // A page's chart settings (x-axis, smoothing), read from its URL once per page and shared by every
  // chart on it. Pages that rewrite their whole query keep them with chartQuery(q).
  const chartSettings = { session: -1, xaxis: "step", smoothing: 0, charts: new Set() };
  function chartState() {
    if (chartSettings.session !== session) {
      const q = new URLSearchParams(location.search);
      const w = Number(q.get("smoothing"));
      Object.assign(chartSettings, {
        session, charts: new Set(),
        xaxis: XAXES[q.get("xaxis")] ? q.get("xaxis") : "step",
        smoothing: Number.isFinite(w) && w > 0 ? Math.min(w, MAX_SMOOTHING) : 0,
      });
    }
    return chartSettings;
  }
  function chartQuery(q) {
    const st = chartState();
    if (st.xaxis !== "step") q.set("xaxis", st.xaxis); else q.delete("xaxis");
    if (st.smoothing) q.set("smoothing", String(st.smoothing)); else q.delete("smoothing");
    return q;
  }
  function setChartState(changes) {
    const st = chartState();
    Object.assign(st, changes);
    setQuery({ xaxis: st.xaxis === "step" ? null : st.xaxis, smoothing: st.smoothing ? String(st.smoothing) : null });
    for (const chart of [...st.charts]) {
      if (!chart.div.isConnected) { st.charts.delete(chart); continue; }  // a chart replaced or gone
      if ("xaxis" in changes) { chart.range = null; chart.load(); } else chart.redraw();
    }
  }

  // The page's chart controls: the x-axis and the smoothing slider (0 to 0.999, as TensorBoard's).
  function chartToolbar() {
    const st = chartState();
    const xaxis = el("select", { id: "chart-xaxis", "aria-label": "x-axis",
      onchange: () => setChartState({ xaxis: xaxis.value }) },
    Object.entries(XAXES).map(([k, label]) => el("option", { value: k }, label)));
    xaxis.value = st.xaxis;
    const shown = el("output", { id: "chart-smoothing-value" }, fmtExact(st.smoothing));
    const smoothing = el("input", {
      id: "chart-smoothing", type: "range", min: "0", max: String(MAX_SMOOTHING), step: "0.001",
      value: String(st.smoothing), "aria-label": "smoothing",
      oninput: () => {
        shown.textContent = smoothing.value;
        setChartState({ smoothing: Math.min(Number(smoothing.value), MAX_SMOOTHING) });
      },
    });
    return el("div", { class: "toolbar chart-toolbar" },
      el("label", {}, "x-axis ", xaxis), el("label", {}, "smoothing ", smoothing, " ", shown));
  }

  // TensorBoard's smoothing: an exponential moving average started at 0 and divided by
  // (1 - w^n), n the finite points seen, so the first points are not pulled towards 0. Non-finite
  // values pass through, and a constant series is left as it is.
  function smooth(ys, w) {
    if (!w || !ys.length || ys.every((y) => y === ys[0])) return ys.slice();
    let acc = 0, n = 0;
    return ys.map((y) => {
      if (!Number.isFinite(y)) return y;
      acc = acc * w + (1 - w) * y;
      n += 1;
      return acc / (1 - Math.pow(w, n));
    });
  }

  // Seconds since the epoch as plotly's date strings, in the browser's time zone, to the millisecond.
  function dateText(t) {
    const d = new Date(t * 1000), p = (n, k) => String(n).padStart(k || 2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" +
      p(d.getMinutes()) + ":" + p(d.getSeconds()) + "." + p(d.getMilliseconds(), 3);
  }
  // ... and back: plotly gives a date axis's range as such strings (local time), or as milliseconds.
  function dateSeconds(v) {
    if (typeof v === "number") return v / 1000;
    const m = String(v).match(/^(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d)(?::(\d\d)(?::(\d\d)(\.\d+)?)?)?)?/);
    if (!m) return NaN;
    const d = new Date(+m[1], +m[2] - 1, +m[3], +(m[4] || 0), +(m[5] || 0), +(m[6] || 0));
    return d.getTime() / 1000 + Number(m[7] || 0);
  }

  // One chart: one or several sources (run, metric), each one trace, downsampled by the server to
  // the chart's width and re-fetched for the zoomed range. "legend" titles the legend (compare: the
  // metric). opts: settings (default: the page's chartState()), tools (more controls for its bar).
  class SeriesChart {
    constructor(card, sources, legend, opts) {
      opts = opts || {};
      this.card = card;
      this.sources = sources;
      this.legend = legend;
      this.settings = opts.settings || chartState();
      this.settings.charts.add(this);
      this.log = false;
      this.wide = false;
      this.range = null;
      this.results = [];
      this.div = el("div", { class: "chart" });
      this.info = el("span", { class: "chart-info" });
      this.logButton = el("button", {
        type: "button", class: "log-toggle", "aria-pressed": "false",
        onclick: () => this.toggleLog(),
      }, "log scale");
      this.wideButton = el("button", {
        type: "button", class: "widen", "aria-pressed": "false", title: "widen to the page (Esc returns)",
        onclick: () => this.widen(!this.wide),
      }, "widen");
      card.append(el("div", { class: "chart-tools" }, this.logButton, this.wideButton, opts.tools || [], this.info),
        this.div);
      this.pending = null;
      this.drawn = false;
    }

    width() {
      const w = this.div.clientWidth || 800;
      return Math.round(w * Math.min(window.devicePixelRatio || 1, 2));
    }

    async fetchSource(src) {
      const xaxis = this.settings.xaxis;
      let url = api("/runs/" + enc(src.run) + "/series?name=" + enc(src.name) + "&width=" + this.width());
      if (xaxis !== "step") url += "&xaxis=" + xaxis;
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
          const xaxis = this.settings.xaxis;
          const results = await Promise.all(this.sources.map((s) => this.fetchSource(s).catch((e) => e)));
          if (xaxis === this.settings.xaxis) this.draw(results, xaxis); else this.again = true;
        } while (this.again);
      })();
      try { await this.pending; } finally { this.pending = null; }
    }

    addSource(src) {
      this.sources.push(src);
      return this.load();
    }

    removeSource(name) {
      this.sources = this.sources.filter((s) => s.name !== name);
      return this.load();
    }

    redraw() {
      if (this.results.length) this.draw(this.results, this.xaxis);
    }

    traces(results, xaxis) {
      const w = this.settings.smoothing;
      const behind = [], front = [];
      results.forEach((data, i) => {
        const src = this.sources[i];
        if (!src || data instanceof Error || !data.x) return;
        const color = COLORS[i % COLORS.length];
        const steps = data.steps || data.x;
        const x = xaxis === "wall" ? data.x.map(dateText) : data.x;
        const at = (k) => xaxis === "step" ? "" : " (step " + fmtExact(steps[k]) + ")";
        const line = { width: 1.5, shape: data.bools ? "hv" : "linear", color };
        const trace = { type: "scatter", mode: data.x.length < 2 ? "markers" : "lines", x, name: plotlyText(src.label),
          marker: { color } };
        const hovertemplate = "%{text}<extra>%{fullData.name}</extra>";
        if (!w) {
          front.push({ ...trace, y: data.y, line, hovertemplate, text: data.y.map((y, k) => fmtExact(y) + at(k)) });
          return;
        }
        const ys = smooth(data.y, w);
        behind.push({ ...trace, y: data.y, line: { ...line, width: 1 }, opacity: 0.25, hoverinfo: "skip",
          showlegend: false, meta: "raw" });
        front.push({ ...trace, y: ys, line, hovertemplate, meta: "smoothed",
          text: ys.map((y, k) => fmtExact(y) + " (raw " + fmtExact(data.y[k]) + ")" + at(k)) });
      });
      return behind.concat(front);
    }

    draw(results, xaxis) {
      this.results = results;
      this.xaxis = xaxis;
      const traces = this.traces(results, xaxis);
      let count = 0, shown = 0, down = false, nonfinite = 0;
      for (const data of results) {
        if (data instanceof Error || !data.x) continue;
        count += data.count || 0;
        shown += data.shown || 0;
        down = down || data.downsampled;
        nonfinite += data.nonfinite || 0;
      }
      const hoverformat = { step: "d", relative: ".3f", wall: "%Y-%m-%d %H:%M:%S.%3f" }[xaxis];
      const layout = {
        height: this.wide ? this.wideHeight() : CHART_HEIGHT, margin: { l: 60, r: 15, t: 10, b: 40 },
        xaxis: { title: { text: XAXES[xaxis] }, zeroline: false, type: xaxis === "wall" ? "date" : "linear", hoverformat },
        yaxis: { type: this.log ? "log" : "linear", zeroline: false },
        showlegend: this.sources.length > 1,
        legend: { orientation: "h", y: -0.25, title: this.legend ? { text: plotlyText(this.legend) } : undefined },
        hovermode: "x unified", uirevision: xaxis,
      };
      this.info.textContent = plural(count, "point") +
        (down ? ", showing " + fmtNum(shown) + " (min and max per pixel)" : "") +
        (nonfinite ? ", " + fmtNum(nonfinite) + " NaN or infinite not drawn" : "");
      this.div.dataset.traces = String(traces.length);
      this.div.dataset.points = String(count);
      this.div.dataset.xaxis = xaxis;
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

    // Zooming asks the server again for the visible range, at full resolution for that range:
    // whole steps on a step axis, seconds on a time axis (a date axis gives its range as dates).
    onRelayout(ev) {
      let range = null;
      if (ev["xaxis.range[0]"] !== undefined) range = [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
      else if (Array.isArray(ev["xaxis.range"])) range = ev["xaxis.range"];
      else if (!ev["xaxis.autorange"]) return;
      if (range && this.xaxis === "step") range = [Math.floor(range[0]), Math.ceil(range[1])];
      else if (range && this.xaxis === "wall") range = range.map(dateSeconds);
      if (range && !range.every(Number.isFinite)) return;
      if (JSON.stringify(range) === JSON.stringify(this.range)) return;
      this.range = range;
      this.load();
    }

    toggleLog() {
      this.log = !this.log;
      this.logButton.setAttribute("aria-pressed", String(this.log));
      if (window.Plotly && this.drawn) Plotly.relayout(this.div, { "yaxis.type": this.log ? "log" : "linear" });
    }

    wideHeight() {
      return Math.max(CHART_HEIGHT, window.innerHeight - 110);
    }

    // Widened, the card covers the page; the series is asked for again at the new width.
    widen(on) {
      if (on === this.wide) return;
      this.wide = on;
      if (on) { if (SeriesChart.wide) SeriesChart.wide.widen(false); SeriesChart.wide = this; }
      else if (SeriesChart.wide === this) SeriesChart.wide = null;
      this.card.classList.toggle("chart-wide", on);
      document.documentElement.classList.toggle("has-wide-chart", on);
      this.wideButton.setAttribute("aria-pressed", String(on));
      this.wideButton.textContent = on ? "back" : "widen";
      if (!window.Plotly || !this.drawn) return;
      Plotly.relayout(this.div, { height: on ? this.wideHeight() : CHART_HEIGHT, width: null })
        .then(() => Plotly.Plots.resize(this.div)).then(() => this.load());
    }

    // After its section was closed while it drew (no width then), or the page was resized.
    resize() {
      if (window.Plotly && this.drawn && this.div.clientWidth) {
        Plotly.Plots.resize(this.div);
        this.load();
      }
    }
  }
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && SeriesChart.wide) SeriesChart.wide.widen(false);
  });

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
        name: plotlyText(this.name), marker: { size: 4 }, text: data.y.map(fmtExact),
        hovertemplate: "[%{x}] %{text}<extra></extra>",
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

  // A metric's section: the part of its name before the first "/" ("train/loss": train), or none.
  function metricGroup(name) {
    const i = name.indexOf("/");
    return i > 0 ? name.slice(0, i) : "";
  }

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
    const query = new URLSearchParams(location.search);
    const status = statusBadge(run.status, { id: "run-status" });
    const duration = el("span", { id: "run-duration" }, fmtDuration(run.duration_s));
    const ended = el("span", { id: "run-ended" }, fmtTime(run.ended));
    const charts = el("div", { id: "charts", class: "metric-groups" });
    const lists = el("div", { id: "lists", class: "charts" });
    const strings = el("div", { id: "strings" });
    const artifacts = el("div", { id: "artifacts" });
    const preview = el("section", { id: "artifact-preview", class: "card preview", hidden: true });
    const progress = el("p", { id: "indexing", class: "note", hidden: true });
    const listsTitle = el("h2", { id: "lists-title", hidden: true }, "List metrics");
    const stringsTitle = el("h2", { id: "strings-title", hidden: true }, "Text metrics");
    const tableDuration = el("span", {}, fmtDuration(run.duration_s));
    const rich = el("div", { id: "media", class: "charts" });
    const richTitle = el("h2", { id: "media-title", hidden: true }, "Images, tables and histograms");
    fill(app,
      el("div", { class: "run-head" },
        el("h1", {}, runLabel(run)), status,
        el("a", { class: "button", href: BASE + "/compare?runs=" + enc(id) }, "Compare…")),
      runFacts(run, duration, ended),
      errorSection(run),
      el("details", { class: "meta-details", id: "meta-details" },
        el("summary", {}, "Details: ", detailsSummary(run)), metaSection(run, tableDuration)),
      el("div", { class: "metrics-head" }, el("h2", {}, "Metrics"), chartToolbar()), progress, charts,
      listsTitle, lists,
      richTitle, rich,
      stringsTitle, strings,
      el("h2", {}, "Artifacts"), artifacts, preview,
    );
    const openPreview = (path) => showPreview(preview, id, path);
    renderArtifacts(artifacts, id, detail.artifacts, openPreview);
    if (query.get("artifact")) openPreview(query.get("artifact"));

    const numeric = new Map();  // metric -> {chart, n, card}: the chart whose own metric it is
    const groups = new Map();   // prefix -> its section's grid
    const listCharts = new Map();
    const richCards = new Map();
    let stringsCount = -1;
    // Charts with more metrics than their own, from the URL: "host\nother\n..." per chart.
    const combined = new Map(query.getAll("combine").map((c) => c.split("\n"))
      .filter((names) => names.length > 1).map(([host, ...more]) => [host, more]));

    function groupGrid(name) {
      const key = metricGroup(name);
      if (!groups.has(key)) {
        const grid = el("div", { class: "charts" });
        const count = el("span", { class: "count" });
        // system/ (the sampler's CPU, memory, disk, network, GPU rows) starts closed: it is there to
        // look at when training is slow, not the run's own figures.
        const section = el("details", { class: "metric-group", open: key !== "system", dataset: { group: key } },
          el("summary", {}, el("span", { class: "group-name" }, key || "ungrouped"), " ", count), grid);
        // Charts drawn while it was closed had no width: draw them again at the width they now have.
        section.addEventListener("toggle", () => {
          if (section.open) for (const e of numeric.values()) if (e.grid === grid) e.chart.resize();
        });
        charts.append(section);
        groups.set(key, { grid, count, n: 0 });
      }
      const g = groups.get(key);
      g.n += 1;
      g.count.textContent = plural(g.n, "chart");
      return g.grid;
    }

    function saveCombined() {
      setQuery({ combine: [...combined].filter(([, more]) => more.length).map(([host, more]) => [host, ...more].join("\n")) });
    }

    // The chart-level picker: any other numeric metric of the run, drawn on this chart too.
    function combineTools(host) {
      const chips = el("span", { class: "combined" });
      const picker = el("select", { class: "combine", "aria-label": "add a metric to this chart",
        onchange: () => {
          const name = picker.value;
          picker.value = "";
          if (!name) return;
          const more = combined.get(host) || [];
          if (!more.includes(name)) combined.set(host, [...more, name]);
          saveCombined();
          addCombined(host, name);
        } });
      return { picker, chips };
    }
    function addCombined(host, name) {
      const e = numeric.get(host);
      if (!e || e.chart.sources.some((src) => src.name === name)) return;
      e.chart.addSource({ run: id, name, label: name });
      e.card.dataset.combined = String(e.chart.sources.length);
      e.tools.chips.append(el("span", { class: "chip", dataset: { metric: name } }, name,
        el("button", { type: "button", class: "remove", "aria-label": "remove " + name, onclick: (ev) => {
          ev.currentTarget.parentNode.remove();
          combined.set(host, (combined.get(host) || []).filter((x) => x !== name));
          saveCombined();
          e.chart.removeSource(name);
          e.card.dataset.combined = String(e.chart.sources.length);
        } }, "×")));
      fillPickers();
    }
    function fillPickers() {
      const names = [...numeric.keys()];
      for (const e of numeric.values()) {
        const taken = new Set(e.chart.sources.map((src) => src.name));
        fill(e.tools.picker, el("option", { value: "" }, "+ metric"),
          names.filter((n) => !taken.has(n)).map((n) => el("option", { value: n }, n)));
        e.tools.picker.hidden = names.length === taken.size;
      }
    }

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
      let strCount = 0, added = false;
      for (const m of metrics) {
        if (m.numbers && !numeric.has(m.name)) {
          const card = chartCard(m.name, "number");
          const grid = groupGrid(m.name);
          grid.append(card);
          const tools = combineTools(m.name);
          const chart = new SeriesChart(card, [{ run: id, name: m.name, label: m.name }], null,
            { tools: [tools.picker, tools.chips] });
          numeric.set(m.name, { chart, n: -1, card, grid, tools });
          added = true;
        }
        const entry = numeric.get(m.name);
        if (entry && entry.n !== m.numbers) {
          entry.n = m.numbers;
          // A combined chart draws this metric too: it grows with it.
          for (const e of numeric.values()) if (e.chart.sources.some((src) => src.name === m.name)) loads.push(e.chart.load());
        }
        if (m.lists && !listCharts.has(m.name)) {
          const card = chartCard(m.name, "list");
          lists.append(card);
          listCharts.set(m.name, { chart: new ListChart(card, id, m.name), n: -1 });
        }
        const le = listCharts.get(m.name);
        if (le && le.n !== m.lists) { le.n = m.lists; loads.push(le.chart.load(m.lists)); }
        strCount += m.strings || 0;
        if (m.media && media()) {
          let rc = richCards.get(m.name);
          if (!rc) {
            rc = { n: -1, made: media().runCard(id, m.name).then((c) => { rich.append(c.card); return c; }) };
            richCards.set(m.name, rc);
          }
          if (rc.n !== m.media) { rc.n = m.media; loads.push(rc.made.then((c) => c.load())); }
        }
      }
      if (added) {
        fillPickers();
        for (const [host, more] of combined) for (const name of more) if (numeric.has(name)) addCombined(host, name);
      }
      richTitle.hidden = richCards.size === 0;
      if (!metrics.length) fill(charts, message("No metrics logged."));
      listsTitle.hidden = listCharts.size === 0;
      if (strCount !== stringsCount) { stringsCount = strCount; loads.push(loadStrings()); }
      return Promise.all([...new Set(loads)]);
    }

    async function loadStrings() {
      const data = await getJSON(api("/runs/" + enc(id) + "/strings?limit=100"));
      stringsTitle.hidden = data.strings.length === 0;
      const rows = [];
      for (const s of data.strings) {
        for (const r of s.rows) {
          rows.push(el("tr", { dataset: { metric: s.name } }, el("td", { class: "metric-name" }, s.name),
            el("td", { class: "num" }, fmtExact(r.step)), el("td", { class: "value" }, r.value), el("td", {}, fmtTs(r.ts))));
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

    // Everything on the page that the end of the run changes: the header and the metadata table.
    function showLive(p) {
      status.textContent = p.status;
      status.className = "status status-" + (STATUSES.includes(p.status) ? p.status : "other");
      duration.textContent = tableDuration.textContent = fmtDuration(p.duration_s);
      ended.textContent = fmtTime(p.ended);
      ended.parentNode.hidden = !p.ended;
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
              renderArtifacts(artifacts, id, d.artifacts, openPreview);
            }
          } catch (e) { /* the next poll tries again */ }
        }
        if (p.status !== "running") {
          const d = await getJSON(api("/runs/" + enc(id)));
          showLive(d.run);
          renderArtifacts(artifacts, id, d.artifacts, openPreview);
          return;
        }
      }
    }
  }

  // The header under the run's name: what tells runs apart at a glance, the full record below it.
  function runFacts(run, duration, ended) {
    const git = run.git || {};
    const fact = (label, value, attrs) => value === null || value === undefined || value === "" ? null :
      el("span", { class: "fact", ...(attrs || {}) }, el("span", { class: "fact-label" }, label), " ", value);
    const params = Object.entries(run.params || {});
    return el("div", { class: "run-facts", id: "run-facts" },
      el("span", { class: "id" }, run.id),
      fact("experiment", run.experiment, { dataset: { fact: "experiment" } }),
      fact("started", fmtTime(run.created), { dataset: { fact: "created" } }),
      fact("duration", duration, { dataset: { fact: "duration" } }),
      fact("ended", ended, { dataset: { fact: "ended" }, hidden: !run.ended }),
      fact("host", run.hostname), fact("user", run.user),
      git.commit ? fact("git", String(git.commit).slice(0, 10) + (git.dirty ? " (dirty)" : "")) : null,
      params.slice(0, 8).map(([k, v]) => el("span", { class: "kv param", dataset: { param: k } }, k + "=" + fmtParam(v))),
      params.length > 8 ? el("span", { class: "note" }, "+" + (params.length - 8) + " params") : null);
  }

  function fmtParam(v) {
    if (typeof v === "number" || v === null || v === undefined) return fmtExact(v);
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function detailsSummary(run) {
    const n = (o) => Object.keys(o || {}).length;
    return "metadata, " + plural(n(run.params), "parameter") + ", " + plural(n(run.tags), "tag");
  }

  function errorSection(run) {
    const errors = [];
    if (run.error) {
      errors.push(el("div", { class: "run-error", id: "run-error" },
        el("strong", {}, (run.error.type || "Error") + ": " + (run.error.message || "")),
        run.error.traceback ? el("details", {}, el("summary", {}, "traceback"), el("pre", {}, run.error.traceback)) : null));
    }
    if (run.write_error) errors.push(el("p", { class: "error" }, "Write error: " + JSON.stringify(run.write_error)));
    return errors;
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
      Object.entries(obj).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, fmtParam(v))))));
    const parts = [el("table", { class: "kv-table meta", id: "meta" }, el("tbody", {},
      rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { dataset: { field: k } }, v)))))];
    const side = [];
    if (run.tags && Object.keys(run.tags).length) side.push(el("h3", {}, "Tags"), table(run.tags, "tags-table"));
    if (run.params && Object.keys(run.params).length) side.push(el("h3", {}, "Parameters"), table(run.params, "params-table"));
    return el("section", { class: "meta-section" }, el("div", { class: "meta-grid" }, el("div", {}, parts), el("div", {}, side)));
  }

  // stored and deleted are what they say; preexisting is a file that was in outputs/ before the run
  // and unchanged during it (not the run's, never copied); anything else was refused.
  function artifactKind(entry) {
    return ["stored", "deleted", "preexisting"].includes(entry.status) ? entry.status : "rejected";
  }

  function renderArtifacts(where, runId, entries, onPreview) {
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
        const served = kind === "stored" || entry.kept;
        const label = served
          ? el("a", { class: "name download", href: api("/runs/" + enc(runId) + "/artifacts/" + encPath(entry.path)),
            download: name, dataset: { path: entry.path } }, name)
          : el("span", { class: "name" }, name);
        return el("li", { class: "file", dataset: { path: entry.path, status: entry.status } }, label,
          el("span", { class: "size" }, fmtBytes(entry.size)),
          el("span", { class: "status artifact-" + kind }, entry.status),
          served && onPreview ? el("button", { type: "button", class: "preview-button",
            "aria-label": "preview " + entry.path, onclick: () => onPreview(entry.path) }, "preview") : null,
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

  // An artifact in the page: text and JSON as text, CSV as a table, an image through <img> (an SVG
  // too: an image's scripts never run). Its download link stays; anything else is only that.
  async function showPreview(where, runId, path) {
    const href = api("/runs/" + enc(runId) + "/artifacts/" + encPath(path));
    const name = path.split("/").pop();
    const close = el("button", { type: "button", class: "close", "aria-label": "close the preview",
      onclick: () => { where.hidden = true; fill(where); setQuery({ artifact: null }); } }, "×");
    const head = (...more) => el("div", { class: "preview-head" }, el("strong", { class: "name" }, path), more,
      el("a", { class: "download", href, download: name }, "download"), close);
    where.hidden = false;
    delete where.dataset.kind;
    fill(where, head(), el("p", { class: "loading" }, "Loading…"));
    setQuery({ artifact: path });
    let p;
    try {
      p = await getJSON(api("/runs/" + enc(runId) + "/preview/" + encPath(path)));
    } catch (e) {
      fill(where, head(), el("p", { class: "error" }, e.message));
      return;
    }
    const notes = [p.note ? message(p.note) : null,
      p.truncated ? message(p.kind === "csv" ? "The first " + p.rows.length + " rows." : "The first MiB of " + fmtBytes(p.size) + ".") : null];
    let body;
    if (p.kind === "image") {
      body = el("img", { class: "preview-image", alt: path, src: api("/runs/" + enc(runId) + "/images/" + encPath(path)) });
    } else if (p.kind === "csv") {
      const [header, ...rows] = p.rows;
      body = el("div", { class: "table-wrap" }, el("table", { class: "preview-csv" },
        el("thead", {}, el("tr", {}, (header || []).map((c) => el("th", {}, c)))),
        el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c)))))));
    } else if (p.kind === "text" || p.kind === "json") {
      body = el("pre", { class: "preview-text" }, p.text);
    } else {
      body = message("No preview for this file (" + fmtBytes(p.size) + "): download it.");
    }
    where.dataset.kind = p.kind;
    fill(where, head(el("span", { class: "size" }, fmtBytes(p.size))), notes, body);
    where.scrollIntoView({ block: "nearest" });
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
    statusBadge, runLabel, message, showError, SeriesChart, chartToolbar, chartQuery, ensurePlotly, warmCharts,
    media, alive, go,
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
