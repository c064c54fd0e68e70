"""Unfolding tools: iterative Bayesian unfolding, OmniFold-style reweighting, bootstrap bands and pulls.

Example:
    >>> from mlegpipe.unfold import Band, ibu, omnifold, response_matrix, unrecoverable_bins
"""

from mlegpipe.unfold.bootstrap import Band, pull_summary, unrecoverable_bins
from mlegpipe.unfold.ibu import Response, ibu, response_matrix
from mlegpipe.unfold.omnifold import classifier_weights, omnifold

__all__ = ["Band", "Response", "classifier_weights", "ibu", "omnifold", "pull_summary", "response_matrix",
           "unrecoverable_bins"]
