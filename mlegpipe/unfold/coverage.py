"""Coverage of unfolding bands: do the pulls of many bins and samples follow N(0, 1)?

A band (mean ``m`` and variance ``V`` per bin, :class:`~mlegpipe.unfold.Band`)
is compared with a reference sample (its histogram ``t`` and the sample's own
variance ``V_t``) through the pull ``(m − t) / sqrt(V + V_t)``. If the band
means what it says, pulls pooled over bins and pseudo-data samples are
standard normal: mean 0, standard deviation 1, and ``|pull| < 1`` (the 68 %
band, widened by the reference's own statistical error, covers the reference)
in 68.3 % of the bins. A mean away from 0 is a bias, a standard deviation
below 1 a band wider than the errors it claims to hold, above 1 a band too
narrow.

:class:`Coverage` summarizes pooled pulls and checks them against
:class:`CoverageTarget` (by default the unfolding benchmark's: mean within
±0.15, standard deviation in [0.85, 1.15], coverage in [0.60, 0.76]).

Example:
    >>> import numpy as np
    >>> c = Coverage.of(np.random.default_rng(1).normal(size=20_000))
    >>> c.bins, abs(c.std - 1) < 0.02, abs(c.covered - NORMAL_COVERAGE) < 0.01, c.meets(CoverageTarget())
    (20000, True, True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mlegpipe.exceptions import DataError
from mlegpipe.unfold.bootstrap import Band, float_array

__all__ = ["NORMAL_COVERAGE", "Coverage", "CoverageTarget", "band_pulls", "band_widths", "pooled_pulls",
           "recorded_pulls"]

#: P(|z| < 1) for z ~ N(0, 1).
NORMAL_COVERAGE = 0.6826894921370859


@dataclass(frozen=True)
class CoverageTarget:
    """What calibrated bands give: pull mean within ``±mean_tolerance``, std and coverage within their ranges.

    Example:
        >>> CoverageTarget().std_range
        (0.85, 1.15)
    """

    mean_tolerance: float = 0.15
    std_range: tuple[float, float] = (0.85, 1.15)
    covered_range: tuple[float, float] = (0.60, 0.76)


@dataclass(frozen=True)
class Coverage:
    """Pooled pulls: how many, their mean and standard deviation, the fraction with ``|pull| < 1``.

    Attributes:
        bins: finite pulls counted.
        mean: their mean.
        std: their standard deviation (ddof = 1).
        covered: fraction with ``|pull| < 1``.
        within_2: fraction with ``|pull| < 2`` (95.4 % for N(0, 1)).
    """

    bins: int
    mean: float
    std: float
    covered: float
    within_2: float

    @classmethod
    def of(cls, pulls: Iterable[float | None] | np.ndarray) -> Coverage:
        """Summarize pulls (None and non-finite values are left out).

        Raises:
            DataError: fewer than two finite pulls.

        Example:
            >>> Coverage.of([0.5, -0.5, None, 1.5]).covered
            0.6667
        """
        values = pooled_pulls([pulls])
        if values.size < 2:
            raise DataError(f"coverage needs at least two finite pulls, got {values.size}")
        return cls(bins=int(values.size), mean=round(float(values.mean()), 4),
                   std=round(float(values.std(ddof=1)), 4),
                   covered=round(float(np.mean(np.abs(values) < 1.0)), 4),
                   within_2=round(float(np.mean(np.abs(values) < 2.0)), 4))

    def meets(self, target: CoverageTarget) -> bool:
        """Whether mean, standard deviation and coverage are all within ``target``.

        Example:
            >>> Coverage(100, 0.3, 1.0, 0.68, 0.95).meets(CoverageTarget())
            False
        """
        return bool(abs(self.mean) <= target.mean_tolerance
                    and target.std_range[0] <= self.std <= target.std_range[1]
                    and target.covered_range[0] <= self.covered <= target.covered_range[1])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields."""
        return asdict(self)


