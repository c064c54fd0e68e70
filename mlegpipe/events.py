"""The event model: event-level fields plus named particle collections, with beams and metadata.

An :class:`EventBatch` is one awkward record per event. Event-level quantities
are flat numeric fields (``x``, ``Q2``, ``weight``, ``n_jets``, a per-event beam
energy); particle collections are named lists of four-momenta, each particle a
record ``px, py, pz, E`` with optional ``pid`` and ``charge``:

* a jagged (or regular) record field ``jets: var * {px, py, pz, E, ...}``, of
  variable multiplicity (jets above a threshold) or fixed (the six quarks of a
  top pair);
* a group of flat fields ``NAME_E, NAME_px, NAME_py, NAME_pz``: a collection of
  multiplicity one (the scattered DIS lepton is ``lepton``).

:meth:`EventBatch.collection` returns either as vector ``Momentum4D`` records;
:meth:`EventBatch.particles` as padded NumPy arrays. Inputs given as
``pt, eta, phi, mass`` are converted by :func:`cartesian`. Units are GeV.

Example:
    >>> import numpy as np
    >>> b = EventBatch.from_columns({"x": np.array([0.1, 0.2]), "Q2": np.array([2.0, 5.0])})
    >>> len(b), b.matrix(["x", "Q2"]).shape
    (2, (2, 2))
    >>> jets = particle_lists({"px": [[30.0, -20.0], [40.0]], "py": [[0.0, 5.0], [1.0]],
    ...                        "pz": [[10.0, 0.0], [-3.0]], "E": [[32.0, 21.0], [41.0]]})
    >>> b = EventBatch.from_columns({"jets": jets})
    >>> b.collections, b.multiplicity("jets").tolist(), b.particles("jets", 2)["px"].tolist()
    (['jets'], [2, 1], [[30.0, -20.0], [40.0, nan]])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import vector

from mlegpipe.beams import Beams
from mlegpipe.exceptions import DataError

vector.register_awkward()

__all__ = [
    "FOUR_MOMENTUM",
    "PARTICLE_FIELDS",
    "WEIGHT",
    "EventBatch",
    "cartesian",
    "invariant_mass",
    "is_four_momentum",
    "limit_events",
    "mass_squared",
    "particle_lists",
]

#: Per-event weight; absent means 1.
WEIGHT = "weight"
#: Components of a particle's four-momentum, in storage order.
FOUR_MOMENTUM: tuple[str, ...] = ("px", "py", "pz", "E")
#: Fields of a particle record in a collection (pid and charge optional).
PARTICLE_FIELDS: tuple[str, ...] = ("px", "py", "pz", "E", "pid", "charge")


def is_four_momentum(components: Mapping[str, Any] | Sequence[str]) -> bool:
    """True when the fields give a four-momentum: ``px, py, pz`` (``E`` optional) or ``pt, eta, phi``.

    Example:
        >>> is_four_momentum(["px", "py", "pz", "E"]), is_four_momentum(["pt", "eta", "phi"]), is_four_momentum(["e"])
        (True, True, False)
    """
    keys = set(components)
    return {"px", "py", "pz"} <= keys or {"pt", "eta", "phi"} <= keys


def mass_squared(p: Mapping[str, Any]) -> Any:
    """E² − |p|² of the four-momentum arrays ``p["E"], p["px"], p["py"], p["pz"]`` (any shape; NaN stays NaN).

    Example:
        >>> float(mass_squared({"E": np.array(5.0), "px": 0.0, "py": 3.0, "pz": 0.0}))
        16.0
    """
    with np.errstate(invalid="ignore"):
        return p["E"] ** 2 - p["px"] ** 2 - p["py"] ** 2 - p["pz"] ** 2


def invariant_mass(p: Mapping[str, Any]) -> Any:
    """√max(E² − |p|², 0): the mass of four-momentum arrays, rounding below the light cone read as 0.

    Example:
        >>> invariant_mass({"E": np.array([5.0, 1.0]), "px": 0.0, "py": np.array([3.0, 1.0 + 1e-12]), "pz": 0.0})
        array([4., 0.])
    """
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.maximum(mass_squared(p), 0.0))


def cartesian(components: Mapping[str, Any]) -> dict[str, Any]:
    """``px, py, pz, E`` from ``pt, eta, phi, mass`` (or ``px, py, pz, E`` unchanged); other fields kept.

    Works on NumPy arrays and awkward arrays alike, flat or jagged.

    Example:
        >>> out = cartesian({"pt": np.array([10.0]), "eta": np.array([0.0]), "phi": np.array([0.0]),
        ...                  "mass": np.array([0.0]), "pid": np.array([21])})
        >>> [round(float(out[k][0]), 9) for k in ("px", "py", "pz", "E")], sorted(out)
        ([10.0, 0.0, 0.0, 10.0], ['E', 'pid', 'px', 'py', 'pz'])
    """
    aliases = {"e": "E", "energy": "E"}  # vector's names of the energy component
    components = {aliases.get(k, k) if "E" not in components else k: v for k, v in components.items()}
    keys = set(components)
    if set(FOUR_MOMENTUM) <= keys:
        return dict(components)
    if {"px", "py", "pz"} <= keys:  # energy unknown: NaN (mass-dependent quantities undefined)
        return {**components, "E": components["px"] * np.nan}
    polar = ("pt", "eta", "phi")
    if not set(polar) <= keys:
        raise DataError("a particle needs px, py, pz, E or pt, eta, phi (and mass or E); have: "
                        + ", ".join(sorted(keys)), path="collection")
    pt, eta, phi = (components[k] for k in polar)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    if "E" in keys:
        energy = components["E"]
    else:
        mass = components["mass"] if "mass" in keys else 0.0 * pt
        energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    rest = {k: v for k, v in components.items() if k not in (*polar, "mass", "E")}
    return {"px": px, "py": py, "pz": pz, "E": energy, **rest}


def particle_lists(components: Mapping[str, Any]) -> ak.Array:
    """A jagged collection (one list of particle records per event) from per-component lists or arrays.

    ``components`` maps ``px, py, pz, E`` (or ``pt, eta, phi, mass``) and
    optional ``pid``, ``charge`` to jagged lists or ``(n, k)`` arrays (a fixed
    multiplicity k).

    Example:
        >>> jets = particle_lists({"px": np.ones((2, 3)), "py": np.zeros((2, 3)), "pz": np.zeros((2, 3)),
        ...                        "E": np.ones((2, 3))})
        >>> ak.num(jets).tolist(), jets.fields
        ([3, 3], ['px', 'py', 'pz', 'E'])
    """
    arrays = {}
    components = {k: v if isinstance(v, ak.Array | np.ndarray) else ak.Array(v) for k, v in components.items()}
    for name, values in cartesian(components).items():
        arr = ak.Array(values) if not isinstance(values, ak.Array) else values
        if isinstance(ak.type(arr).content, ak.types.RegularType):
            arr = ak.from_regular(arr, axis=1)
        arrays[name] = arr
    return ak.zip(arrays, with_name="Momentum4D")


@dataclass
class EventBatch:
    """A batch of events.

    Arguments:
        arrays: awkward array with one record per event.
        beams: the beam set-up the events belong to (None for toy densities).
        meta: provenance (generator, version, seed, cross section, ...), JSON-able.
    """

    arrays: ak.Array
    beams: Beams | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # -- construction -------------------------------------------------------
    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Any],
        beams: Beams | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> EventBatch:
        """Build a batch from a mapping of equal-length arrays (flat or jagged).

        Example:
            >>> EventBatch.from_columns({"a": [1.0, 2.0]}).fields
            ['a']
        """
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise DataError(f"columns have different lengths: {lengths}")
        arrays = ak.zip(dict(columns), depth_limit=1) if columns else ak.Array([])
        return cls(arrays, beams, dict(meta or {}))

    @classmethod
    def from_matrix(
        cls,
        matrix: np.ndarray,
        names: Sequence[str],
        beams: Beams | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> EventBatch:
        """Build a batch from an ``(n, k)`` array with ``k`` named columns.

        Example:
            >>> EventBatch.from_matrix(np.zeros((3, 2)), ["a", "b"]).matrix(["b"]).shape
            (3, 1)
        """
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[1] != len(names):
            raise DataError(f"matrix of shape {matrix.shape} does not match names {list(names)}")
        return cls.from_columns({n: matrix[:, i] for i, n in enumerate(names)}, beams, meta)

    @staticmethod
    def concat(batches: Iterable[EventBatch]) -> EventBatch:
        """Concatenate batches (beams and meta are taken from the first).

        Example:
            >>> a = EventBatch.from_columns({"x": [0.1]})
            >>> len(EventBatch.concat([a, a]))
            2
        """
        batches = list(batches)
        if not batches:
            raise DataError("no events to concatenate")
        if len(batches) == 1:
            return batches[0]
        return EventBatch(ak.concatenate([b.arrays for b in batches]), batches[0].beams, dict(batches[0].meta))

    # -- access ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.arrays)

    @property
    def fields(self) -> list[str]:
        """Names of the event-level fields."""
        return list(self.arrays.fields)

    def has(self, name: str) -> bool:
        """True if the batch has the field ``name``."""
        return name in self.arrays.fields

    def column(self, name: str) -> np.ndarray:
        """One flat numeric field as a float64 NumPy array.

        Raises:
            DataError: the field is missing or jagged.
        """
        if name not in self.arrays.fields:
            from mlegpipe.schema import suggest

            raise DataError("no such field in the events; have: " + ", ".join(self.fields),
                            path=name, hint=suggest(name, self.fields))
        col = self.arrays[name]
        if col.ndim != 1 or isinstance(ak.type(col).content, ak.types.ListType | ak.types.RecordType):
            if _is_collection(col):
                raise DataError("is a particle collection, not one number per event: learn it through a "
                                "collection feature map (features = [\"" + name + "\"]) or compare an observable of "
                                f"it (e.g. {name}1_pt, n_{name})", path=name)
            raise DataError("expected one number per event, found a jagged or record field", path=name)
        return np.asarray(ak.to_numpy(col), dtype=np.float64)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        """Stack flat fields into an ``(n, len(names))`` float64 array."""
        if not names:
            return np.zeros((len(self), 0))
        return np.stack([self.column(n) for n in names], axis=1)

    @property
    def weights(self) -> np.ndarray:
        """Per-event weights (ones when the batch has no ``weight`` field)."""
        return self.column(WEIGHT) if self.has(WEIGHT) else np.ones(len(self))

    # -- particle collections ----------------------------------------------------
    @property
    def collections(self) -> list[str]:
        """Names of the particle collections: record fields, and groups ``NAME_E, NAME_px, NAME_py, NAME_pz``."""
        names = [name for name in self.fields if _is_collection(self.arrays[name])]
        flat = set(self.fields)
        names += [name[: -len("_px")] for name in self.fields if name.endswith("_px")
                  and all(f"{name[: -len('_px')]}_{c}" in flat for c in ("px", "py", "pz"))]
        return names

    def has_collection(self, name: str) -> bool:
        """True if ``name`` is a particle collection of these events."""
        return name in self.collections

    def _require_collection(self, name: str) -> None:
        if not self.has_collection(name):
            from mlegpipe.schema import suggest

            have = self.collections
            raise DataError("no such particle collection in the events; collections: " + (", ".join(have) or "none"),
                            path=name, hint=suggest(name, have))

    def collection(self, name: str = "particles") -> ak.Array:
        """A collection as jagged vector ``Momentum4D`` records (pid, charge kept); a flat group gives lists of one.

        Example:
            >>> b = EventBatch.from_columns({f"lepton_{c}": [v] for c, v in zip(FOUR_MOMENTUM, (3.0, 0.0, 4.0, 5.0))})
            >>> b.collection("lepton").mass.tolist()
            [[0.0]]
        """
        self._require_collection(name)
        if name in self.fields:
            parts = self.arrays[name]
            if isinstance(ak.type(parts).content, ak.types.RegularType):
                parts = ak.from_regular(parts, axis=1)
            return ak.zip({f: parts[f] for f in parts.fields}, with_name="Momentum4D")
        comps = [c for c in PARTICLE_FIELDS if f"{name}_{c}" in self.fields]
        return particle_lists({c: ak.unflatten(self.arrays[f"{name}_{c}"], 1) for c in comps})

    def to_awkward(self) -> ak.Array:
        """The events for analysis: flat fields as they are, every collection as vector ``Momentum4D`` records
        (a list per event, or one record for a group of flat fields such as the DIS ``lepton``); beams and
        metadata ride along in ``attrs`` (``"@beams"``, ``"meta"``). :meth:`from_awkward` is the inverse.

        Example:
            >>> b = EventBatch.from_columns({"Q2": [4.0], **{f"lepton_{c}": [v] for c, v in
            ...                              zip(FOUR_MOMENTUM, (3.0, 0.0, 4.0, 5.0))}})
            >>> events = b.to_awkward()
            >>> events.fields, events.lepton.pt.tolist(), events.Q2.tolist()
            (['Q2', 'lepton'], [3.0], [4.0])
        """
        groups = [c for c in self.collections if c not in self.fields]
        grouped = {f"{c}_{p}" for c in groups for p in PARTICLE_FIELDS}
        columns: dict[str, Any] = {}
        for name in self.fields:
            if name in grouped:
                continue
            columns[name] = self.collection(name) if _is_collection(self.arrays[name]) else self.arrays[name]
        for name in groups:
            parts = {c: self.arrays[f"{name}_{c}"] for c in PARTICLE_FIELDS if f"{name}_{c}" in self.fields}
            columns[name] = ak.zip(parts, with_name="Momentum4D")
        array = ak.zip(columns, depth_limit=1) if columns else ak.Array([{}] * len(self))
        return ak.Array(array, attrs={"@beams": self.beams, "meta": dict(self.meta)})

    @classmethod
    def from_awkward(cls, events: ak.Array, beams: Beams | None = None,
                     meta: Mapping[str, Any] | None = None) -> EventBatch:
        """A batch from :meth:`to_awkward`'s layout (or any record array of flat fields and collections).

        A single four-vector record per event becomes a group of flat fields
        (``lepton_px``, ...); lists of four-vectors stay collections.
        ``beams`` and ``meta`` default to those in ``events.attrs``.

        Example:
            >>> b = EventBatch.from_columns({"x": [0.5], **{f"lepton_{c}": [v] for c, v in
            ...                              zip(FOUR_MOMENTUM, (3.0, 0.0, 4.0, 5.0))}})
            >>> EventBatch.from_awkward(b.to_awkward()).fields == b.fields
            True
        """
        attrs = events.attrs or {}
        columns: dict[str, Any] = {}
        for name in events.fields:
            column = events[name]
            if column.fields and is_four_momentum(column.fields) and column.ndim == 1:
                for part in PARTICLE_FIELDS:
                    if part in column.fields:
                        columns[f"{name}_{part}"] = ak.without_parameters(column[part])
            elif _is_collection(column):
                columns[name] = ak.zip({f: column[f] for f in column.fields})
            else:
                columns[name] = column
        beams = beams if beams is not None else attrs.get("@beams")
        return cls.from_columns(columns, beams, meta if meta is not None else attrs.get("meta"))

    def momenta(self, collection: str = "particles") -> ak.Array:
        """Same as :meth:`collection` (kept for scripts written against the first event model)."""
        return self.collection(collection)

    def multiplicity(self, name: str) -> np.ndarray:
        """Particles per event in collection ``name`` (int64)."""
        self._require_collection(name)
        if name not in self.fields:
            return np.ones(len(self), dtype=np.int64)
        parts = self.arrays[name]
        return np.asarray(ak.to_numpy(ak.num(parts, axis=1)), dtype=np.int64)

    def particles(self, name: str, slots: int | None = None) -> dict[str, np.ndarray]:
        """The collection as ``(n, slots)`` float64 arrays per component, padded with NaN.

        ``slots`` defaults to the largest multiplicity; particles beyond it are dropped.
        """
        self._require_collection(name)
        if name not in self.fields:
            comps = [c for c in PARTICLE_FIELDS if f"{name}_{c}" in self.fields]
            out = {c: self.column(f"{name}_{c}")[:, None] for c in comps}
            out.setdefault("E", np.full((len(self), 1), np.nan))  # energy unknown: mass-dependent values undefined
            if slots is not None and slots != 1:
                out = {c: np.pad(v, ((0, 0), (0, max(slots - 1, 0))), constant_values=np.nan)[:, :slots]
                       for c, v in out.items()}
            return out
        parts = self.arrays[name]
        if slots is None:
            slots = int(self.multiplicity(name).max(initial=0))
        padded = ak.pad_none(parts, slots, axis=1, clip=True)
        return {c: np.asarray(ak.to_numpy(ak.fill_none(padded[c], np.nan)), dtype=np.float64).reshape(len(self), slots)
                for c in parts.fields}

    # -- transformation --------------------------------------------------------
    def with_columns(self, **columns: Any) -> EventBatch:
        """Return a copy with fields added or replaced."""
        arrays = self.arrays
        for name, values in columns.items():
            arrays = ak.with_field(arrays, values, name)
        return EventBatch(arrays, self.beams, dict(self.meta))

    def select(self, names: Sequence[str]) -> EventBatch:
        """Return a copy with only the given fields."""
        missing = [n for n in names if n not in self.arrays.fields]
        if missing:
            raise DataError("no such field in the events; have: " + ", ".join(self.fields), path=missing[0])
        return EventBatch(self.arrays[list(names)], self.beams, dict(self.meta))

    def take(self, index: np.ndarray | slice) -> EventBatch:
        """Return the events at ``index`` (an integer array, boolean mask or slice)."""
        return EventBatch(self.arrays[index], self.beams, dict(self.meta))

    def check_finite(self, names: Sequence[str] | None = None, where: str = "events") -> None:
        """Raise :class:`DataError` naming the first field holding NaN or inf (collections: every component)."""
        for name in names or self.fields:
            values = self.arrays[name]
            parts = [(name, values)]
            if isinstance(ak.type(values).content, ak.types.RecordType):
                continue
            if _is_collection(values):
                parts = [(f"{name}.{c}", values[c]) for c in values.fields]
            for label, part in parts:
                flat = np.asarray(ak.to_numpy(ak.flatten(part, axis=None)), dtype=np.float64)
                bad = ~np.isfinite(flat)
                if bad.any():
                    raise DataError(f"{int(bad.sum())} non-finite values (NaN or inf), first at entry "
                                    f"{int(np.argmax(bad))}", path=f"{where}: {label}")


def limit_events(batches: Iterable[EventBatch], max_events: int | None) -> Iterator[EventBatch]:
    """The batches, cut after ``max_events`` events in all (every one for None), empty ones left out; no batch is
    pulled once the limit is reached.

    Example:
        >>> b = EventBatch.from_columns({"x": [1.0, 2.0, 3.0]})
        >>> [len(c) for c in limit_events([b, b, b], 4)]
        [3, 1]
    """
    remaining = max_events
    for batch in batches:
        if remaining is not None:
            batch = batch.take(slice(0, remaining))
            remaining -= len(batch)
        if len(batch):
            yield batch
        if remaining is not None and remaining <= 0:
            return


def _is_collection(values: ak.Array) -> bool:
    """A list (jagged or regular) of records: a particle collection."""
    content = ak.type(values).content
    if not isinstance(content, ak.types.ListType | ak.types.RegularType):
        return False
    inner = content.content
    while isinstance(inner, ak.types.OptionType):
        inner = inner.content
    return isinstance(inner, ak.types.RecordType) and is_four_momentum(inner.fields)
