/* gepetto dashboard: routes, views and live updates (server-sent events). No library. */
"use strict";

const state = {
  route: null,        // {view, key, id, a, b}
  source: null,       // EventSource of the followed run
  sourceKey: null,
  seq: {},            // run key -> last seq seen
  running: {},        // run key -> whether a process runs it now
  loading: false,
  dirty: false,
  decisionsShown: 200,
  decisionFilter: "all",
};

const $ = (sel, root) => (root || document).querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value) && digits === undefined) return value.toLocaleString("en");
  return value.toFixed(digits === undefined ? 3 : digits);
}

function fmtCost(value) {
  if (value === null || value === undefined) return "–";
  return "$" + (value >= 1 ? value.toFixed(2) : value.toPrecision(3));
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
  return (seconds / 3600).toFixed(1) + " h";
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function runUrl(key, rest) {
  return `api/runs/${encodeURIComponent(key)}/${rest}`;
}

/* ---------- routing ---------- */

function parseRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (parts[0] === "run" && parts[1]) {
    return { view: parts[2] || "overview", key: parts[1], id: parts[3] };
  }
  if (parts[0] === "compare" && parts[1] && parts[2]) return { view: "compare", a: parts[1], b: parts[2] };
  return { view: "runs" };
}

const TABS = [
  ["overview", "Overview"],
  ["front", "Front & matrix"],
  ["lineage", "Lineage"],
  ["candidate", "Candidates"],
  ["reflection", "Reflection"],
];

function renderTabs(route) {
  const nav = $("#tabs");
  nav.replaceChildren();
  nav.append(el("a", { href: "#/", class: route.view === "runs" ? "active" : "" }, "Runs"));
  if (route.key) {
    for (const [view, label] of TABS) {
      const href = `#/run/${encodeURIComponent(route.key)}/${view}`;
      nav.append(el("a", { href, id: `tab-${view}`, class: route.view === view ? "active" : "" }, label));
    }
  }
  if (route.view === "compare") nav.append(el("a", { class: "active", href: location.hash }, "Compare"));
  $("#run-title").textContent = route.key ? route.key : route.view === "compare" ? `${route.a} ↔ ${route.b}` : "";
}

async function render() {
  const route = parseRoute();
  const changed = JSON.stringify(route) !== JSON.stringify(state.route);
  state.route = route;
  renderTabs(route);
  follow(route.view === "compare" ? [route.a, route.b] : route.key ? [route.key] : []);
  if (state.loading) { state.dirty = true; return; }
  state.loading = true;
  const main = $("#view");
  if (changed) main.dataset.view = "loading";
  try {
    const view = VIEWS[route.view] || VIEWS.runs;
    const content = await view(route, changed);
    if (content) {
      const scroll = window.scrollY;
      main.replaceChildren(content);
      if (!changed) window.scrollTo(0, scroll);
    }
    main.dataset.view = route.view;
    main.dataset.renders = String(Number(main.dataset.renders || 0) + 1);
  } catch (error) {
    main.dataset.view = "error";
    $("#view").replaceChildren(el("p", { class: "error", id: "error" }, String(error.message || error)));
  } finally {
    state.loading = false;
    if (state.dirty) { state.dirty = false; setTimeout(render, 0); }
  }
}

/* ---------- live updates ---------- */

function follow(keys) {
  const id = keys.join("|");
  if (state.sourceKey === id) return;
  if (state.source) state.source.close();
  state.source = null;
  state.sourceKey = id;
  state.running = {};
  const live = $("#live");
  if (!keys.length) { live.className = "live off"; live.textContent = "idle"; return; }
  const query = keys.map((k) => "run=" + encodeURIComponent(k)).join("&");
  const source = new EventSource("api/live?" + query);
  state.source = source;
  source.addEventListener("open", () => { live.className = "live off"; live.textContent = "connected"; });
  source.addEventListener("error", () => { live.className = "live off"; live.textContent = "reconnecting"; });
  source.addEventListener("update", (message) => {
    const data = JSON.parse(message.data);
    const before = state.seq[data.key];
    state.seq[data.key] = data.seq;
    state.running[data.key] = data.running;
    const running = Object.values(state.running).some(Boolean);
    live.textContent = running ? "live" : "not running";
    live.className = running ? "live on" : "live off";
    if (before !== undefined && before !== data.seq && state.route.view !== "reflection") render();
  });
  source.addEventListener("reflection", (message) => showReflection(JSON.parse(message.data)));
}

