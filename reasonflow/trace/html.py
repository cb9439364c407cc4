"""Render a ``Trace`` as one self-contained HTML file: a collapsible tree coloured by status, the best
path marked, and a details panel for the clicked node.

Run: ``trace.to_html("run.html")`` (or ``write_html(trace, path)``), then open the file in any browser;
it works offline from ``file://``. The trace is embedded as node-link JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` written as JSON escapes, so no
trace text can close the tag; the script builds the page with ``textContent`` only. A
Content-Security-Policy forbids every network load, and the page names no external URL.

It does not guarantee: a responsive page for traces of many thousands of nodes (every node is a DOM
row), or rendering in browsers without ES2017. Elements tests rely on: ``#tree`` rows
``.row[data-node-id]``, toggles ``button.toggle[data-toggle-for]``, depth buttons ``#depth-controls
button[data-depth]``, the panel ``#details`` with ``#d-text`` and ``#d-fields dd[data-field]``, the
header ``#program #question #answer #budget-badge #stats``, and ``body[data-ready="1"]`` once built.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from reasonflow.trace.schema import NODE_STATUSES
from reasonflow.trace.viewer_css import CSS, status_rules
from reasonflow.trace.viewer_js import JS

if TYPE_CHECKING:
    from reasonflow.trace.graph import Trace

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="@CSP@">
<meta name="generator" content="reasonflow.trace">
<link rel="icon" href="data:,">
<title>@TITLE@</title>
<style>@CSS@</style>
</head>
<body>
<header>
  <div class="kicker">reasonflow trace</div>
  <h1><span id="program"></span><span id="strategy" class="strategy"></span></h1>
  <p id="question"></p>
  <div class="answer-line">
    <span class="label">final answer</span><span id="answer"></span>
    <span id="budget-badge" hidden>budget exhausted</span>
  </div>
  <div id="stats"></div>
</header>
<div class="toolbar">
  <div class="group"><span class="label">expand to depth</span><span id="depth-controls" class="group"></span></div>
  <div id="legend"></div>
</div>
<main>
  <section id="tree-panel" class="panel"><ul id="tree" class="tree" role="tree"></ul></section>
  <aside id="details" class="panel" aria-live="polite">
    <p id="d-placeholder" class="placeholder">Click a node to see its full text and figures.</p>
    <div id="d-body" hidden>
      <h2><span id="d-id"></span><span id="d-status" class="pill"></span></h2>
      <dl id="d-fields"></dl>
      <h3>Path from root</h3><div id="d-path"></div>
      <h3>Text</h3><pre id="d-text"></pre>
    </div>
  </aside>
</main>
<noscript><p class="empty">This trace viewer needs JavaScript.</p></noscript>
<script type="application/json" id="trace-data">@DATA@</script>
<script>@JS@</script>
</body>
</html>
"""


def embed_json(value: object) -> str:
    """JSON text that is safe inside a <script> element: ``<``, ``>``, ``&`` and the JS line separators
    become ``\\uXXXX`` escapes (valid JSON, and no ``</script>`` or ``<!--`` can appear)."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for ch in ("<", ">", "&", "\u2028", "\u2029"):
        text = text.replace(ch, f"\\u{ord(ch):04x}")
    return text


def render_html(trace: Trace) -> str:
    """The viewer page for ``trace`` as a string."""
    payload = {"trace": trace.to_dict(), "best_path": trace.best_path(), "stats": trace.stats(),
               "statuses": list(NODE_STATUSES)}
    parts = {
        "CSP": CSP,
        "TITLE": html.escape(f"{trace.graph.graph['program']} \u2014 reasonflow trace"),
        "CSS": CSS + status_rules(),
        "JS": JS,
        "DATA": embed_json(payload),
    }
    # one pass: text put in is never scanned again, so a marker inside the trace stays literal
    return re.sub(r"@(CSP|TITLE|CSS|JS|DATA)@", lambda m: parts[m.group(1)], PAGE)


def write_html(trace: Trace, path: str | os.PathLike) -> Path:
    """Write the viewer page to ``path`` (parents created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(trace), encoding="utf-8")
    return path
