"""The benchmark suite: figures measured side by side in one run, one table, JSON results.

Every figure is a ratio of two rates (or sizes) measured in the same process
and run, so machines and loads can be compared: ``python -m benchmarks``
runs them all (see :mod:`benchmarks.__main__`); each ``bench_*.py`` also runs
on its own.

Example:
    >>> f = Figure("flow sampling", 2e5, "events/s", "pythia8 full DIS", 2e3, target="> 1")
    >>> round(f.ratio)
    100
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["RESULTS", "Figure", "format_table", "machine_info", "map_runs", "write_json"]

#: Where every benchmark writes its JSON.
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One measured figure beside its reference, measured in the same run.

    Attributes:
        name: what was measured.
        value: the measurement.
        unit: its unit (events/s, MB/s, samples/s, MB).
        reference: what it is compared with.
        reference_value: the reference measurement (same unit unless ``ratio`` is set).
        target: the goal, as text (``"≥ 0.5"``, ``"≤ 1.10"``), or empty.
        meets: whether the ratio meets the target (None: no target).
        ratio: value / reference_value unless given.
        note: a short remark (thread count, sample size, why a figure is missing).
        group: the benchmark the figure belongs to.
    """

    name: str
    value: float
    unit: str
    reference: str
    reference_value: float
    target: str = ""
    meets: bool | None = None
    ratio: float | None = None
    note: str = ""
    group: str = ""

    def __post_init__(self) -> None:
        if self.ratio is None:
            self.ratio = self.value / self.reference_value if self.reference_value else math.nan
        if self.meets is None and self.target:
            self.meets = _meets(self.ratio, self.target)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)


def _meets(ratio: float, target: str) -> bool | None:
    text = target.replace("≥", ">=").replace("≤", "<=").strip()
    for op in (">=", "<=", ">", "<"):
        if text.startswith(op):
            try:
                bound = float(text[len(op):])
            except ValueError:
                return None
            return {">=": ratio >= bound, "<=": ratio <= bound, ">": ratio > bound, "<": ratio < bound}[op]
    return None


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 1e6:
        return f"{x:.3g}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def format_table(figures: list[Figure]) -> str:
    """The figures as one fixed-width table.

    Example:
        >>> print(format_table([Figure("a", 2.0, "ev/s", "b", 1.0, target="> 1")]))
        figure   value  reference  ref. value  ratio  target   note
        -----------------------------------------------------------
        a       2 ev/s  b              1 ev/s      2  > 1 yes
    """
    rows = [("figure", "value", "reference", "ref. value", "ratio", "target", "note")]
    for f in figures:
        verdict = "" if f.meets is None else (" yes" if f.meets else " NO")
        rows.append((f.name, f"{_num(f.value)} {f.unit}", f.reference, f"{_num(f.reference_value)} {f.unit}",
                     _num(f.ratio), (f.target + verdict).strip(), f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, row in enumerate(rows):
        cells = [c.ljust(w) if i in (0, 2, 5, 6) else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                             strict=True))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """Python, torch, mlegpipe versions, CPU count and threads (for comparing runs)."""
    import os

    import torch

    from mlegpipe import __version__

    return {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "mlegpipe": __version__,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json``; return the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return path


def map_runs(fn: Any, items: list[Any], scheduler: str | None = None, workers: int = 2) -> list[Any]:
    """``[fn(item) for item in items]``, or one Dask task per item when ``scheduler`` is given.

    ``scheduler`` is ``"local"`` (a ``LocalCluster`` of ``workers`` single-threaded
    processes) or the address of a running scheduler (``tcp://host:8786``)
    (:func:`mlegpipe.processes.dask_map`). Results come back in the order of
    ``items``; repeated trainings (seeds) of a benchmark spread over a cluster this way.

    Example:
        >>> map_runs(abs, [-1, 2])
        [1, 2]
    """
    if scheduler is None:
        return [fn(item) for item in items]
    from mlegpipe.processes import dask_map

    return dask_map(fn, items, scheduler, workers, where="--dask")
