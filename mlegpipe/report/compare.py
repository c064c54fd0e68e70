"""Two runs side by side: their metrics in one table (with the difference) and their plots in pairs.

Example:
    >>> flatten_metrics({"a": {"b": 1.0, "c": [1, 2]}, "d": "text"})
    {'a.b': 1.0}
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlegpipe.exceptions import OutputError
from mlegpipe.report.html import CSS, _fmt, _seed, load_run

__all__ = ["compare_runs", "flatten_metrics", "render_comparison"]


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested metrics as dotted keys (lists, strings and booleans left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def _img(path: Path | None) -> str:
    if path is None:
        return "<p class='meta'>(absent)</p>"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img style='max-width:100%' alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"


def render_comparison(run_a: Mapping[str, Any], run_b: Mapping[str, Any]) -> str:
    """The comparison page of two loaded runs (:func:`~mlegpipe.report.html.load_run`)."""
    name_a, name_b = run_a["run_dir"].name, run_b["run_dir"].name
    if name_a == name_b:
        name_a, name_b = str(run_a["run_dir"]), str(run_b["run_dir"])
    flat_a = flatten_metrics(run_a["metrics"].get("stages", run_a["metrics"]))
    flat_b = flatten_metrics(run_b["metrics"].get("stages", run_b["metrics"]))
    rows = []
    for key in sorted(set(flat_a) | set(flat_b)):
        a, b = flat_a.get(key), flat_b.get(key)
        diff = b - a if a is not None and b is not None else None
        show = _seed if key.rsplit(".", 1)[-1].endswith("seed") else _fmt  # seeds as typed: 1234567, not 1.235e+06
        rows.append(f"<tr><td class='name'>{html.escape(key)}</td><td>{show(a)}</td><td>{show(b)}</td>"
                    f"<td>{_fmt(diff)}</td></tr>")
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>compare {html.escape(name_a)} / {html.escape(name_b)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(name_a)} vs {html.escape(name_b)}</h1>",
             "<h2>Metrics</h2><table><tr><th class='name'>metric</th>"
             f"<th>{html.escape(name_a)}</th><th>{html.escape(name_b)}</th><th>B − A</th></tr>",
             "".join(rows), "</table>"]
    plots_a = {p.stem: p for p in sorted((run_a["run_dir"] / "plots").glob("*.png"))}
    plots_b = {p.stem: p for p in sorted((run_b["run_dir"] / "plots").glob("*.png"))}
    names = sorted(set(plots_a) | set(plots_b))
    if names:
        parts.append("<h2>Plots</h2><table style='width:100%'>"
                     f"<tr><th>{html.escape(name_a)}</th><th>{html.escape(name_b)}</th></tr>")
        for name in names:
            parts.append(f"<tr><td colspan='2' class='name'><b>{html.escape(name)}</b></td></tr>"
                         f"<tr><td style='width:50%'>{_img(plots_a.get(name))}</td>"
                         f"<td style='width:50%'>{_img(plots_b.get(name))}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def compare_runs(run_a: str | Path, run_b: str | Path, output: str | Path | None = None) -> Path:
    """Write the side-by-side page of two run folders (default ``compare.html`` in the current folder).

    Raises:
        DataError: a run folder or its ``metrics.json`` is missing.
        OutputError: the page cannot be written.
    """
    page = render_comparison(load_run(run_a), load_run(run_b))
    out = Path(output) if output is not None else Path("compare.html")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write the comparison: {err}", path=str(out)) from None
    return out
