"""Bootstrap bands, pulls and unrecoverable-bin flags for unfolded spectra (thesis ch. 7, eq. 29).

An unfolding is repeated on bootstrap resamples of the data (replicas); each
replica gives a binned probability density of every observable. The band is
the per-bin mean and standard deviation over replicas, and the pull against a
reference (the truth, or the detector-level data) is

    pull = (E[P]_model - E[P]_ref) / √(V[P]_model + V[P]_ref)

with the reference's variance also from bootstrap resamples. Bins where the
detector removes the information (no acceptance, or too few detector-level
events feeding them) are *unrecoverable*: they are reported, and left out of
the pull summaries instead of being hidden.

Example:
    >>> import numpy as np
    >>> band = Band.from_replicas(np.array([[0.4, 0.6], [0.6, 0.4]]))
    >>> band.mean.tolist(), band.std.round(4).tolist()
    ([0.5, 0.5], [0.1414, 0.1414])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlegpipe.exceptions import DataError
from mlegpipe.metrics.pulls import pulls, replica_stats
from mlegpipe.unfold.ibu import Response

__all__ = ["Band", "float_array", "pull_summary", "unrecoverable_bins"]


def float_array(values: Iterable[float | None] | np.ndarray) -> np.ndarray:
    """A recorded list of per-bin numbers (None where JSON could not hold a NaN) as float64, None as NaN.

    Example:
        >>> float_array([0.5, None]).tolist()
        [0.5, nan]
    """
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64).ravel()


@dataclass
class Band:
    """Per-bin mean and spread of replica densities.

    Attributes:
        mean: E[P] per bin.
        var: V[P] per bin (ddof = 1).
        replicas: the ``(replicas, bins)`` densities it was computed from.
    """

    mean: np.ndarray
    var: np.ndarray
    replicas: np.ndarray

    @classmethod
    def from_replicas(cls, densities: np.ndarray) -> Band:
        """Band of ``(replicas, bins)`` densities (at least two replicas).

        Example:
            >>> Band.from_replicas(np.array([[1.0], [3.0]])).var.tolist()
            [2.0]
        """
        densities = np.asarray(densities, dtype=np.float64)
        mean, var = replica_stats(densities)
        return cls(mean, var, densities)

    @property
    def std(self) -> np.ndarray:
        """Standard deviation per bin."""
        return np.sqrt(self.var)

    def relative_width(self, extra_variance: np.ndarray | None = None) -> np.ndarray:
        """Standard deviation over mean per bin (NaN where the mean is not positive); ``extra_variance`` as in
        :meth:`pulls`.

        Example:
            >>> Band(np.array([0.5, 0.0]), np.array([0.01, 0.0]), np.zeros((2, 2))).relative_width().tolist()
            [0.2, nan]
        """
        var = self.var if extra_variance is None else self.var + np.asarray(extra_variance, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.mean > 0, np.sqrt(var) / self.mean, np.nan)

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> Band:
        """The band of :meth:`to_dict` (mean and standard deviation; the replicas are not kept there).

        Example:
            >>> Band.from_dict({"mean": [0.5], "std": [0.1]}).var.round(6).tolist()
            [0.01]
        """
        mean, std = float_array(entry["mean"]), float_array(entry["std"])
        return cls(mean, std * std, np.zeros((0, mean.size)))

    def pulls(self, reference: Band, extra_variance: np.ndarray | None = None) -> np.ndarray:
        """Per-bin pulls of this band against ``reference`` (NaN where both variances vanish).

        ``extra_variance`` (per bin) adds to this band's variance: an uncertainty the replicas
        do not sample, e.g. a systematic of the model.

        Example:
            >>> a = Band(np.array([0.3]), np.array([0.01]), np.zeros((2, 1)))
            >>> b = Band(np.array([0.1]), np.array([0.03]), np.zeros((2, 1)))
            >>> a.pulls(b).round(6).tolist()
            [1.0]
            >>> a.pulls(b, extra_variance=np.array([0.12])).round(6).tolist()
            [0.5]
        """
        if self.mean.shape != reference.mean.shape:
            raise DataError(f"bands have different binnings: {self.mean.size} and {reference.mean.size} bins")
        var = self.var if extra_variance is None else self.var + np.asarray(extra_variance, dtype=np.float64)
        return pulls(self.mean, var, reference.mean, reference.var)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able mean and standard deviation."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def pull_summary(values: np.ndarray, exclude: np.ndarray | None = None) -> dict[str, Any]:
    """Summary of per-bin pulls over the populated (finite) bins not in ``exclude``.

    Returns:
        ``bins`` (counted), ``within_1`` (fraction with |pull| < 1), ``within_2``,
        ``mean``, ``rms``, ``max_abs`` (NaN-free: None when no bin counts).

    Example:
        >>> s = pull_summary(np.array([0.5, -0.5, 3.0, np.nan]))
        >>> s["bins"], s["within_1"], s["max_abs"]
        (3, 0.6667, 3.0)
    """
    values = np.asarray(values, dtype=np.float64)
    used = np.isfinite(values)
    if exclude is not None:
        used &= ~np.asarray(exclude, dtype=bool)
    v = values[used]
    if v.size == 0:
        return {"bins": 0, "within_1": None, "within_2": None, "mean": None, "rms": None, "max_abs": None}
    return {
        "bins": int(v.size),
        "within_1": round(float(np.mean(np.abs(v) < 1.0)), 4),
        "within_2": round(float(np.mean(np.abs(v) < 2.0)), 4),
        "mean": round(float(v.mean()), 4),
        "rms": round(float(np.sqrt(np.mean(v * v))), 4),
        "max_abs": round(float(np.abs(v).max()), 4),
    }


def unrecoverable_bins(
    response: Response,
    data_counts: np.ndarray,
    min_events: float = 10.0,
    min_efficiency: float = 0.05,
    coverage: float = 0.68,
) -> np.ndarray:
    """Flag vertex-level bins the detector-level data cannot constrain.

    A vertex bin ``i`` is unrecoverable when its efficiency ``ε_i`` (probability
    of being measured inside the detector binning) is below ``min_efficiency``,
    or when its *detector-level support* holds fewer than ``min_events`` data
    events. The support is the smallest set of detector bins that receives a
    fraction ``coverage`` of the bin's measured migrations (``R[:, i]``, largest
    first): where the data there vanish, nothing tells the unfolding what the
    vertex-level density was (thesis ch. 7: the low-Q², high-x region).

    Example:
        >>> from mlegpipe.unfold.ibu import response_matrix
        >>> e = np.array([0.0, 1.0, 2.0, 3.0])
        >>> r = response_matrix(np.array([0.5, 1.5, 2.5]), np.array([0.5, 1.5, np.nan]), e, e)
        >>> unrecoverable_bins(r, np.array([50.0, 3.0, 0.0])).tolist()
        [False, True, True]
    """
    d = np.asarray(data_counts, dtype=np.float64).ravel()
    nd, nv = response.matrix.shape
    if d.size != nd:
        raise DataError(f"{d.size} data bins for a response with {nd} detector-level bins")
    flags = response.efficiency < min_efficiency
    for i in range(nv):
        if flags[i]:
            continue
        column = response.matrix[:, i]
        order = np.argsort(column)[::-1]
        cumulative = np.cumsum(column[order])
        n_support = int(np.searchsorted(cumulative, coverage * cumulative[-1]) + 1)
        support = order[:n_support]
        flags[i] = d[support].sum() < min_events
    return flags
