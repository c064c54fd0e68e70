"""Particles of events, flat: selecting them from files into collections, and laying out a batch's particles.

Shared by the particle-record formats (:mod:`~mlegpipe.formats.hepmc`,
:mod:`~mlegpipe.formats.lhe`) and their truth sources: a
:class:`ParticleSelection` picks particles by PDG id and status into a named
collection (``collections = {jets = {status = 1, pid = [1, 2, 21]}}``), a
:class:`ParticleChunk` gathers events read one by one into an
:class:`~mlegpipe.events.EventBatch`, and :func:`event_particles` flattens a
batch's collections event by event for the writers.

Example:
    >>> [s.name for s in particle_selections(None, "collections")]
    ['particles']
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import WEIGHT, EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.provenance import EVENT_NUMBER

__all__ = ["DEFAULT_COLLECTIONS", "FINAL_STATUS", "ParticleChunk", "ParticleSelection", "apply_cut", "beam_momenta",
           "compile_cut", "event_field_names", "event_particles", "particle_masses", "particle_selections",
           "step_events"]

PathLike = str | os.PathLike[str]

#: Status of final-state particles (HepMC and LHE alike).
FINAL_STATUS = 1
#: The default particle selection of the readers: every final-state particle.
DEFAULT_COLLECTIONS: dict[str, dict[str, Any]] = {"particles": {"status": [FINAL_STATUS]}}

_SELECTION_KEYS = ("pid", "status", "n")


# -- particle selection (shared with the LHE reader) ---------------------------------


@dataclass(frozen=True)
class ParticleSelection:
    """Which particles of an event form one collection.

    Arguments:
        name: the collection's name.
        pid: PDG ids to keep (None: any).
        status: status codes to keep.
        n: the exact number every event must have (checked while reading), or None.

    Example:
        >>> sel = ParticleSelection("leptons", frozenset({11, -11}), frozenset({1}), None)
        >>> sel.mask(np.array([11, 22, -11]), np.array([1, 1, 2])).tolist()
        [True, False, False]
    """

    name: str
    pid: frozenset[int] | None
    status: frozenset[int]
    n: int | None = None

    def mask(self, pid: np.ndarray, status: np.ndarray) -> np.ndarray:
        """The particles of this collection among an event's ``pid`` and ``status`` arrays."""
        keep = np.isin(status, list(self.status)) if len(self.status) > 1 else status == next(iter(self.status))
        if self.pid is not None:
            keep &= np.isin(pid, list(self.pid)) if len(self.pid) > 1 else pid == next(iter(self.pid))
        return keep


def _int_set(value: Any, where: str) -> frozenset[int]:
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ConfigError("needs at least one integer", path=where, value=value)
    out = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            if isinstance(item, float) and item.is_integer():
                item = int(item)
            else:
                raise ConfigError("expected an integer or a list of integers", path=where, value=value)
        out.add(int(item))
    return frozenset(out)


def particle_selections(collections: Mapping[str, Mapping[str, Any]] | None,
                        where: str = "collections") -> list[ParticleSelection]:
    """Parse a collections table: name → ``{pid = int | [ints], status = int | [ints] (default [1]), n = int}``.

    Raises:
        ConfigError: an unknown key, a non-integer id, ``n`` < 0, or a name that clashes with an event field.

    Example:
        >>> [s.name for s in particle_selections(None)], particle_selections({"b": {"pid": [5, -5], "n": 2}})[0].n
        (['particles'], 2)
        >>> particle_selections({"b": {"pdg": 5}})
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.ConfigError: collections.b.pdg: unknown key; a collection selects particles by pid, status and n
    """
    table = DEFAULT_COLLECTIONS if collections is None else collections
    if not isinstance(table, Mapping) or not table:
        raise ConfigError("expected a table of collections, e.g. {particles = {status = 1}}", path=where,
                          value=collections)
    out = []
    for name, spec in table.items():
        sub = f"{where}.{name}"
        if not isinstance(spec, Mapping):
            raise ConfigError("expected a table {pid = ..., status = ..., n = ...}", path=sub, value=spec)
        for key in spec:
            if key not in _SELECTION_KEYS:
                raise ConfigError("unknown key; a collection selects particles by pid, status and n",
                                  path=f"{sub}.{key}")
        if name in (WEIGHT, EVENT_NUMBER) or name.startswith("n_") or not name.isidentifier():
            raise ConfigError("a collection needs a name that is an identifier and no event field "
                              f"({WEIGHT}, {EVENT_NUMBER}, n_...)", path=sub)
        pid = _int_set(spec["pid"], f"{sub}.pid") if "pid" in spec else None
        status = _int_set(spec.get("status", [FINAL_STATUS]), f"{sub}.status")
        n = spec.get("n")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise ConfigError("expected a number of particles >= 0", path=f"{sub}.n", value=n)
        out.append(ParticleSelection(name, pid, status, n))
    return out


