"""Unfolding closure plot: truth, detector-level data, unfolded mean ± std over replicas, baselines, pulls.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> t = rng.normal(size=5000)
    >>> fig = plot_unfolding("x1", t, t + rng.normal(0, 0.3, 5000), [rng.normal(size=5000) for _ in range(3)])
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import mplhep
import numpy as np
from matplotlib.figure import Figure

from mlegpipe.metrics.histograms import edges_for
from mlegpipe.metrics.pulls import pulls, replica_densities, replica_stats
from mlegpipe.plots._style import MODEL_COLOR, REFERENCE_COLOR, new_figure, save_figure, styled
from mlegpipe.plots.distributions import axis_label, normalized
from mlegpipe.unfold.coverage import Coverage, band_pulls, pooled_pulls, recorded_pulls

__all__ = ["plot_pull_distribution", "plot_unfolding", "plot_unfolding_bands", "plot_unfolding_info"]


def plot_unfolding(
    name: str,
    truth: np.ndarray,
    detector_data: np.ndarray | None,
    unfolded_replicas: Sequence[np.ndarray],
    baselines: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]] | None = None,
    edges: np.ndarray | None = None,
    truth_replicas: Sequence[np.ndarray] | None = None,
    unfolded_weights: np.ndarray | None = None,
) -> Figure:
    """Truth (points), detector-level data (dashed), unfolded mean ± std band over replicas; pulls below.

    The pull per bin is thesis eq. 29 with E and V of the unfolded replicas
    and, for the truth, the variance over ``truth_replicas`` when given, else
    its Poisson variance. With a single unfolded sample the band is its
    statistical error. ``baselines`` maps a label to values or (values, weights)
    (e.g. OmniFold's reweighted simulation); ``unfolded_weights`` weights a single unfolded sample
    (an unfolding that reweights the simulation).
    """
    truth = np.asarray(truth, dtype=np.float64)
    samples = [truth] + ([np.asarray(detector_data, dtype=np.float64)] if detector_data is not None else [])
    if edges is None:
        edges = edges_for(samples + [np.asarray(unfolded_replicas[0], dtype=np.float64)], bins=40)
    widths = np.diff(edges)
    t_d, t_e = normalized(truth, edges)
    if len(unfolded_replicas) > 1:
        u_mean, u_var = replica_stats(replica_densities(unfolded_replicas, edges))
        u_mean, u_std = u_mean / widths, np.sqrt(u_var) / widths
    else:
        u_mean, u_std = normalized(np.asarray(unfolded_replicas[0], dtype=np.float64), edges, unfolded_weights)
    if truth_replicas is not None and len(truth_replicas) > 1:
        _, t_var = replica_stats(replica_densities(truth_replicas, edges))
        t_sigma = np.sqrt(t_var) / widths
    else:
        t_sigma = t_e
    pull = pulls(u_mean, u_std**2, t_d, t_sigma**2)
    with styled():
        fig, (ax, low) = new_figure(2, 1, figsize=(6.4, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        ax.stairs(u_mean + u_std, edges, baseline=np.clip(u_mean - u_std, 0, None), fill=True,
                  color=MODEL_COLOR, alpha=0.35, linewidth=0, label="unfolded (mean ± std)")
        mplhep.histplot(u_mean, edges, ax=ax, color=MODEL_COLOR)
        mplhep.histplot(t_d, edges, yerr=t_e, ax=ax, histtype="errorbar", color=REFERENCE_COLOR,
                        markersize=3, label="truth")
        if detector_data is not None:
            d_d, _ = normalized(np.asarray(detector_data, dtype=np.float64), edges)
            mplhep.histplot(d_d, edges, ax=ax, color="grey", linestyle="--", label="detector-level data")
        for label, values in (baselines or {}).items():
            values, weights = values if isinstance(values, tuple) else (values, None)
            b_d, _ = normalized(np.asarray(values, dtype=np.float64), edges, weights)
            mplhep.histplot(b_d, edges, ax=ax, linestyle=":", label=label)
        ax.set_ylabel("normalized density")
        ax.legend(fontsize=10)
        centers = 0.5 * (edges[1:] + edges[:-1])
        low.plot(centers, pull, "o", color="red", markersize=3)
        for level, style in ((0, "-"), (1, ":"), (-1, ":")):
            low.axhline(level, color="grey", linestyle=style, linewidth=1)
        low.set_ylabel("pull")
        finite = pull[np.isfinite(pull)]
        lim = min(max(3.0, float(np.abs(finite).max()) * 1.1), 10.0) if finite.size else 3.0
        low.set_ylim(-lim, lim)
        low.set_xlabel(axis_label(name))
    return fig


def _band(band: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray] | None:
    if band is None:
        return None
    return np.asarray(band["mean"], dtype=np.float64), np.asarray(band["std"], dtype=np.float64)


def plot_unfolding_bands(
    name: str,
    edges: Sequence[float],
    unfolded: Mapping[str, Any],
    truth: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    unrecoverable: Sequence[int] | None = None,
) -> Figure:
    """The closure plot from binned bands: each band a mapping with per-bin ``mean`` and ``std``.

    Unfolded band (shaded), truth (points), detector-level data (dashed),
    baselines (dotted, e.g. IBU, OmniFold), bins the detector leaves
    unrecoverable (grey), and pulls of the unfolded band against the truth
    band (thesis eq. 29) below.

    Example:
        >>> b = {"mean": [0.2, 0.5, 0.3], "std": [0.01, 0.02, 0.01]}
        >>> len(plot_unfolding_bands("x", [0, 1, 2, 3], b, truth=b, unrecoverable=[0, 0, 1]).axes)
        2
    """
    edges = np.asarray(edges, dtype=np.float64)
    u_mean, u_std = _band(unfolded)  # type: ignore[misc]
    t = _band(truth)
    with styled():
        fig, (ax, low) = new_figure(2, 1, figsize=(6.4, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        for i, flag in enumerate(unrecoverable or []):
            if flag:
                for a in (ax, low):
                    a.axvspan(edges[i], edges[i + 1], color="grey", alpha=0.2, linewidth=0)
        ax.stairs(u_mean + u_std, edges, baseline=np.clip(u_mean - u_std, 0, None), fill=True,
                  color=MODEL_COLOR, alpha=0.35, linewidth=0, label="unfolded (mean ± std)")
        mplhep.histplot(u_mean, edges, ax=ax, color=MODEL_COLOR)
        if t is not None:
            mplhep.histplot(t[0], edges, yerr=t[1], ax=ax, histtype="errorbar", color=REFERENCE_COLOR,
                            markersize=3, label="truth")
        d = _band(data)
        if d is not None:
            mplhep.histplot(d[0], edges, ax=ax, color="grey", linestyle="--", label="detector-level data")
        for label, band in (baselines or {}).items():
            b = _band(band)
            if b is not None:
                mplhep.histplot(b[0], edges, ax=ax, linestyle=":", label=label)
        ax.set_ylabel("probability per bin")
        ax.legend(fontsize=10)
        if t is not None:
            pull = pulls(u_mean, u_std**2, t[0], t[1] ** 2)
            centers = 0.5 * (edges[1:] + edges[:-1])
            low.plot(centers, pull, "o", color="red", markersize=3)
            finite = pull[np.isfinite(pull)]
            lim = min(max(3.0, float(np.abs(finite).max()) * 1.1), 10.0) if finite.size else 3.0
            low.set_ylim(-lim, lim)
        for level, style in ((0, "-"), (1, ":"), (-1, ":")):
            low.axhline(level, color="grey", linestyle=style, linewidth=1)
        low.set_ylabel("pull")
        low.set_xlabel(axis_label(name))
    return fig


def plot_pull_distribution(pulls: Mapping[str, Sequence[float | None] | np.ndarray], title: str = "") -> Figure:
    """Histograms of pooled pulls (one per label) against N(0, 1), each labelled with its mean, standard
    deviation and fraction within ±1 (:class:`~mlegpipe.unfold.Coverage`); pulls beyond ±5 fill the end bins.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> len(plot_pull_distribution({"GAN": rng.normal(size=300), "IBU": [0.5, None]}).axes)
        1
    """
    edges = np.linspace(-5.0, 5.0, 41)
    z = np.linspace(-5.0, 5.0, 201)
    with styled():
        fig, ax = new_figure(figsize=(6.4, 4.4))
        for label, values in pulls.items():
            v = pooled_pulls([values])
            if v.size < 2:
                continue
            c = Coverage.of(v)
            ax.hist(np.clip(v, -4.99, 4.99), edges, density=True, histtype="step", linewidth=1.5,
                    label=f"{label} ({c.bins} bins): mean {c.mean:.2f}, std {c.std:.2f}, |pull| < 1 {c.covered:.0%}")
        ax.plot(z, np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi), "k--", linewidth=1, label="N(0, 1): std 1, 68%")
        ax.set_xlabel("pull")
        ax.set_ylabel("bins (normalized)")
        if title:
            ax.set_title(title, fontsize=11)
        ax.legend(fontsize=8)
    return fig


def plot_unfolding_info(info: Mapping[str, Any], folder: str | Path, prefix: str = "unfolding",
                        unfolded: str = "gan", pdf: bool = True) -> list[Path]:
    """Draw :func:`plot_unfolding_bands` for every observable in ``info["binned"]``; return the PNG files.

    Each figure is ``{prefix}__{observable}.png`` and, with ``pdf``, ``{prefix}__{observable}.pdf`` beside it.

    ``info["binned"][observable]`` holds ``edges``, the unfolded band (key ``unfolded``: ``gan``
    for ``gan-unfold``, ``ibu`` or ``omnifold`` for those unfoldings), ``truth``, ``data``, optional
    baselines (``ibu``, ``omnifold``) and ``unrecoverable`` flags, as the unfolding stages record them.
    """
    files = []
    for name, entry in (info.get("binned") or {}).items():
        if unfolded not in entry or "edges" not in entry:
            continue
        baselines = {label: entry[key] for key, label in (("ibu", "IBU"), ("omnifold", "OmniFold"))
                     if key in entry and key != unfolded}
        fig = plot_unfolding_bands(name, entry["edges"], entry[unfolded], entry.get("truth"), entry.get("data"),
                                   baselines, entry.get("unrecoverable"))
        files.append(save_figure(fig, Path(folder) / f"{prefix}__{name}.png", pdf=pdf)[0])
    binned = info.get("binned") or {}
    # the unfolded band's pulls as the stage recorded them (gan-unfold: with the surrogate's uncertainty)
    recorded = recorded_pulls(binned, f"{unfolded}_pulls")
    vertex = {"unfolded": recorded if recorded.size else band_pulls(binned, unfolded)}
    vertex.update({label: band_pulls(binned, band) for label, band in (("IBU", "ibu"), ("OmniFold", "omnifold"))
                   if band != unfolded})
    vertex = {k: v for k, v in vertex.items() if v.size > 1}
    if vertex:
        fig = plot_pull_distribution(vertex, "vertex level: recoverable bins of every observable")
        files.append(save_figure(fig, Path(folder) / f"{prefix}__pulls_vertex.png", pdf=pdf)[0])
    detector = recorded_pulls(binned, "refolded_pulls")
    if detector.size > 1:
        fig = plot_pull_distribution({"refolded vs data": detector}, "detector level: every observable")
        files.append(save_figure(fig, Path(folder) / f"{prefix}__pulls_detector.png", pdf=pdf)[0])
    return files
