// amltrack UI, the compare page (docs/ui.md): the chosen runs side by side in a table whose
// differing rows are marked, every metric they share overlaid in a grid of charts, parallel
// coordinates of their params and a metric, and a scatter of any two columns.
// Loaded before ui.js, which calls it with its helpers; user data is inserted as text only
// (el()), or escaped for plotly (plotlyText).
"use strict";

(window.amltrackPages = window.amltrackPages || {}).compare = async function comparePage(app, s) {
  const U = window.amltrackUI;
  const { el, fill, enc, api, getJSON, runLabel, statusBadge, alive, plotlyText, BODY } = U;
  const EAGER = 12;  // charts drawn at once; the rest as they scroll into view
  const STATS = ["last", "min", "max"];

  document.title = "Compare runs · amltrack";
  const params = new URLSearchParams(location.search);
  // The URL keeps the refs it was given (an id, a prefix of it or of its random part, a name,
  // "last"); each is resolved to its run by the API, as the run page's ref is.
  let refs = (params.get("runs") || "").split(",").filter(Boolean);
  const st = {
    diff: params.get("diff") === "1",
    // metric= is the one-chart page's metric, from before the grid: it picks the metric here.
    pc: params.get("pc") || params.get("metric") || "",
    x: params.get("x") || "", y: params.get("y") || "",
  };

  const idOf = new Map();  // ref -> run id, or an Error when no run (or several) answers to it
  const info = new Map();  // run id -> run.json as /api/runs/{ref} gives it
  let rows = new Map();  // run id -> the runs list's row: params, tags and metric summaries
  let runs = [];  // the chosen runs, once each, in the order of their refs
  let numeric = new Map();  // run id -> the names of its metrics that have numbers
  let rich = new Map();  // run id -> the names of its images, tables, histograms (media.js's cards)

  const picked = el("ul", { id: "compare-runs", class: "chips" });
  const add = el("select", { id: "compare-add", "aria-label": "add a run", onchange: () => {
    if (add.value) { refs.push(add.value); update(); }
  } });
  const addRef = el("input", { id: "compare-add-ref", type: "search", placeholder: "or an id, prefix or name",
    "aria-label": "add a run by id, prefix or name", onkeydown: (ev) => {
      if (ev.key === "Enter" && addRef.value.trim()) { refs.push(addRef.value.trim()); addRef.value = ""; update(); }
    } });
  const note = el("p", { class: "note", id: "compare-note" });
  const onlyDiffs = el("button", { type: "button", id: "only-diffs", "aria-pressed": String(st.diff), onclick: () => {
    st.diff = !st.diff;
    onlyDiffs.setAttribute("aria-pressed", String(st.diff));
    table.classList.toggle("only-diffs", st.diff);
    writeUrl();
  } }, "Only differences");
  const diffCount = el("span", { class: "count", id: "diff-count" });
  const table = el("table", { id: "compare-table", class: "compare-table" + (st.diff ? " only-diffs" : "") });
  const grid = el("div", { id: "compare-grid", class: "charts" });
  const pcMetric = el("select", { id: "pc-metric", "aria-label": "metric of the parallel coordinates",
    onchange: () => { st.pc = pcMetric.value; writeUrl(); drawParcoords(); } });
  const pcDiv = el("div", { id: "parcoords", class: "chart" });
  const xSel = el("select", { id: "scatter-x", "aria-label": "x of the scatter",
    onchange: () => { st.x = xSel.value; writeUrl(); drawScatter(); } });
  const ySel = el("select", { id: "scatter-y", "aria-label": "y of the scatter",
    onchange: () => { st.y = ySel.value; writeUrl(); drawScatter(); } });
  const scDiv = el("div", { id: "scatter", class: "chart" });
  const sections = el("div", { id: "compare-sections" },
    el("h2", {}, "What differs"),
    el("div", { class: "toolbar" }, onlyDiffs, diffCount),
    el("div", { class: "table-wrap" }, table),
    el("div", { class: "metrics-head" }, el("h2", {}, "Metrics"), U.chartToolbar()), grid,
    el("div", { class: "pair" },
      el("section", { class: "card", id: "parcoords-card" },
        el("div", { class: "chart-tools" }, el("label", {}, "Parameters and ", pcMetric)), pcDiv),
      el("section", { class: "card", id: "scatter-card" },
        el("div", { class: "chart-tools" }, el("label", {}, "x ", xSel), el("label", {}, "y ", ySel)), scDiv)));
  fill(app, el("h1", {}, "Compare runs"),
    el("div", { class: "toolbar" }, el("label", {}, "Add run ", add), addRef), picked, note, sections);

  function writeUrl() {
    const q = new URLSearchParams();
    if (refs.length) q.set("runs", refs.join(","));
    if (st.diff) q.set("diff", "1");
    if (st.pc) q.set("pc", st.pc);
    if (st.x) q.set("x", st.x);
    if (st.y) q.set("y", st.y);
    U.chartQuery(q);  // the grid's x-axis and smoothing, which its toolbar keeps in the URL too
    history.replaceState(null, "", location.pathname + "?" + q);
  }

  // ---------------------------------------------------------------- the runs

  async function resolve(ref) {
    if (idOf.has(ref) && !(idOf.get(ref) instanceof Error)) return;
    try {
      const d = await getJSON(api("/runs/" + enc(ref)));
      info.set(d.run.id, d.run);
      idOf.set(ref, d.run.id);
    } catch (e) {
      idOf.set(ref, e);
    }
  }

  // The chosen runs' rows of the runs list, for their params and metric summaries: one request.
  async function loadRows() {
    if (!runs.length) { rows = new Map(); return; }
    const q = "id in (" + runs.map((r) => "'" + r.id + "'").join(", ") + ")";
    try {
      const d = await getJSON(api("/runs?q=" + enc(q)));
      rows = new Map(d.runs.map((r) => [r.id, r]));
    } catch (e) {
      note.textContent = "cannot read the runs' summaries: " + e.message;
    }
    // The status a run has now, whatever form of ref chose it.
    for (const r of runs) if (rows.has(r.id)) Object.assign(r, { status: rows.get(r.id).status, ended: rows.get(r.id).ended,
      duration_s: rows.get(r.id).duration_s });
  }

  async function metricsOf(id) {
    for (;;) {
      const m = await getJSON(api("/runs/" + enc(id) + "/metrics"));
      if (!m.building) {
        rich.set(id, m.metrics.filter((x) => x.media && !x.numbers).map((x) => x.name));
        return m.metrics.filter((x) => x.numbers).map((x) => x.name);
      }
      note.textContent = "indexing " + runLabel(info.get(id) || { id }) + "…";
      await U.sleep(200);
    }
  }

  // Legend names: a run's name, and its short id too where two chosen runs share the name.
  function labels() {
    const count = new Map();
    for (const r of runs) count.set(runLabel(r), (count.get(runLabel(r)) || 0) + 1);
    return new Map(runs.map((r) => [r.id, count.get(runLabel(r)) > 1 ? runLabel(r) + " (" + r.short_id + ")" : runLabel(r)]));
  }

  function drawChips() {
    fill(picked, ...refs.map((ref) => {
      const remove = (label) => el("button", { type: "button", class: "remove", "aria-label": "remove " + label,
        onclick: () => { refs = refs.filter((x) => x !== ref); update(); } }, "×");
      const id = idOf.get(ref);
      if (id instanceof Error) {
        return el("li", { class: "chip missing", dataset: { ref } }, el("span", {}, ref), " ",
          el("span", { class: "status status-other", title: id.message }, "not found"), remove(ref));
      }
      const r = info.get(id);
      return el("li", { class: "chip", dataset: { runId: r.id, ref } },
        el("a", { href: U.runUrl(r.id) }, runLabel(r)), " ", statusBadge(r.status), remove(runLabel(r)));
    }));
  }

  async function fillAdd() {
    let newest = [];
    try { newest = (await getJSON(api("/runs?limit=100"))).runs; } catch (e) { /* the text box still adds */ }
    if (!alive(s)) return;
    const chosen = new Set(runs.map((r) => r.id));
    fill(add, el("option", { value: "" }, "…"),
      newest.filter((r) => !chosen.has(r.id)).map((r) => el("option", { value: r.id }, runLabel(r) + " · " + r.id)));
  }

  // ---------------------------------------------------------------- the table

  const same = (vs) => new Set(vs.map((v) => JSON.stringify(v === undefined ? null : v))).size <= 1;

  function drawTable() {
    const names = labels();
    const head = el("tr", {}, el("th", {}, ""), runs.map((r) => el("th", { dataset: { runId: r.id } },
      el("a", { href: U.runUrl(r.id), class: "run-link" }, names.get(r.id)), " ", statusBadge(r.status),
      el("div", { class: "id" }, r.id))));
    const body = [];
    let differing = 0;
    const group = (title) => body.push(el("tr", { class: "group" }, el("th", { colspan: runs.length + 1 }, title)));
    // Times differ between any two runs: shown, never marked.
    const line = (key, label, values, show, always) => {
      const differs = runs.length > 1 && !always && !same(values);
      if (differs) differing++;
      body.push(el("tr", { class: differs ? "differs" : "", dataset: { key, differs: differs ? "1" : "0" } },
        el("th", { scope: "row" }, label), values.map((v, i) => el("td", {
          class: typeof v === "number" ? "num" : "value", title: typeof v === "number" ? String(v) : null,
        }, show(v, i)))));
    };
    const of = (id) => ({ ...(info.get(id) || {}), ...(rows.get(id) || {}) });
    const all = runs.map((r) => of(r.id));
    const union = (pick) => [...new Set(all.flatMap((r) => Object.keys(pick(r) || {})))].sort();
    group("Run");
    line("experiment", "experiment", all.map((r) => r.experiment), U.fmtExact);
    line("status", "status", all.map((r) => r.status), (v) => statusBadge(v));
    line("created", "started", all.map((r) => r.created), U.fmtTime, true);
    line("ended", "ended", all.map((r) => r.ended), U.fmtTime, true);
    line("duration", "duration", all.map((r) => r.duration_s), U.fmtDuration, true);
    line("user", "user", all.map((r) => r.user), U.fmtExact);
    line("host", "host", all.map((r) => r.hostname), U.fmtExact);
    line("git.commit", "git commit", all.map((r) => (r.git || {}).commit), U.fmtExact);
    const ps = union((r) => r.params);
    if (ps.length) group("Parameters");
    for (const n of ps) line("params." + n, n, all.map((r) => (r.params || {})[n]), U.fmtExact);
    const ms = union((r) => r.summaries);
    if (ms.length) group("Metrics");
    for (const n of ms) {
      for (const stat of STATS) {
        const vs = all.map((r) => ((r.summaries || {})[n] || {})[stat]);
        if (stat !== "last" && vs.every((v) => v === null || v === undefined)) continue;
        const digits = U.distinctDigits(vs);
        line("metrics." + n + (stat === "last" ? "" : "." + stat), [n, el("span", { class: "stat" }, " · " + stat)],
          vs, (v) => U.fmtDigits(v, digits));
      }
    }
    const ts = union((r) => r.tags);
    if (ts.length) group("Tags");
    for (const n of ts) line("tags." + n, n, all.map((r) => (r.tags || {})[n]), U.fmtExact);
    fill(table, el("thead", {}, head), el("tbody", {}, body));
    diffCount.textContent = runs.length > 1 ? differing + (differing === 1 ? " row differs" : " rows differ") : "";
  }

  // ---------------------------------------------------------------- the grid of charts

  let charts = [];
  let observer = null;
  async function drawGrid() {
    if (observer) observer.disconnect();
    const lists = runs.map((r) => numeric.get(r.id) || []);
    const union = [...new Set(lists.flat())];
    const shared = union.filter((n) => lists.every((l) => l.includes(n)));
    const order = [...shared, ...union.filter((n) => !shared.includes(n))];
    const names = labels();
    charts = [];
    const media = U.media();
    const richNames = media ? [...new Set(runs.flatMap((r) => rich.get(r.id) || []))] : [];
    fill(grid, order.length || richNames.length ? null
      : U.message(runs.length ? "These runs have no metrics to chart." : "No runs chosen."));
    for (const metric of order) {
      const having = runs.filter((r, i) => lists[i].includes(metric));
      const card = el("section", { class: "card chart-card", dataset: { metric, kind: "number" } },
        el("h3", { class: "metric-name" }, metric,
          shared.includes(metric) ? null : el("span", { class: "note" }, " (" + having.length + " of " + runs.length + " runs)")));
      grid.append(card);
      const chart = new U.SeriesChart(card, having.map((r) => ({ run: r.id, name: metric, label: names.get(r.id) })), metric);
      chart.card.dataset.shared = shared.includes(metric) ? "1" : "0";
      charts.push(chart);
    }
    const eager = charts.slice(0, EAGER);
    const lazy = charts.slice(EAGER);
    if (lazy.length && "IntersectionObserver" in window) {
      observer = new IntersectionObserver((entries) => {
        for (const e of entries) {
          if (!e.isIntersecting) continue;
          observer.unobserve(e.target);
          const c = lazy.find((x) => x.card === e.target);
          if (c) c.load().catch(() => {});
        }
      }, { rootMargin: "400px" });
      for (const c of lazy) observer.observe(c.card);
    } else eager.push(...lazy);
    // Images, tables and histograms: each run's card side by side, one section a metric.
    const richLoads = richNames.map((metric) => {
      const card = el("section", { class: "card chart-card media-compare-card", dataset: { metric, kind: "media" } });
      grid.append(card);
      const having = runs.filter((r) => (rich.get(r.id) || []).includes(metric));
      return media.compare(card, having.map((r) => ({ id: r.id, label: names.get(r.id) })), metric).catch(() => {});
    });
    await Promise.all([...eager.map((c) => c.load().catch(() => {})), ...richLoads]);
  }

  // ---------------------------------------------------------------- parallel coordinates and scatter

  // Every column a run has that can be charted: params, and each metric's last, min and max.
  function chartKeys() {
    const all = runs.map((r) => ({ params: (info.get(r.id) || {}).params, ...(rows.get(r.id) || {}) }));
    const ps = [...new Set(all.flatMap((r) => Object.keys(r.params || {})))].sort();
    const ms = [...new Set(all.flatMap((r) => Object.entries(r.summaries || {})
      .filter(([, v]) => v && (v.kind === "number" || v.kind === "bool")).map(([k]) => k)))].sort();
    return { ps, ms };
  }
  function valueOf(r, key) {
    const row = rows.get(r.id) || {};
    const [kind, ...rest] = key.split(":");
    if (kind === "params") return ((row.params || (info.get(r.id) || {}).params) || {})[rest.join(":")];
    const stat = rest[0], name = rest.slice(1).join(":");
    const v = ((row.summaries || {})[name] || {})[stat];
    return typeof v === "number" ? v : null;
  }
  function keyLabel(key) {
    const [kind, ...rest] = key.split(":");
    if (kind === "params") return rest.join(":");
    return rest.slice(1).join(":") + (rest[0] === "last" ? "" : " (" + rest[0] + ")");
  }
  // Parallel coordinates, drawn as plotly's SVG lines: one axis per param that differs and one for
  // the metric, one line per run coloured by the metric. plotly's own parcoords trace draws through
  // regl, which compiles its shaders' code with Function(): the pages' CSP (no 'unsafe-eval') stops
  // it, and it shows "WebGL is not supported" instead.
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  // An axis: numbers spread between their least and greatest, anything else as categories in order.
  function axisOf(label, values) {
    if (values.every((v) => v === null || v === undefined || isNum(v))) {
      const nums = values.filter(isNum);
      const lo = Math.min(...nums), hi = Math.max(...nums);
      const digits = U.distinctDigits(nums);
      return {
        label, values, ticks: nums.length ? (hi === lo ? [[0.5, lo]] : [[0, lo], [1, hi]]).map(([y, v]) => [y, U.fmtDigits(v, digits)]) : [],
        at: (v) => (!isNum(v) ? null : hi === lo ? 0.5 : (v - lo) / (hi - lo)),
        text: (v) => U.fmtDigits(v, digits),
      };
    }
    const cats = [...new Set(values.map(U.fmtExact))].sort();
    const at = (v) => (cats.length === 1 ? 0.5 : cats.indexOf(U.fmtExact(v)) / (cats.length - 1));
    return { label, values, ticks: cats.map((c) => [at(c === "–" ? null : c), c]), at, text: U.fmtExact };
  }
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function viridis(t) {
    if (t === null) return "#9aa5b1";
    const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    const c = VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
    return "rgb(" + c.join(",") + ")";
  }

  function drawParcoords() {
    const { ps, ms } = chartKeys();
    delete pcDiv.dataset.ready;
    if (!ms.includes(st.pc)) st.pc = sharedFirst(ms);
    fill(pcMetric, ms.map((n) => el("option", { value: n }, n)));
    pcMetric.value = st.pc;
    if (!window.Plotly || !runs.length || (!ps.length && !st.pc)) {
      fill(pcDiv, U.message(runs.length ? "No params or metrics to draw." : ""));
      return;
    }
    // Params that are the same in every run are one point on their axis: left out, unless every one is.
    const all = ps.map((n) => [n, runs.map((r) => valueOf(r, "params:" + n))]);
    const differing = all.filter(([, vs]) => !same(vs));
    const axes = (differing.length ? differing : all).map(([n, vs]) => axisOf(n, vs));
    const metric = st.pc ? axisOf(st.pc, runs.map((r) => valueOf(r, "metrics:last:" + st.pc))) : null;
    if (metric) axes.push(metric);
    const names = labels();
    const xs = axes.map((_, j) => j);
    const traces = runs.map((r, i) => ({
      type: "scatter", mode: "lines+markers", x: xs, y: axes.map((a) => a.at(a.values[i])),
      name: plotlyText(names.get(r.id)), line: { width: 2, color: viridis(metric ? metric.at(metric.values[i]) : null) },
      marker: { size: 6 }, text: axes.map((a) => plotlyText(a.label + " = " + a.text(a.values[i]))),
      hovertemplate: "%{text}<extra>%{fullData.name}</extra>",
    }));
    const annotations = axes.flatMap((a, j) => a.ticks.map(([y, t]) => ({
      x: j, y, text: plotlyText(t), showarrow: false, xanchor: "right", xshift: -4, font: { size: 11, color: "#5f6b76" },
    })));
    const shapes = xs.map((x) => ({ type: "line", x0: x, x1: x, y0: 0, y1: 1, line: { color: "#b8c0c8", width: 1 } }));
    Plotly.react(pcDiv, traces, {
      height: 320, margin: { l: 70, r: 30, t: 40, b: 30 },
      xaxis: { tickvals: xs, ticktext: axes.map((a) => plotlyText(a.label)), side: "top", range: [-0.5, axes.length - 0.5],
        showgrid: false, zeroline: false, fixedrange: true },
      yaxis: { visible: false, range: [-0.08, 1.08], fixedrange: true },
      annotations, shapes, showlegend: runs.length <= 12, legend: { orientation: "h", y: -0.05 },
      hovermode: "closest",
    }, U.CHART_CONFIG);
    pcDiv.dataset.dims = String(axes.length);
    pcDiv.dataset.ready = "1";
  }
  // The first metric the grid shows (every run's, in the order logged) that has a summary.
  function sharedFirst(ms) {
    const lists = runs.map((r) => numeric.get(r.id) || []);
    const everyone = (lists[0] || []).filter((n) => ms.includes(n) && lists.every((l) => l.includes(n)));
    return everyone[0] || ms[0] || "";
  }

  function drawScatter() {
    const { ps, ms } = chartKeys();
    const keys = [...ps.map((n) => "params:" + n), ...ms.flatMap((n) => STATS.map((stat) => "metrics:" + stat + ":" + n))];
    const differing = ps.find((n) => !same(runs.map((r) => valueOf(r, "params:" + n))));
    if (!keys.includes(st.x)) st.x = differing ? "params:" + differing : (keys[0] || "");
    if (!keys.includes(st.y)) st.y = st.pc ? "metrics:last:" + st.pc : (keys.find((k) => k !== st.x) || "");
    for (const sel of [xSel, ySel]) fill(sel, keys.map((k) => el("option", { value: k }, keyLabel(k))));
    xSel.value = st.x;
    ySel.value = st.y;
    delete scDiv.dataset.ready;
    if (!window.Plotly || !st.x || !st.y || !runs.length) { fill(scDiv, U.message(runs.length ? "Nothing to draw." : "")); return; }
    const names = labels();
    const xs = runs.map((r) => valueOf(r, st.x));
    const ys = runs.map((r) => valueOf(r, st.y));
    const dx = U.distinctDigits(xs), dy = U.distinctDigits(ys);
    const axis = (vs) => (vs.every((v) => v === null || v === undefined || typeof v === "number") ? vs : vs.map((v) => plotlyText(U.fmtExact(v))));
    Plotly.react(scDiv, [{
      type: "scatter", mode: "markers", x: axis(xs), y: axis(ys), marker: { size: 10 },
      text: runs.map((r) => plotlyText(names.get(r.id))),
      customdata: runs.map((r, i) => [plotlyText(U.fmtDigits(xs[i], dx)), plotlyText(U.fmtDigits(ys[i], dy))]),
      hovertemplate: "%{text}<br>" + plotlyText(keyLabel(st.x)) + " = %{customdata[0]}<br>" +
        plotlyText(keyLabel(st.y)) + " = %{customdata[1]}<extra></extra>",
    }], {
      height: 320, margin: { l: 60, r: 15, t: 10, b: 50 },
      xaxis: { title: { text: plotlyText(keyLabel(st.x)) }, zeroline: false },
      yaxis: { title: { text: plotlyText(keyLabel(st.y)) }, zeroline: false },
      hovermode: "closest", showlegend: false,
    }, U.CHART_CONFIG);
    scDiv.dataset.points = String(runs.length);
    scDiv.dataset.ready = "1";
  }

  // ---------------------------------------------------------------- putting it together

  async function update() {
    await Promise.all([...new Set(refs)].map(resolve));
    if (!alive(s)) return;
    // A run named twice (say by "last" and by its id) is shown once, under the first ref.
    const seen = new Set();
    refs = refs.filter((ref) => {
      const id = idOf.get(ref);
      const key = id instanceof Error ? "?" + ref : id;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    runs = refs.map((ref) => idOf.get(ref)).filter((id) => !(id instanceof Error)).map((id) => info.get(id));
    drawChips();
    writeUrl();
    fillAdd();
    note.textContent = refs.length ? "" : "Pick runs on the Runs page, or add one here.";
    sections.hidden = !runs.length;
    if (!runs.length) { BODY.dataset.loaded = "1"; return; }
    const lists = await Promise.all(runs.map((r) => metricsOf(r.id).catch(() => [])));
    await loadRows();
    if (!alive(s)) return;
    note.textContent = "";
    numeric = new Map(runs.map((r, i) => [r.id, lists[i]]));
    drawChips();
    drawTable();
    await U.ensurePlotly();
    if (!alive(s)) return;
    drawParcoords();
    drawScatter();
    BODY.dataset.loaded = "1";
    await drawGrid();
  }
  await update();

  // Live: while any of the runs is running, statuses, the table and the charts follow every 2 s.
  while (alive(s)) {
    await U.sleep(U.POLL_LIST_MS);
    if (!alive(s) || !runs.some((r) => r.status === "running")) continue;
    try {
      await loadRows();
      if (!alive(s)) return;
      drawChips();
      drawTable();
      await Promise.all(charts.filter((c) => c.drawn).map((c) => c.load()));
    } catch (e) { /* the next round tries again */ }
  }
};