def pooled_pulls(per_bin: Iterable[Iterable[float | None]], excluded: Iterable[Iterable[bool]] | None = None,
                 ) -> np.ndarray:
    """Concatenate per-observable (or per-sample) lists of per-bin values (pulls, band widths), leaving out
    None, non-finite and excluded bins.

    Arguments:
        per_bin: value lists, e.g. one per observable and sample.
        excluded: matching flag lists (True: leave the bin out, e.g. unrecoverable), or None.

    Example:
        >>> pooled_pulls([[0.1, None], [2.0, -1.0]], [[False, False], [True, False]]).tolist()
        [0.1, -1.0]
    """
    lists = [float_array(values) for values in per_bin]
    flags = ([np.zeros(v.size, bool) for v in lists] if excluded is None
             else [np.asarray(list(f), dtype=bool) for f in excluded])
    if len(flags) != len(lists):
        raise DataError(f"{len(lists)} pull lists but {len(flags)} flag lists")
    out = []
    for v, f in zip(lists, flags, strict=True):
        if f.size != v.size:
            raise DataError(f"{v.size} pulls but {f.size} flags")
        out.append(v[np.isfinite(v) & ~f])
    return np.concatenate(out) if out else np.zeros(0)


def _unrecoverable(entry: Mapping[str, Any], bins: int) -> np.ndarray:
    flags = entry.get("unrecoverable")
    return np.zeros(bins, bool) if flags is None else np.asarray(flags, dtype=bool)


def recorded_pulls(binned: Mapping[str, Mapping[str, Any]], key: str) -> np.ndarray:
    """The pull lists ``key`` an unfolding stage recorded per observable (``binned[name][key]``, e.g.
    ``gan_pulls`` or ``refolded_pulls``), pooled; at vertex level (keys not starting with ``refolded``) the
    bins flagged ``unrecoverable`` are left out.

    Example:
        >>> binned = {"a": {"gan_pulls": [0.5, 3.0], "refolded_pulls": [0.1, None], "unrecoverable": [0, 1]}}
        >>> recorded_pulls(binned, "gan_pulls").tolist(), recorded_pulls(binned, "refolded_pulls").tolist()
        ([0.5], [0.1])
    """
    lists, flags = [], []
    for entry in binned.values():
        if key in entry:
            lists.append(entry[key])
            bins = len(entry[key])
            flags.append(np.zeros(bins, bool) if key.startswith("refolded") else _unrecoverable(entry, bins))
    return pooled_pulls(lists, flags)


def _pooled_over_bands(binned: Mapping[str, Mapping[str, Any]], band: str,
                       per_bin: Callable[[str, Mapping[str, Any], Band], np.ndarray | None]) -> np.ndarray:
    """``per_bin(name, entry, band)`` of every observable that recorded ``band``, pooled, the unrecoverable
    bins left out (None: the observable is skipped)."""
    lists, flags = [], []
    for name, entry in binned.items():
        if band in entry:
            values = per_bin(name, entry, Band.from_dict(entry[band]))
            if values is not None:
                lists.append(values)
                flags.append(_unrecoverable(entry, values.size))
    return pooled_pulls(lists, flags)


def band_pulls(binned: Mapping[str, Mapping[str, Any]], band: str, reference: str = "truth",
               extra_variance: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Pulls of the recorded band ``band`` (``{"mean", "std"}`` per bin, e.g. ``ibu``) against the band
    ``reference`` of every observable that has both, pooled, the unrecoverable bins left out.

    Arguments:
        binned: per observable, the bands an unfolding stage recorded.
        band: the band tested.
        reference: the band it is compared with (``truth``: the pseudo-data's truth).
        extra_variance: per observable, variance added to ``band``'s (e.g. a surrogate's uncertainty).

    Example:
        >>> b = {"mean": [0.4, 0.6], "std": [0.1, 0.1]}
        >>> t = {"mean": [0.5, 0.5], "std": [0.0, 0.0]}
        >>> band_pulls({"a": {"ibu": b, "truth": t}}, "ibu").round(6).tolist()
        [-1.0, 1.0]
    """
    extra = extra_variance or {}
    return _pooled_over_bands(binned, band, lambda name, entry, b: b.pulls(Band.from_dict(entry[reference]),
                                                                           extra.get(name))
                              if reference in entry else None)


def band_widths(binned: Mapping[str, Mapping[str, Any]], band: str,
                extra_variance: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Relative widths (std / mean, :meth:`Band.relative_width`) of the recorded band ``band`` per recoverable
    bin of every observable, pooled; ``extra_variance`` as in :func:`band_pulls`.

    Example:
        >>> b = {"mean": [0.4, 0.6], "std": [0.1, 0.3]}
        >>> band_widths({"a": {"ibu": b, "unrecoverable": [0, 1]}}, "ibu").tolist()
        [0.25]
    """
    extra = extra_variance or {}
    return _pooled_over_bands(binned, band, lambda name, entry, b: b.relative_width(extra.get(name)))
