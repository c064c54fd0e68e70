"""The event model: batches of events as awkward arrays with beams and metadata.

An :class:`EventBatch` is one record per event. Event-level quantities are flat
numeric fields (``lepton_px``, ``x``, ``Q2``, ``weight``, ``beam_energy``);
particle collections are jagged record fields (``particles`` with ``px, py, pz,
E, pid, charge``) that :meth:`EventBatch.momenta` exposes as vector
``Momentum4D`` records. Units are GeV throughout.

Example:
    >>> import numpy as np
    >>> b = EventBatch.from_columns({"x": np.array([0.1, 0.2]), "Q2": np.array([2.0, 5.0])})
    >>> len(b), b.matrix(["x", "Q2"]).shape
    (2, (2, 2))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np
import vector

from mlegpipe.beams import Beams
from mlegpipe.exceptions import DataError

vector.register_awkward()

__all__ = [
    "BEAM_ENERGY",
    "DIS_LABELS",
    "LEPTON_FIELDS",
    "PARTICLE_FIELDS",
    "WEIGHT",
    "EventBatch",
]

#: Scattered-lepton four-momentum fields (GeV).
LEPTON_FIELDS: tuple[str, ...] = ("lepton_E", "lepton_px", "lepton_py", "lepton_pz")
#: Inclusive DIS truth labels.
DIS_LABELS: tuple[str, ...] = ("x", "Q2", "y", "W2", "nu")
#: Per-event lepton beam energy (conditional models).
BEAM_ENERGY = "beam_energy"
#: Per-event weight; absent means 1.
WEIGHT = "weight"
#: Fields of a particle record in a jagged collection.
PARTICLE_FIELDS: tuple[str, ...] = ("px", "py", "pz", "E", "pid", "charge")


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

    def momenta(self, collection: str = "particles") -> ak.Array:
        """A jagged collection as vector ``Momentum4D`` records (pid, charge kept)."""
        if collection not in self.arrays.fields:
            raise DataError("no such particle collection", path=collection)
        parts = self.arrays[collection]
        return ak.zip({f: parts[f] for f in parts.fields}, with_name="Momentum4D")

    def lepton(self) -> ak.Array:
        """The scattered lepton as a flat ``Momentum4D`` array."""
        return ak.zip(
            {"E": self.column("lepton_E"), "px": self.column("lepton_px"),
             "py": self.column("lepton_py"), "pz": self.column("lepton_pz")},
            with_name="Momentum4D",
        )

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
        """Raise :class:`DataError` naming the first field holding NaN or inf."""
        for name in names or self.fields:
            values = self.arrays[name]
            if isinstance(ak.type(values).content, ak.types.RecordType):
                continue
            flat = np.asarray(ak.to_numpy(ak.flatten(values, axis=None)), dtype=np.float64)
            bad = ~np.isfinite(flat)
            if bad.any():
                raise DataError(f"{int(bad.sum())} non-finite values (NaN or inf), first at entry "
                                f"{int(np.argmax(bad))}", path=f"{where}: {name}")
