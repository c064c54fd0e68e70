"""A pipeline's observables: its ``[observables]`` table (declared expressions, ``compare``, ``pairs``).

Example:
    >>> observable_set({"m": "mass(j[0] + j[1])", "compare": ["m"]}).compare
    ['m']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlegpipe.events import FOUR_MOMENTUM, WEIGHT, EventBatch, invariant_mass
from mlegpipe.exceptions import ConfigError
from mlegpipe.observables.base import Observable, Pair
from mlegpipe.observables.expressions import compile_observable
from mlegpipe.observables.resolve import _auto_or_registered, automatic, resolve, values_of
from mlegpipe.provenance import EVENT_NUMBER
from mlegpipe.schema import suggest

__all__ = ["ObservableSet", "observable_set"]

# -- a pipeline's observables ----------------------------------------------------------------------------------

_RESERVED = ("compare", "pairs")
_AUTO_SLOTS = 4  # leading particles of a collection compared by default


@dataclass
class ObservableSet:
    """The observables of a pipeline: declared expressions, the registered ones, and what to compare.

    Arguments:
        declared: observables the pipeline declares (``[observables]``), by name.
        compare: names to compare (None: every available one, see :meth:`default_names`).
        pairs: 2D pairs to compare (None: the registered pairs whose observables are compared).
        registry: where registered observables and pairs are looked up (default: the active registry).

    Example:
        >>> s = observable_set({"ratio": "a / b"})
        >>> s.values(EventBatch.from_columns({"a": [1.0], "b": [4.0]}), "ratio").tolist()
        [0.25]
    """

    declared: dict[str, Observable] = field(default_factory=dict)
    compare: list[str] | None = None
    pairs: list[Pair] | None = None
    registry: Any = None

    def _registry(self) -> Any:
        if self.registry is None:
            from mlegpipe.registry import default_registry

            return default_registry()
        return self.registry

    def get(self, name: str) -> Observable:
        """The observable ``name`` (declared first, then :func:`resolve`)."""
        if name in self.declared:
            return self.declared[name]
        return resolve(name, self._registry())

    def values(self, batch: EventBatch, name: str) -> np.ndarray:
        """Values of ``name`` for every event of ``batch``."""
        return self.get(name)(batch)

    def available(self, batch: EventBatch, name: str) -> bool:
        """True when ``name`` can be computed for ``batch`` (a field, or an observable whose inputs it has; a
        registered observable of another domain, e.g. DIS's ``lepton_pt`` for pp events, falls back on the
        automatic one of the same name)."""
        if batch.has(name) or self.get(name).available(batch):
            return True
        auto = automatic(name) if name not in self.declared else None
        return auto is not None and auto.available(batch)

    def check(self, batch: EventBatch, where: str = "observables") -> None:
        """Compute every declared or chosen observable (and pair) on the first events of ``batch``.

        Raises:
            DataError: one cannot be computed for these events (a missing field or collection, a collection
                that never has the particles an index needs), naming ``where.NAME``.
        """
        head = batch.take(slice(0, min(len(batch), 1000)))
        names = list(self.declared) + [n for n in (self.compare or []) if n not in self.declared]
        names += [n for p in (self.pairs or []) for n in (p.x, p.y) if n not in names]
        for name in names:
            values_of(head, name, f"{where}.{name}", self)

    def registered(self) -> list[Observable]:
        """The observables plugins registered (not the pairs), in registration order."""
        return [o for o in self._registry().observables.items().values() if isinstance(o, Observable)]

    def default_names(self, *batches: EventBatch) -> list[str]:
        """What to compare between ``batches`` when the pipeline does not say.

        The declared observables, then the registered ones every batch can
        compute (a domain's observables); without any of those, each shared
        collection's multiplicity and its leading particles' p_T, η, φ (and mass
        where it varies) and every shared flat field but weights and per-event beam energies.
        """
        if self.compare is not None:
            return [n for n in self.compare if all(self.available(b, n) for b in batches)]
        names = [n for n, o in self.declared.items() if all(o.available(b) for b in batches)]
        names += [o.name for o in self.registered()
                  if o.compare and o.name not in names and all(o.available(b) for b in batches)]
        if len(names) > len(self.declared):
            return names
        return names + _generic_names(batches, skip=set(names))

    def default_pairs(self, names: Sequence[str]) -> list[Pair]:
        """Pairs to compare: the declared ones, else the registered pairs whose two observables are in ``names``."""
        if self.pairs is not None:
            return list(self.pairs)
        have = set(names)
        return [p for p in self._registry().observables.items().values()
                if isinstance(p, Pair) and p.x in have and p.y in have]


def _generic_names(batches: Sequence[EventBatch], skip: set[str]) -> list[str]:
    shared_collections = [c for c in batches[0].collections if all(b.has_collection(c) for b in batches[1:])]
    components = {f"{c}_{q}" for c in shared_collections for q in (*FOUR_MOMENTUM, "pid", "charge")}
    names: list[str] = []
    for coll in shared_collections:
        if coll in batches[0].fields:
            names.append(f"n_{coll}")
            slots = min(_AUTO_SLOTS, min(int(b.multiplicity(coll).max(initial=0)) for b in batches))
            for i in range(1, slots + 1):
                names += [f"{coll}{i}_pt", f"{coll}{i}_eta", f"{coll}{i}_phi"]
                masses = batches[0].particles(coll, i)["E"][:, i - 1]
                if np.nanstd(_mass_of(batches[0], coll, i)) > 1e-6 * max(1.0, float(np.nanmean(np.abs(masses)))):
                    names.append(f"{coll}{i}_mass")
        else:
            names += [f"{coll}_{q}" for q in (*FOUR_MOMENTUM, "pt", "theta", "phi")]
    excluded = {WEIGHT, EVENT_NUMBER} | components
    for b in batches:
        if b.beams is not None:
            excluded |= {f for f in b.beams.fields if f}
    flat = [n for n in batches[0].fields if n not in excluded and n not in skip and n not in names
            and all(_is_flat_number(b, n) for b in batches)]
    return [n for n in names if n not in skip] + flat


def _mass_of(batch: EventBatch, coll: str, i: int) -> np.ndarray:
    parts = batch.particles(coll, i)
    return invariant_mass({c: parts[c][:, i - 1] for c in FOUR_MOMENTUM})


def _is_flat_number(batch: EventBatch, name: str) -> bool:
    import awkward as ak

    return batch.has(name) and isinstance(ak.type(batch.arrays[name]).content, ak.types.NumpyType)


def observable_set(table: Mapping[str, Any] | None, where: str = "observables", registry: Any = None) -> ObservableSet:
    """Build a pipeline's :class:`ObservableSet` from its ``[observables]`` table.

    Each key is an observable: an expression string, or a table with ``expr``
    and optional ``label``, ``unit``, ``log``, ``periodic``. ``compare`` lists
    what the report compares; ``pairs`` lists 2D pairs ``[x, y]``.

    Raises:
        ConfigError, FormulaError: naming the TOML path of the bad entry.

    Example:
        >>> observable_set({"m": "mass(j[0] + j[1])", "compare": ["m"]}).compare
        ['m']
    """
    table = dict(table or {})
    out = ObservableSet(registry=registry)
    declared: dict[str, Observable] = {}

    def resolver(name: str) -> Observable | None:
        if name in declared:
            return declared[name]
        return _auto_or_registered(name, registry)

    for name, spec in table.items():
        if name in _RESERVED:
            continue
        path = f"{where}.{name}"
        if not name.isidentifier():
            raise ConfigError("an observable name must be an identifier (letters, digits, _)", path=path, value=name)
        if isinstance(spec, str):
            spec = {"expr": spec}
        if not isinstance(spec, Mapping):
            raise ConfigError("expected an expression string or a table with expr = \"...\"", path=path, value=spec)
        unknown = set(spec) - {"expr", "label", "unit", "log", "periodic"}
        if unknown:
            raise ConfigError("unknown key; known: expr, label, unit, log, periodic", path=f"{path}.{sorted(unknown)[0]}",
                              hint=suggest(sorted(unknown)[0], ["expr", "label", "unit", "log", "periodic"]))
        declared[name] = compile_observable(name, spec.get("expr", ""), where=f"{path}" if "expr" not in spec or
                                            isinstance(table[name], str) else f"{path}.expr",
                                            label=str(spec.get("label", "")), unit=str(spec.get("unit", "")),
                                            log=bool(spec.get("log", False)), periodic=bool(spec.get("periodic", False)),
                                            resolver=resolver)
    out.declared = declared
    if "compare" in table:
        compare = table["compare"]
        if not isinstance(compare, list) or not all(isinstance(c, str) for c in compare) or not compare:
            raise ConfigError("expected a non-empty list of observable names", path=f"{where}.compare", value=compare)
        out.compare = list(compare)
    if "pairs" in table:
        pairs = table["pairs"]
        ok = isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p)
                                             for p in pairs)
        if not ok:
            raise ConfigError("expected a list of [x, y] observable name pairs", path=f"{where}.pairs", value=pairs)
        out.pairs = [_pair_for(p[0], p[1], registry) for p in pairs]
    return out


def _pair_for(x: str, y: str, registry: Any) -> Pair:
    """A registered pair of these two observables (keeps its binning and overlay), else a plain one."""
    if registry is None:
        from mlegpipe.registry import default_registry

        registry = default_registry()
    name = f"{x}:{y}"
    if name in registry.observables and isinstance(registry.observables.get(name), Pair):
        return registry.observables.get(name)
    return Pair(x, y)
