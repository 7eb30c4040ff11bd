"""``aotpack report OUT -o report.html``: a trace as one self-contained HTML page.

The page needs no network (styles, data and script are inline), so it can be mailed,
attached to a bug or opened from a CI artifact. It shows, like tlparse's index:
a summary (compiles, graphs, breaks, recompiles, compile time, cache hits), compile
time per graph as a bar chart, every graph break with its reason and source line,
and each compile in order with its guards, inputs and runnable script (highlighted
by Pygments, with a link to the file).

Example:
    >>> write_report("out", "out/report.html")                       # doctest: +SKIP
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import html
import json
import os
import re

from ..atomic import atomic_file
from .log import read_trace

__all__ = ["write_report", "render_report"]

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 16px 24px; }
header h1 { margin: 0; font-size: 20px; } header p { margin: 4px 0 0; color: #b8c0d0; }
main { padding: 16px 24px; max-width: 1200px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 16px; }
.card { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 10px 14px; min-width: 120px; }
.card b { display: block; font-size: 22px; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 6px; padding: 12px 16px; margin: 12px 0; }
h2 { font-size: 16px; margin: 0 0 8px; } h3 { font-size: 14px; margin: 12px 0 4px; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 3px 8px; border-bottom: 1px solid #eef0f4; vertical-align: top; }
code, pre { font: 12px/1.4 ui-monospace, monospace; } pre { overflow-x: auto; background: #fafbfc; padding: 8px; margin: 0; }
.status-ok { color: #17803d; } .status-failed, .status-unfinished { color: #b42318; } .status-no-graph { color: #8a6d00; }
.chart .row { display: flex; align-items: center; gap: 8px; margin: 2px 0; }
.chart .label { width: 90px; font: 12px ui-monospace, monospace; text-align: right; }
.chart .bar { height: 16px; background: #3b6fd8; border-radius: 2px; min-width: 2px; }
.chart .bar.hit { background: #2e9e5b; } .chart .value { font-size: 12px; color: #555; }
.break { border-left: 3px solid #d98b00; padding-left: 8px; margin: 6px 0; }
details > summary { cursor: pointer; color: #3b6fd8; }
"""

_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById('trace-data').textContent);
  var chart = document.getElementById('chart');
  var max = Math.max.apply(null, data.map(function (d) { return d.t || 0; }).concat([1e-9]));
  data.forEach(function (d) {
    var row = document.createElement('div'); row.className = 'row';
    var label = document.createElement('a'); label.className = 'label'; label.textContent = d.id;
    label.href = '#c-' + d.anchor;
    var bar = document.createElement('div'); bar.className = 'bar' + (d.hit ? ' hit' : '');
    bar.style.width = (600 * (d.t || 0) / max) + 'px'; bar.setAttribute('data-compile-id', d.id);
    bar.title = d.fn + ': ' + (d.t || 0).toFixed(3) + ' s';
    var value = document.createElement('span'); value.className = 'value';
    value.textContent = (d.t || 0).toFixed(3) + ' s ' + d.fn + (d.hit ? ' (cache hit)' : '');
    row.appendChild(label); row.appendChild(bar); row.appendChild(value); chart.appendChild(row);
  });
  document.getElementById('chart-status').textContent = data.length + ' graphs charted';
})();
"""


# Nothing but the report's own script runs, nothing is fetched: a value that escaped
# escaping still could not run (script-src names the one script by its hash).
_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-"
        + base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode() + "'")


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _highlight(source: str) -> tuple[str, str]:
    """(HTML, CSS) of Python source highlighted by Pygments."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    fmt = HtmlFormatter(cssclass="hl", linenos=False)
    return highlight(source, PythonLexer(), fmt), fmt.get_style_defs(".hl")


def _anchor(r: dict) -> str:
    """The record's HTML id: its run and compile id, every character outside
    ``[A-Za-z0-9_-]`` spelled as ``~hex`` (a crafted compile_id stays text in ``id`` and
    ``href`` attributes, and two runs' ``0/0`` stay apart)."""
    cid = f"{r.get('run') or ''}/{r.get('compile_id')}"
    return re.sub(r"[^A-Za-z0-9_-]", lambda m: f"~{ord(m.group()):x}", cid)


