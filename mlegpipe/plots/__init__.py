"""Physics plots of a run (mplhep style, Agg canvases, PNG and PDF): distributions, 2D maps, detector, unfolding, training.

Example:
    >>> import numpy as np
    >>> from mlegpipe.plots import plot_distribution, png_bytes
    >>> rng = np.random.default_rng(0)
    >>> png_bytes(plot_distribution("a", rng.normal(size=500), rng.normal(size=500)))[:4] == b"\\x89PNG"
    True
"""

from mlegpipe.plots._style import (
    STYLE,
    label_figure,
    new_figure,
    pdf_bytes,
    png_bytes,
    process_label,
    run_label,
    save_figure,
    save_png,
    styled,
)
from mlegpipe.plots.amplification import plot_amplification
from mlegpipe.plots.conditional import conditional_kl, energy_regime, plot_conditional
from mlegpipe.plots.detector import plot_resolution, resolution_profile
from mlegpipe.plots.distributions import axis_label, flat_like, normalized, plot_distribution
from mlegpipe.plots.pairs import plot_pair
from mlegpipe.plots.training import history_columns, plot_history
from mlegpipe.plots.unfolding import plot_unfolding, plot_unfolding_bands, plot_unfolding_info

__all__ = [
    "STYLE",
    "axis_label",
    "conditional_kl",
    "energy_regime",
    "flat_like",
    "history_columns",
    "label_figure",
    "new_figure",
    "normalized",
    "pdf_bytes",
    "plot_amplification",
    "plot_conditional",
    "plot_distribution",
    "plot_history",
    "plot_pair",
    "plot_resolution",
    "plot_unfolding",
    "plot_unfolding_bands",
    "plot_unfolding_info",
    "png_bytes",
    "process_label",
    "resolution_profile",
    "run_label",
    "save_figure",
    "save_png",
    "styled",
]