def event_field_names(selections: Sequence[ParticleSelection]) -> list[str]:
    """The event-level fields the readers produce: ``weight``, ``event_number`` and ``n_<collection>``.

    Example:
        >>> event_field_names(particle_selections(None))
        ['weight', 'event_number', 'n_particles']
    """
    return [WEIGHT, EVENT_NUMBER, *(f"n_{s.name}" for s in selections)]


class ParticleChunk:
    """Collects the selected particles of events one by one and builds an :class:`EventBatch` of them.

    Arguments:
        selections: the collections to fill.
        path: the file being read (for error messages).

    Example:
        >>> chunk = ParticleChunk(particle_selections(None), "f.hepmc")
        >>> chunk.add(0, 2.0, np.array([22, 11]), np.array([1, 2]), *np.ones((4, 2)))
        >>> b = chunk.batch(None, {})
        >>> b.fields, b.multiplicity("particles").tolist()
        (['weight', 'event_number', 'n_particles', 'particles'], [1])
    """

    def __init__(self, selections: Sequence[ParticleSelection], path: PathLike) -> None:
        self.selections = list(selections)
        self.path = str(path)
        self.clear()

    def clear(self) -> None:
        """Forget the events collected so far."""
        self.weights: list[float] = []
        self.numbers: list[int] = []
        self._parts: dict[str, list[list[np.ndarray]]] = {s.name: [[] for _ in range(5)] for s in self.selections}
        self._counts: dict[str, list[int]] = {s.name: [] for s in self.selections}

    def __len__(self) -> int:
        return len(self.numbers)

    def add(self, number: int, weight: float, pid: np.ndarray, status: np.ndarray, px: np.ndarray,
            py: np.ndarray, pz: np.ndarray, e: np.ndarray) -> None:
        """Add one event: its number, weight and the arrays of all its particles."""
        for sel in self.selections:
            keep = sel.mask(pid, status)
            count = int(np.count_nonzero(keep))
            if sel.n is not None and count != sel.n:
                raise DataError(f"event {number} has {count} particles of collection {sel.name!r} "
                                f"(pid {sorted(sel.pid) if sel.pid else 'any'}, status {sorted(sel.status)}), "
                                f"but the collection declares n = {sel.n}", path=self.path)
            lists = self._parts[sel.name]
            for target, values in zip(lists, (px, py, pz, e, pid), strict=True):
                target.append(values[keep])
            self._counts[sel.name].append(count)
        self.numbers.append(int(number))
        self.weights.append(float(weight))

    def batch(self, beams: Beams | None, meta: Mapping[str, Any]) -> EventBatch:
        """The collected events as one batch (``px, py, pz, E, pid`` per particle)."""
        columns: dict[str, Any] = {WEIGHT: np.asarray(self.weights, dtype=np.float64),
                                   EVENT_NUMBER: np.asarray(self.numbers, dtype=np.int64)}
        colls = {}
        for sel in self.selections:
            counts = np.asarray(self._counts[sel.name], dtype=np.int64)
            columns[f"n_{sel.name}"] = counts
            flat = [np.concatenate(v) if v else np.zeros(0) for v in self._parts[sel.name]]
            record = {c: ak.unflatten(np.asarray(v, dtype=np.float64), counts)
                      for c, v in zip(("px", "py", "pz", "E"), flat[:4], strict=True)}
            record["pid"] = ak.unflatten(np.asarray(flat[4], dtype=np.int64), counts)
            colls[sel.name] = ak.zip(record, with_name="Momentum4D")
        columns.update(colls)
        return EventBatch.from_columns(columns, beams, dict(meta))


def compile_cut(cut: str | None, selections: Sequence[ParticleSelection], where: str) -> Any:
    """The compiled selection over the event-level fields (None without a cut)."""
    if not cut:
        return None
    from mlegpipe.formula import compile_formula

    return compile_formula(cut, event_field_names(selections), where)


def apply_cut(batch: EventBatch, formula: Any) -> EventBatch:
    """The events of ``batch`` passing ``formula`` (all without one)."""
    if formula is None or len(batch) == 0:
        return batch
    env = {name: batch.column(name) for name in formula.variables}
    mask = np.broadcast_to(np.asarray(formula(env), dtype=bool), (len(batch),))
    return batch.take(mask)


def step_events(step_size: Any, where: str = "step_size") -> int:
    """Events per chunk: a positive integer."""
    if isinstance(step_size, bool) or not isinstance(step_size, int | np.integer) or step_size < 1:
        raise ConfigError("expected a number of events per chunk (a positive integer)", path=where,
                          value=step_size)
    return int(step_size)


# -- outgoing particles of a batch (shared with the LHE writer) -------------------------


