"""``seqlab report RUN_DIR``: one self-contained HTML page about a run.

The page holds the config, the summary metrics, the curves and every diagnostic that applies
(PNG images inlined as base64), an interactive attention head view for attention models (pick a
layer and a head, hover a token to see what it attends to), and, for generation runs, example
inputs and outputs. No network: no CDN, no fonts, no external scripts; a little plain JavaScript
reads the attention weights from a JSON block in the page.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import torch

from ..utils import atomic_write_text
from .plots import MAX_TOKENS, WHAT, PlotResult, RunDiagnostics, Skip

SIZE_LIMIT = 2_000_000  # bytes; the page warns in its own text if a run's images make it larger
GENERATION_ROWS = 10

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1400px;margin:0 auto;padding:1em 2em;
color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee} figcaption{font-size:.85em;color:#555}
.skipped{color:#777;font-style:italic} nav a{margin-right:1em}
.av-controls label{margin-right:1em} .av{position:relative;display:flex;justify-content:space-between;
width:520px;margin-top:.8em;user-select:none}
.av-col{display:flex;flex-direction:column;z-index:1} .av-col.right{align-items:flex-start}
.av-col.left{align-items:flex-end}
.av-token{font-family:monospace;font-size:13px;padding:1px 6px;margin:1px 0;border-radius:3px;cursor:default;
white-space:pre;min-height:16px}
.av-token.active{outline:2px solid #c33}
#av-lines{position:absolute;left:0;top:0;width:100%;height:100%;z-index:0;pointer-events:none}
#av-status{font-size:.9em;color:#333;min-height:1.4em}
"""

