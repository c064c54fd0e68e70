"""Normalized 1D distributions, truth against model, with statistical bands and a pull or ratio panel.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_distribution("x", rng.normal(size=1000), rng.normal(size=1000))
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import mplhep
import numpy as np
from matplotlib.figure import Figure

from mlegpipe.metrics.histograms import edges_for, histogram
from mlegpipe.observables import Observable, resolve
from mlegpipe.plots._style import MODEL_COLOR, REFERENCE_COLOR, new_figure, styled

__all__ = ["axis_label", "normalized", "plot_distribution"]


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


def plot_distribution(
    name: str,
    reference: np.ndarray,
    model: np.ndarray,
    edges: np.ndarray | None = None,
    reference_weights: np.ndarray | None = None,
    model_weights: np.ndarray | None = None,
    labels: tuple[str, str] = ("truth", "model"),
    panel: Literal["pull", "ratio"] = "pull",
    extra: Mapping[str, np.ndarray] | None = None,
    log_y: bool = True,
    observable: Observable | None = None,
) -> Figure:
    """Normalized distributions of one feature: reference as points, model as a band; pulls or ratio below.

    Arguments:
        name: observable name (registered observables get their axis label, log axis if declared).
        reference, model: the values; weights optional.
        edges: bin edges (default: 50 bins over both samples, log for observables declared log).
        labels: legend labels of reference and model.
        panel: lower panel, ``"pull"`` = (model - ref)/√(σ²_model + σ²_ref) or ``"ratio"`` = model/ref.
        extra: more samples drawn as lines (baselines), label → values.
        log_y: logarithmic density axis (rare regions visible).
        observable: the observable (default: :func:`mlegpipe.observables.resolve` of ``name``).
    """
    observable = observable or resolve(name)
    reference = np.asarray(reference, dtype=np.float64)
    model = np.asarray(model, dtype=np.float64)
    log_x = observable.log and not observable.periodic and reference.min() > 0 and (edges is None or edges[0] > 0)
    if edges is None:
        edges = edges_for([reference, model[model > 0] if log_x else model], bins=50, log=log_x)
    ref_d, ref_e = normalized(reference, edges, reference_weights, log_x)
    mod_d, mod_e = normalized(model, edges, model_weights, log_x)
    with styled():
        fig, (ax, low) = new_figure(2, 1, figsize=(6.4, 6.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
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
        ax.legend()
        centers = 0.5 * (edges[1:] + edges[:-1])
        with np.errstate(divide="ignore", invalid="ignore"):
            if panel == "ratio":
                ratio = np.where(ref_d > 0, mod_d / ref_d, np.nan)
                err = np.where(ref_d > 0, np.sqrt(mod_e**2 + (ratio * ref_e) ** 2) / ref_d, np.nan)
                low.errorbar(centers, ratio, yerr=err, fmt="o", color=MODEL_COLOR, markersize=3)
                low.axhline(1.0, color="grey", linewidth=1)
                low.set_ylabel(f"{labels[1]}/{labels[0]}")
                low.set_ylim(0.5, 1.5)
            else:
                sigma = np.sqrt(mod_e**2 + ref_e**2)
                pull = np.where(sigma > 0, (mod_d - ref_d) / sigma, np.nan)
                low.plot(centers, pull, "o", color=MODEL_COLOR, markersize=3)
                for level, style in ((0, "-"), (1, ":"), (-1, ":")):
                    low.axhline(level, color="grey", linestyle=style, linewidth=1)
                low.set_ylabel("pull")
                finite = pull[np.isfinite(pull)]
                lim = max(3.0, float(np.abs(finite).max()) * 1.1) if finite.size else 3.0
                low.set_ylim(-min(lim, 10.0), min(lim, 10.0))
        low.set_xlabel(observable.axis_label)
        if log_x:
            ax.set_xscale("log")
    return fig
