"""Normalized 1D distributions, truth against model, with statistical bands and pull and/or ratio panels.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_distribution("x", rng.normal(size=1000), rng.normal(size=1000))
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

import mplhep
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mlegpipe.metrics.histograms import edges_for, histogram
from mlegpipe.observables import Observable, resolve
from mlegpipe.plots._style import MODEL_COLOR, REFERENCE_COLOR, new_figure, styled

__all__ = ["axis_label", "flat_like", "normalized", "plot_distribution"]


def axis_label(name: str, observable: Observable | None = None) -> str:
    """The axis label of an observable: its registered label and unit, else its name.

    Example:
        >>> axis_label("Q2"), axis_label("my_field")
        ('$Q^2$ [GeV$^2$]', 'my_field')
    """
    return (observable or resolve(name)).axis_label


def normalized(
    values: np.ndarray,
    edges: np.ndarray,
    weights: np.ndarray | None = None,
    log: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Probability density (integral 1 over the bins) and its statistical error per bin.

    Per unit of the variable, or per unit of log10 of it with ``log``.

    Example:
        >>> d, e = normalized(np.array([0.5, 1.5]), np.array([0.0, 1.0, 2.0]))
        >>> d.tolist()
        [0.5, 0.5]
    """
    h = histogram(values, edges, weights)
    total = h.values().sum()
    widths = np.diff(np.log10(edges)) if log else np.diff(edges)
    if total <= 0:
        return np.zeros(len(widths)), np.zeros(len(widths))
    return h.values() / total / widths, np.sqrt(h.variances()) / total / widths


_PHI_NAME = re.compile(r"(^|_)phi\d*$", re.IGNORECASE)


def flat_like(observable: Observable) -> bool:
    """True for φ-like observables, flat over [−π, π]: declared ``periodic``, or named ``phi`` / ``..._phi``.

    Their density is drawn on a linear axis: on a log one a flat distribution's deviations look negligible.
    Differences of angles (``deltaphi``) are not flat and are not matched by name.

    Example:
        >>> from mlegpipe.observables import Observable
        >>> [flat_like(Observable(n, lambda b: b)) for n in ("lepton_phi", "phi", "jets2_phi", "deltaphi", "Q2")]
        [True, True, True, False, False]
    """
    return observable.periodic or _PHI_NAME.search(observable.name) is not None


def _ratio_panel(ax: Axes, centers: np.ndarray, edges: np.ndarray, ref: tuple[np.ndarray, np.ndarray],
                 mod: tuple[np.ndarray, np.ndarray], labels: tuple[str, str]) -> None:
    """Model/reference with the model's error, over the reference's relative statistical band around 1."""
    (ref_d, ref_e), (mod_d, mod_e) = ref, mod
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref_d > 0, mod_d / ref_d, np.nan)
        err = np.where(ref_d > 0, mod_e / ref_d, np.nan)
        band = np.where(ref_d > 0, ref_e / ref_d, np.nan)
    ax.errorbar(centers, ratio, yerr=err, fmt="o", color=MODEL_COLOR, markersize=3)
    ax.stairs(1 + np.nan_to_num(band), edges, baseline=1 - np.nan_to_num(band), fill=True, color="grey",
              alpha=0.35, linewidth=0, label=f"{labels[0]} stat.")
    ax.axhline(1.0, color="grey", linewidth=1)
    ax.set_ylabel("ratio", fontsize=11)
    spread = np.abs(np.concatenate([ratio - 1 + err, ratio - 1 - err, band]))
    spread = spread[np.isfinite(spread)]
    half = float(np.clip(1.15 * np.quantile(spread, 0.95), 0.1, 1.0)) if spread.size else 0.5
    ax.set_ylim(1 - half, 1 + half)