def _default_pid(name: str, pids: Mapping[str, int], beams: Beams | None) -> int:
    if name in pids:
        return int(pids[name])
    if name == "lepton" and beams is not None and beams.is_lepton_hadron:
        return beams.lepton_pdg
    return 0


def _collection_columns(batch: EventBatch, name: str, default_pid: int,
                        where: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-event counts and the flat ``px, py, pz, E, pid`` arrays of one collection."""
    n = len(batch)
    if name in batch.fields:
        parts = batch.arrays[name]
        if isinstance(ak.type(parts).content, ak.types.RegularType):
            parts = ak.from_regular(parts, axis=1)
        counts = np.asarray(ak.to_numpy(ak.num(parts, axis=1)), dtype=np.int64)
        fields = set(parts.fields)

        def flat(c: str) -> np.ndarray:
            return np.asarray(ak.to_numpy(ak.flatten(parts[c], axis=None)))
    else:
        counts = np.ones(n, dtype=np.int64)
        fields = {c for c in ("px", "py", "pz", "E", "pid") if f"{name}_{c}" in batch.fields}

        def flat(c: str) -> np.ndarray:
            return np.asarray(ak.to_numpy(batch.arrays[f"{name}_{c}"]))
    if "E" not in fields:
        raise DataError("the collection has no energy E (px, py, pz and E are needed to write particles)",
                        path=f"{where}: {name}")
    out = [np.asarray(flat(c), dtype=np.float64) for c in ("px", "py", "pz", "E")]
    for c, values in zip(("px", "py", "pz", "E"), out, strict=True):
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{int(bad.sum())} non-finite values (NaN or inf): cannot write these particles",
                            path=f"{where}: {name}.{c}")
    pid = (np.asarray(flat("pid")).astype(np.int64) if "pid" in fields
           else np.full(int(counts.sum()), default_pid, dtype=np.int64))
    return counts, [*out, pid]


def event_particles(batch: EventBatch, pids: Mapping[str, int] | None = None, where: str = "events",
                    lead: int = 0, trail: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every particle of every collection, event by event: offsets and flat ``px, py, pz, E, pid`` arrays.

    Event ``i``'s particles are ``[offsets[i], offsets[i + 1])``: ``lead`` empty
    slots, then the collections in the batch's order, then ``trail`` empty slots
    (for the writers' beams and rest of the event). A collection's PDG id comes
    from its ``pid`` field, else from ``pids`` by collection name, else, for a
    collection named ``lepton`` of a lepton-hadron set-up, the lepton beam's;
    else 0.

    Example:
        >>> b = EventBatch.from_columns({"lepton_px": [1.0, 2.0], "lepton_py": [0.0, 0.0], "lepton_pz": [0.0, 0.0],
        ...                              "lepton_E": [1.0, 2.0]}, Beams.preset("hera"))
        >>> offsets, (px, py, pz, e, pid) = event_particles(b, lead=1)
        >>> offsets.tolist(), px.tolist(), pid.tolist()
        ([0, 2, 4], [0.0, 1.0, 0.0, 2.0], [0, -11, 0, -11])
    """
    n = len(batch)
    pids = dict(pids or {})
    blocks = [_collection_columns(batch, name, _default_pid(name, pids, batch.beams), where)
              for name in batch.collections]
    sizes = lead + trail + (np.sum([c for c, _ in blocks], axis=0) if blocks else np.zeros(n, dtype=np.int64))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    out = [np.zeros(total, dtype=np.float64) for _ in range(4)] + [np.zeros(total, dtype=np.int64)]
    start = offsets[:-1] + lead
    for counts, values in blocks:
        within = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        dest = np.repeat(start, counts) + within
        for target, source in zip(out, values, strict=True):
            target[dest] = source
        start = start + counts
    return offsets, out


def beam_momenta(batch: EventBatch) -> tuple[np.ndarray, np.ndarray]:
    """Per-event ``(E, pz)`` of beam a and of beam b, ``(n, 2)`` each (per-event energies included)."""
    beams = batch.beams
    if beams is None:
        raise DataError("the events have no beams")
    n = len(batch)
    energies = beams.energies(batch, n) if any(beams.fields) else (np.full(n, beams.a.energy),
                                                                     np.full(n, beams.b.energy))
    out = []
    for beam, energy, sign in zip(beams.beams, energies, (1.0, -1.0), strict=True):
        energy = np.asarray(energy, dtype=np.float64)
        pz = sign * np.sqrt(np.maximum(energy**2 - float(beam.mass) ** 2, 0.0))
        out.append(np.stack([energy, pz], axis=1))
    return out[0], out[1]


def particle_masses(px: np.ndarray, py: np.ndarray, pz: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Invariant masses, 0 where rounding makes E² − p² slightly negative."""
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))


