"""Training curves: losses and the tracked validation metric against the training step.

Example:
    >>> hist = [{"step": s, "loss_d": 1.0 / s, "metric": 2.0 / s} for s in range(1, 50)]
    >>> len(plot_history(hist).axes)
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mlegpipe.plots._style import new_figure, styled

__all__ = ["history_columns", "plot_history"]


def history_columns(history: Any) -> dict[str, np.ndarray]:
    """Normalize a training history to columns: ``step`` and one array per numeric key (NaN where missing).

    Accepts a list of per-step dicts (:class:`~mlegpipe.training.loop.TrainLoop`),
    a dict of lists, or a dict holding a list of per-step dicts (under
    ``"history"``, ``"steps"`` or another key, as generators' ``fit`` return it).

    Example:
        >>> history_columns([{"step": 1, "loss": 0.5}, {"step": 2}])["loss"].tolist()
        [0.5, nan]
    """
    if isinstance(history, Mapping):
        nested = [history[k] for k in ("history", "steps") if k in history] + [
            v for v in history.values() if isinstance(v, list) and v and all(isinstance(r, Mapping) for r in v)]
        if nested:
            history = nested[0]
    if isinstance(history, Mapping):
        cols = {k: np.asarray(v, dtype=np.float64) for k, v in history.items()
                if isinstance(v, Sequence) and not isinstance(v, str) and all(isinstance(x, int | float) for x in v)}
        if not cols:
            return {}
        n = max(len(v) for v in cols.values())
        cols.setdefault("step", np.arange(1, n + 1, dtype=np.float64))
        return cols
    rows = [r for r in (history or []) if isinstance(r, Mapping)]
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    cols = {k: np.array([float(r.get(k, np.nan)) if isinstance(r.get(k), int | float) else np.nan for r in rows])
            for k in keys}
    if rows and "step" not in cols:
        cols["step"] = np.arange(1, len(rows) + 1, dtype=np.float64)
    return cols


def plot_history(history: Any, title: str = "", metric_keys: Sequence[str] = ("metric", "valid_metric")) -> Figure:
    """Losses (top) and the validation metric (bottom, log scale when positive) against the step."""
    cols = history_columns(history)
    steps = cols.pop("step", np.array([]))
    metrics = {k: cols.pop(k) for k in list(cols) if k in metric_keys or k.startswith("val")}
    for aux in ("lr", "time", "seconds", "epoch"):
        cols.pop(aux, None)
    with styled():
        fig, (top, bottom) = new_figure(2, 1, figsize=(6.4, 6.0), sharex=True)
        for key, values in cols.items():
            ok = np.isfinite(values)
            if ok.any():
                top.plot(steps[ok], values[ok], label=key, linewidth=1)
        top.set_ylabel("loss")
        if top.lines:
            top.legend(fontsize=9)
        positive = True
        for key, values in metrics.items():
            ok = np.isfinite(values)
            if ok.any():
                bottom.plot(steps[ok], values[ok], "o-", markersize=3, label=key)
                positive &= bool((values[ok] > 0).all())
        if bottom.lines:
            bottom.legend(fontsize=9)
            if positive:
                bottom.set_yscale("log")
        bottom.set_ylabel("validation metric")
        bottom.set_xlabel("training step")
        if title:
            top.set_title(title, fontsize=12)
    return fig
