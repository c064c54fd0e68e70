"""Observables by name: registered by plugins, automatic for every collection (``n_jets``, ``jets1_pt``), or fields.

Example:
    >>> automatic("jets2_eta").requires
    ('jets',)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mlegpipe.events import FOUR_MOMENTUM, EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.observables.base import Observable
from mlegpipe.observables.particles import PARTICLE_FUNCTIONS, PARTICLE_QUANTITIES, _particle, _single
from mlegpipe.schema import suggest

if TYPE_CHECKING:
    from mlegpipe.observables.sets import ObservableSet

__all__ = ["automatic", "resolve", "values_of"]

# -- automatic and registered observables ---------------------------------------------------------------------

def _split_auto(name: str) -> tuple[str, int | None, str] | None:
    """``jets2_pt`` -> ("jets", 1, "pt"); ``lepton_theta`` -> ("lepton", None, "theta"); ``n_jets`` -> ("jets", None, "n")."""
    if name.startswith("n_") and len(name) > 2:
        return name[2:], None, "n"
    stem, sep, quantity = name.rpartition("_")
    if not sep or quantity not in PARTICLE_QUANTITIES or not stem:
        return None
    digits = len(stem) - len(stem.rstrip("0123456789"))
    if digits and digits < len(stem):
        index = int(stem[-digits:])
        if index >= 1:
            return stem[:-digits], index - 1, quantity
    return stem, None, quantity


def automatic(name: str) -> Observable | None:
    """The automatic collection observable ``name`` (``n_jets``, ``jets1_pt``, ``lepton_theta``), or None.

    Example:
        >>> automatic("jets2_eta").requires, automatic("x") is None
        (('jets',), True)
    """
    parts = _split_auto(name)
    if parts is None:
        return None
    coll, index, quantity = parts
    if quantity == "n":
        return Observable(name, lambda b: b.multiplicity(coll).astype(np.float64), (coll,),
                          label=rf"$N_{{\mathrm{{{coll}}}}}$", doc=f"particles per event in {coll}")
    unit, symbol, periodic = PARTICLE_QUANTITIES[quantity]
    fn = PARTICLE_FUNCTIONS["p" if quantity == "P" else quantity]
    where = f"observable {name}"
    if index is None:
        compute = (lambda b: fn(_single(b, coll, where))) if quantity not in FOUR_MOMENTUM else \
            (lambda b: b.column(f"{coll}_{quantity}") if b.has(f"{coll}_{quantity}") else fn(_single(b, coll, where)))
        label = rf"${symbol}({coll})$"
    else:
        compute = lambda b: fn(_particle(b, coll, index, where))  # noqa: E731 - one-line closure
        label = rf"${symbol}({coll}_{{{index + 1}}})$"
    return Observable(name, compute, (coll,), label, unit, log=False, periodic=periodic,
                      doc=f"{quantity} of {coll}" + ("" if index is None else f" particle {index + 1}"))


def _auto_or_registered(name: str, registry: Any = None) -> Observable | None:
    if registry is None:
        from mlegpipe.registry import default_registry

        registry = default_registry()
    if name in registry.observables:
        item = registry.observables.get(name)
        if isinstance(item, Observable):
            return item
    return automatic(name)


def resolve(name: str, registry: Any = None) -> Observable:
    """The observable ``name``: registered by a plugin, automatic for a collection, or an event field.

    Example:
        >>> resolve("Q2").log, resolve("my_field").requires
        (True, ('my_field',))
    """
    found = _auto_or_registered(name, registry)
    if found is not None:
        return found
    return Observable(name, lambda b: b.column(name), (name,))


def values_of(batch: EventBatch, name: str, where: str = "events", observables: ObservableSet | None = None
              ) -> np.ndarray:
    """Values of the observable ``name`` for every event (NaN where undefined), with an error naming ``where``
    and listing what the events offer when it cannot be computed.

    Example:
        >>> values_of(EventBatch.from_columns({"a": [1.0, 2.0]}), "a").tolist()
        [1.0, 2.0]
    """
    observable = observables.get(name) if observables is not None else resolve(name)
    value = None if where.endswith(name) else name
    try:
        with np.errstate(invalid="ignore", divide="ignore"):
            return observable(batch)
    except DataError as err:
        if err.path == name or not err.path:  # a plain field the events lack
            known = list(batch.fields) + [f"{c}_pt" for c in batch.collections]
            raise DataError("no such observable for these events; fields: " + ", ".join(batch.fields)
                            + "; collections: " + (", ".join(batch.collections) or "none"), path=where,
                            value=value, hint=suggest(name, known)) from None
        raise DataError(f"cannot compute observable {name!r}: {err.message}", path=where, value=value,
                        hint=err.hint) from None