JS = r"""
(function () {
  var data = JSON.parse(document.getElementById('attention-data').textContent);
  var kindSel = document.getElementById('av-kind'), layerSel = document.getElementById('av-layer');
  var headSel = document.getElementById('av-head'), left = document.getElementById('av-left');
  var right = document.getElementById('av-right'), svg = document.getElementById('av-lines');
  var box = document.getElementById('av-canvas'), status = document.getElementById('av-status');
  var NS = 'http://www.w3.org/2000/svg';

  function option(sel, value, text) {
    var o = document.createElement('option'); o.value = value; o.textContent = text; sel.appendChild(o);
  }
  function current() { return data[+kindSel.value]; }
  function matrix() {  // the chosen head's (T_q, T_k) weights, or the mean over heads
    var m = current(), layer = m.weights[+layerSel.value];
    if (headSel.value !== 'mean') return layer[+headSel.value];
    return layer[0].map(function (row, i) {
      return row.map(function (_, j) {
        var s = 0; for (var h = 0; h < layer.length; h++) s += layer[h][i][j]; return s / layer.length;
      });
    });
  }
  function fillSelectors() {
    var m = current();
    layerSel.innerHTML = ''; headSel.innerHTML = '';
    for (var l = 0; l < m.weights.length; l++) option(layerSel, l, 'layer ' + (l + 1));
    for (var h = 0; h < m.weights[0].length; h++) option(headSel, h, 'head ' + (h + 1));
    option(headSel, 'mean', 'all heads (mean)');
  }
  function tokens(col, list, side) {
    col.innerHTML = '';
    list.forEach(function (t, i) {
      var s = document.createElement('span');
      s.className = 'av-token'; s.textContent = t; s.dataset.index = i; s.dataset.side = side;
      s.addEventListener('mouseenter', function () { focus(side, i); });
      s.addEventListener('mouseleave', function () { draw(null, null); });
      col.appendChild(s);
    });
  }
  function centre(el, side) {
    var b = box.getBoundingClientRect(), r = el.getBoundingClientRect();
    return [side === 'q' ? r.right - b.left : r.left - b.left, r.top - b.top + r.height / 2];
  }
  function draw(side, index) {  // every line, or only those of one hovered token
    var w = matrix(), q = left.children, k = right.children, top = 0, i, j;
    for (i = 0; i < q.length; i++) {  // opacity relative to the largest weight in view: faint heads stay visible
      for (j = 0; j < k.length; j++) {
        if ((side === 'q' && i !== index) || (side === 'k' && j !== index)) continue;
        top = Math.max(top, w[i][j]);
      }
    }
    top = top || 1;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    for (i = 0; i < q.length; i++) {
      for (j = 0; j < k.length; j++) {
        if ((side === 'q' && i !== index) || (side === 'k' && j !== index)) continue;
        var a = w[i][j] / top; if (a < 0.02) continue;
        var p = centre(q[i], 'q'), r = centre(k[j], 'k'), line = document.createElementNS(NS, 'line');
        line.setAttribute('x1', p[0]); line.setAttribute('y1', p[1]);
        line.setAttribute('x2', r[0]); line.setAttribute('y2', r[1]);
        line.setAttribute('stroke', '#1f5fbf'); line.setAttribute('stroke-width', side ? 2.5 : 1.2);
        line.setAttribute('stroke-opacity', (side ? a : 0.6 * a).toFixed(3));
        svg.appendChild(line);
      }
    }
    for (i = 0; i < q.length; i++) { q[i].style.background = ''; q[i].classList.remove('active'); }
    for (j = 0; j < k.length; j++) { k[j].style.background = ''; k[j].classList.remove('active'); }
    if (side === null) { status.textContent = 'hover a token'; return; }
    var best = -1, bestA = -1, n = side === 'q' ? k.length : q.length;
    for (var x = 0; x < n; x++) {
      var v = side === 'q' ? w[index][x] : w[x][index];
      (side === 'q' ? k : q)[x].style.background = 'rgba(31,95,191,' + (0.8 * v / top).toFixed(3) + ')';
      if (v > bestA) { bestA = v; best = x; }
    }
    (side === 'q' ? q : k)[index].classList.add('active');
    var m = current();
    status.textContent = side === 'q'
      ? '"' + m.query_tokens[index] + '" attends most to "' + m.key_tokens[best] + '" (' + bestA.toFixed(2) + ')'
      : '"' + m.key_tokens[index] + '" is attended most by "' + m.query_tokens[best] + '" (' + bestA.toFixed(2) + ')';
  }
  function focus(side, index) { draw(side, index); }
  function render() {
    var m = current();
    tokens(left, m.query_tokens, 'q'); tokens(right, m.key_tokens, 'k');
    svg.setAttribute('height', box.getBoundingClientRect().height);
    draw(null, null);
  }
  data.forEach(function (m, i) { option(kindSel, i, m.title); });
  kindSel.addEventListener('change', function () { fillSelectors(); render(); });
  layerSel.addEventListener('change', render);
  headSel.addEventListener('change', render);
  fillSelectors(); render();
})();
"""

CAPTIONS = {
    "curves": "Training curves: loss and metric (train and validation) and the gradient norm over optimiser steps.",
    "gradflow": "||dL/dH_t|| at every step t on a batch, log scale: the trained model and fresh models of every "
    "recurrent cell on the same task and seed; right: full vs truncated BPTT.",
    "gates": "Gate activations (unit x step) for one example, the saturated fraction per gate, state norms.",
    "attention": "Attention weights per layer and head (query tokens down, key tokens across), head entropy, "
    "and for a ViT the attention rollout over the image.",
    "posenc": "The positional encoding table and the dot product of two positions' encodings against their distance.",
}


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _table(rows: list[tuple], header: tuple | None = None) -> str:
    def cell(v, tag="td"):
        if isinstance(v, float):
            return f'<{tag} class="num">{v:.6g}</{tag}>'
        return f"<{tag}>{html.escape(str(v))}</{tag}>"

    head = "<tr>" + "".join(cell(h, "th") for h in header) + "</tr>" if header else ""
    return "<table>" + head + "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows) + "</table>"


def attention_json(maps) -> str:
    """The maps as the head view reads them, weights rounded to 3 decimals; safe inside a <script> block."""
    out = [
        {
            "kind": m.kind,
            "title": m.title,
            "query_tokens": m.query_tokens,
            "key_tokens": m.key_tokens,
            "weights": [
                [[[round(float(v), 3) for v in row] for row in head] for head in layer] for layer in m.weights.tolist()
            ],
        }
        for m in maps
    ]
    return json.dumps(out, separators=(",", ":")).replace("</", "<\\/")


