"""Particle collections as model features: fixed or variable multiplicity, exactly invertible.

:class:`CollectionMap` (``feature_map = "collection"``, or any generator given
a collection name in ``features``) learns flat event fields and particle
collections together. Each particle slot ``i`` of a collection ``c`` becomes
``c{i}_logpt = ln p_T``, ``c{i}_eta``, ``c{i}_phi`` and ``c{i}_mass`` (or
``c{i}_logmass`` where every training mass is positive); the inverse rebuilds
``px, py, pz, E``, so a generated particle always has p_T > 0 and E ≥ |p|.

The map is fitted on training events (:meth:`CollectionMap.fit`): the number
of slots is the largest multiplicity; features that never vary (the mass of a
massless parton, a quark's fixed mass) are kept as constants rather than
learned; a collection ordered by p_T in training is ordered by p_T after
generation. One collection may have a variable multiplicity (jets above a
threshold): its multiplicity ``n_c`` is the map's per-event context, the
features of absent slots are NaN in :meth:`~CollectionMap.encode` (a generator
fills them with noise and ignores them when sampling), and the inverse drops
them.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch, particle_lists
    >>> jets = particle_lists({"pt": [[50.0, 20.0], [40.0, 30.0]], "eta": [[0.5, -1.0], [0.0, 2.0]],
    ...                        "phi": [[0.1, 2.0], [-1.0, 1.0]], "mass": [[5.0, 3.0], [4.0, 6.0]]})
    >>> events = EventBatch.from_columns({"jets": jets})
    >>> m = CollectionMap(["jets"]).fit(events)
    >>> m.names[:4]
    ('jets1_logpt', 'jets1_eta', 'jets1_phi', 'jets1_logmass')
    >>> cols = m.decode(m.encode(events), m.context_of(events))
    >>> back = EventBatch.from_columns(m.assemble(cols, m.context_of(events)))
    >>> bool(np.allclose(back.particles("jets")["px"], events.particles("jets")["px"]))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import FOUR_MOMENTUM, EventBatch, invariant_mass, particle_lists
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.features.maps import FeatureMap, TensorLike, as_context

__all__ = ["CollectionMap"]

_SORTED_FRACTION = 0.99  # training events ordered by p_T for a collection to count as p_T-ordered
_CONSTANT_RTOL = 1e-6  # a feature whose spread is below this (relative) is a constant, not learned
_MASS_RTOL = 1e-5  # a mass spread below this fraction of the particles' largest energy is a constant


class CollectionMap(FeatureMap):
    """Flat fields plus particle collections as features (see the module docstring).

    Arguments:
        features: flat field and collection names, in the order they are learned.
        slots, variable, constants, log_mass, ordered, flat: the fitted layout
            (set by :meth:`fit`; stored in :meth:`config` so a saved map is rebuilt exactly).
    """

    name = "collection"

    def __init__(
        self,
        features: Sequence[str],
        slots: Mapping[str, int] | None = None,
        variable: str | None = None,
        constants: Mapping[str, float] | None = None,
        log_mass: Sequence[str] = (),
        ordered: Sequence[str] = (),
        flat: Sequence[str] | None = None,
    ) -> None:
        if not features:
            raise ConfigError("the collection feature map needs at least one field or collection", path="features",
                              value=[])
        self.features = list(features)
        self.slots = {k: int(v) for k, v in (slots or {}).items()}
        self.variable = variable
        self.constants = {k: float(v) for k, v in (constants or {}).items()}
        self.log_mass = list(log_mass)
        self.ordered = list(ordered)
        self.flat = None if flat is None else list(flat)
        if self.flat is not None:
            self._layout()

    @property
    def needs_context(self) -> bool:  # type: ignore[override]
        """A variable-multiplicity collection's multiplicity is the per-event context."""
        return self.variable is not None

    @property
    def fitted(self) -> bool:
        """True once the layout is known (:meth:`fit`, or rebuilt from :meth:`config`)."""
        return self.flat is not None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], beams: Beams | None = None,
                    features: Sequence[str] | None = None) -> CollectionMap:
        cfg = dict(config)
        cfg.setdefault("features", list(features or ()))
        return cls(**cfg)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "features": list(self.features)}
        if self.fitted:
            out.update({"slots": dict(self.slots), "variable": self.variable, "constants": dict(self.constants),
                        "log_mass": list(self.log_mass), "ordered": list(self.ordered), "flat": list(self.flat)})
        return out

    @property
    def collections(self) -> list[str]:
        """The collections among the features."""
        return list(self.slots)

    def multiplicity_field(self) -> str | None:
        """``n_c`` of the variable-multiplicity collection ``c`` (None when all are fixed)."""
        return None if self.variable is None else f"n_{self.variable}"

    def _mass_name(self, coll: str, i: int) -> str:
        return f"{coll}{i}_logmass" if coll in self.log_mass else f"{coll}{i}_mass"

    def _layout(self) -> None:
        raw = list(self.flat)
        fields = list(self.flat)
        for coll, k in self.slots.items():
            for i in range(1, k + 1):
                raw += [f"{coll}{i}_logpt", f"{coll}{i}_eta", f"{coll}{i}_phi", self._mass_name(coll, i)]
                fields += [f"{coll}{i}_{c}" for c in FOUR_MOMENTUM]
        self.inputs = tuple(raw)
        self.names = tuple(n for n in raw if n not in self.constants)
        self.fields = tuple(fields)
        self._keep = [i for i, n in enumerate(raw) if n not in self.constants]

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise DataError("the collection feature map is used before it was fitted to training events",
                            path="feature_map")

    # -- fitting -----------------------------------------------------------------------
    def fit(self, events: EventBatch) -> CollectionMap:
        """Learn the layout from training events: slots, the variable collection, constants, log masses, order."""
        flat, slots, counts = [], {}, {}
        for name in self.features:
            if events.has_collection(name):
                mult = events.multiplicity(name)
                if len(mult) and int(mult.max()) == 0:
                    raise DataError("the collection is empty in every training event", path=f"features: {name}")
                slots[name] = int(mult.max(initial=0))
                counts[name] = mult
            else:
                events.column(name)  # a flat number per event, or a clear error naming it
                flat.append(name)
        variable = [c for c, m in counts.items() if len(m) and m.min() != m.max()]
        if len(variable) > 1:
            raise ConfigError("only one collection may have a variable multiplicity; these do: "
                              + ", ".join(variable), path="features", value=variable)
        self.flat, self.slots = flat, slots
        self.variable = variable[0] if variable else None
        self.constants, self.log_mass, self.ordered = {}, [], []
        for coll in slots:
            parts = events.particles(coll, slots[coll])
            mass = invariant_mass(parts)
            present = np.isfinite(parts["E"])
            e_max = float(np.nanmax(parts["E"], initial=0.0))
            if (mass[present] > 0).all() and np.ptp(mass[present]) > _MASS_RTOL * max(1.0, e_max):
                self.log_mass.append(coll)
            pt = np.hypot(parts["px"], parts["py"])
            if slots[coll] > 1:
                with np.errstate(invalid="ignore"):
                    decreasing = np.all((np.diff(pt, axis=1) <= 0) | ~np.isfinite(pt[:, 1:]), axis=1)
                if decreasing.mean() >= _SORTED_FRACTION:
                    self.ordered.append(coll)
        self._layout()
        raw = self.input_matrix(events)
        scale = np.nanmax(np.abs(raw), axis=0, initial=0.0) if len(raw) else np.zeros(raw.shape[1])
        energy = {c: float(np.nanmax(events.particles(c, k)["E"], initial=0.0)) for c, k in self.slots.items()}
        for j, name in enumerate(self.inputs):
            if j < len(self.flat):
                continue
            values = raw[:, j][np.isfinite(raw[:, j])]
            # a mass from √(E² - p²) carries rounding noise of order 1e-8 E (more for a massless particle):
            # judged against the particles' energy, not against the mass itself
            coll = next(c for c in self.slots if _slot_of(name, c) is not None)
            reach = _MASS_RTOL * max(1.0, energy[coll]) if name.endswith("_mass") else \
                _CONSTANT_RTOL * max(1.0, float(scale[j]))
            if values.size and np.ptp(values) <= reach:
                massless = name.endswith("_mass") and float(np.abs(values).max()) <= reach
                self.constants[name] = 0.0 if massless else float(values.mean())
        self._layout()
        return self

    # -- encoding -----------------------------------------------------------------------
    def input_matrix(self, events: EventBatch) -> np.ndarray:
        """Flat fields, then per slot ``ln p_T, η, φ, mass (or ln mass)``; NaN for absent particles."""
        self._require_fitted()
        cols = [events.column(f) for f in self.flat]
        for coll, k in self.slots.items():
            parts = events.particles(coll, k)
            pt = np.hypot(parts["px"], parts["py"])
            with np.errstate(divide="ignore", invalid="ignore"):
                eta = np.arcsinh(parts["pz"] / np.maximum(pt, 1e-300))
                mass = invariant_mass(parts)
                mass_feature = np.log(mass) if coll in self.log_mass else mass
                logpt = np.log(pt)
            phi = np.arctan2(parts["py"], parts["px"])
            for i in range(k):
                cols += [logpt[:, i], eta[:, i], np.where(np.isfinite(pt[:, i]), phi[:, i], np.nan),
                         mass_feature[:, i]]
        return np.stack(cols, axis=1) if cols else np.zeros((len(events), 0))

    def encode(self, events: EventBatch) -> np.ndarray:
        """Features of ``events``; absent slots of the variable collection are NaN, anything else must be finite."""
        z = self.forward(torch.from_numpy(self.input_matrix(events))).numpy()
        expected = self.absent(self.context_of(events)) if self.variable else np.zeros(z.shape, dtype=bool)
        bad = ~np.isfinite(z) & ~expected
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise DataError(f"{int(bad.any(axis=1).sum())} events have a non-finite or zero-p_T particle feature "
                            f"(first: entry {int(i)}, {self.names[j]})", path=", ".join(self.features))
        return z

    def absent(self, multiplicity: np.ndarray) -> np.ndarray:
        """``(n, len(names))`` mask of features belonging to slots beyond each event's multiplicity."""
        n = len(multiplicity)
        mask = np.zeros((n, len(self.names)), dtype=bool)
        if self.variable is None:
            return mask
        for j, name in enumerate(self.names):
            slot = _slot_of(name, self.variable)
            if slot is not None:
                mask[:, j] = slot > np.asarray(multiplicity)
        return mask

    def context_of(self, events: EventBatch) -> np.ndarray:
        """The multiplicity of the variable collection (zeros when every collection is fixed)."""
        if self.variable is None:
            return np.zeros(len(events))
        return events.multiplicity(self.variable).astype(np.float64)

    def context_from(self, conditions: Mapping[str, Any], n: int, beams: Beams | None) -> np.ndarray:
        """The multiplicity of events to generate: the condition ``n_c`` (a generator draws it when not fixed)."""
        if self.variable is None:
            return np.zeros(n)
        key = self.multiplicity_field()
        if key not in conditions:
            raise ConfigError(f"generating {self.variable!r} needs its multiplicity {key!r}", path="conditions")
        return np.broadcast_to(np.asarray(conditions[key], dtype=np.float64), (n,)).copy()

    # -- the map --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        self._require_fitted()
        return x[:, self._keep].clone()

    def _raw(self, z: torch.Tensor) -> torch.Tensor:
        raw = z.new_empty((len(z), len(self.inputs)))
        raw[:, self._keep] = z
        for j, name in enumerate(self.inputs):
            if name in self.constants:
                raw[:, j] = self.constants[name]
        return raw

    def inverse(self, z: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        self._require_fitted()
        raw = self._raw(z)
        n_flat = len(self.flat)
        out = [raw[:, :n_flat]]
        j = n_flat
        for coll, k in self.slots.items():
            mult = as_context(context, z) if coll == self.variable else None
            for i in range(k):
                logpt, eta, phi, m = (raw[:, j + c] for c in range(4))
                j += 4
                pt = torch.exp(logpt)
                mass = torch.exp(m) if coll in self.log_mass else m
                px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)
                energy = torch.sqrt(px * px + py * py + pz * pz + mass * mass)
                block = torch.stack([px, py, pz, energy], dim=1)
                if mult is not None:
                    block = torch.where((mult > i)[:, None], block, torch.full_like(block, float("nan")))
                out.append(block)
        return torch.cat(out, dim=1)

    def valid(self, z: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        """Finite present particles with a non-negative mass (absent slots do not count)."""
        raw = self._raw(z)
        present = torch.ones_like(raw, dtype=torch.bool)
        if self.variable is not None:
            mult = as_context(context, z)
            for j, name in enumerate(self.inputs):
                slot = _slot_of(name, self.variable)
                if slot is not None:
                    present[:, j] = mult >= slot
        ok = (torch.isfinite(raw) | ~present).all(dim=1)
        for j, name in enumerate(self.inputs):
            if name.endswith("_mass") and not name.endswith("_logmass"):
                ok &= (raw[:, j] >= 0) | ~present[:, j]
        return ok

    def finite(self, decoded: np.ndarray, context: np.ndarray) -> np.ndarray:
        """Finite present particles (the NaN of absent slots of the variable collection do not count)."""
        finite = np.isfinite(decoded)
        if self.variable is not None:
            mult = np.asarray(context)
            for j, name in enumerate(self.fields):
                slot = _slot_of(name, self.variable)
                if slot is not None:
                    finite[:, j] |= slot > mult
        return finite.all(axis=1)

    def complete(self, columns: dict[str, np.ndarray], context: np.ndarray, beams: Beams | None,
                 ok: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """The multiplicity of the variable collection added as ``n_c`` (absent slots are NaN, not unphysical)."""
        if self.variable is not None:
            columns[self.multiplicity_field()] = np.asarray(context, dtype=np.float64).copy()
        return columns, ok

    def assemble(self, columns: Mapping[str, np.ndarray], context: np.ndarray | None = None) -> dict[str, Any]:
        """Event columns for :class:`~mlegpipe.events.EventBatch`: flat fields and one jagged collection each
        (present particles only, ordered by p_T where training was)."""
        self._require_fitted()
        out: dict[str, Any] = {f: columns[f] for f in self.flat}
        n = len(next(iter(columns.values()))) if columns else 0
        for coll, k in self.slots.items():
            comps = {c: np.stack([np.asarray(columns[f"{coll}{i}_{c}"]) for i in range(1, k + 1)], axis=1)
                     for c in FOUR_MOMENTUM}
            if coll == self.variable:
                mult = np.asarray(columns.get(self.multiplicity_field(), context), dtype=np.int64)
            else:
                mult = np.full(n, k, dtype=np.int64)
            if coll in self.ordered:
                pt = np.where(np.arange(k)[None, :] < mult[:, None], np.hypot(comps["px"], comps["py"]), -np.inf)
                order = np.argsort(-pt, axis=1, kind="stable")
                comps = {c: np.take_along_axis(v, order, axis=1) for c, v in comps.items()}
            keep = np.arange(k)[None, :] < mult[:, None]
            out[coll] = particle_lists({c: _jagged(v, keep) for c, v in comps.items()})
        slot_fields = set(self.fields[len(self.flat):]) | {self.multiplicity_field()}
        out.update({name: values for name, values in columns.items() if name not in out and name not in slot_fields})
        return out


def _jagged(values: np.ndarray, keep: np.ndarray) -> Any:
    import awkward as ak

    return ak.unflatten(values[keep], keep.sum(axis=1))


def _slot_of(name: str, collection: str) -> int | None:
    """1-based slot of feature ``name`` if it belongs to ``collection``."""
    if not name.startswith(collection):
        return None
    stem = name[len(collection):].split("_", 1)[0]
    return int(stem) if stem.isdigit() else None
