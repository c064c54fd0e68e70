"""Detector response: detector-level against vertex-level values, and bias and resolution versus the true value.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> v = rng.uniform(1, 10, 5000)
    >>> r = resolution_profile(v, v * (1 + 0.1 * rng.normal(size=v.size)), np.linspace(1, 10, 4), relative=True)
    >>> bool(np.allclose(r["resolution"], 0.1, atol=0.01))
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from mlegpipe.metrics.histograms import edges_for, histogram, histogram2d
from mlegpipe.plots._style import MODEL_COLOR, REFERENCE_COLOR, new_figure, styled
from mlegpipe.plots.distributions import axis_label

__all__ = ["plot_resolution", "resolution_profile"]

_SURROGATE_COLORS = ("#3f90da", "#bd1f01", "#94a4a2", "#832db6")


def resolution_profile(
    vertex: np.ndarray,
    detector: np.ndarray,
    edges: np.ndarray,
    relative: bool = False,
) -> dict[str, Any]:
    r"""Bias ⟨d - v⟩ and resolution σ(d - v) in bins of the vertex (true) value v.

    With ``relative`` the residual is (d - v)/v. Detector values of exactly 0
    are not-measured entries (eic-smear's zero fill) and are left out, as are
    non-finite ones. Bin sums go through ``hist``:
    mean = Σr/n, σ² = Σr²/n - mean².

    Returns:
        dict with ``centers``, ``bias``, ``resolution``, ``counts`` (NaN in empty bins).
    """
    vertex = np.asarray(vertex, dtype=np.float64)
    detector = np.asarray(detector, dtype=np.float64)
    ok = np.isfinite(vertex) & np.isfinite(detector) & (detector != 0) & ((vertex != 0) if relative else True)
    v, d = vertex[ok], detector[ok]
    residual = (d - v) / v if relative else d - v
    n = histogram(v, edges).values()
    s1 = histogram(v, edges, residual).values()
    s2 = histogram(v, edges, residual**2).values()
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n > 0, s1 / n, np.nan)
        var = np.where(n > 1, s2 / n - mean**2, np.nan)
    return {"centers": 0.5 * (edges[1:] + edges[:-1]), "bias": mean,
            "resolution": np.sqrt(np.clip(var, 0, None)), "counts": n}


def plot_resolution(
    name: str,
    vertex: np.ndarray,
    detector: np.ndarray,
    bins: int = 20,
    relative: bool | None = None,
    surrogate: np.ndarray | Mapping[str, np.ndarray] | None = None,
) -> Figure:
    """Left: detector vs vertex 2D histogram with the diagonal; right: bias and resolution vs the vertex value.

    ``surrogate`` (detector-level values of a learned surrogate for the same
    vertex events, or several by name) is profiled beside the reference
    detector. ``relative`` defaults to True for positive quantities.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> v = rng.uniform(1, 10, 1000)
        >>> fig = plot_resolution("lepton_E", v, v * rng.normal(1, 0.05, 1000), surrogate={"flowfold": v})
    """
    vertex = np.asarray(vertex, dtype=np.float64)
    detector = np.asarray(detector, dtype=np.float64)
    if relative is None:
        relative = bool(np.nanmin(vertex) > 0)
    edges = edges_for([vertex], bins=bins)
    label = axis_label(name)
    with styled():
        fig, (left, right) = new_figure(1, 2, figsize=(11.5, 4.8))
        fine = edges_for([vertex, detector], bins=60)
        h = histogram2d(vertex, detector, fine, fine).values()
        mesh = left.pcolormesh(fine, fine, np.where(h > 0, h, np.nan).T, norm=LogNorm(), cmap="viridis")
        left.plot(fine[[0, -1]], fine[[0, -1]], color="red", linewidth=1)
        left.set_xlabel(f"vertex {label}")
        left.set_ylabel(f"detector {label}")
        fig.colorbar(mesh, ax=left, label="events")
        rows = [("detector", detector, REFERENCE_COLOR)]
        learned = {"surrogate": surrogate} if isinstance(surrogate, np.ndarray) else dict(surrogate or {})
        colors = [MODEL_COLOR, *_SURROGATE_COLORS]
        for i, (tag, values) in enumerate(learned.items()):
            rows.append((tag, np.asarray(values, dtype=np.float64), colors[i % len(colors)]))
        for tag, values, color in rows:
            prof = resolution_profile(vertex, values, edges, relative)
            right.plot(prof["centers"], prof["resolution"], "o-", color=color, markersize=3,
                       label=f"{tag}: resolution")
            right.plot(prof["centers"], prof["bias"], "s--", color=color, markersize=3, alpha=0.7,
                       label=f"{tag}: bias")
        right.axhline(0, color="grey", linewidth=1)
        right.set_xlabel(f"vertex {label}")
        right.set_ylabel("relative residual (d - v)/v" if relative else "residual d - v")
        right.legend(fontsize=9)
    return fig
