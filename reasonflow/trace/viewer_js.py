"""Script of the HTML trace viewer, inlined by ``reasonflow.trace.html`` into every page.

It reads the embedded ``<script type="application/json" id="trace-data">`` block and builds the page
with ``createElement``/``textContent`` only, so trace text is never parsed as HTML. Plain ES2017, no
libraries, no network. It does not guarantee a usable page for traces far past a few thousand nodes
(every node is a DOM row), nor any browser older than ES2017.
"""

JS = r"""
"use strict";
(function () {
  const payload = JSON.parse(document.getElementById("trace-data").textContent);
  const trace = payload.trace, meta = trace.graph || {}, stats = payload.stats;
  const statuses = payload.statuses, best = new Set(payload.best_path);
  const byId = new Map(), kids = new Map(), parentOf = new Map(), actionOf = new Map();
  for (const n of trace.nodes) { byId.set(n.id, n); kids.set(n.id, []); }
  for (const e of trace.edges) {
    kids.get(e.source).push(e.target); parentOf.set(e.target, e.source); actionOf.set(e.target, e.action);
  }
  const roots = trace.nodes.filter(n => !parentOf.has(n.id)).map(n => n.id);
  const $ = id => document.getElementById(id);

  function el(tag, cls, text) {
    const x = document.createElement(tag);
    if (cls) x.className = cls;
    if (text !== undefined && text !== null) x.textContent = String(text);
    return x;
  }
  function fmtScore(s) { return (s === null || s === undefined) ? "\u2013" : (+s).toPrecision(3).replace(/\.?0+$/, ""); }
  function flat(text, limit) {
    const t = String(text === null || text === undefined ? "" : text).replace(/\s+/g, " ").trim();
    return t.length > limit ? t.slice(0, limit) + "\u2026" : t;
  }
  function statusClass(s) { return statuses.indexOf(s) >= 0 ? "st-" + s : "st-unknown"; }
  function show(v) { return (v === null || v === undefined) ? "\u2013" : (typeof v === "string" ? v : JSON.stringify(v)); }

  // --- header -----------------------------------------------------------------------------------
  document.title = (meta.program || "trace") + " \u2014 reasonflow trace";
  $("program").textContent = meta.program || "(unnamed program)";
  $("strategy").textContent = meta.strategy || "";
  $("question").textContent = meta.question || "";
  const answer = $("answer");
  if (meta.answer === null || meta.answer === undefined) { answer.textContent = "no answer"; answer.classList.add("none"); }
  else answer.textContent = show(meta.answer);
  $("budget-badge").hidden = !meta.budget_exhausted;
  const statRows = [["nodes", stats.nodes], ["edges", stats.edges], ["max depth", stats.max_depth],
    ["branching", stats.mean_branching.toFixed(2)], ["pruned", (100 * stats.pruned_share).toFixed(1) + "%"],
    ["tokens", stats.total_tokens], ["prompt tok", stats.prompt_tokens], ["compl. tok", stats.completion_tokens],
    ["LM calls", stats.lm_calls]];
  for (const [k, v] of statRows) {
    const box = el("div", "stat"); box.appendChild(el("span", "v", v)); box.appendChild(el("span", "k", k));
    $("stats").appendChild(box);
  }
  const counts = {};
  for (const n of trace.nodes) counts[n.status] = (counts[n.status] || 0) + 1;
  for (const s of statuses) {
    const item = el("span", "legend-item " + statusClass(s)); item.dataset.status = s;
    item.appendChild(el("span", "swatch")); item.appendChild(el("span", null, s + " (" + (counts[s] || 0) + ")"));
    $("legend").appendChild(item);
  }
  const bestItem = el("span", "legend-item best"); bestItem.appendChild(el("span", "swatch"));
  bestItem.appendChild(el("span", null, "\u2605 best path")); $("legend").appendChild(bestItem);

  // --- tree -------------------------------------------------------------------------------------
  const view = new Map();  // id -> {row, toggle, ul, hiddenCount}
  const size = new Map();  // id -> number of descendants
  for (const id of trace.nodes.map(n => n.id).reverse()) {
    size.set(id, kids.get(id).reduce((a, c) => a + 1 + (size.get(c) || 0), 0));
  }
  function buildRow(id) {
    const n = byId.get(id), li = el("li", "tnode");
    const row = el("div", "row " + statusClass(n.status));
    row.dataset.nodeId = id; row.dataset.status = n.status; row.tabIndex = 0;
    row.setAttribute("role", "treeitem");
    const toggle = el("button", "toggle", kids.get(id).length ? "\u25be" : "\u2022");
    toggle.type = "button";
    if (kids.get(id).length) { toggle.dataset.toggleFor = id; toggle.setAttribute("aria-expanded", "true");
                               toggle.title = "collapse / expand children"; }
    else toggle.disabled = true;
    row.appendChild(toggle);
    if (best.has(id)) { row.classList.add("best"); row.appendChild(el("span", "star", "\u2605")); }
    row.appendChild(el("span", "nid", id));
    row.appendChild(el("span", "pill", n.status));
    row.appendChild(el("span", "score", fmtScore(n.score)));
    const act = actionOf.get(id);
    if (act) { const a = el("span", "action", act); a.title = act; row.appendChild(a); }
    row.appendChild(el("span", "preview", flat(n.text, 160)));
    const hiddenCount = el("span", "hidden-count"); row.appendChild(hiddenCount);
    li.appendChild(row);
    let ul = null;
    if (kids.get(id).length) { ul = el("ul", "children"); ul.setAttribute("role", "group"); li.appendChild(ul); }
    view.set(id, {row: row, toggle: toggle, ul: ul, hiddenCount: hiddenCount});
    return li;
  }
  const treeRoot = $("tree");
  const stack = roots.slice().reverse().map(id => [id, treeRoot]);
  while (stack.length) {  // iterative, so a deep chain cannot overflow the JS stack
    const [id, parentUl] = stack.pop();
    parentUl.appendChild(buildRow(id));
    const ul = view.get(id).ul;
    for (const c of kids.get(id).slice().reverse()) stack.push([c, ul]);
  }
  if (!trace.nodes.length) treeRoot.appendChild(el("li", "empty", "This trace has no nodes."));

  function setCollapsed(id, collapsed) {
    const v = view.get(id);
    if (!v || !v.ul) return;
    v.ul.hidden = collapsed;
    v.toggle.textContent = collapsed ? "\u25b8" : "\u25be";
    v.toggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
    v.hiddenCount.textContent = collapsed ? "+" + size.get(id) + " hidden" : "";
  }
  function expandToDepth(d) {
    for (const n of trace.nodes) setCollapsed(n.id, n.depth >= d);
    revealBest();
  }
  function revealBest() { for (const id of payload.best_path.slice(0, -1)) setCollapsed(id, false); }

  const depthBox = $("depth-controls");
  const maxButtons = Math.min(stats.max_depth, 12);
  for (let d = 0; d <= maxButtons; d++) {
    const b = el("button", null, String(d)); b.type = "button"; b.dataset.depth = String(d);
    b.addEventListener("click", () => expandToDepth(d)); depthBox.appendChild(b);
  }
  const all = el("button", null, "all"); all.type = "button"; all.dataset.depth = "all";
  all.addEventListener("click", () => expandToDepth(Infinity)); depthBox.appendChild(all);

  // --- details ----------------------------------------------------------------------------------
  const KNOWN = ["id", "depth", "text", "score", "status", "calls", "prompt_tokens", "completion_tokens", "latency_s", "answer"];
  let active = null;
  function select(id) {
    const n = byId.get(id);
    if (!n) return;
    if (active) view.get(active).row.classList.remove("is-active");
    active = id; view.get(id).row.classList.add("is-active");
    const box = $("details");
    box.className = "panel " + statusClass(n.status); box.dataset.nodeId = id;
    $("d-placeholder").hidden = true; $("d-body").hidden = false;
    $("d-id").textContent = "Node " + id;
    $("d-status").textContent = n.status;
    const path = []; for (let p = id; p !== undefined; p = parentOf.get(p)) path.unshift(p);
    const rows = [["status", n.status], ["score", fmtScore(n.score)], ["depth", n.depth],
      ["action", show(actionOf.get(id))], ["prompt tokens", n.prompt_tokens], ["completion tokens", n.completion_tokens],
      ["latency", (+n.latency_s).toFixed(3) + " s"], ["calls", (n.calls || []).join(", ") || "\u2013"],
      ["answer", show(n.answer)], ["children", kids.get(id).length], ["on best path", best.has(id) ? "yes" : "no"]];
    for (const k of Object.keys(n)) if (KNOWN.indexOf(k) < 0) rows.push([k, show(n[k])]);
    const dl = $("d-fields"); dl.replaceChildren();
    for (const [k, v] of rows) {
      const dd = el("dd", null, v); dd.dataset.field = k;
      dl.appendChild(el("dt", null, k)); dl.appendChild(dd);
    }
    $("d-path").textContent = path.join(" \u203a ");
    $("d-text").textContent = n.text;
  }
  treeRoot.addEventListener("click", ev => {
    const toggle = ev.target.closest("button.toggle");
    if (toggle && toggle.dataset.toggleFor) {
      const id = toggle.dataset.toggleFor; setCollapsed(id, !view.get(id).ul.hidden); return;
    }
    const row = ev.target.closest(".row");
    if (row) select(row.dataset.nodeId);
  });
  treeRoot.addEventListener("keydown", ev => {
    const row = ev.target.closest(".row");
    if (!row) return;
    const id = row.dataset.nodeId;
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(id); }
    else if (ev.key === "ArrowLeft") setCollapsed(id, true);
    else if (ev.key === "ArrowRight") setCollapsed(id, false);
  });

  expandToDepth(trace.nodes.length <= 400 ? Infinity : 2);
  const start = meta.answer_node || payload.best_path[payload.best_path.length - 1];
  if (start) select(start);
  document.body.dataset.ready = "1";
})();
"""
