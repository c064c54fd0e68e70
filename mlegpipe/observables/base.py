"""The observable types: :class:`Observable` (a named quantity of events), :class:`Peak`, :class:`Pair`.

Example:
    >>> Pair("x", "Q2").name, Peak(80.4, 2.1).window
    ('x:Q2', 5.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.observables.tensors import TensorEvents, _is_tensor

__all__ = ["Observable", "Pair", "Peak", "is_log"]


@dataclass(frozen=True)
class Peak:
    """A resonance peak an observable shows (a W or top mass): what the report's peak figures measure.

    Arguments:
        pole: the pole mass, centre of the window (GeV).
        width: the expected full width (GeV): the scale of the fit window.
        window: half-width of the mass window whose fraction of events is reported (GeV).

    Example:
        >>> Peak(80.385, 2.092).window
        5.0
    """

    pole: float
    width: float
    window: float = 5.0


@dataclass(frozen=True)
class Observable:
    """A named quantity computed from events.

    Arguments:
        name: what pipelines and reports call it (``Q2``, ``m_W1``, ``jets1_pt``).
        compute: ``compute(batch) -> (n,) float64`` (NaN where undefined).
        requires: event fields or collections it needs (checked by :meth:`available`).
        label: axis label (matplotlib mathtext), e.g. ``r"$Q^2$"``.
        unit: unit shown beside the label (``GeV``).
        log: binned and drawn on a log axis when all values are positive.
        periodic: an angle (φ-like): always on a linear axis.
        needs_beams: computed from the events' beams as well.
        compare: compared by default wherever available (False: on request, e.g. a surrogate's inputs).
        when: ``when(batch)`` decides availability instead of ``requires`` (an observable read from a field
            when there is one, else computed from other fields).
        doc: one line for ``mlegpipe plugins`` and the documentation.
        peak: a resonance peak the observable shows (the report adds window fractions, fitted pole and width).

    Example:
        >>> o = Observable("twice_a", lambda b: 2 * b.column("a"), requires=("a",))
        >>> o(EventBatch.from_columns({"a": [1.5]})).tolist(), o.available(EventBatch.from_columns({"b": [1]}))
        ([3.0], False)
    """

    name: str
    compute: Callable[[EventBatch], np.ndarray]
    requires: tuple[str, ...] = ()
    label: str = ""
    unit: str = ""
    log: bool = False
    periodic: bool = False
    needs_beams: bool = False
    compare: bool = True
    when: Callable[[EventBatch], bool] | None = None
    doc: str = ""
    peak: Peak | None = None

    def available(self, batch: EventBatch) -> bool:
        """True when ``batch`` has what this observable needs."""
        if self.when is not None:
            return bool(self.when(batch))
        if self.needs_beams and batch.beams is None:
            return False
        collections = set(batch.collections)
        return all(batch.has(r) or r in collections for r in self.requires)

    def __call__(self, batch: EventBatch) -> np.ndarray:
        return np.asarray(self.compute(batch), dtype=np.float64)

    def tensor(self, columns: Mapping[str, Any]) -> Any:
        """The observable of events given as torch tensors by field name (differentiable).

        ``columns`` holds flat fields and particles as ``{coll}{i}_{px,py,pz,E}`` (a collection feature map's
        decoded fields) or ``{coll}_{px,...}`` (multiplicity one).

        Raises:
            ConfigError: the observable is computed with NumPy only (a plugin's function, not an expression).

        Example:
            >>> import torch
            >>> from mlegpipe.observables import compile_observable
            >>> q = {f"q{i}_{c}": torch.tensor([v]) for i, vals in ((1, (3.0, 4.0, 0.0, 5.0)), (2, (-3.0, -4.0, 0.0, 5.0)))
            ...      for c, v in zip(("px", "py", "pz", "E"), vals)}
            >>> compile_observable("m", "mass(q[0] + q[1])").tensor(q).tolist()
            [10.0]
        """
        why = ""
        try:
            out = self.compute(TensorEvents(columns))
        except (TypeError, AttributeError, RuntimeError) as err:
            out, why = None, f": {err}"
        if not _is_tensor(out):  # a NumPy function gives numbers without gradients: never silently
            raise ConfigError(f"observable {self.name!r} cannot be computed on tensors (it is a NumPy function of "
                              f"event batches; declare it as an expression instead){why}",
                              path=f"observables.{self.name}")
        return out

    @property
    def axis_label(self) -> str:
        """Label with unit: ``$Q^2$ [GeV$^2$]``."""
        text = self.label or self.name
        return f"{text} [{self.unit}]" if self.unit else text


@dataclass(frozen=True)
class Pair:
    """Two observables compared jointly (2D correlation maps and metrics).

    Arguments:
        x, y: observable names.
        bins: optional fixed binning ``((low, high, n), (low, high, n))`` (log spaced for log observables),
            e.g. the thesis's 49 × 49 log bins in (x, Q²).
        values: optional ``values(batch) -> (x, y)`` used instead of the observables themselves.
        overlay: optional ``overlay(ax, beams, **cuts)`` drawing domain lines (kinematic limits) on the map.

    Example:
        >>> Pair("x", "Q2").name
        'x:Q2'
    """

    x: str
    y: str
    bins: tuple[tuple[float, float, int], tuple[float, float, int]] | None = None
    values: Callable[[EventBatch], tuple[np.ndarray, np.ndarray]] | None = None
    overlay: Callable[..., None] | None = None

    @property
    def name(self) -> str:
        """``x:y``."""
        return f"{self.x}:{self.y}"


def is_log(observable: Observable, *samples: np.ndarray) -> bool:
    """Log binning for ``observable``: declared log and every sample positive.

    Example:
        >>> is_log(Observable("a", lambda b: b, log=True), np.array([1.0, 2.0]))
        True
    """
    return observable.log and not observable.periodic and all(
        np.nanmin(s) > 0 for s in samples if np.size(s) and np.isfinite(s).any())