function showReflection(data) {
  const ticker = $("#ticker");
  const text = data.text || "";
  if (data.done || !text || state.route.view === "reflection") {
    ticker.hidden = true;
  } else if (state.route.view !== "reflection") {
    ticker.hidden = false;
    ticker.textContent = `reflection of iteration ${data.iteration} (${(data.components || []).join(", ")}): …` +
      text.slice(-200).replace(/\s+/g, " ");
  }
  const box = $("#stream-text");
  if (box && state.route.view === "reflection" && data.key === state.route.key) {
    box.textContent = text || "(no reflection streamed yet)";
    box.dataset.length = String(text.length);
    box.scrollTop = box.scrollHeight;
    const status = $("#stream-status");
    status.textContent = !text ? "waiting for a reflection" : data.discarded
      ? `iteration ${data.iteration}: this attempt was cut off and is retried`
      : data.done ? `iteration ${data.iteration}: done (${text.length} characters)`
      : `iteration ${data.iteration}: writing… (${text.length} characters)`;
    status.className = "stream-status" + (data.done || !text ? "" : " writing");
    box.classList.toggle("discarded", Boolean(data.discarded));
    $("#stream-components").textContent = (data.components || []).join(", ");
  }
}

/* ---------- views ---------- */

const VIEWS = {};

VIEWS.runs = async () => {
  const data = await api("api/runs");
  const picked = new Set();
  const compare = el("button", { id: "compare-btn", disabled: true, onclick: () => {
    const [a, b] = [...picked];
    location.hash = `#/compare/${encodeURIComponent(a)}/${encodeURIComponent(b)}`;
  } }, "Compare the two selected runs");
  const rows = data.runs.map((run) => el("tr", {},
    el("td", {}, el("input", { type: "checkbox", "aria-label": "compare " + run.key, onchange: (event) => {
      if (event.target.checked) picked.add(run.key); else picked.delete(run.key);
      compare.disabled = picked.size !== 2;
    } })),
    el("td", {}, el("a", { href: `#/run/${encodeURIComponent(run.key)}/overview` }, run.run_id)),
    el("td", { class: "muted" }, run.source),
    el("td", {}, run.error ? el("span", { class: "error" }, run.error) : run.status),
    el("td", { class: "num" }, fmt(run.candidates)),
    el("td", { class: "num" }, fmt(run.best_score)),
    el("td", { class: "num" }, fmt(run.metric_calls) + (run.max_metric_calls ? " / " + fmt(run.max_metric_calls) : "")),
    el("td", { class: "num" }, fmtCost(run.cost_usd)),
  ));
  return el("section", {},
    el("h2", {}, "Runs"),
    el("table", { id: "runs" },
      el("thead", {}, el("tr", {}, el("th"), el("th", {}, "run"), el("th", {}, "store"), el("th", {}, "status"),
        el("th", { class: "num" }, "candidates"), el("th", { class: "num" }, "best"),
        el("th", { class: "num" }, "metric calls"), el("th", { class: "num" }, "cost"))),
      el("tbody", {}, rows)),
    el("p", {}, compare));
};

function card(label, value, id) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value));
}

function summaryCards(s, prefix) {
  const p = prefix || "";
  return el("div", { class: "cards" },
    card("best score", fmt(s.best_score), p + "best-score"),
    card("best candidate", s.best_id === null ? "–" : el("a", { href: `#/run/${encodeURIComponent(s.key)}/candidate/${s.best_id}` }, "#" + s.best_id)),
    card("front size", fmt(s.front.length), p + "front-size"),
    card("front mean", fmt(s.front_mean)),
    card("candidates", fmt(s.pool_size), p + "candidates"),
    card("iterations", fmt(s.iterations)),
    card("accepted / rejected", `${fmt(s.outcomes.accepted || 0)} / ${fmt(s.outcomes.rejected || 0)}`),
    card("metric calls", fmt(s.budget_used) + (s.budget_total ? " / " + fmt(s.budget_total) : ""), p + "metric-calls"),
    card("cost", fmtCost(s.cost_usd)),
    card("elapsed", fmtDuration(s.elapsed_s ?? (s.updated_at ? Math.max(0, s.updated_at - s.created_at) : null))),
    card("status", s.status, p + "status"));
}

