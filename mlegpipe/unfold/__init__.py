"""Unfolding tools: iterative Bayesian unfolding, OmniFold-style reweighting, bootstrap bands, pulls and their coverage.

Example:
    >>> from mlegpipe.unfold import Band, ibu, marginal_weights, omnifold, response_matrix, unrecoverable_bins
"""

from mlegpipe.unfold.bootstrap import Band, float_array, pull_summary, unrecoverable_bins
from mlegpipe.unfold.coverage import (
    NORMAL_COVERAGE,
    Coverage,
    CoverageTarget,
    band_pulls,
    band_widths,
    pooled_pulls,
    recorded_pulls,
)
from mlegpipe.unfold.ibu import Response, ibu, marginal_weights, response_matrix
from mlegpipe.unfold.omnifold import classifier_weights, omnifold

__all__ = ["NORMAL_COVERAGE", "Band", "Coverage", "CoverageTarget", "Response", "band_pulls", "band_widths",
           "classifier_weights", "float_array", "ibu", "marginal_weights", "omnifold", "pooled_pulls", "pull_summary",
           "recorded_pulls", "response_matrix", "unrecoverable_bins"]
