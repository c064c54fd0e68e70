"""Particle collections in Cartesian momenta with fixed masses: EventGAN's Lorentz-vector layer as a feature map.

:class:`CartesianMap` (``feature_map = "cartesian"``) learns each particle slot
``i`` of a collection ``c`` as its three momentum components ``c{i}_px``,
``c{i}_py``, ``c{i}_pz`` (GeV); the energy is not learned but rebuilt from a
mass constant per slot, E = √(p² + m²), as the output layer of the How-to-GAN
generator does (arXiv:1907.03764). The constants are fitted as the median mass
of each slot in the training events (or given: ``masses = {quarks = [4.7, 0,
0, 4.7, 0, 0]}``); a median below rounding of the energy is the constant 0.
Flat event fields listed in ``features`` are learned as they are.

The inverse is exact for events whose particle masses equal the constants;
other events come back with their momenta and the slot's mass (a charm quark
among light quarks gets the slot's median mass). Every collection must have a
fixed multiplicity (the How-to-GAN quarks: six per event).

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch, particle_lists
    >>> q = particle_lists({"pt": [[50.0, 20.0], [40.0, 30.0]], "eta": [[0.5, -1.0], [0.0, 2.0]],
    ...                     "phi": [[0.1, 2.0], [-1.0, 1.0]], "mass": [[4.8, 0.0], [4.8, 0.0]]})
    >>> events = EventBatch.from_columns({"q": q})
    >>> m = CartesianMap(["q"]).fit(events)
    >>> m.names[:3], [round(v, 9) for v in m.masses["q"]]
    (('q1_px', 'q1_py', 'q1_pz'), [4.8, 0.0])
    >>> back = EventBatch.from_columns(m.assemble(m.decode(m.encode(events))))
    >>> bool(np.allclose(back.particles("q")["E"], events.particles("q")["E"], rtol=1e-12))
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from mlegpipe.beams import Beams
from mlegpipe.events import FOUR_MOMENTUM, EventBatch, invariant_mass, particle_lists
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.features.maps import FeatureMap, TensorLike

__all__ = ["CartesianMap"]

_MOMENTUM = ("px", "py", "pz")
_MASSLESS_RTOL = 1e-6  # a median mass below this fraction of the slot's median energy is rounding: the constant 0


class CartesianMap(FeatureMap):
    """Flat fields plus fixed-multiplicity collections as (p_x, p_y, p_z) per slot, E from a mass per slot.

    Arguments:
        features: flat field and collection names, in the order they are learned.
        masses: ``{collection: [mass per slot]}`` (GeV); fitted as the training medians where not given.
        slots, flat: the fitted layout (set by :meth:`fit`; stored in :meth:`config` so a saved map is
            rebuilt exactly).

    Example (TOML):
        [generator]
        plugin = "howtogan"
        features = ["quarks"]      # the map of howtogan; any GAN or flow may name it: feature_map = "cartesian"
    """

    name = "cartesian"
    needs_context: ClassVar[bool] = False

    def __init__(
        self,
        features: Sequence[str],
        masses: Mapping[str, Sequence[float]] | None = None,
        slots: Mapping[str, int] | None = None,
        flat: Sequence[str] | None = None,
    ) -> None:
        if not features:
            raise ConfigError("the cartesian feature map needs at least one field or collection", path="features",
                              value=[])
        self.features = list(features)
        self.masses = {str(c): [float(m) for m in v] for c, v in (masses or {}).items()}
        for coll, values in self.masses.items():
            if any(not np.isfinite(m) or m < 0 for m in values):
                raise ConfigError("particle masses must be finite and non-negative (GeV)",
                                  path=f"feature_map.masses.{coll}", value=list(values))
        self.slots = {k: int(v) for k, v in (slots or {}).items()}
        self.flat = None if flat is None else list(flat)
        if self.flat is not None:
            self._layout()

    @property
    def fitted(self) -> bool:
        """True once the layout and every mass are known (:meth:`fit`, or rebuilt from :meth:`config`)."""
        return self.flat is not None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], beams: Beams | None = None,
                    features: Sequence[str] | None = None) -> CartesianMap:
        cfg = dict(config)
        cfg.setdefault("features", list(features or ()))
        return cls(**cfg)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "features": list(self.features)}
        if self.masses:
            out["masses"] = {c: list(v) for c, v in self.masses.items()}
        if self.fitted:
            out.update({"slots": dict(self.slots), "flat": list(self.flat)})
        return out

    def _layout(self) -> None:
        for coll, k in self.slots.items():
            if len(self.masses.get(coll, ())) != k:
                raise ConfigError(f"collection {coll!r} has {k} particles per event; give one mass per particle",
                                  path=f"feature_map.masses.{coll}", value=self.masses.get(coll))
        slot_names = [f"{c}{i}" for c, k in self.slots.items() for i in range(1, k + 1)]
        self.inputs = self.fields = (*self.flat, *(f"{s}_{c}" for s in slot_names for c in FOUR_MOMENTUM))
        self.names = (*self.flat, *(f"{s}_{c}" for s in slot_names for c in _MOMENTUM))
        self.heavy_tailed = self.names[len(self.flat):]  # momentum components: compressed before standardizing
        self._keep = [i for i, f in enumerate(self.inputs) if not f.endswith("_E") or i < len(self.flat)]
        self._mass = torch.tensor([m for c in self.slots for m in self.masses[c]], dtype=torch.float64)

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise DataError("the cartesian feature map is used before it was fitted to training events",
                            path="feature_map")

    # -- fitting ---------------------------------------------------------------------------------------
    def fit(self, events: EventBatch) -> CartesianMap:
        """Learn the layout from training events: flat fields, particles per collection, the mass of each slot.

        Raises:
            DataError: a collection's multiplicity varies or is zero, a name is neither field nor collection.
            ConfigError: given masses do not match a collection's multiplicity.
        """
        flat, slots = [], {}
        for name in self.features:
            if events.has_collection(name):
                mult = events.multiplicity(name)
                if len(mult) and (mult.min() != mult.max() or int(mult.max()) == 0):
                    raise DataError(f"the cartesian map learns a fixed number of particles; collection {name!r} has "
                                    f"{int(mult.min())} to {int(mult.max())} per event (learn it with plugin = "
                                    "\"flow\", which draws the multiplicity)", path=f"features: {name}")
                slots[name] = int(mult.max(initial=0))
            else:
                events.column(name)  # a flat number per event, or a clear error naming it
                flat.append(name)
        for coll, k in slots.items():
            if coll in self.masses:
                continue
            parts = events.particles(coll, k)
            median = np.median(invariant_mass(parts), axis=0)
            rounding = _MASSLESS_RTOL * np.maximum(1.0, np.median(parts["E"], axis=0))
            self.masses[coll] = [float(m) if m > r else 0.0 for m, r in zip(median, rounding, strict=True)]
        self.flat, self.slots = flat, slots
        self._layout()
        return self

    # -- the map ---------------------------------------------------------------------------------------
    def input_matrix(self, events: EventBatch) -> np.ndarray:
        """Flat fields, then per slot ``px, py, pz, E``."""
        self._require_fitted()
        cols = [events.column(f) for f in self.flat]
        for coll, k in self.slots.items():
            parts = events.particles(coll, k)
            cols += [parts[c][:, i] for i in range(k) for c in FOUR_MOMENTUM]
        return np.stack(cols, axis=1).astype(np.float64) if cols else np.zeros((len(events), 0))

    def forward(self, x: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        self._require_fitted()
        return x[:, self._keep].clone()

    def inverse(self, z: torch.Tensor, context: TensorLike = 0.0) -> torch.Tensor:
        self._require_fitted()
        n_flat = len(self.flat)
        p = z[:, n_flat:].reshape(len(z), -1, 3)
        mass = self._mass.to(dtype=z.dtype, device=z.device)
        energy = torch.sqrt((p * p).sum(dim=2) + mass * mass)
        four = torch.cat([p, energy[:, :, None]], dim=2).reshape(len(z), -1)
        return torch.cat([z[:, :n_flat], four], dim=1)

    def assemble(self, columns: Mapping[str, np.ndarray], context: np.ndarray | None = None) -> dict[str, Any]:
        """Event columns for :class:`~mlegpipe.events.EventBatch`: flat fields and one collection each."""
        self._require_fitted()
        out: dict[str, Any] = {f: columns[f] for f in self.flat}
        for coll, k in self.slots.items():
            comps = {c: np.stack([np.asarray(columns[f"{coll}{i}_{c}"]) for i in range(1, k + 1)], axis=1)
                     for c in FOUR_MOMENTUM}
            out[coll] = particle_lists(comps)
        out.update({name: values for name, values in columns.items() if name not in out and name not in self.fields})
        return out