def generation_examples(diag: RunDiagnostics) -> tuple[list[tuple[str, str, str]], str]:
    """(input, reference, output) rows and where they come from: predictions.tsv of a seq2seq run, else greedy
    decoding of a few examples (seq2seq: sources; language models: a prompt and its continuation)."""
    # Only the predictions of this checkpoint: eval --checkpoint best.pt writes predictions-best.tsv.
    from ..runs.evaluate import output_suffix

    pred = diag.run_dir / f"predictions{output_suffix(diag.checkpoint)}.tsv"
    if pred.is_file():
        from ..train.seq2seq_metrics import read_predictions

        rows = read_predictions(pred)[:GENERATION_ROWS]
        return rows, f"the first rows of {pred.name} (greedy decoding of the test split by {diag.checkpoint})"
    from ..generate import generate

    model, info = diag.model, diag.info
    x, y = diag.batch(GENERATION_ROWS)
    if "tgt_vocab" in info:
        src, tgt = info["src_vocab"], info["tgt_vocab"]
        sep = info.get("token_separator", "")
        steps = int(y.shape[1])
        if getattr(diag.exp.model, "max_tgt_len", 0):  # a Transformer writes at most max_tgt_len - 1 tokens
            steps = min(steps, diag.exp.model.max_tgt_len - 1)
        out = generate(model, source=x, max_new_tokens=steps).sequences  # (B, <= steps), as seqlab generate
        rows = [(src.decode(x[i], sep), tgt.decode(y[i], sep), tgt.decode(out[i], sep)) for i in range(len(x))]
        return rows, f"greedy decoding of the first test sources by {diag.checkpoint}"
    vocab = info["vocab"]
    block = getattr(diag.exp.model, "block_size", 64)  # a GPT keeps its last block_size tokens past that
    prompt_len = max(1, min(32, x.shape[1], block // 2))
    new = 64
    out = generate(model, prompt=x[:4, :prompt_len], max_new_tokens=new).sequences  # (4, new)
    rows = [
        (vocab.decode(x[i, :prompt_len], strip=False), "", vocab.decode(out[i], strip=False)) for i in range(len(out))
    ]
    return rows, f"greedy continuations ({new} tokens) of {prompt_len}-token prompts from the data"


def build_report(
    run_dir: str | Path, *, example: int = 0, checkpoint: str = "last.pt", data_location: dict[str, str] | None = None
) -> tuple[Path, list[PlotResult]]:
    """Draw every diagnostic of the run (``plots/``, TensorBoard) and write ``RUN_DIR/report.html``."""
    diag = RunDiagnostics(run_dir, checkpoint=checkpoint, example=example, data_location=data_location)
    results = diag.plot("all")
    run_dir = diag.run_dir
    parts = [f"<h1>seqlab run report: {html.escape(run_dir.name)}</h1>"]
    summary = _read_json(run_dir / "summary.json")
    model, data = summary.get("model", ""), summary.get("data", "")
    try:
        model, data = diag.model_name, diag.exp.data.name
    except Skip:
        pass
    parts.append(
        f'<p id="run-info">model <b>{html.escape(str(model))}</b> on data <b>{html.escape(str(data))}</b>'
        f" &middot; folder <code>{html.escape(str(run_dir.resolve()))}</code></p>"
    )
    sections = [("config", "Config"), ("summary", "Summary metrics")] + [(w, w) for w in WHAT]
    sections.append(("generation", "Inputs and outputs"))
    parts.append("<nav>" + "".join(f'<a href="#{k}">{html.escape(t)}</a>' for k, t in sections) + "</nav>")

    config = run_dir / "config.toml"
    command = run_dir / "command.txt"
    parts.append('<h2 id="config">Config</h2>')
    if command.is_file():
        parts.append(f"<p>command: <code>{html.escape(command.read_text().strip())}</code></p>")
    parts.append(
        f"<pre>{html.escape(config.read_text())}</pre>" if config.is_file() else '<p class="skipped">no config.toml</p>'
    )

    parts.append('<h2 id="summary">Summary metrics</h2>')
    shown = [(k, v) for k, v in summary.items() if not isinstance(v, (dict, list))]
    parts.append(
        _table(shown, ("metric", "value"))
        if shown
        else '<p class="skipped">no summary.json (the run has not finished)</p>'
    )

    for r in results:
        parts.append(f'<h2 id="{r.what}">{html.escape(r.what)}</h2>')
        if r.skipped:
            parts.append(f'<p class="skipped">skipped: {html.escape(r.skipped)}</p>')
            continue
        parts.append(f"<p>{html.escape(CAPTIONS[r.what])}</p>")
        if r.what == "gradflow":
            flow = r.data["flow"]
            rows = [
                (name, v["decay_per_step"] if v["decay_per_step"] is not None else "n/a", v["norms"][0], v["norms"][-1])
                for name, v in flow["models"].items()
            ]
            parts.append(_table(rows, ("model", "fitted decay per step back", "||dL/dH_1||", "||dL/dH_T||")))
        if r.what == "gates":
            parts.append(
                _table(
                    [(k, f"{100 * v:.1f}%") for k, v in r.data["saturation"].items()],
                    ("gate", "saturated (< 0.05 or > 0.95; tanh |g| > 0.95)"),
                )
            )
        for path in r.paths:
            if path.suffix == ".png":
                parts.append(f"<figure>{_img(path)}<figcaption>{html.escape(path.name)}</figcaption></figure>")
        if r.lines:
            parts.append("<pre>" + html.escape("\n".join(r.lines)) + "</pre>")
        if r.what == "attention":
            parts.append(_head_view(r.data["maps"]))

    parts.append('<h2 id="generation">Example inputs and outputs</h2>')
    parts.append(_generation_section(diag))
    page = _page(run_dir.name, "\n".join(parts))
    if len(page.encode()) > SIZE_LIMIT:
        note = (
            f'<p class="skipped">this page is {len(page.encode()) / 1e6:.1f} MB, over the '
            f"{SIZE_LIMIT / 1e6:.0f} MB meant for it: its images are large</p>"
        )
        page = page.replace("</h1>", "</h1>" + note, 1)
    path = atomic_write_text(run_dir / "report.html", page)
    return path, results


def _head_view(maps) -> str:
    maps = [m for m in maps if len(m.query_tokens) <= MAX_TOKENS and len(m.key_tokens) <= MAX_TOKENS]
    if not maps:
        return ""
    return (
        '<h3 id="head-view">Interactive attention (head view)</h3>'
        "<p>Pick the attention, a layer and a head; hover a query token (left) to see what it attends to, "
        "or a key token (right) to see what attends to it. Line and highlight strength: the weight, "
        "relative to the largest one shown.</p>"
        '<div class="av-controls"><label>attention <select id="av-kind"></select></label>'
        '<label>layer <select id="av-layer"></select></label>'
        '<label>head <select id="av-head"></select></label></div>'
        '<div id="av-status"></div>'
        '<div class="av" id="av-canvas"><div class="av-col left" id="av-left"></div>'
        '<svg id="av-lines" xmlns="http://www.w3.org/2000/svg"></svg>'
        '<div class="av-col right" id="av-right"></div></div>'
        f'<script id="attention-data" type="application/json">{attention_json(maps)}</script>'
        f"<script>{JS}</script>"
    )


def _generation_section(diag: RunDiagnostics) -> str:
    try:
        task = diag.info.get("task")
    except Skip as skip:
        return f'<p class="skipped">skipped: {html.escape(str(skip))}</p>'
    if task not in ("seq2seq", "language_model") or not hasattr(diag.model, "begin_decoding"):
        return f'<p class="skipped">skipped: not a generation run (task {html.escape(str(task))})</p>'
    with torch.no_grad():
        rows, source = generation_examples(diag)
    header = ("source", "reference", "output") if task == "seq2seq" else ("prompt", "", "continuation")
    if task != "seq2seq":
        rows, header = [(p, o) for p, _, o in rows], ("prompt", "greedy continuation")
    return f"<p>{html.escape(source)}</p>" + _table(rows, header).replace("<td>", '<td style="white-space:pre-wrap">')


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>seqlab report: {html.escape(title)}</title><style>{CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )
