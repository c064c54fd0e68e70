"""Observables on torch tensors: four-vectors, events of decoded tensor fields and NumPy/torch dispatch.

A compiled expression runs on :class:`~mlegpipe.events.EventBatch` (NumPy, ``vector``) and, through
:class:`TensorEvents`, on torch tensors (differentiable): the helpers here pick the backend by argument.

Example:
    >>> import torch
    >>> _hypot(torch.tensor([3.0]), torch.tensor([4.0])).tolist(), float(_hypot(3.0, 4.0))
    ([5.0], 5.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlegpipe.events import FOUR_MOMENTUM
from mlegpipe.exceptions import DataError
from mlegpipe.schema import suggest

__all__ = ["TensorEvents"]


class _TorchFour:
    """Four-vectors in torch tensors with the attributes of ``vector``'s objects that observables use."""

    def __init__(self, px: Any, py: Any, pz: Any, E: Any) -> None:  # noqa: N803 - vector's names
        self.px, self.py, self.pz, self.E = px, py, pz, E

    def __add__(self, other: _TorchFour) -> _TorchFour:
        return _TorchFour(self.px + other.px, self.py + other.py, self.pz + other.pz, self.E + other.E)

    def __sub__(self, other: _TorchFour) -> _TorchFour:
        return _TorchFour(self.px - other.px, self.py - other.py, self.pz - other.pz, self.E - other.E)

    @property
    def mass(self) -> Any:
        import torch

        m2 = self.E**2 - self.px**2 - self.py**2 - self.pz**2
        return torch.sign(m2) * torch.sqrt(torch.abs(m2))  # vector's convention: negative where space-like

    @property
    def mt(self) -> Any:
        import torch

        mt2 = self.E**2 - self.pz**2
        return torch.sign(mt2) * torch.sqrt(torch.abs(mt2))

    @property
    def rapidity(self) -> Any:
        import torch

        return 0.5 * torch.log((self.E + self.pz) / (self.E - self.pz))

    def _eta(self) -> Any:
        import torch

        return torch.asinh(self.pz / torch.hypot(self.px, self.py).clamp_min(1e-300))

    def deltaphi(self, other: _TorchFour) -> Any:
        import torch

        d = torch.atan2(self.py, self.px) - torch.atan2(other.py, other.px)
        return torch.remainder(d + math.pi, 2 * math.pi) - math.pi

    def deltaeta(self, other: _TorchFour) -> Any:
        return self._eta() - other._eta()

    def deltaR(self, other: _TorchFour) -> Any:  # noqa: N802 - vector's name
        import torch

        return torch.hypot(self.deltaeta(other), self.deltaphi(other))


