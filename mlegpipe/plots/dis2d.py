"""Q²–x maps of truth and model side by side, with the kinematic limit and the Q² cut drawn.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, q2 = 10 ** rng.uniform(-3, 0, 2000), 10 ** rng.uniform(0, 2, 2000)
    >>> len(plot_q2x(x, q2, x, q2).axes)  # two maps and a colour bar
    3
"""

from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from mlegpipe.beams import Beams
from mlegpipe.metrics.histograms import edges_for, histogram2d
from mlegpipe.plots._style import new_figure, styled

__all__ = ["plot_q2x"]


def plot_q2x(
    reference_x: np.ndarray,
    reference_q2: np.ndarray,
    model_x: np.ndarray,
    model_q2: np.ndarray,
    beams: Beams | None = None,
    q2_min: float | None = None,
    labels: tuple[str, str] = ("truth", "model"),
    bins: int = 49,
) -> Figure:
    """Two log-log Q²–x maps (normalized event density, common colour scale).

    Drawn on both: the kinematic limit Q² = x (s - M²) (y = 1) when ``beams``
    are given, and the Q² cut when ``q2_min`` is given. Non-positive values are
    left out (they are counted by the physicality metric).
    """
    def positive(x: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, q = np.asarray(x, dtype=np.float64), np.asarray(q, dtype=np.float64)
        ok = (x > 0) & (q > 0) & np.isfinite(x) & np.isfinite(q)
        return x[ok], q[ok]

    rx, rq = positive(reference_x, reference_q2)
    mx, mq = positive(model_x, model_q2)
    x_edges = edges_for([rx, mx], bins=bins, log=True, quantiles=(0.0, 1.0))
    q_edges = edges_for([rq, mq], bins=bins, log=True, quantiles=(0.0, 1.0))
    maps = []
    for x, q in ((rx, rq), (mx, mq)):
        counts = histogram2d(x, q, x_edges, q_edges).values()
        maps.append(counts / max(counts.sum(), 1.0))
    positive_values = np.concatenate([m[m > 0] for m in maps])
    norm = LogNorm(vmin=positive_values.min(), vmax=positive_values.max()) if positive_values.size else None
    with styled():
        fig, axes = new_figure(1, 2, figsize=(11.5, 4.8), sharey=True)
        for ax, m, label in zip(axes, maps, labels, strict=True):
            mesh = ax.pcolormesh(x_edges, q_edges, np.where(m > 0, m, np.nan).T, norm=norm, cmap="viridis")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(r"$x_{bj}$")
            ax.set_title(label, fontsize=13)
            xs = np.geomspace(x_edges[0], x_edges[-1], 200)
            if beams is not None:
                ax.plot(xs, xs * (beams.s - beams.hadron_mass**2), color="red", linewidth=1.5, label=r"$y = 1$")
            if q2_min is not None:
                ax.axhline(q2_min, color="white", linestyle="--", linewidth=1.5, label=rf"$Q^2 = {q2_min:g}$")
            ax.set_xlim(x_edges[0], x_edges[-1])
            ax.set_ylim(q_edges[0], q_edges[-1])
            if beams is not None or q2_min is not None:
                ax.legend(loc="upper left", fontsize=10, frameon=True)
        axes[0].set_ylabel(r"$Q^2$ [GeV$^2$]")
        fig.colorbar(mesh, ax=axes, label="fraction of events")
    return fig
