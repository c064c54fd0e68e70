"""Particles of a collection as four-vectors, and the functions of particles expressions may call.

Example:
    >>> sorted(PAIR_FUNCTIONS)
    ['deltaR', 'deltaeta', 'deltaphi']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import vector

from mlegpipe.events import FOUR_MOMENTUM, EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.observables.tensors import (
    TensorEvents,
    _asinh,
    _atan2,
    _floor,
    _hypot,
    _is_tensor,
    _isfinite,
    _TorchFour,
    _where_valid,
)
from mlegpipe.schema import suggest

__all__ = ["PAIR_FUNCTIONS", "PARTICLE_FUNCTIONS", "PARTICLE_QUANTITIES"]

# -- particles ------------------------------------------------------------------------------------------------

#: Per-particle quantities of the automatic observables ``COLL{i}_QUANTITY`` (unit, label, periodic).
PARTICLE_QUANTITIES: dict[str, tuple[str, str, bool]] = {
    "E": ("GeV", "E", False), "px": ("GeV", "p_x", False), "py": ("GeV", "p_y", False),
    "pz": ("GeV", "p_z", False), "pt": ("GeV", "p_T", False), "p": ("GeV", "|p|", False),
    "P": ("GeV", "|p|", False), "eta": ("", r"\eta", False), "phi": ("rad", r"\phi", True),
    "theta": ("rad", r"\theta", False), "mass": ("GeV", "m", False), "rapidity": ("", "y", False),
}


@dataclass
class _Particle:
    """Four-vectors of one particle per event (vector NumPy backend) and which events have it."""

    p4: Any
    valid: np.ndarray

    def __add__(self, other: _Particle) -> _Particle:
        return _Particle(self.p4 + other.p4, self.valid & other.valid)

    def __sub__(self, other: _Particle) -> _Particle:
        return _Particle(self.p4 - other.p4, self.valid & other.valid)

    def number(self, values: Any) -> np.ndarray:
        return _where_valid(self.valid, values)


def _particle(batch: EventBatch, name: str, index: int, where: str) -> _Particle:
    parts = batch.particles(name, index + 1)
    comps = {c: parts[c][:, index] for c in FOUR_MOMENTUM}
    valid = _isfinite(comps["px"]) & _isfinite(comps["py"]) & _isfinite(comps["pz"])
    if len(batch) and not bool(valid.any()):
        most = int(batch.multiplicity(name).max()) if len(batch) else 0
        raise DataError(f"collection {name!r} never has a particle at index {index} (at most {most} per event)",
                        path=where, value=f"{name}[{index}]")
    if isinstance(batch, TensorEvents):
        return _Particle(_TorchFour(*(comps[c] for c in FOUR_MOMENTUM)), valid)
    safe = {c: np.where(valid, v, 0.0) if c != "E" else v for c, v in comps.items()}
    return _Particle(vector.array(safe), valid)


def _collection_sum(batch: EventBatch, name: str) -> _Particle:
    parts = batch.particles(name)
    if isinstance(batch, TensorEvents):
        import torch

        comps = [torch.nansum(parts[c], dim=1) for c in FOUR_MOMENTUM]
        return _Particle(_TorchFour(*comps), torch.ones(len(batch), dtype=torch.bool))
    comps = {c: np.nansum(parts[c], axis=1) if parts[c].shape[1] else np.zeros(len(batch)) for c in FOUR_MOMENTUM}
    return _Particle(vector.array(comps), np.ones(len(batch), dtype=bool))


def _pt(p: _Particle) -> np.ndarray:
    return p.number(_hypot(p.p4.px, p.p4.py))


#: Functions of one particle: name -> function of a :class:`_Particle` (NumPy or torch).
PARTICLE_FUNCTIONS: dict[str, Callable[[_Particle], np.ndarray]] = {
    "pt": _pt,
    "eta": lambda p: p.number(_asinh(p.p4.pz / _floor(_hypot(p.p4.px, p.p4.py), 1e-300))),
    "phi": lambda p: p.number(_atan2(p.p4.py, p.p4.px)),
    "theta": lambda p: p.number(_atan2(_hypot(p.p4.px, p.p4.py), p.p4.pz)),
    "mass": lambda p: p.number(p.p4.mass),
    "m": lambda p: p.number(p.p4.mass),
    "mt": lambda p: p.number(p.p4.mt),
    "rapidity": lambda p: p.number(p.p4.rapidity),
    "E": lambda p: p.number(p.p4.E),
    "energy": lambda p: p.number(p.p4.E),
    "px": lambda p: p.number(p.p4.px),
    "py": lambda p: p.number(p.p4.py),
    "pz": lambda p: p.number(p.p4.pz),
    "p": lambda p: p.number((p.p4.px**2 + p.p4.py**2 + p.p4.pz**2) ** 0.5),
}
#: Functions of two particles.
PAIR_FUNCTIONS: dict[str, Callable[[_Particle, _Particle], np.ndarray]] = {
    "deltaR": lambda a, b: _where_valid(a.valid & b.valid, a.p4.deltaR(b.p4)),
    "deltaphi": lambda a, b: _where_valid(a.valid & b.valid, a.p4.deltaphi(b.p4)),
    "deltaeta": lambda a, b: _where_valid(a.valid & b.valid, a.p4.deltaeta(b.p4)),
}
_COLLECTION_FUNCTIONS = ("n", "sum", "ht")


def _field(batch: EventBatch, name: str, where: str) -> np.ndarray:
    if batch.has(name):
        return batch.column(name)
    raise DataError("no such field, collection or observable in the events; fields: " + ", ".join(batch.fields)
                    + "; collections: " + (", ".join(batch.collections) or "none"), path=where, value=name,
                    hint=suggest(name, [*batch.fields, *batch.collections]))


def _ht(batch: Any, coll: str) -> Any:
    parts = batch.particles(coll)
    pt = _hypot(parts["px"], parts["py"])
    if _is_tensor(pt):
        import torch

        return torch.nansum(pt, dim=1)
    return np.nansum(pt, axis=1)


def _single(batch: EventBatch, name: str, where: str) -> _Particle:
    if not batch.has_collection(name):
        raise DataError("no such particle collection in the events; collections: "
                        + (", ".join(batch.collections) or "none"), path=where, value=name,
                        hint=suggest(name, batch.collections))
    if len(batch) and int(batch.multiplicity(name).max()) > 1:
        raise DataError(f"collection {name!r} holds several particles per event: index one, e.g. {name}[0]",
                        path=where, value=name)
    return _particle(batch, name, 0, where)