def _cache_text(cache: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(cache.items())) or "-"


def _inputs_table(inputs: list[dict]) -> str:
    if not inputs:
        return "<p>-</p>"
    rows = []
    for i in inputs:
        if i.get("kind") == "tensor":
            what = f"{i.get('type', 'Tensor')} {i['dtype']}{i['shape']} stride {i['stride']} {i['device']}"
            if i.get("requires_grad"):
                what += " requires_grad"
            if i.get("placements"):
                what += f" placements {i['placements']}"
        elif i.get("kind") == "symint":
            what = f"SymInt {i.get('symbol')} = {i.get('value')}"
        else:
            what = f"{i.get('kind')} {i.get('value')}"
        rows.append(f"<tr><td><code>{_e(i.get('name'))}</code></td><td><code>{_e(what)}</code></td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def render_report(out_dir: str | os.PathLike, report_path: str | os.PathLike | None = None) -> str:
    """The report's HTML for the trace in ``out_dir``; links are relative to
    ``report_path``'s folder (default: ``out_dir``)."""
    out_dir = os.path.abspath(os.fspath(out_dir))
    base = os.path.dirname(os.path.abspath(os.fspath(report_path))) if report_path else out_dir
    records = read_trace(out_dir)
    graphs = [r for r in records if r.get("graph")]
    breaks = [(r, b) for r in records for b in r.get("graph_breaks", [])]
    sections, css_extra = [], ""
    for r in records:
        html, css = _compile_section(r, out_dir, base)
        sections.append(html)
        css_extra = css or css_extra
    chart = [{"id": r["compile_id"], "anchor": _anchor(r), "fn": r.get("function") or "?",
              "t": r.get("compile_time_s") or 0, "hit": "hit" in (r.get("cache") or {}).values()} for r in graphs]
    data = json.dumps(chart).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>aotpack compile trace: {_e(os.path.basename(out_dir))}</title>
<style>{_CSS}{css_extra}</style></head>
<body data-graph-count="{len(graphs)}" data-compile-count="{len(records)}" data-break-count="{len(breaks)}">
<header><h1>torch.compile trace</h1>
<p>{_e(out_dir)} · {len(records)} compiles · report written {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")}
 by aotpack</p></header>
<main>
{_summary_cards(records, graphs, breaks)}
<section><h2>compile time per graph</h2><div class="chart" id="chart"></div><p id="chart-status"></p></section>
<section><h2>graph breaks</h2>
{_breaks_table(breaks)}
</section>
<h2>compiles in order</h2>
{"".join(sections)}
</main>
<script type="application/json" id="trace-data">{data}</script>
<script>{_SCRIPT}</script>
</body></html>
"""


def _summary_cards(records: list, graphs: list, breaks: list) -> str:
    """The counts at the top: compiles, graphs, breaks, recompiles, time, cache hits."""
    total = sum(r.get("compile_time_s") or 0 for r in records)
    hits = sum(1 for r in records if "hit" in (r.get("cache") or {}).values())
    recompiles = [r for r in records if r.get("recompile_reasons")]
    cards = [("compiles", len(records), "compile-count"), ("graphs", len(graphs), "graph-count"),
             ("graph breaks", len(breaks), "break-count"), ("recompiles", len(recompiles), "recompile-count"),
             ("compile time", f"{total:.2f} s", "total-time"), ("cache hits", hits, "hit-count")]
    items = "".join(f'<div class="card" id="{i}"><b>{_e(v)}</b>{_e(k)}</div>' for k, v, i in cards)
    return f'<div class="cards">{items}</div>'


def _breaks_table(breaks: list) -> str:
    """Every graph break of the trace, linked to its compile."""
    if not breaks:
        return "<p>none: every frame compiled as one graph</p>"
    rows = "".join(
        f"<tr><td><a href=\"#c-{_anchor(r)}\">{_e(r['compile_id'])}</a></td>"
        f"<td><code>{_e(b.get('where'))}</code></td><td><code>{_e(b.get('code'))}</code></td>"
        f"<td class=\"reason\">{_e(b.get('reason'))}</td></tr>" for r, b in breaks)
    return "<table id='breaks'><tr><th>compile</th><th>where</th><th>code</th><th>reason</th></tr>" + rows + "</table>"


def _compile_section(r: dict, out_dir: str, base: str) -> tuple[str, str]:
    """(HTML, extra CSS of the highlighted script or "") of one compile record."""
    cid = r["compile_id"]
    status = r.get("status") or "?"
    body = [f'<section class="compile" id="c-{_anchor(r)}" data-compile-id="{_e(cid)}">',
            f"<h2>{_e(cid)} <code>{_e(r.get('function'))}</code> "
            f"<span class=\"status-{_e(status.replace(' ', '-'))}\">{_e(status)}</span></h2>",
            "<table>",
            f"<tr><th>source</th><td><code>{_e(r.get('source'))}</code></td></tr>",
            f"<tr><th>backend</th><td>{_e(r.get('backend') or '-')}</td></tr>",
            f"<tr><th>compile time</th><td>{(r.get('compile_time_s') or 0):.3f} s (backend "
            f"{(r.get('backend_time_s') or 0):.3f} s)</td></tr>",
            f"<tr><th>cache</th><td>{_e(_cache_text(r.get('cache') or {}))}</td></tr>"]
    if r.get("graph"):
        body.append(f"<tr><th>graph</th><td>{r['graph']['nodes']} nodes, {r['graph']['ops']} ops</td></tr>")
    if r.get("fail_reason"):
        body.append(f"<tr><th>failure</th><td><pre>{_e(r['fail_reason'])}</pre></td></tr>")
    if r.get("stack"):
        body.append(f"<tr><th>called from</th><td><code>{_e(' → '.join(r['stack']))}</code></td></tr>")
    body.append("</table>")
    for reason in r.get("recompile_reasons") or []:
        body.append(f"<h3>recompiled because</h3><pre>{_e(reason)}</pre>")
    for b in r.get("graph_breaks") or []:
        body.append(f'<div class="break"><b>graph break</b> at <code>{_e(b.get("where"))}</code>: '
                    f'<span class="reason">{_e(b.get("reason"))}</span>'
                    + (f"<pre>{_e(b.get('code'))}</pre>" if b.get("code") else "")
                    + f"<details><summary>torch's full message</summary><pre>{_e(b.get('detail'))}</pre>"
                      "</details></div>")
    body.append(f"<h3>inputs</h3>{_inputs_table(r.get('inputs') or [])}")
    if r.get("guards"):
        body.append(f"<details><summary>{len(r['guards'])} guards</summary><pre>"
                    + _e("\n".join(r["guards"])) + "</pre></details>")
    css = ""
    runnable = (r.get("graph") or {}).get("runnable")
    if runnable:
        path = os.path.join(out_dir, runnable)
        body.append(f'<h3>runnable: <a class="runnable-link" href="{_e(os.path.relpath(path, base))}">'
                    f"{_e(runnable)}</a></h3>")
        if os.path.exists(path):
            with open(path) as f:
                source = f.read()
            code, css = _highlight(source)
            body.append(f"<details><summary>show the script ({source.count(chr(10))} lines; "
                        f"<code>python {_e(runnable)}</code>)</summary>{code}</details>")
    if r.get("recorder_errors"):
        body.append(f"<h3>recorder errors</h3><pre>{_e(chr(10).join(r['recorder_errors']))}</pre>")
    body.append("</section>")
    return "\n".join(body), css


def write_report(out_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> str:
    """Write the report (default ``<out_dir>/report.html``) atomically; returns its path."""
    path = os.fspath(path) if path else os.path.join(os.fspath(out_dir), "report.html")
    page = render_report(out_dir, path)
    with atomic_file(path) as f:
        f.write(page.encode())
    return path
