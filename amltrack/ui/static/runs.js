// amltrack UI, the runs page (docs/ui.md): a table of runs with a column per param and metric
// summary, filtered, sorted and paged by the server (GET /api/runs, the query language of
// docs/query.md), with the Workbench's chart of one metric across every listed run above it.
// Loaded before ui.js, which calls it with its helpers; user data is inserted as text only
// (el()), or escaped for plotly (plotlyText).
"use strict";

(window.amltrackPages = window.amltrackPages || {}).runs = function runsPage(app, s) {
  const U = window.amltrackUI;
  const { el, fill, enc, api, getJSON, runLabel, statusBadge, alive, BODY, BASE, STATUSES } = U;
  const PAGE = 100;  // rows a page: 10,000 runs draw as fast as 100
  const CAP = 12;  // default columns of each kind: the differing params and the shared metrics
  const STATS = ["last", "min", "max", "count"];
  const FIXED = [["name", "Run"], ["experiment", "Experiment"], ["status", "Status"], ["created", "Started"],
    ["duration", "Duration"]];
  const OPTIONAL = { user: "User", host: "Host", ended: "Ended", tags: "Tags" };
  const LEGACY_SORT = { duration_s: "duration" };  // the sort keys of URLs from before the query language

  document.title = "Runs · amltrack";
  const params = new URLSearchParams(location.search);
  let sort = params.get("sort") || "created";
  let desc = params.get("order") !== "asc";
  if (sort.startsWith("-")) { sort = sort.slice(1); desc = true; }
  sort = LEGACY_SORT[sort] || sort;
  const state = {
    q: params.get("q") || "", experiment: params.get("experiment") || "", status: params.get("status") || "",
    sort, desc,
    // null: the API's defaults, which follow the filter; a list once the reader chose (the URL's col=).
    cols: params.has("col") ? params.getAll("col").filter(Boolean) : null,
    page: Math.max(1, parseInt(params.get("page"), 10) || 1),
    chart: params.get("chart") || "", value: ["min", "max"].includes(params.get("value")) ? params.get("value") : "last",
    selected: new Set(), data: null, error: null,
  };

  // ---------------------------------------------------------------- keys of the query language

  // A name is bare when the parser reads it so (docs/query.md), and quoted otherwise.
  const BARE = /^[A-Za-z0-9_/:-]+$/;
  function quoteName(name) {
    return BARE.test(name) ? name : '"' + name.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  }
  function keyOf(kind, name, stat) {
    return kind + "." + quoteName(name) + (stat && stat !== "last" ? "." + stat : "");
  }
  const KEY = /^(params|metrics|tags)\.(?:"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_/:-]+))(?:\.(min|max|count))?$/;
  // A column from its key: {key, kind, name, stat}, or an attribute ({key, kind: "attr"}).
  function column(key) {
    if (OPTIONAL[key]) return { key, kind: "attr", name: key };
    const m = key.match(KEY);
    if (!m) return null;
    const name = m[2] !== undefined ? m[2].replace(/\\(.)/g, "$1") : m[3];
    return { key, kind: m[1], name, stat: m[1] === "metrics" ? (m[4] || "last") : undefined };
  }
  function columnLabel(c) {
    if (c.kind === "attr") return [OPTIONAL[c.key]];
    const kind = { params: "param", metrics: "metric", tags: "tag" }[c.kind];
    return [el("span", { class: "col-kind" }, kind + " "), c.name, c.stat && c.stat !== "last" ? " · " + c.stat : ""];
  }
  function cellValue(r, c) {
    if (c.kind === "params") return (r.params || {})[c.name];
    if (c.kind === "tags") return (r.tags || {})[c.name];
    if (c.kind === "metrics") {
      const sm = (r.summaries || {})[c.name];
      return sm ? sm[c.stat] : undefined;
    }
    return { user: r.user, host: r.hostname, ended: r.ended }[c.key];
  }

  // ---------------------------------------------------------------- the page's parts

  const text = el("input", {
    id: "filter-text", type: "search", value: state.q, "aria-label": "filter runs", spellcheck: "false",
    placeholder: "params.lr < 0.1 and metrics.acc > 0.9, or text in a name, id, tag or user",
    oninput: () => { state.q = text.value; state.page = 1; later(); },
  });
  const queryError = el("p", { id: "query-error", class: "error query-error", hidden: true, role: "alert" });
  const experiment = el("select", {
    id: "filter-experiment", "aria-label": "experiment",
    onchange: () => { state.experiment = experiment.value; state.page = 1; now(); },
  });
  const status = el("select", {
    id: "filter-status", "aria-label": "status",
    onchange: () => { state.status = status.value; state.page = 1; now(); },
  }, el("option", { value: "" }, "all statuses"), STATUSES.map((x) => el("option", { value: x }, x)));
  status.value = state.status;
  const compare = el("button", {
    id: "compare-selected", type: "button", disabled: true,
    onclick: () => U.go(BASE + "/compare?runs=" + [...state.selected].map(enc).join(",")),
  }, "Compare selected");
  const count = el("span", { id: "run-count", class: "count" });
  const chooserBody = el("div", { class: "chooser-body" });
  const chooser = el("details", { id: "columns-chooser", class: "chooser" },
    el("summary", { class: "button" }, "Columns"), chooserBody);
  // The chooser closes on a click outside it, as a menu does.
  document.addEventListener("click", function closeChooser(ev) {
    if (!alive(s)) { document.removeEventListener("click", closeChooser); return; }
    if (chooser.open && !chooser.contains(ev.target)) chooser.open = false;
  });
  const headRow = el("tr");
  const tbody = el("tbody");
  const table = el("table", { id: "runs", class: "runs" }, el("thead", {}, headRow), tbody);
  const tableWrap = el("div", { class: "table-wrap" }, table);
  const pager = el("nav", { id: "pager", class: "pager", "aria-label": "pages", hidden: true });
  const empty = el("div", { id: "runs-empty-state", hidden: true });
  const wbMetric = el("select", { id: "wb-metric", "aria-label": "metric to chart across the runs",
    onchange: () => { state.chart = wbMetric.value; writeUrl(); loadChart(); } });
  const wbValue = el("select", { id: "wb-value", "aria-label": "which value of each run",
    onchange: () => { state.value = wbValue.value; writeUrl(); loadChart(); } },
  el("option", { value: "last" }, "last value"), el("option", { value: "min" }, "lowest (min)"),
  el("option", { value: "max" }, "highest (max)"));
  wbValue.value = state.value;
  const wbInfo = el("span", { class: "chart-info", id: "wb-info" });
  const wbChart = el("div", { class: "chart wb-chart", id: "wb-chart" });
  const workbench = el("section", { class: "card workbench", id: "workbench", hidden: true },
    el("div", { class: "chart-tools" }, el("label", {}, "Across the runs: ", wbMetric), wbValue, wbInfo), wbChart);
  fill(app,
    el("div", { class: "toolbar" }, text, experiment, status, chooser, compare, count),
    queryError, workbench, empty, tableWrap, pager);

  // ---------------------------------------------------------------- state to the server and the URL

  function filterParams() {
    const p = new URLSearchParams();
    if (state.q.trim()) p.set("q", state.q.trim());
    if (state.experiment) p.set("experiment", state.experiment);
    if (state.status) p.set("status", state.status);
    p.append("sort", state.sort + (state.desc ? " desc" : " asc"));
    return p;
  }
  function writeUrl() {
    const q = new URLSearchParams();
    if (state.q) q.set("q", state.q);
    if (state.experiment) q.set("experiment", state.experiment);
    if (state.status) q.set("status", state.status);
    if (state.sort !== "created") q.set("sort", state.sort);
    if (!state.desc) q.set("order", "asc");
    if (state.cols) { if (state.cols.length) for (const c of state.cols) q.append("col", c); else q.set("col", ""); }
    if (state.page > 1) q.set("page", String(state.page));
    if (state.chart) q.set("chart", state.chart);
    if (state.value !== "last") q.set("value", state.value);
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
  }
  function filtered() {
    return Boolean(state.q.trim() || state.experiment || state.status);
  }
  function columns() {
    const d = state.data || {};
    const keys = state.cols || [...(((d.keys || {}).tags || []).length ? ["tags"] : []),
      ...((d.defaults || {}).params || []).slice(0, CAP).map((n) => keyOf("params", n)),
      ...((d.defaults || {}).metrics || []).slice(0, CAP).map((n) => keyOf("metrics", n))];
    return keys.map(column).filter(Boolean);
  }

  // ---------------------------------------------------------------- loading

  let seq = 0;  // answers to older requests than the last are dropped
  let cost = 0;  // ms the last list took: polling slows down on a store that is slow to list
  let timer = null;
  function later() {
    BODY.dataset.busy = "1";
    seq++;  // a poll's answer that arrives meanwhile is for the old filter
    clearTimeout(timer);
    timer = setTimeout(now, 250);
  }
  function now() {
    BODY.dataset.busy = "1";
    clearTimeout(timer);
    return load();
  }

  async function load() {
    const mine = ++seq;
    const p = filterParams();
    p.set("offset", String((state.page - 1) * PAGE));
    p.set("limit", String(PAGE));
    const t0 = performance.now();
    let data;
    try {
      data = await getJSON(api("/runs?" + p));
    } catch (e) {
      if (mine !== seq || !alive(s)) return;
      if (e.status === 400) showQueryError(e.message);
      else count.textContent = "cannot load runs: " + e.message;
      settle();
      return;
    }
    if (mine !== seq || !alive(s)) return;
    cost = performance.now() - t0;
    showQueryError(null);
    if (data.total > 0 && !data.runs.length && state.page > 1) {  // the page is past the end now
      state.page = Math.max(1, Math.ceil(data.total / PAGE));
      return load();
    }
    const changed = data !== state.data;
    state.data = data;
    if (changed) render();
    writeUrl();
    settle();
    if (changed) loadChart();
  }
  function settle() {
    delete BODY.dataset.busy;
    BODY.dataset.loaded = "1";
    U.warmCharts();
  }

  function showQueryError(msg) {
    state.error = msg;
    queryError.hidden = !msg;
    // The filter's or the URL's sort key's: the parser's one line says which column of it.
    queryError.textContent = msg || "";
    if (msg) text.setAttribute("aria-invalid", "true"); else text.removeAttribute("aria-invalid");
  }

  // Live: statuses change as runs end; the list is asked for again every 2 s (an unchanged one is a
  // 304), less often when listing costs the server more, and not while the tab is hidden.
  (async () => {
    for (;;) {
      await U.sleep(Math.max(U.POLL_LIST_MS, 5 * cost));
      if (!alive(s)) return;
      if (!document.hidden && !BODY.dataset.busy) await load();
    }
  })();

  // ---------------------------------------------------------------- drawing

  function render() {
    const d = state.data;
    fillExperiments(d.experiments || []);
    const cols = columns();
    drawChooser(d.keys || { params: [], metrics: [], tags: [] }, cols);
    drawEmpty(d);
    const shown = d.runs.length > 0;
    tableWrap.hidden = !shown;
    workbench.hidden = !shown || !((d.keys || {}).metrics || []).length;
    const ids = new Set(d.runs.map((r) => r.id));
    drawHead(cols, ids);
    // Numbers get the digits that tell a column's values apart; params, steps and ids are exact.
    const digits = new Map(cols.filter((c) => c.kind === "metrics")
      .map((c) => [c.key, U.distinctDigits(d.runs.map((r) => cellValue(r, c)))]));
    fill(tbody, ...d.runs.map((r) => row(r, cols, digits)));
    drawPager(d);
    drawCount();
  }

  function drawHead(cols, ids) {
    const all = el("input", {
      type: "checkbox", "aria-label": "select the runs of this page", id: "select-page",
      checked: ids.size > 0 && [...ids].every((id) => state.selected.has(id)),
      onchange: () => {
        for (const id of ids) { if (all.checked) state.selected.add(id); else state.selected.delete(id); }
        for (const box of tbody.querySelectorAll("td.select input")) box.checked = all.checked;
        drawCount();
      },
    });
    const th = (key, label, cls) => {
      const on = state.sort === key;
      return el("th", {
        class: cls, dataset: { sort: key }, title: key,
        "aria-sort": on ? (state.desc ? "descending" : "ascending") : "none",
      }, el("button", {
        type: "button", class: "sort",
        onclick: () => {
          if (state.sort === key) state.desc = !state.desc; else { state.sort = key; state.desc = key === "created"; }
          state.page = 1;
          now();
        },
      }, label));
    };
    fill(headRow, el("th", { class: "select" }, all),
      FIXED.map(([key, label]) => th(key, label)),
      cols.map((c) => c.key === "tags"
        ? el("th", { dataset: { col: "tags" } }, "Tags")
        : th(c.key, columnLabel(c), "col-" + c.kind)));
    for (const h of headRow.querySelectorAll("th[data-sort]")) h.dataset.col = h.dataset.sort;
  }

  function row(r, cols, digits) {
    const box = el("input", {
      type: "checkbox", "aria-label": "select " + runLabel(r), checked: state.selected.has(r.id),
      onchange: () => { if (box.checked) state.selected.add(r.id); else state.selected.delete(r.id); drawCount(); },
    });
    const cells = cols.map((c) => {
      if (c.key === "tags") {
        return el("td", { class: "tags", dataset: { col: "tags" } },
          Object.entries(r.tags || {}).map(([k, v]) => el("span", { class: "tag" }, k + "=" + v)));
      }
      if (c.key === "ended") return el("td", { dataset: { col: c.key } }, U.fmtTime(r.ended));
      const v = cellValue(r, c);
      const numeric = typeof v === "number";
      const shown = digits.has(c.key) ? U.fmtDigits(v, digits.get(c.key)) : U.fmtExact(v);
      return el("td", { class: numeric ? "num" : "value", dataset: { col: c.key }, title: numeric ? String(v) : null }, shown);
    });
    return el("tr", { dataset: { runId: r.id, status: r.status } },
      el("td", { class: "select" }, box),
      el("td", {}, el("a", { href: U.runUrl(r.id), class: "run-link" }, runLabel(r)),
        el("div", { class: "id" }, r.id)),
      el("td", { class: "experiment" }, r.experiment),
      el("td", {}, statusBadge(r.status)),
      el("td", {}, U.fmtTime(r.created)),
      el("td", { class: "num" }, U.fmtDuration(r.duration_s)),
      cells);
  }

  function drawCount() {
    const d = state.data;
    if (!d) return;
    const first = d.runs.length ? (state.page - 1) * PAGE + 1 : 0;
    const range = d.total > d.runs.length ? first + "–" + (first + d.runs.length - 1) + " of " : "";
    count.textContent = range + d.total + (d.total === 1 ? " run" : " runs") +
      (state.selected.size ? ", " + state.selected.size + " selected" : "");
    compare.disabled = state.selected.size < 1;
    compare.textContent = "Compare selected" + (state.selected.size ? " (" + state.selected.size + ")" : "");
  }

  function drawPager(d) {
    const pages = Math.max(1, Math.ceil(d.total / PAGE));
    pager.hidden = pages < 2;
    if (pages < 2) { fill(pager); return; }
    const to = (page) => () => { state.page = page; now(); window.scrollTo(0, 0); };
    const button = (id, label, page, off) => el("button", { type: "button", id, disabled: off, onclick: to(page) }, label);
    fill(pager,
      button("page-first", "« First", 1, state.page <= 1),
      button("page-prev", "‹ Previous", state.page - 1, state.page <= 1),
      el("span", { id: "page-info" }, "page " + state.page + " of " + pages),
      button("page-next", "Next ›", state.page + 1, state.page >= pages),
      button("page-last", "Last »", pages, state.page >= pages));
  }

  function drawEmpty(d) {
    empty.hidden = d.runs.length > 0;
    if (d.runs.length) { fill(empty); return; }
    if (filtered() || d.total > 0) {
      fill(empty, el("section", { class: "card empty", id: "runs-nomatch" },
        el("h2", {}, "No runs match this filter"),
        el("p", {}, "Nothing matches ", el("code", {}, describeFilter()), "."),
        el("button", { type: "button", id: "clear-filter", onclick: () => {
          state.q = text.value = ""; state.experiment = experiment.value = ""; state.status = status.value = "";
          state.page = 1;
          now();
        } }, "Clear the filter")));
      return;
    }
    const where = el("p", { class: "note", id: "store-path" });
    fill(empty, el("section", { class: "card empty", id: "runs-empty" },
      el("h2", {}, "No runs yet"),
      el("p", {}, "Log a first run from Python, and it shows here as it runs:"),
      el("pre", {}, el("code", {}, 'from amltrack import get_logger\n' +
        'logger = get_logger("my-experiment", params={"lr": 0.1})\n' +
        'logger.log("loss", 0.31)\nlogger.finish()')),
      el("p", {}, "Or run the demo, a small training job: ", el("code", {}, "python examples/train_demo.py")),
      where));
    getJSON(api("/health")).then((h) => {
      if (h.store) where.textContent = "This page shows the store at " + h.store +
        "; a run logged elsewhere needs amltrack ui --store DIR.";
    }).catch(() => {});
  }
  function describeFilter() {
    return [state.q.trim(), state.experiment && "experiment " + state.experiment, state.status && "status " + state.status]
      .filter(Boolean).join(", ");
  }

  function fillExperiments(names) {
    const current = state.experiment;
    fill(experiment, el("option", { value: "" }, "all experiments"), names.map((n) => el("option", { value: n }, n)));
    if (current && !names.includes(current)) experiment.append(el("option", { value: current }, current));
    experiment.value = current;
  }

  // ---------------------------------------------------------------- the column chooser

  let chooserKeys = "";
  const find = el("input", { type: "search", id: "columns-find", placeholder: "find a column", "aria-label": "find a column",
    oninput: () => {
      const f = find.value.toLowerCase();
      for (const item of chooserBody.querySelectorAll("[data-name]")) item.hidden = f && !item.dataset.name.toLowerCase().includes(f);
    } });
  function drawChooser(keys, cols) {
    const chosen = new Set(cols.map((c) => c.key));
    const sig = JSON.stringify([keys, [...chosen]]);
    if (sig === chooserKeys) return;  // redrawn only when it changes, so that a click is never lost
    chooserKeys = sig;
    const box = (key, label) => el("label", { class: "choice" }, el("input", {
      type: "checkbox", dataset: { col: key }, checked: chosen.has(key), onchange: (ev) => choose(key, ev.target.checked),
    }), label);
    const group = (title, kind, names, one) => names.length
      ? el("fieldset", { dataset: { kind } }, el("legend", {}, title),
        names.map((n) => el("div", { class: "choice-row", dataset: { name: n } }, one(n))))
      : null;
    fill(chooserBody,
      el("div", { class: "chooser-tools" }, find,
        el("button", { type: "button", id: "columns-defaults", onclick: () => {
          state.cols = null; chooserKeys = ""; render(); writeUrl();
        } }, "Defaults")),
      el("fieldset", { dataset: { kind: "attr" } }, el("legend", {}, "Run"),
        Object.entries(OPTIONAL).map(([k, label]) => box(k, label))),
      group("Parameters", "params", keys.params || [], (n) => box(keyOf("params", n), n)),
      group("Metrics", "metrics", keys.metrics || [], (n) => [el("span", { class: "choice-name" }, n),
        STATS.map((st) => box(keyOf("metrics", n, st), st))]),
      group("Tags", "tags", keys.tags || [], (n) => box(keyOf("tags", n), n)));
    find.dispatchEvent(new Event("input"));
  }
  function choose(key, on) {
    const keys = columns().map((c) => c.key).filter((k) => k !== key);
    if (on) keys.push(key);
    state.cols = keys;
    render();
    writeUrl();
  }

  // ---------------------------------------------------------------- the Workbench chart

  // One metric's last (or lowest, or highest) value of every matched run, in the list's order:
  // one request for all of them, with columns= so that 10,000 runs cost one metric's summaries.
  // Asked again when the filter, sort, metric or value changes, not for another page of the same
  // list; a list that changed under a poll redraws it at most every 10 s (longer when it is slow).
  let chartSeq = 0;
  let clickBound = false;
  let chartKey = "", chartAt = 0, chartCost = 0;
  async function loadChart() {
    const d = state.data;
    const names = (d && d.keys && d.keys.metrics) || [];
    if (!names.length || !d.runs.length) return;
    const shared = (d.defaults && d.defaults.metrics) || [];
    const metric = names.includes(state.chart) ? state.chart : (shared[0] || names[0]);
    const key = filterParams() + "|" + metric + "|" + state.value;
    if (key === chartKey && performance.now() - chartAt < Math.max(10000, 20 * chartCost)) return;
    chartKey = key;
    chartAt = performance.now();
    const options = names.map((n) => n);
    if (wbMetric.dataset.names !== JSON.stringify(options)) {
      fill(wbMetric, options.map((n) => el("option", { value: n }, n)));
      wbMetric.dataset.names = JSON.stringify(options);
    }
    wbMetric.value = metric;
    const mine = ++chartSeq;
    const p = filterParams();
    p.set("columns", keyOf("metrics", metric));
    let all;
    try {
      [all] = await Promise.all([getJSON(api("/runs?" + p)), U.ensurePlotly()]);
    } catch (e) {
      if (mine === chartSeq && alive(s)) wbInfo.textContent = "cannot chart: " + e.message;
      chartKey = "";
      return;
    }
    if (mine !== chartSeq || !alive(s)) return;
    chartCost = performance.now() - chartAt;
    const value = state.value;
    const ys = all.runs.map((r) => {
      const sm = (r.summaries || {})[metric];
      const v = sm ? sm[value] : null;
      return typeof v === "number" && Number.isFinite(v) ? v : null;
    });
    const digits = U.distinctDigits(ys);
    const xs = all.runs.map((_, i) => i + 1);
    const labels = all.runs.map((r) => U.plotlyText(runLabel(r)));
    const n = all.runs.length;
    const have = ys.filter((y) => y !== null).length;
    wbInfo.textContent = have + " of " + n + (n === 1 ? " run" : " runs") + " have " + metric + "; click a point to open its run";
    wbChart.dataset.points = String(have);
    wbChart.dataset.metric = metric;
    if (!window.Plotly) { fill(wbChart, U.message("Charts need plotly: pip install 'amltrack[ui]'", "error")); return; }
    const few = n <= 40;
    Plotly.react(wbChart, [{
      type: "scatter", mode: n <= 500 ? "lines+markers" : "markers", x: xs, y: ys, connectgaps: false,
      text: labels, customdata: all.runs.map((r, i) => [r.id, U.fmtDigits(ys[i], digits)]),
      marker: { size: n <= 500 ? 7 : 4, color: all.runs.map((r) => statusColor(r.status)) },
      line: { width: 1, color: "#9aa5b1" },
      hovertemplate: "%{text}<br>" + U.plotlyText(metric) + " (" + value + ") = %{customdata[1]}<extra></extra>",
    }], {
      height: 220, margin: { l: 60, r: 15, t: 10, b: few ? 70 : 40 },
      xaxis: few
        ? { tickvals: xs, ticktext: labels, tickangle: -30, zeroline: false }
        : { title: { text: "run, in the list's order" }, zeroline: false },
      yaxis: { title: { text: U.plotlyText(metric) }, zeroline: false },
      showlegend: false, hovermode: "closest", uirevision: "keep",
    }, U.CHART_CONFIG);
    if (!clickBound) {
      clickBound = true;
      wbChart.on("plotly_click", (ev) => {
        const pt = ev.points && ev.points[0];
        if (pt && pt.customdata) U.go(U.runUrl(pt.customdata[0]));
      });
    }
    wbChart.dataset.ready = "1";
  }
  const colors = new Map();  // a status's colour, read once from ui.css's variables
  function statusColor(st) {
    if (!colors.has(st)) {
      colors.set(st, getComputedStyle(document.documentElement).getPropertyValue("--" + st).trim() || "#5f6b76");
    }
    return colors.get(st);
  }

  writeUrl();
  now();
};
