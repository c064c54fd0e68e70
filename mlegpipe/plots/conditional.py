"""Per-beam-energy distributions of a conditional model, with KL per energy (trained / interpolated / extrapolated).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = {10.0: rng.normal(10, 1, 2000), 15.0: rng.normal(15, 1, 2000)}
    >>> energy_regime(15.0, [10.0, 20.0]), energy_regime(60.0, [10.0, 20.0])
    ('interpolated', 'extrapolated')
    >>> sorted(conditional_kl(ref, ref, [10.0]).items())[0][1]["kl"]
    0.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mplhep
import numpy as np
from matplotlib.figure import Figure

from mlegpipe.metrics.distances import kl_divergence
from mlegpipe.metrics.histograms import edges_for, histogram
from mlegpipe.plots._style import MODEL_COLOR, REFERENCE_COLOR, new_figure, styled
from mlegpipe.plots.distributions import axis_label, normalized

__all__ = ["conditional_kl", "energy_regime", "plot_conditional"]

_REGIME_COLORS = {"trained": "#2a9d3f", "interpolated": "#1f6fb4", "extrapolated": "#c0392b"}


def energy_regime(energy: float, trained: Sequence[float], tol: float = 1e-6) -> str:
    """``trained`` if ``energy`` is a training energy, ``interpolated`` inside their range, else ``extrapolated``."""
    trained = sorted(float(e) for e in trained)
    if any(abs(energy - e) <= tol * max(1.0, abs(e)) for e in trained):
        return "trained"
    if trained and trained[0] <= energy <= trained[-1]:
        return "interpolated"
    return "extrapolated"


def conditional_kl(
    reference: Mapping[float, np.ndarray],
    model: Mapping[float, np.ndarray],
    trained: Sequence[float],
    bins: int = 50,
) -> dict[float, dict[str, Any]]:
    """KL(truth ‖ model) of one feature per beam energy (binned as in :func:`~mlegpipe.metrics.kl_divergence`).

    Returns:
        energy → {"kl", "regime", "n_reference", "n_model"} for energies present in both.
    """
    out: dict[float, dict[str, Any]] = {}
    for energy in sorted(set(reference) & set(model)):
        ref, mod = np.asarray(reference[energy]), np.asarray(model[energy])
        edges = edges_for([ref, mod], bins=bins)
        out[energy] = {"kl": kl_divergence(histogram(ref, edges).values(), histogram(mod, edges).values()),
                       "regime": energy_regime(energy, trained), "n_reference": int(ref.size),
                       "n_model": int(mod.size)}
    return out


def plot_conditional(
    name: str,
    reference: Mapping[float, np.ndarray],
    model: Mapping[float, np.ndarray],
    trained: Sequence[float],
    bins: int = 50,
    ncols: int = 4,
) -> Figure:
    """One panel per beam energy: truth points and model line, titled with E_b, regime and KL."""
    kls = conditional_kl(reference, model, trained, bins)
    energies = list(kls)
    n = max(len(energies), 1)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    with styled():
        fig, axes = new_figure(nrows, ncols, figsize=(3.6 * ncols, 3.2 * nrows), squeeze=False)
        for ax in axes.flat[len(energies):]:
            ax.set_visible(False)
        for ax, energy in zip(axes.flat, energies, strict=False):
            ref, mod = np.asarray(reference[energy]), np.asarray(model[energy])
            edges = edges_for([ref], bins=bins)
            rd, re = normalized(ref, edges)
            md, _ = normalized(mod, edges)
            mplhep.histplot(rd, edges, yerr=re, ax=ax, histtype="errorbar", color=REFERENCE_COLOR,
                            markersize=2, label="truth")
            mplhep.histplot(md, edges, ax=ax, color=MODEL_COLOR, label="model")
            info = kls[energy]
            ax.set_title(f"$E_b$ = {energy:g} GeV, {info['regime']}\nKL = {info['kl']:.2e}", fontsize=10,
                         color=_REGIME_COLORS[info["regime"]])
            ax.set_xlabel(axis_label(name), fontsize=10)
            ax.tick_params(labelsize=8)
        if energies:
            axes.flat[0].legend(fontsize=8)
    return fig
