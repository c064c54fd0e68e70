"""2D correlation maps of a pair of observables, truth and model side by side, with a domain's overlay.

Example:
    >>> import numpy as np
    >>> from mlegpipe.observables import Pair
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=2000), rng.normal(size=2000)
    >>> len(plot_pair(Pair("a", "b"), (a, b), (a, b)).axes)  # two maps and a colour bar
    3
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from mlegpipe.beams import Beams
from mlegpipe.metrics.histograms import edges_for, histogram2d
from mlegpipe.observables import Pair, resolve
from mlegpipe.plots._style import new_figure, styled

__all__ = ["plot_pair"]


def plot_pair(
    pair: Pair,
    reference: tuple[np.ndarray, np.ndarray],
    model: tuple[np.ndarray, np.ndarray],
    beams: Beams | None = None,
    cuts: Mapping[str, Any] | None = None,
    labels: tuple[str, str] = ("truth", "model"),
    bins: int = 49,
) -> Figure:
    """Two maps of the pair's (x, y) values (normalized event density, common colour scale).

    Axes are logarithmic for observables declared log (non-positive values are
    then left out; physicality counts them) and linear otherwise (φ-like angles
    always). The pair's ``overlay`` draws domain lines on both maps (DIS: the
    kinematic limit y = 1 from ``beams`` and the Q² cut from ``cuts``).
    """
    obs_x, obs_y = resolve(pair.x), resolve(pair.y)
    logs = (obs_x.log and not obs_x.periodic, obs_y.log and not obs_y.periodic)

    def clean(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        ok = np.isfinite(x) & np.isfinite(y)
        if logs[0]:
            ok &= x > 0
        if logs[1]:
            ok &= y > 0
        return x[ok], y[ok]

    rx, ry = clean(*reference)
    mx, my = clean(*model)
    quantiles = (0.0, 1.0) if all(logs) else (0.0005, 0.9995)
    x_edges = edges_for([rx, mx], bins=bins, log=logs[0], quantiles=quantiles)
    y_edges = edges_for([ry, my], bins=bins, log=logs[1], quantiles=quantiles)
    maps = []
    for x, y in ((rx, ry), (mx, my)):
        counts = histogram2d(x, y, x_edges, y_edges).values()
        maps.append(counts / max(counts.sum(), 1.0))
    positive_values = np.concatenate([m[m > 0] for m in maps])
    norm = LogNorm(vmin=positive_values.min(), vmax=positive_values.max()) if positive_values.size else None
    with styled():
        fig, axes = new_figure(1, 2, figsize=(11.5, 4.8), sharey=True)
        mesh = None
        for ax, m, label in zip(axes, maps, labels, strict=True):
            mesh = ax.pcolormesh(x_edges, y_edges, np.where(m > 0, m, np.nan).T, norm=norm, cmap="viridis")
            if logs[0]:
                ax.set_xscale("log")
            if logs[1]:
                ax.set_yscale("log")
            ax.set_xlabel(obs_x.axis_label)
            ax.set_title(label, fontsize=13)
            ax.set_xlim(x_edges[0], x_edges[-1])
            ax.set_ylim(y_edges[0], y_edges[-1])
            if pair.overlay is not None:
                pair.overlay(ax, beams, dict(cuts or {}))
                ax.set_ylim(y_edges[0], y_edges[-1])
        axes[0].set_ylabel(obs_y.axis_label)
        fig.colorbar(mesh, ax=axes, label="fraction of events")
    return fig