class TensorEvents:
    """Events given as torch tensors by field name: what :meth:`Observable.tensor` evaluates expressions on.

    Particles come from decoded four-momentum fields: ``{coll}{i}_{px,py,pz,E}`` (slots i = 1, 2, ...) or
    ``{coll}_{px,py,pz,E}`` (multiplicity one). A slot whose p_x is NaN is an absent particle.

    Example:
        >>> import torch
        >>> ev = TensorEvents({"a": torch.tensor([1.0, 2.0]), "j1_px": torch.zeros(2), "j1_py": torch.ones(2),
        ...                    "j1_pz": torch.zeros(2), "j1_E": torch.ones(2)})
        >>> len(ev), ev.collections, ev.particles("j")["py"].shape
        (2, ['j'], torch.Size([2, 1]))
    """

    beams = None

    def __init__(self, columns: Mapping[str, Any]) -> None:
        import torch

        self._columns = {k: torch.as_tensor(v) for k, v in columns.items()}
        lengths = {int(v.shape[0]) for v in self._columns.values()}
        if len(lengths) > 1:
            raise DataError("tensor columns of different lengths: " + ", ".join(
                f"{k}={int(v.shape[0])}" for k, v in self._columns.items()))
        self._n = lengths.pop() if lengths else 0
        self._slots: dict[str, list[str]] = {}
        for key in self._columns:
            stem, sep, comp = key.rpartition("_")
            if sep and comp == "px" and all(f"{stem}_{c}" in self._columns for c in FOUR_MOMENTUM):
                digits = len(stem) - len(stem.rstrip("0123456789"))
                coll = stem[:-digits] if digits and digits < len(stem) else stem
                self._slots.setdefault(coll, []).append(stem)
        for coll, stems in self._slots.items():
            stems.sort(key=lambda s: int(s[len(coll):] or 0))

    def __len__(self) -> int:
        return self._n

    @property
    def fields(self) -> list[str]:
        """The field names."""
        return list(self._columns)

    def has(self, name: str) -> bool:
        """True when ``name`` is a field."""
        return name in self._columns

    def column(self, name: str) -> Any:
        """The tensor of field ``name``."""
        try:
            return self._columns[name]
        except KeyError:
            raise DataError("no such tensor field; fields: " + ", ".join(self._columns), value=name,
                            hint=suggest(name, list(self._columns))) from None

    def full(self, value: float) -> Any:
        """A tensor of ``value`` per event (dtype and device of the fields)."""
        import torch

        like = next(iter(self._columns.values()), torch.zeros(0))
        return torch.full((self._n,), value, dtype=like.dtype if like.is_floating_point() else torch.float64,
                          device=like.device)

    @property
    def collections(self) -> list[str]:
        """Collections found in the four-momentum field names."""
        return list(self._slots)

    def has_collection(self, name: str) -> bool:
        """True when ``name`` is a collection."""
        return name in self._slots

    def particles(self, name: str, slots: int | None = None) -> dict[str, Any]:
        """``{px, py, pz, E}`` -> (n, slots) tensors, NaN where a slot is absent (or beyond the fields)."""
        import torch

        if name not in self._slots:
            raise DataError("no such particle collection in the tensors; collections: "
                            + (", ".join(self._slots) or "none"), value=name, hint=suggest(name, list(self._slots)))
        stems = self._slots[name]
        k = len(stems) if slots is None else slots
        out = {}
        for c in FOUR_MOMENTUM:
            cols = [self._columns[f"{s}_{c}"] for s in stems[:k]]
            cols += [self.full(float("nan"))] * (k - len(cols))
            out[c] = torch.stack(cols, dim=1) if cols else self.full(0.0)[:, None][:, :0]
        return out

    def multiplicity(self, name: str) -> Any:
        """Particles per event (present slots), as a float tensor."""
        import torch

        px = self.particles(name)["px"]
        return torch.isfinite(px).sum(dim=1).to(px.dtype)


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _hypot(a: Any, b: Any) -> Any:
    if _is_tensor(a):
        import torch

        return torch.hypot(a, b)
    return np.hypot(a, b)


def _asinh(x: Any) -> Any:
    if _is_tensor(x):
        import torch

        return torch.asinh(x)
    return np.arcsinh(x)


def _atan2(a: Any, b: Any) -> Any:
    if _is_tensor(a):
        import torch

        return torch.atan2(a, b)
    return np.arctan2(a, b)


def _floor(x: Any, low: float) -> Any:
    return x.clamp_min(low) if _is_tensor(x) else np.maximum(x, low)


def _where_valid(valid: Any, values: Any) -> Any:
    if _is_tensor(values) or _is_tensor(valid):
        import torch

        values = torch.as_tensor(values)
        return torch.where(torch.as_tensor(valid), values, torch.full_like(values, float("nan")))
    return np.where(valid, np.asarray(values, dtype=np.float64), np.nan)


def _isfinite(x: Any) -> Any:
    if _is_tensor(x):
        import torch

        return torch.isfinite(x)
    return np.isfinite(x)


def _as_float(x: Any) -> Any:
    return x.double() if _is_tensor(x) and not x.is_floating_point() else (x if _is_tensor(x) else
                                                                          np.asarray(x, dtype=np.float64))


def _full(batch: Any, value: float) -> Any:
    return batch.full(value) if isinstance(batch, TensorEvents) else np.full(len(batch), value)


#: torch counterparts of the formula functions (the names of :data:`mlegpipe.formula.FUNCTIONS`).
_TORCH_FUNCTIONS = {"sqrt": "sqrt", "exp": "exp", "log": "log", "log10": "log10", "abs": "abs", "sin": "sin",
                    "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan", "atan2": "atan2",
                    "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "min": "minimum", "max": "maximum",
                    "hypot": "hypot"}


def _dispatching(name: str, impl: Callable[..., Any]) -> Callable[..., Any]:
    """The NumPy function ``impl``, or its torch counterpart when called with tensors."""
    def call(*args: Any) -> Any:
        if any(_is_tensor(a) for a in args):
            import torch

            fn = getattr(torch, _TORCH_FUNCTIONS[name])
            if name in ("min", "max"):
                out = args[0]
                for a in args[1:]:
                    out = fn(out, a)
                return out
            return fn(*args)
        return impl(*args)

    return call
