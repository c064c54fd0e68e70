"""Quantile MSE against the number of events, for true samples and a generator (GANplifying Fig. 2).

Example:
    >>> import numpy as np
    >>> from mlegpipe.metrics.amplification import amplification
    >>> out = amplification(np.random.default_rng(0).random(5000), np.linspace(0, 1, 11), n_train=100)
    >>> len(plot_amplification(out).axes)
    1
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from mlegpipe.metrics.amplification import expected_sample_mse
from mlegpipe.plots._style import MODEL_COLOR, REFERENCE_COLOR, new_figure, styled

__all__ = ["plot_amplification"]


def plot_amplification(result: Mapping[str, Any], label: str = "generator") -> Figure:
    """Log-log quantile MSE vs n: the true-sample expectation (1/N_q)(1 - 1/N_q)/n, the generator's
    measured MSE with errors, its fitted asymptote, and the training size marked.

    ``result`` is the dict of :func:`mlegpipe.metrics.amplification.amplification`.
    """
    n_q, n_train = int(result["n_quantiles"]), int(result["n_train"])
    sizes = np.asarray(result["sizes"], dtype=np.float64)
    mse = np.asarray(result["mse"], dtype=np.float64)
    err = np.asarray(result["mse_err"], dtype=np.float64)
    a = float(result["asymptotic_mse"])
    n_axis = np.geomspace(min(sizes.min(), n_train) / 2, max(sizes.max(), result["equivalent_events"]
                                                            if np.isfinite(result["equivalent_events"]) else 1) * 2, 200)
    with styled():
        fig, ax = new_figure()
        ax.plot(n_axis, expected_sample_mse(n_axis, n_q), color=REFERENCE_COLOR, label="true samples (expected)")
        ax.errorbar(sizes, mse, yerr=err, fmt="o", color=MODEL_COLOR, markersize=4, label=label)
        if a > 0:
            ax.plot(n_axis, a + expected_sample_mse(n_axis, n_q), color=MODEL_COLOR, linestyle=":",
                    label="fit $a + b/n$")
            ax.axhline(a, color=MODEL_COLOR, linestyle="--", linewidth=1,
                       label=f"asymptote: {result['equivalent_events']:.0f} true events")
        ax.axvline(n_train, color="grey", linestyle="-.", linewidth=1, label=f"training: {n_train} events")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of events n")
        ax.set_ylabel(f"quantile MSE ({n_q} quantiles)")
        ax.set_title(f"amplification = {result['amplification']:.2f}", fontsize=12)
        ax.legend(fontsize=9)
    return fig