def _pull_panel(ax: Axes, centers: np.ndarray, ref: tuple[np.ndarray, np.ndarray],
                mod: tuple[np.ndarray, np.ndarray]) -> None:
    """(model − reference)/√(σ²_model + σ²_reference) per bin, with the 0 and ±1 lines."""
    (ref_d, ref_e), (mod_d, mod_e) = ref, mod
    sigma = np.sqrt(mod_e**2 + ref_e**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        pull = np.where(sigma > 0, (mod_d - ref_d) / sigma, np.nan)
    ax.plot(centers, pull, "o", color=MODEL_COLOR, markersize=3)
    for level, style in ((0, "-"), (1, ":"), (-1, ":")):
        ax.axhline(level, color="grey", linestyle=style, linewidth=1)
    ax.set_ylabel("pull", fontsize=11)
    finite = pull[np.isfinite(pull)]
    lim = max(3.0, float(np.abs(finite).max()) * 1.1) if finite.size else 3.0
    ax.set_ylim(-min(lim, 10.0), min(lim, 10.0))


def plot_distribution(
    name: str,
    reference: np.ndarray,
    model: np.ndarray,
    edges: np.ndarray | None = None,
    reference_weights: np.ndarray | None = None,
    model_weights: np.ndarray | None = None,
    labels: tuple[str, str] = ("truth", "model"),
    panel: Literal["pull", "ratio", "both"] = "pull",
    extra: Mapping[str, np.ndarray] | None = None,
    log_y: bool | None = None,
    observable: Observable | None = None,
) -> Figure:
    """Normalized distributions of one feature: reference as points, model as a band; pulls and/or ratio below.

    Arguments:
        name: observable name (registered observables get their axis label, log axis if declared).
        reference, model: the values; weights optional.
        edges: bin edges (default: 50 bins over both samples, log for observables declared log).
        labels: legend labels of reference and model.
        panel: lower panel: ``"pull"`` = (model − ref)/√(σ²_model + σ²_ref), ``"ratio"`` = model/ref with
            the model's error over the reference's statistical band, or ``"both"`` (ratio, then pulls).
        extra: more samples drawn as lines (baselines), label → values.
        log_y: logarithmic density axis (rare regions visible); default: log, except for φ-like observables
            (:func:`flat_like`), whose flat density is drawn on a linear axis.
        observable: the observable (default: :func:`mlegpipe.observables.resolve` of ``name``).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> fig = plot_distribution("lepton_phi", rng.uniform(-3, 3, 1000), rng.uniform(-3, 3, 1000), panel="both")
        >>> len(fig.axes), fig.axes[0].get_yscale(), [a.get_ylabel() for a in fig.axes[1:]]
        (3, 'linear', ['ratio', 'pull'])
    """
    observable = observable or resolve(name)
    if panel not in ("pull", "ratio", "both"):
        raise ValueError(f"panel must be 'pull', 'ratio' or 'both', not {panel!r}")
    reference = np.asarray(reference, dtype=np.float64)
    model = np.asarray(model, dtype=np.float64)
    log_x = observable.log and not observable.periodic and reference.min() > 0 and (edges is None or edges[0] > 0)
    if edges is None:
        edges = edges_for([reference, model[model > 0] if log_x else model], bins=50, log=log_x)
    if log_y is None:
        log_y = not flat_like(observable)
    ref = normalized(reference, edges, reference_weights, log_x)
    mod = normalized(model, edges, model_weights, log_x)
    (ref_d, ref_e), (mod_d, mod_e) = ref, mod
    lower = ["ratio", "pull"] if panel == "both" else [panel]
    with styled():
        fig, axes = new_figure(1 + len(lower), 1, figsize=(6.4, 6.0 + 1.4 * (len(lower) - 1)), sharex=True,
                               gridspec_kw={"height_ratios": [3] + [1] * len(lower)})
        ax = axes[0]
        mplhep.histplot(mod_d, edges, ax=ax, color=MODEL_COLOR, label=labels[1], histtype="step")
        ax.stairs(mod_d + mod_e, edges, baseline=np.clip(mod_d - mod_e, 0, None), fill=True,
                  color=MODEL_COLOR, alpha=0.3, linewidth=0)
        mplhep.histplot(ref_d, edges, yerr=ref_e, ax=ax, color=REFERENCE_COLOR, label=labels[0],
                        histtype="errorbar", markersize=3)
        for label, values in (extra or {}).items():
            d, _ = normalized(np.asarray(values, dtype=np.float64), edges, log=log_x)
            mplhep.histplot(d, edges, ax=ax, label=label, histtype="step", linestyle="--")
        ax.set_ylabel("density per decade" if log_x else "normalized density")
        if log_y and (ref_d > 0).any():
            ax.set_yscale("log")
            ax.set_ylim(bottom=0.5 * ref_d[ref_d > 0].min())
        else:
            ax.set_ylim(bottom=0.0)
        ax.legend()
        centers = 0.5 * (edges[1:] + edges[:-1])
        for low, kind in zip(axes[1:], lower, strict=True):
            if kind == "ratio":
                _ratio_panel(low, centers, edges, ref, mod, labels)
            else:
                _pull_panel(low, centers, ref, mod)
        axes[-1].set_xlabel(observable.axis_label)
        if log_x:
            ax.set_xscale("log")
    return fig
