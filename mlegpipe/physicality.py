"""Physicality: the fraction of events beyond the kinematic limits of their domain.

A domain registers :class:`PhysicalityCheck` s through the
``mlegpipe_register_physicality`` hook (DIS: 0 < x ≤ 1, 0 < y ≤ 1, the
generation cuts, E′ ≤ E_b where that is a limit). :func:`physicality` runs
every registered check that applies to a batch and reports the fraction of
events beyond each limit and beyond any of them.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch
    >>> positive = PhysicalityCheck("positive", lambda b: b.has("a"), lambda b, beams, cuts: {"a_negative": b.column("a") < 0})
    >>> physicality(EventBatch.from_columns({"a": np.array([1.0, -1.0])}), checks=[positive])["unphysical"]
    0.5
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError

__all__ = ["PhysicalityCheck", "applicable_checks", "physicality"]


@dataclass(frozen=True)
class PhysicalityCheck:
    """One domain's kinematic limits.

    Arguments:
        name: the check's name (the domain's, e.g. ``dis``).
        applies: ``applies(batch)``: True when the events have what the check needs.
        limits: ``limits(batch, beams, cuts)`` -> ``{limit name: boolean array}``, True for events *beyond*
            the limit; ``cuts`` are the truth sample's generation cuts (``{"q2_min": 1.0}``), which a check
            may enforce.
        doc: one line for the documentation.
    """

    name: str
    applies: Callable[[EventBatch], bool]
    limits: Callable[[EventBatch, Beams | None, Mapping[str, float]], dict[str, np.ndarray]]
    doc: str = ""


def applicable_checks(batch: EventBatch, registry: Any = None) -> list[PhysicalityCheck]:
    """The registered checks that apply to ``batch``."""
    if registry is None:
        from mlegpipe.registry import default_registry

        registry = default_registry()
    return [c for c in registry.physicality.items().values() if c.applies(batch)]


def physicality(
    batch: EventBatch,
    beams: Beams | None = None,
    cuts: Mapping[str, float] | None = None,
    *,
    checks: Sequence[PhysicalityCheck] | None = None,
    registry: Any = None,
) -> dict[str, Any]:
    """Fractions of events beyond each limit of every applicable check, and beyond any of them.

    Arguments:
        batch: the events.
        beams: beam set-up (default: the batch's).
        cuts: generation cuts a check may enforce (``{"q2_min": 1.0, "w2_min": 4.0}``; None values are ignored).
        checks: the checks to run (default: every registered one that applies).

    Returns:
        ``{"unphysical": fraction beyond any limit, "n_events": n, <limit>: fraction, ...}``.

    Raises:
        DataError: empty events, or no check applies to them.
    """
    n = len(batch)
    if n == 0:
        raise DataError("physicality of an empty sample is undefined")
    checks = list(checks) if checks is not None else applicable_checks(batch, registry)
    if not checks:
        raise DataError("no physicality check applies to these events (fields: " + ", ".join(batch.fields) + ")")
    beams = beams or batch.beams
    cuts = {k: v for k, v in (cuts or {}).items() if v is not None}
    limits: dict[str, np.ndarray] = {}
    for check in checks:
        limits.update(check.limits(batch, beams, cuts))
    any_bad = np.zeros(n, dtype=bool)
    for bad in limits.values():
        any_bad |= bad
    out: dict[str, Any] = {"unphysical": float(any_bad.mean()), "n_events": n}
    out.update({k: float(v.mean()) for k, v in limits.items()})
    return out
