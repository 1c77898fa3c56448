"""The eval page: one self-contained HTML file (`RUN/eval/STEP/index.html`) a person can open anywhere.

It shows the run's config, its train loss from metrics.jsonl with the loss of every eval so far,
CIDEr-D over steps (eval/history.jsonl grows by one line per `vlcurate eval`), and sample captions
beside their images and references. Images are thumbnails and plots PNGs, both inlined as base64:
no file beside the page, no network, no script. Captions are untrusted web text: every piece of
text goes through html.escape. The page stays small: at most MAX_ROWS samples, thumbnails of at
most THUMB pixels a side.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import yaml

from filters.image_checks import ImageProblem
from manifests.shard_format import decode_image

MAX_ROWS = 48
THUMB = 160

_STYLE = """body{font-family:sans-serif;margin:1.5em;max-width:72em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
.warn{background:#fde2c8;border:2px solid #d9822b;padding:.6em 1em;font-weight:bold}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:85%}img.plot{max-width:100%}"""


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a line cut short by a kill mid-write is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def thumbnail(data: bytes) -> str | None:
    """A JPEG thumbnail as a data: URI, or None for bytes PIL cannot read."""
    try:
        image = decode_image(data)  # as training saw it: upright, 16-bit greys scaled, pixel count checked
        if isinstance(image, ImageProblem):
            return None
        image.thumbnail((THUMB, THUMB))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    except Exception:  # the sample decoded for training, but a page must not fail on one image
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _by_step(points: list[tuple[int, float]]) -> tuple[list[int], list[float]]:
    latest = dict(points)  # points in the order they were written: a step evaluated twice keeps its last value
    steps = sorted(latest)
    return steps, [latest[s] for s in steps]


def _series(history: list[dict], metric: str) -> dict[str, tuple[list[int], list[float]]]:
    """One series per (split, beams, whole split or not) among the recorded evals, each step once (the
    latest eval of it)."""
    grouped: dict[str, list[tuple[int, float]]] = {}
    for record in history:
        if isinstance(record.get("step"), int) and isinstance(record.get(metric), (int, float)):
            label = f"eval on {record.get('split', '?')}, beams {record.get('beams', 1)}"
            label += ", whole split" if record.get("whole_split") else ""  # not comparable with sampled batches
            grouped.setdefault(label, []).append((record["step"], float(record[metric])))
    return {label: _by_step(points) for label, points in grouped.items()}


def _plot(title: str, ylabel: str, lines: dict[str, tuple[list[int], list[float]]]) -> str:
    """A PNG data: URI. matplotlib's Figure without pyplot: no global backend or state is touched."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.4, 3.2), dpi=80)
    axes = figure.subplots()
    for label, (steps, values) in lines.items():
        axes.plot(steps, values, marker="o" if len(steps) < 50 else None, markersize=3, label=label)
    axes.set_title(title)
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if lines:
        axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _curves(metrics: list[dict], history: list[dict]) -> str:
    train = _by_step([(r["step"], float(r["loss"])) for r in metrics
                      if isinstance(r.get("step"), int) and isinstance(r.get("loss"), (int, float))])
    losses = {"train (metrics.jsonl)": train, **_series(history, "loss")} if train[0] else _series(history, "loss")
    cider = _series(history, "cider_d")
    parts = [f"<img class=plot alt='loss over steps' src='{_plot('loss', 'loss per caption token', losses)}'>"]
    if cider:
        parts.append(f"<img class=plot alt='CIDEr-D over steps' src='{_plot('CIDEr-D', 'CIDEr-D', cider)}'>")
    if not train[0]:
        parts.append("<p>metrics.jsonl has no training loss for this run.</p>")
    return "\n".join(parts)


def _rows(rows: list[dict], per: dict[str, float]) -> str:
    cells = []
    for r in rows[:MAX_ROWS]:
        uri = thumbnail(r["image"])
        image = f"<img src='{uri}' alt='sample {html.escape(r['key'])}'>" if uri else "(image unreadable)"
        references = "<br>".join(html.escape(ref) for ref in r["references"])
        cells.append(f"<tr><td>{image}</td><td>{html.escape(r['generated'])}</td><td>{references}</td>"
                     f"<td>{per[r['key']]:.3f}</td></tr>")
    shown = f"the first {MAX_ROWS} of {len(rows)}" if len(rows) > MAX_ROWS else f"all {len(rows)}"
    return (f"<p>{shown} samples</p><table><tr><th>image</th><th>generated</th><th>reference</th>"
            f"<th>CIDEr-D</th></tr>{''.join(cells)}</table>")


def render(result: dict, rows: list[dict], per: dict[str, float], run_config: dict, config_note: str,
           metrics: list[dict], history: list[dict]) -> str:
    """The whole page. rows: {key, generated, references (list), image (bytes as stored)}."""
    e = html.escape
    warning = f"<p class=warn>{e(result['warning'])}</p>" if result.get("warning") else ""
    scores = "".join(f"<tr><th>{e(k)}</th><td>{e(f'{v:.4f}' if isinstance(v, float) else str(v))}</td></tr>"
                     for k, v in result.items() if k != "warning")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>vlcurate eval: step {e(str(result['step']))}"
            f"</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>Eval of step {e(str(result['step']))} on {e(result['split'])}</h1>{warning}\n"
            f"<table>{scores}</table>\n<h2>Curves</h2>\n{_curves(metrics, history)}\n"
            f"<h2>Samples</h2>\n{_rows(rows, per)}\n"
            f"<h2>Config</h2><p>{e(config_note)}</p><pre>{e(yaml.safe_dump(run_config, sort_keys=False))}</pre>\n"
            "</body></html>\n")