const SERIES = [
  ["front", "#bf8700", "front mean", "front_mean", true, "5 3"],
  ["best", "#0969da", "best (validation mean)", "best_score", true, null],
];

function progressCharts(points, idPrefix) {
  const axes = [["metric_calls", "calls", "metric calls"], ["elapsed_s", "time", "time since start"], ["cost_usd", "cost", "cost (USD)"]];
  const grid = el("div", { class: "grid3" });
  for (const [field, kind, label] of axes) {
    const usable = points.filter((p) => p[field] !== null && p[field] !== undefined);
    const series = SERIES.map(([name, color, text, key, step, dash]) => ({
      name, color, label: text, step, dash,
      points: usable.filter((p) => p[key] !== null).map((p) => [p[field], p[key]]),
    }));
    const priced = usable.some((p) => p.cost_usd > 0);
    if (kind === "cost" && !priced) series.forEach((s) => { s.points = []; });
    const empty = kind === "cost" ? "no priced LM calls yet" : kind === "time" ? "no event log with times" : undefined;
    grid.append(el("div", { class: "panel" },
      el("h3", {}, `score against ${label}`),
      charts.lineChart(series, { id: `${idPrefix || ""}chart-${kind}`, xLabel: label, xKind: kind, empty }),
      charts.legend(series)));
  }
  return grid;
}

function decisionRows(decisions, key) {
  return decisions.map((d) => el("tr", { class: "decision" },
    el("td", { class: "num" }, fmt(d.iteration)),
    el("td", {}, d.parent_id === null ? "–" : candidateLink(key, d.parent_id)),
    el("td", {}, d.child_id === null ? "–" : candidateLink(key, d.child_id)),
    el("td", { class: "outcome-" + d.outcome }, d.outcome),
    el("td", { class: "num" }, d.parent_score === null ? "–" : fmt(d.parent_score, 2)),
    el("td", { class: "num" }, d.child_score === null ? "–" : fmt(d.child_score, 2)),
    el("td", {}, d.reason)));
}

function decisionTable(decisions, key, id) {
  return el("table", { id },
    el("thead", {}, el("tr", {}, el("th", { class: "num" }, "iteration"), el("th", {}, "parent"), el("th", {}, "child"),
      el("th", {}, "decision"), el("th", { class: "num" }, "parent score"), el("th", { class: "num" }, "child score"),
      el("th", {}, "reason"))),
    el("tbody", {}, decisionRows(decisions, key)));
}

function candidateLink(key, id) {
  return el("a", { href: `#/run/${encodeURIComponent(key)}/candidate/${id}` }, "#" + id);
}

VIEWS.overview = async (route) => {
  const [s, progress] = await Promise.all([api(runUrl(route.key, "summary")), api(runUrl(route.key, "progress"))]);
  return el("section", {},
    el("h2", {}, `Run ${s.run_id}`, el("span", { class: "muted" }, "  " + s.source)),
    summaryCards(s),
    s.stop_reason ? el("p", { class: "muted", id: "stop-reason" }, "stopped: " + s.stop_reason) : null,
    progressCharts(progress.points),
    el("div", { class: "panel" }, el("h3", {}, "latest decisions"),
      decisionTable(s.last_decisions, route.key, "last-decisions")));
};

VIEWS.front = async (route) => {
  const m = await api(runUrl(route.key, "matrix"));
  const front = new Set(m.front);
  const meanOf = new Map(m.candidate_ids.map((id, i) => [id, m.means[i]]));
  const frontSorted = [...m.front].sort((x, y) => (meanOf.get(y) ?? -1) - (meanOf.get(x) ?? -1));
  const rowOf = new Map(m.candidate_ids.map((id, i) => [id, i]));
  const wins = (id) => m.scores[rowOf.get(id)].filter((v, j) => v !== null && v === m.example_best[j]).length;
  const frontList = el("table", { id: "front-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "candidate"), el("th", { class: "num" }, "validation mean"),
      el("th", { class: "num" }, "examples where it is best"), el("th"))),
    el("tbody", { id: "front-list" }, frontSorted.map((id) => el("tr", { "data-id": id },
      el("td", {}, candidateLink(route.key, id)), el("td", { class: "num" }, fmt(meanOf.get(id))),
      el("td", { class: "num" }, `${wins(id)} of ${m.example_ids.length}`),
      el("td", {}, id === m.best_id ? el("span", { class: "pill best" }, "best") : null)))));
  const nRows = m.candidate_ids.length, nCols = m.example_ids.length;
  const cell = { w: Math.max(2, Math.min(24, Math.floor(1180 / Math.max(1, nCols)))),
    h: Math.max(2, Math.min(16, Math.floor(2400 / Math.max(1, nRows)))) };
  const canvas = el("canvas", { id: "heatmap" });
  const marks = m.candidate_ids.map((id) => id === m.best_id ? "best" : front.has(id) ? "front" : "");
  const gutter = charts.heatmap(canvas, m.scores, m.lo, m.hi, cell, m.candidate_ids, marks);
  canvas.dataset.rows = String(nRows);
  canvas.dataset.cols = String(nCols);
  const info = el("div", { id: "heat-info", class: "muted" }, "point at a cell; click a row to open its candidate");
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    const scale = box.width / canvas.width;
    const c = Math.floor((event.clientX - box.left - gutter * scale) / (cell.w * scale));
    const r = Math.floor((event.clientY - box.top) / (cell.h * scale));
    return r >= 0 && r < nRows && c >= 0 && c < nCols ? [r, c] : null;
  };
  canvas.addEventListener("mousemove", (event) => {
    const hit = at(event);
    if (!hit) return;
    const [r, c] = hit, id = m.candidate_ids[r], v = m.scores[r][c];
    info.textContent = `candidate #${id}${front.has(id) ? " (front)" : ""} · example ${m.example_ids[c]} · score ${v === null ? "not evaluated" : fmt(v)}`;
  });
  canvas.addEventListener("click", (event) => {
    const hit = at(event);
    if (hit) location.hash = `#/run/${encodeURIComponent(route.key)}/candidate/${m.candidate_ids[hit[0]]}`;
  });
  return el("section", {},
    el("h2", {}, "Pareto front and score matrix"),
    el("div", { class: "grid2" },
      el("div", { class: "panel" }, el("h3", {}, `Pareto front: ${m.front.length} candidate${m.front.length === 1 ? "" : "s"}`),
        el("div", { class: "scroll-box" }, frontList)),
      el("div", { class: "panel" }, el("h3", {}, "reading the matrix"),
        el("p", { class: "muted" }, `${nRows} candidates × ${nCols} validation examples. A candidate is on the front when it has the best score on some example.`),
        el("p", {}, el("span", { class: "muted" }, fmt(m.lo, 2) + " "), el("span", { class: "scale" }), el("span", { class: "muted" }, " " + fmt(m.hi, 2)),
          el("span", { class: "muted" }, "   grey: not evaluated")),
        el("p", { class: "muted" }, "Row marks: blue = best candidate, yellow = on the front."))),
    el("div", { class: "panel" }, el("h3", {}, "score matrix (rows: candidates, columns: validation examples)"),
      info, el("div", { id: "heatmap-wrap" }, canvas)));
};

VIEWS.lineage = async (route) => {
  const data = await api(runUrl(route.key, "lineage"));
  const tree = charts.lineageTree(data.nodes, (id) => {
    location.hash = `#/run/${encodeURIComponent(route.key)}/candidate/${id}`;
  });
  tree.id = "lineage-tree";
  const filter = state.decisionFilter;
  const chosen = data.decisions.filter((d) => filter === "all" || d.outcome === filter);
  const shown = chosen.slice(-state.decisionsShown).reverse();
  const counts = {};
  for (const d of data.decisions) counts[d.outcome] = (counts[d.outcome] || 0) + 1;
  const select = el("select", { id: "decision-filter", onchange: (event) => { state.decisionFilter = event.target.value; render(); } },
    ["all", "accepted", "rejected", "skipped", "failed"].map((o) =>
      el("option", { value: o, selected: o === filter }, `${o} (${o === "all" ? data.decisions.length : counts[o] || 0})`)));
  const more = chosen.length > shown.length
    ? el("button", { onclick: () => { state.decisionsShown += 500; render(); } }, `show ${Math.min(500, chosen.length - shown.length)} more`)
    : null;
  return el("section", {},
    el("h2", {}, "Lineage"),
    el("div", { class: "panel" },
      el("p", { class: "muted" }, "Each candidate below its parent(s). ",
        el("span", { class: "pill best" }, "best"), " ", el("span", { class: "pill front" }, "on the front"),
        " · click a node to open it"),
      el("div", { class: "tree-wrap" }, tree)),
    el("div", { class: "panel" },
      el("h3", {}, "every decision, newest first"),
      el("div", { class: "filters" }, "show", select, el("span", { class: "muted" }, `${shown.length} of ${chosen.length}`)),
      decisionTable(shown, route.key, "decisions"), more));
};

function diffView(unified) {
  const pre = el("pre", { class: "text diff" });
  if (!unified) { pre.append(el("span", { class: "muted" }, "unchanged")); return pre; }
  for (const line of unified.split("\n")) {
    if (line.startsWith("+++") || line.startsWith("---")) pre.append(el("span", { class: "muted" }, line + "\n"));
    else if (line.startsWith("@@")) pre.append(el("span", { class: "hunk" }, line + "\n"));
    else if (line.startsWith("+")) pre.append(el("ins", {}, line + "\n"));
    else if (line.startsWith("-")) pre.append(el("del", {}, line + "\n"));
    else pre.append(line + "\n");
  }
  return pre;
}

VIEWS.candidate = async (route) => {
  const list = await api(runUrl(route.key, "lineage"));
  const ids = list.nodes.map((n) => n.id);
  const id = route.id === undefined ? String(list.best_id ?? ids[ids.length - 1] ?? 0) : route.id;
  const c = await api(runUrl(route.key, `candidates/${encodeURIComponent(id)}`));
  const picker = el("select", { id: "candidate-picker", onchange: (event) => {
    location.hash = `#/run/${encodeURIComponent(route.key)}/candidate/${event.target.value}`;
  } }, list.nodes.map((n) => el("option", { value: n.id, selected: String(n.id) === String(c.id) },
    `#${n.id}${n.score === null ? "" : " · " + fmt(n.score)}${n.role ? " · " + n.role : ""}`)));
  const parent = c.parents.length ? c.parents[0] : null;
  const diffs = parent === null ? {} : c.diffs[String(parent)] || {};
  const components = Object.entries(c.texts).map(([name, text]) => el("div", { class: "panel component", "data-name": name },
    el("h3", {}, name + " ", diffs[name] ? el("span", { class: "pill front" }, "changed") : null),
    el("div", { class: "cols" },
      el("div", {}, el("div", { class: "muted" }, "text"), el("pre", { class: "text cand-text" }, text)),
      el("div", {}, el("div", { class: "muted" }, parent === null ? "the seed (no parent)" : `diff to parent #${parent}`),
        parent === null ? el("pre", { class: "text muted" }, "—") : diffView(diffs[name])))));
  const r = c.reflection;
  const names = r ? [...new Set([...Object.keys(r.prompts || {}), ...Object.keys(r.replies || {})])] : [];
  const reflection = r && names.length
    ? el("div", { class: "panel", id: "reflection-detail" }, el("h3", {}, "the reflection that made it"),
      names.map((name) => el("div", {},
        el("details", {}, el("summary", {}, `prompt for ${name} (${(r.prompts[name] || "").length} characters)`),
          el("pre", { class: "text reflection-prompt" }, r.prompts[name] || "")),
        el("div", { class: "muted" }, `reply for ${name}`),
        el("pre", { class: "text reflection-reply" }, r.replies[name] || ""))))
    : el("p", { class: "muted panel" }, c.origin === "seed" ? "The seed was not written by a reflection." :
      c.origin === "merge" ? "A merge of two candidates: no reflection." :
      "No reflection prompt recorded for it (the store has no event log).");
  return el("section", {},
    el("h2", {}, `Candidate #${c.id} `, picker),
    el("div", { class: "cards" },
      card("validation mean", fmt(c.score), "cand-score"),
      card("origin", c.origin),
      card("parents", c.parents.length ? el("span", {}, c.parents.map((p, i) => [i ? ", " : "", candidateLink(route.key, p)])) : "–"),
      card("children", c.children.length ? el("span", {}, c.children.slice(0, 8).map((p, i) => [i ? ", " : "", candidateLink(route.key, p)]), c.children.length > 8 ? " …" : "") : "–"),
      card("iteration", fmt(c.iteration)),
      card("found after", fmt(c.metric_calls) + " calls"),
      card("examples scored", fmt(c.coverage)),
      card("role", c.role || "dominated")),
    c.decision ? el("p", { class: "panel", id: "cand-decision" }, el("span", { class: "outcome-" + c.decision.outcome }, c.decision.outcome),
      `: ${c.decision.reason}`) : null,
    components, reflection);
};

