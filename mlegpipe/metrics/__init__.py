"""Metrics comparing generated, folded or unfolded events with truth: distances, tests, targets.

Example:
    >>> import numpy as np
    >>> from mlegpipe.metrics import triangular_discriminator
    >>> triangular_discriminator(np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    0.0
"""

from mlegpipe.metrics.amplification import (
    amplification,
    amplification_factor,
    amplification_from_cells,
    asymptotic_mse,
    equivalent_events,
    expected_sample_mse,
    mse_curve,
    quantile_cells,
    quantile_mse,
)
from mlegpipe.metrics.classifier import classifier_auc
from mlegpipe.metrics.distances import (
    chi2_ndf,
    kl_divergence,
    mmd2,
    sample_chi2_ndf,
    sliced_wasserstein1,
    sorted_cdf,
    thesis_chi2,
    triangular_discriminator,
    wasserstein1,
)
from mlegpipe.metrics.evaluate import compare_feature, compare_joint, compare_samples, with_beams
from mlegpipe.metrics.histograms import edges_for, histogram, histogram2d, log_edges, quantile_edges
from mlegpipe.metrics.memorization import memorization_ratio, nearest_distances
from mlegpipe.metrics.pulls import bootstrap_densities, pulls, replica_densities, replica_stats
from mlegpipe.metrics.targets import TARGETS, evaluate_targets, summarize_targets

__all__ = [
    "TARGETS",
    "amplification",
    "amplification_factor",
    "amplification_from_cells",
    "asymptotic_mse",
    "bootstrap_densities",
    "chi2_ndf",
    "classifier_auc",
    "compare_feature",
    "compare_joint",
    "compare_samples",
    "edges_for",
    "equivalent_events",
    "evaluate_targets",
    "expected_sample_mse",
    "histogram",
    "histogram2d",
    "kl_divergence",
    "log_edges",
    "memorization_ratio",
    "mmd2",
    "mse_curve",
    "nearest_distances",
    "pulls",
    "quantile_cells",
    "quantile_edges",
    "quantile_mse",
    "replica_densities",
    "replica_stats",
    "sample_chi2_ndf",
    "sliced_wasserstein1",
    "sorted_cdf",
    "summarize_targets",
    "thesis_chi2",
    "triangular_discriminator",
    "wasserstein1",
    "with_beams",
]
