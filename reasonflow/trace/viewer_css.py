"""Stylesheet of the HTML trace viewer, inlined by ``reasonflow.trace.html`` into every page.

It is a Python string rather than a package-data file so that the viewer works from any install
(wheel, editable, zipapp) without data-file configuration. It loads no fonts or images: it relies on
system fonts, so the look varies a little across machines; it does not guarantee a print layout.
"""

STATUS_COLORS = {  # status -> (accent, light background); the legend and node rows use these
    "proposed": ("#64748b", "#f1f5f9"),
    "expanded": ("#2563eb", "#eff6ff"),
    "pruned": ("#dc2626", "#fef2f2"),
    "selected": ("#16a34a", "#f0fdf4"),
    "terminal": ("#7c3aed", "#f5f3ff"),
    "answer": ("#d97706", "#fffbeb"),
}


def status_rules() -> str:
    """One CSS rule per status, setting the --c (accent) and --cbg (background) variables."""
    return "\n".join(f".st-{name} {{ --c: {accent}; --cbg: {bg}; }}"
                     for name, (accent, bg) in STATUS_COLORS.items())


CSS = """
:root { --bg: #f3f5f9; --panel: #ffffff; --ink: #1e293b; --muted: #64748b; --line: #e2e8f0;
        --best: #f59e0b; --c: #94a3b8; --cbg: #f8fafc;
        font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font-size: 14px; line-height: 1.45; }
header { background: linear-gradient(135deg, #0f172a, #334155); color: #f8fafc; padding: 18px 28px 20px; }
header .kicker { font-size: 12px; letter-spacing: .08em; text-transform: uppercase; color: #94a3b8; }
header h1 { margin: 2px 0 8px; font-size: 22px; font-weight: 650; }
header h1 .strategy { font-size: 13px; font-weight: 500; background: #475569; border-radius: 999px;
                      padding: 2px 10px; margin-left: 8px; vertical-align: middle; }
#question { margin: 0 0 12px; max-width: 110ch; white-space: pre-wrap; color: #e2e8f0; }
.answer-line { display: flex; align-items: center; gap: 10px; flex-wrap: wrap; margin-bottom: 14px; }
.answer-line .label { color: #94a3b8; font-size: 12px; text-transform: uppercase; letter-spacing: .06em; }
#answer { background: #fef3c7; color: #78350f; font-weight: 700; border-radius: 8px; padding: 3px 12px;
          font-size: 16px; white-space: pre-wrap; }
#answer.none { background: #475569; color: #e2e8f0; font-weight: 500; }
#budget-badge { background: #dc2626; color: #fff; border-radius: 999px; padding: 3px 12px; font-size: 12px;
                font-weight: 700; letter-spacing: .04em; text-transform: uppercase; }
#stats { display: flex; flex-wrap: wrap; gap: 8px; }
.stat { background: rgba(255,255,255,.08); border: 1px solid rgba(255,255,255,.12); border-radius: 8px;
        padding: 5px 12px; min-width: 86px; }
.stat .v { font-size: 16px; font-weight: 650; display: block; }
.stat .k { font-size: 11px; color: #94a3b8; text-transform: uppercase; letter-spacing: .05em; }
.toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 14px; padding: 12px 28px 0; }
.toolbar .group { display: flex; align-items: center; gap: 4px; flex-wrap: wrap; }
.toolbar .label { color: var(--muted); font-size: 12px; margin-right: 4px; }
.toolbar button { border: 1px solid var(--line); background: var(--panel); color: var(--ink);
                  border-radius: 6px; padding: 3px 10px; cursor: pointer; font: inherit; font-size: 12px; }
.toolbar button:hover { border-color: #94a3b8; }
#legend { display: flex; flex-wrap: wrap; gap: 10px; margin-left: auto; }
.legend-item { display: flex; align-items: center; gap: 5px; font-size: 12px; color: var(--muted); }
.swatch { width: 12px; height: 12px; border-radius: 3px; background: var(--c); display: inline-block; }
.legend-item.best .swatch { background: transparent; box-shadow: inset 0 0 0 2px var(--best); }
main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(300px, 400px); gap: 16px;
       padding: 12px 28px 28px; align-items: start; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 12px;
         box-shadow: 0 1px 2px rgba(15,23,42,.05); }
#tree-panel { padding: 10px 12px; overflow-x: auto; }
ul.tree, ul.children { list-style: none; margin: 0; padding: 0; }
ul.children { margin-left: 13px; padding-left: 14px; border-left: 1px dashed #cbd5e1; }
ul.children[hidden] { display: none; }
.row { display: flex; align-items: center; gap: 8px; margin: 3px 0; padding: 4px 10px 4px 4px;
       border-radius: 7px; border-left: 4px solid var(--c); background: var(--cbg); cursor: pointer;
       min-width: 0; outline: none; }
.row:hover { filter: brightness(.97); }
.row:focus-visible { box-shadow: 0 0 0 2px #93c5fd; }
.row.best { box-shadow: inset 0 0 0 2px var(--best); }
.row.is-active { box-shadow: 0 0 0 2px var(--ink); }
.row.best.is-active { box-shadow: inset 0 0 0 2px var(--best), 0 0 0 2px var(--ink); }
.toggle { width: 22px; height: 22px; flex: none; border: none; border-radius: 5px; background: transparent;
          color: var(--muted); cursor: pointer; font-size: 12px; padding: 0; }
.toggle:hover:not(:disabled) { background: rgba(15,23,42,.08); color: var(--ink); }
.toggle:disabled { cursor: default; opacity: .35; }
.nid { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; color: var(--muted); flex: none; }
.pill { font-size: 11px; font-weight: 600; border-radius: 999px; padding: 1px 8px; flex: none;
        color: #fff; background: var(--c); }
.score { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; flex: none;
         background: #fff; border: 1px solid var(--line); border-radius: 5px; padding: 0 6px; }
.action { font-size: 12px; color: #334155; background: #e2e8f0; border-radius: 5px; padding: 0 6px; flex: none;
          max-width: 22ch; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.star { color: var(--best); flex: none; font-size: 14px; }
.preview { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; min-width: 0; flex: 1; }
.hidden-count { font-size: 11px; color: var(--muted); flex: none; }
#details { position: sticky; top: 12px; padding: 14px 18px; max-height: calc(100vh - 24px); overflow: auto; }
#details h2 { font-size: 16px; margin: 0 0 10px; display: flex; align-items: center; gap: 8px; }
#details .placeholder { color: var(--muted); }
#details dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 12px; margin: 0 0 12px; font-size: 13px; }
#details dt { color: var(--muted); }
#details dd { margin: 0; overflow-wrap: anywhere; }
#details h3 { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 12px 0 6px; }
#d-text { white-space: pre-wrap; overflow-wrap: anywhere; background: #f8fafc; border: 1px solid var(--line);
          border-radius: 8px; padding: 10px 12px; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
          font-size: 12.5px; max-height: 55vh; overflow: auto; }
#d-path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
.empty { color: var(--muted); padding: 24px; text-align: center; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } #details { position: static; max-height: none; } }
"""