VIEWS.reflection = async (route) => {
  const data = await api(runUrl(route.key, "reflection"));
  const box = el("pre", { class: "text", id: "stream-text" });
  const section = el("section", {},
    el("h2", {}, "Reflection being written"),
    el("div", { class: "panel" },
      el("p", {}, el("span", { id: "stream-status", class: "stream-status" }), " · components: ",
        el("span", { id: "stream-components" })),
      box),
    el("p", { class: "muted" }, "The reflection model's reply as it streams in; it is replaced by the next one when the next reflection starts."));
  $("#view").replaceChildren(section);
  showReflection({ ...data, key: route.key });
  return null;
};

VIEWS.compare = async (route) => {
  const [cmp, pa, pb] = await Promise.all([
    api(`api/compare?a=${encodeURIComponent(route.a)}&b=${encodeURIComponent(route.b)}`),
    api(runUrl(route.a, "progress")), api(runUrl(route.b, "progress"))]);
  const a = { ...cmp.a, key: route.a }, b = { ...cmp.b, key: route.b };
  const series = [
    { name: "a", color: "#0969da", label: `A: ${route.a} best`, step: true,
      points: pa.points.filter((p) => p.best_score !== null).map((p) => [p.metric_calls, p.best_score]) },
    { name: "b", color: "#cf222e", label: `B: ${route.b} best`, step: true,
      points: pb.points.filter((p) => p.best_score !== null).map((p) => [p.metric_calls, p.best_score]) },
  ];
  const texts = (s) => Object.keys(s.best_texts).length ? Object.entries(s.best_texts).map(([name, text]) =>
    el("div", {}, el("div", { class: "muted" }, name), el("pre", { class: "text" }, text))) : el("p", { class: "muted" }, "no candidate yet");
  const column = (s, tag, prefix) => el("div", { id: "compare-" + prefix.replace("-", "") },
    el("h3", {}, `${tag}: `, el("a", { href: `#/run/${encodeURIComponent(s.key)}/overview` }, s.key), el("span", { class: "muted" }, "  " + s.source)),
    summaryCards(s, prefix), el("h3", {}, `best candidate #${s.best_id ?? "–"}`), texts(s));
  const names = Object.keys(cmp.best_diffs);
  const w = cmp.wins || {};
  return el("section", {},
    el("h2", {}, "Two runs side by side"),
    el("div", { class: "panel" }, el("h3", {}, "best score against metric calls"),
      charts.lineChart(series, { id: "chart-compare", xLabel: "metric calls", xKind: "calls", width: 1100, height: 300 }), charts.legend(series),
      el("p", { class: "muted" }, `best candidates on the ${cmp.shared_examples.length} validation examples both were scored on: ` +
        `A ${fmt(cmp.a_mean_shared)} vs B ${fmt(cmp.b_mean_shared)} (A better on ${w.a || 0}, B on ${w.b || 0}, tied on ${w.tie || 0})`)),
    el("div", { class: "cols", id: "compare" }, column(a, "A", "a-"), column(b, "B", "b-")),
    el("div", { class: "panel" }, el("h3", {}, "best of A → best of B"),
      names.length ? names.map((name) => el("div", {}, el("div", { class: "muted" }, name), diffView(cmp.best_diffs[name])))
        : el("p", { class: "muted" }, "the best candidates have the same texts")));
};

window.addEventListener("hashchange", render);
window.addEventListener("DOMContentLoaded", render);
