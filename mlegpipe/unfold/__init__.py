"""Unfolding tools: iterative Bayesian unfolding, OmniFold-style reweighting, bootstrap bands and pulls.

Example:
    >>> from mlegpipe.unfold import Band, ibu, marginal_weights, omnifold, response_matrix, unrecoverable_bins
"""

from mlegpipe.unfold.bootstrap import Band, pull_summary, unrecoverable_bins
from mlegpipe.unfold.ibu import Response, ibu, marginal_weights, response_matrix
from mlegpipe.unfold.omnifold import classifier_weights, omnifold

__all__ = ["Band", "Response", "classifier_weights", "ibu", "marginal_weights", "omnifold", "pull_summary",
           "response_matrix", "unrecoverable_bins"]
