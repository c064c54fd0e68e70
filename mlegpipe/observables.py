"""Observables: named quantities computed from events, declared once and used by every comparison.

An :class:`Observable` is a vectorized function of an
:class:`~mlegpipe.events.EventBatch` with what a plot needs to show it (label,
unit, log or linear axis). Observables come from three places:

* **plugins** register them through the ``mlegpipe_register_observables`` hook
  (the DIS domain registers x, Q², y, W², ν, E′, θ, ...), with 2D :class:`Pair` s;
* **any particle collection** has its own automatically: ``n_jets``,
  ``jets1_pt`` (the first particle's p_T), ``jets2_eta``, ...; a collection of
  multiplicity one drops the index (``lepton_pt``, ``lepton_theta``);
* **a pipeline** declares expressions in its ``[observables]`` table::

      [observables]
      m_W1 = "mass(q[1] + q[2])"
      pt_tt = { expr = "pt(sum(q))", label = "p_T(t t̄)", unit = "GeV" }
      dR_j12 = "deltaR(jets[0], jets[1])"
      compare = ["m_W1", "pt_tt", "jets1_pt"]     # what the report compares (default: all available)
      pairs = [["jets1_phi", "jets2_phi"]]          # 2D maps

Expressions are parsed with :mod:`ast` against a whitelist (no ``eval``): event
fields and other observables by name, ``coll[i]`` for the i-th particle of a
collection (0 = first), ``+``/``-`` of particles (four-vector sums), the
particle functions of :data:`PARTICLE_FUNCTIONS`, the collection functions
``n``, ``sum``, ``ht``, and the arithmetic of :mod:`mlegpipe.formula`. On event
batches four-vector arithmetic runs through ``vector``'s NumPy backend; on
torch tensors (:class:`TensorEvents`: a generator's decoded output) the same
compiled expression is differentiable, so MMD-style losses use the very
observables the report compares (:meth:`Observable.tensor`). An event whose
collection has too few particles for an index gives NaN there (counted, not
plotted); a collection that never has enough is an error.

Example:
    >>> import numpy as np
    >>> from mlegpipe.events import EventBatch, particle_lists
    >>> q = particle_lists({"px": [[3.0, -3.0]], "py": [[4.0, -4.0]], "pz": [[0.0, 0.0]], "E": [[5.0, 5.0]]})
    >>> batch = EventBatch.from_columns({"q": q})
    >>> obs = compile_observable("m", "mass(q[0] + q[1])", where="observables.m")
    >>> obs(batch).tolist(), resolve("q1_pt")(batch).tolist()
    ([10.0], [5.0])
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import vector

from mlegpipe.events import FOUR_MOMENTUM, WEIGHT, EventBatch
from mlegpipe.exceptions import ConfigError, DataError, FormulaError
from mlegpipe.formula import CONSTANTS, FUNCTIONS, MAX_LENGTH
from mlegpipe.schema import suggest

__all__ = [
    "TensorEvents",
    "PAIR_FUNCTIONS",
    "PARTICLE_FUNCTIONS",
    "PARTICLE_QUANTITIES",
    "Observable",
    "Peak",
    "ObservableSet",
    "Pair",
    "automatic",
    "compile_observable",
    "is_log",
    "observable_set",
    "resolve",
    "values_of",
]


@dataclass(frozen=True)
class Peak:
    """A resonance peak an observable shows (a W or top mass): what the report's peak figures measure.

    Arguments:
        pole: the pole mass, centre of the window (GeV).
        width: the expected full width (GeV): the scale of the fit window.
        window: half-width of the mass window whose fraction of events is reported (GeV).

    Example:
        >>> Peak(80.385, 2.092).window
        5.0
    """

    pole: float
    width: float
    window: float = 5.0


@dataclass(frozen=True)
class Observable:
    """A named quantity computed from events.

    Arguments:
        name: what pipelines and reports call it (``Q2``, ``m_W1``, ``jets1_pt``).
        compute: ``compute(batch) -> (n,) float64`` (NaN where undefined).
        requires: event fields or collections it needs (checked by :meth:`available`).
        label: axis label (matplotlib mathtext), e.g. ``r"$Q^2$"``.
        unit: unit shown beside the label (``GeV``).
        log: binned and drawn on a log axis when all values are positive.
        periodic: an angle (φ-like): always on a linear axis.
        needs_beams: computed from the events' beams as well.
        compare: compared by default wherever available (False: on request, e.g. a surrogate's inputs).
        when: ``when(batch)`` decides availability instead of ``requires`` (an observable read from a field
            when there is one, else computed from other fields).
        doc: one line for ``mlegpipe plugins`` and the documentation.
        peak: a resonance peak the observable shows (the report adds window fractions, fitted pole and width).

    Example:
        >>> o = Observable("twice_a", lambda b: 2 * b.column("a"), requires=("a",))
        >>> o(EventBatch.from_columns({"a": [1.5]})).tolist(), o.available(EventBatch.from_columns({"b": [1]}))
        ([3.0], False)
    """

    name: str
    compute: Callable[[EventBatch], np.ndarray]
    requires: tuple[str, ...] = ()
    label: str = ""
    unit: str = ""
    log: bool = False
    periodic: bool = False
    needs_beams: bool = False
    compare: bool = True
    when: Callable[[EventBatch], bool] | None = None
    doc: str = ""
    peak: Peak | None = None

    def available(self, batch: EventBatch) -> bool:
        """True when ``batch`` has what this observable needs."""
        if self.when is not None:
            return bool(self.when(batch))
        if self.needs_beams and batch.beams is None:
            return False
        collections = set(batch.collections)
        return all(batch.has(r) or r in collections for r in self.requires)

    def __call__(self, batch: EventBatch) -> np.ndarray:
        return np.asarray(self.compute(batch), dtype=np.float64)

    def tensor(self, columns: Mapping[str, Any]) -> Any:
        """The observable of events given as torch tensors by field name (differentiable).

        ``columns`` holds flat fields and particles as ``{coll}{i}_{px,py,pz,E}`` (a collection feature map's
        decoded fields) or ``{coll}_{px,...}`` (multiplicity one).

        Raises:
            ConfigError: the observable is computed with NumPy only (a plugin's function, not an expression).

        Example:
            >>> import torch
            >>> q = {f"q{i}_{c}": torch.tensor([v]) for i, vals in ((1, (3.0, 4.0, 0.0, 5.0)), (2, (-3.0, -4.0, 0.0, 5.0)))
            ...      for c, v in zip(("px", "py", "pz", "E"), vals)}
            >>> compile_observable("m", "mass(q[0] + q[1])").tensor(q).tolist()
            [10.0]
        """
        why = ""
        try:
            out = self.compute(TensorEvents(columns))
        except (TypeError, AttributeError, RuntimeError) as err:
            out, why = None, f": {err}"
        if not _is_tensor(out):  # a NumPy function gives numbers without gradients: never silently
            raise ConfigError(f"observable {self.name!r} cannot be computed on tensors (it is a NumPy function of "
                              f"event batches; declare it as an expression instead){why}",
                              path=f"observables.{self.name}")
        return out

    @property
    def axis_label(self) -> str:
        """Label with unit: ``$Q^2$ [GeV$^2$]``."""
        text = self.label or self.name
        return f"{text} [{self.unit}]" if self.unit else text


@dataclass(frozen=True)
class Pair:
    """Two observables compared jointly (2D correlation maps and metrics).

    Arguments:
        x, y: observable names.
        bins: optional fixed binning ``((low, high, n), (low, high, n))`` (log spaced for log observables),
            e.g. the thesis's 49 × 49 log bins in (x, Q²).
        values: optional ``values(batch) -> (x, y)`` used instead of the observables themselves.
        overlay: optional ``overlay(ax, beams, **cuts)`` drawing domain lines (kinematic limits) on the map.

    Example:
        >>> Pair("x", "Q2").name
        'x:Q2'
    """

    x: str
    y: str
    bins: tuple[tuple[float, float, int], tuple[float, float, int]] | None = None
    values: Callable[[EventBatch], tuple[np.ndarray, np.ndarray]] | None = None
    overlay: Callable[..., None] | None = None

    @property
    def name(self) -> str:
        """``x:y``."""
        return f"{self.x}:{self.y}"


# -- particles ------------------------------------------------------------------------------------------------

#: Per-particle quantities of the automatic observables ``COLL{i}_QUANTITY`` (unit, label, periodic).
PARTICLE_QUANTITIES: dict[str, tuple[str, str, bool]] = {
    "E": ("GeV", "E", False), "px": ("GeV", "p_x", False), "py": ("GeV", "p_y", False),
    "pz": ("GeV", "p_z", False), "pt": ("GeV", "p_T", False), "p": ("GeV", "|p|", False),
    "P": ("GeV", "|p|", False), "eta": ("", r"\eta", False), "phi": ("rad", r"\phi", True),
    "theta": ("rad", r"\theta", False), "mass": ("GeV", "m", False), "rapidity": ("", "y", False),
}


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


# -- expressions ---------------------------------------------------------------------------------------------

@dataclass
class _Compiled:
    """A compiled expression node: its type and an evaluator of a batch."""

    kind: str  # "number", "particle" or "collection"
    run: Callable[[EventBatch], Any]
    text: str = ""


class _ExpressionCompiler:
    """Whitelisted AST of an observable expression -> closures over an EventBatch."""

    def __init__(self, text: str, where: str, resolver: Callable[[str], Observable | None]) -> None:
        self.text = text
        self.where = where
        self.resolver = resolver
        self.names: set[str] = set()

    def error(self, node: ast.AST, message: str) -> FormulaError:
        token = ast.get_source_segment(self.text, node) if hasattr(node, "lineno") else None
        return FormulaError(f"{message} (at {token!r} in {self.text!r})" if token else f"{message} in {self.text!r}",
                            path=self.where)

    def number(self, node: ast.AST) -> _Compiled:
        out = self.visit(node)
        if out.kind == "name":  # not an observable nor a collection's particle: an event field
            name, where = out.text, self.where
            return _Compiled("number", lambda b: _field(b, name, where))
        if out.kind != "number":
            raise self.error(node, f"a {out.kind} where a number is needed: use a function of it, e.g. pt(...) or "
                             "mass(...)" if out.kind == "particle" else
                             f"a {out.kind} where a number is needed: use n(...), ht(...) or index a particle")
        return out

    def visit(self, node: ast.AST) -> _Compiled:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            hints = {ast.Attribute: "attribute access is not allowed; use a function such as pt(x)",
                     ast.Lambda: "lambdas are not allowed", ast.IfExp: "conditional expressions are not allowed"}
            raise self.error(node, hints.get(type(node), f"{type(node).__name__} is not allowed in an observable"))
        return method(node)

    def visit_Expression(self, node: ast.Expression) -> _Compiled:  # noqa: N802 - ast visitor protocol
        return self.visit(node.body)

    def visit_Constant(self, node: ast.Constant) -> _Compiled:  # noqa: N802
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise self.error(node, "only numbers are allowed as constants")
        value = float(node.value)
        return _Compiled("number", lambda b: _full(b, value))

    def visit_Name(self, node: ast.Name) -> _Compiled:  # noqa: N802
        name = node.id
        self.names.add(name)
        if name in CONSTANTS:
            value = CONSTANTS[name]
            return _Compiled("number", lambda b: _full(b, value))
        observable = self.resolver(name)
        if observable is not None:
            return _Compiled("number", observable.compute)

        def run(batch: EventBatch) -> Any:
            if batch.has_collection(name):
                return name
            raise DataError("no such field, collection or observable in the events; fields: "
                            + ", ".join(batch.fields) + "; collections: " + (", ".join(batch.collections) or "none"),
                            path=self.where, value=name, hint=suggest(name, [*batch.fields, *batch.collections]))

        return _Compiled("name", run, name)

    def visit_Subscript(self, node: ast.Subscript) -> _Compiled:  # noqa: N802
        if not isinstance(node.value, ast.Name):
            raise self.error(node, "only a collection can be indexed, e.g. jets[0]")
        index = node.slice
        if not (isinstance(index, ast.Constant) and isinstance(index.value, int) and not isinstance(index.value, bool)
                and index.value >= 0):
            raise self.error(node, "a particle index must be a whole number >= 0, e.g. jets[0] for the first")
        name, i = node.value.id, int(index.value)
        self.names.add(name)
        where = self.where
        return _Compiled("particle", lambda b: _particle(b, name, i, where), f"{name}[{i}]")

    def visit_UnaryOp(self, node: ast.UnaryOp) -> _Compiled:  # noqa: N802
        if not isinstance(node.op, ast.USub | ast.UAdd):
            raise self.error(node, "only + and - are allowed as unary operators")
        inner = self.number(node.operand)
        if isinstance(node.op, ast.UAdd):
            return inner
        return _Compiled("number", lambda b: -inner.run(b))

    def visit_BinOp(self, node: ast.BinOp) -> _Compiled:  # noqa: N802
        left, right = self.visit(node.left), self.visit(node.right)
        if left.kind == "particle" or right.kind == "particle":
            if not (left.kind == right.kind == "particle" and isinstance(node.op, ast.Add | ast.Sub)):
                raise self.error(node, "particles can only be added to or subtracted from particles")
            sub = isinstance(node.op, ast.Sub)
            return _Compiled("particle", lambda b: left.run(b) - right.run(b) if sub else left.run(b) + right.run(b))
        ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
               ast.Pow: operator.pow}
        op = ops.get(type(node.op))
        if op is None:
            raise self.error(node, "only + - * / ** are allowed")
        left, right = self.number(node.left), self.number(node.right)
        return _Compiled("number", lambda b: op(left.run(b), right.run(b)))

    def visit_Call(self, node: ast.Call) -> _Compiled:  # noqa: N802
        if not isinstance(node.func, ast.Name):
            raise self.error(node, "only calls of known functions by name are allowed")
        fname = node.func.id
        if node.keywords:
            raise self.error(node, "keyword arguments are not allowed")
        args = node.args
        if fname in PARTICLE_FUNCTIONS:
            self._arity(node, fname, 1)
            particle = self._particle_arg(args[0], fname)
            fn = PARTICLE_FUNCTIONS[fname]
            return _Compiled("number", lambda b: fn(particle.run(b)))
        if fname in PAIR_FUNCTIONS:
            self._arity(node, fname, 2)
            a, c = self._particle_arg(args[0], fname), self._particle_arg(args[1], fname)
            fn2 = PAIR_FUNCTIONS[fname]
            return _Compiled("number", lambda b: fn2(a.run(b), c.run(b)))
        if fname in _COLLECTION_FUNCTIONS:
            self._arity(node, fname, 1)
            if not isinstance(args[0], ast.Name):
                raise self.error(node, f"{fname}() takes a collection name, e.g. {fname}(jets)")
            coll = args[0].id
            self.names.add(coll)
            if fname == "n":
                return _Compiled("number", lambda b: _as_float(b.multiplicity(coll)))
            if fname == "sum":
                return _Compiled("particle", lambda b: _collection_sum(b, coll))
            return _Compiled("number", lambda b: _ht(b, coll))
        if fname in FUNCTIONS:
            impl, low, high = FUNCTIONS[fname]
            impl = _dispatching(fname, impl)
            if len(args) < low or (high is not None and len(args) > high):
                raise self.error(node, f"{fname}() takes {low}" + (f" to {high}" if high != low else "")
                                 + f" arguments, got {len(args)}")
            compiled = [self.number(a) for a in args]
            return _Compiled("number", lambda b: impl(*(c.run(b) for c in compiled)))
        known = sorted([*PARTICLE_FUNCTIONS, *PAIR_FUNCTIONS, *_COLLECTION_FUNCTIONS, *FUNCTIONS])
        raise self.error(node, "not a known function; known: " + ", ".join(known)
                         + (f" (did you mean {suggest(fname, known)!r}?)" if suggest(fname, known) else ""))

    def _arity(self, node: ast.Call, fname: str, n: int) -> None:
        if len(node.args) != n:
            raise self.error(node, f"{fname}() takes {n} argument{'s' if n > 1 else ''}, got {len(node.args)}")

    def _particle_arg(self, node: ast.AST, fname: str) -> _Compiled:
        out = self.visit(node)
        if out.kind == "name":  # a collection of multiplicity one (the lepton) stands for its particle
            name, where = out.text, self.where
            return _Compiled("particle", lambda b: _single(b, name, where))
        if out.kind != "particle":
            raise self.error(node, f"{fname}() takes a particle, e.g. {fname}(jets[0]) or {fname}(q[0] + q[1])")
        return out


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


def _single(batch: EventBatch, name: str, where: str) -> _Particle:
    if not batch.has_collection(name):
        raise DataError("no such particle collection in the events; collections: "
                        + (", ".join(batch.collections) or "none"), path=where, value=name,
                        hint=suggest(name, batch.collections))
    if len(batch) and int(batch.multiplicity(name).max()) > 1:
        raise DataError(f"collection {name!r} holds several particles per event: index one, e.g. {name}[0]",
                        path=where, value=name)
    return _particle(batch, name, 0, where)


def compile_observable(
    name: str,
    expression: str,
    *,
    where: str = "observables",
    label: str = "",
    unit: str = "",
    log: bool = False,
    periodic: bool = False,
    resolver: Callable[[str], Observable | None] | None = None,
) -> Observable:
    """Compile an expression into an :class:`Observable` (never ``eval``).

    Arguments:
        name: the observable's name.
        expression: e.g. ``"mass(jets[0] + jets[1])"``, ``"deltaR(q[0], q[3])"``, ``"sqrt(Q2) / 2"``.
        where: TOML path for error messages.
        resolver: resolves names of other observables (default: registered and automatic ones).

    Raises:
        FormulaError: syntax, a construct outside the whitelist, an unknown function, or a type mismatch.

    Example:
        >>> from mlegpipe.events import particle_lists
        >>> j = particle_lists({"pt": [[50.0, 30.0]], "eta": [[0.0, 0.0]], "phi": [[0.0, 3.0]], "mass": [[0.0, 0.0]]})
        >>> round(float(compile_observable("dphi", "deltaphi(j[0], j[1])")(EventBatch.from_columns({"j": j}))[0]), 6)
        -3.0
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError("an observable needs an expression", path=where, value=expression)
    if len(expression) > MAX_LENGTH:
        raise FormulaError(f"expression longer than {MAX_LENGTH} characters", path=where)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise FormulaError(f"syntax error in {expression!r}: {err.msg}", path=where) from None
    compiler = _ExpressionCompiler(expression.strip(), where, resolver or (lambda n: _auto_or_registered(n)))
    out = compiler.visit(tree)
    if out.kind == "particle":
        raise compiler.error(tree.body, "the expression gives a particle, not a number: wrap it, e.g. mass(...)")
    if out.kind == "name":
        target = out.text

        def field_value(batch: EventBatch) -> np.ndarray:
            if batch.has(target):
                return batch.column(target)
            out.run(batch)  # raises naming the missing name
            return batch.column(target)

        return Observable(name, field_value, (target,), label, unit, log, periodic, doc=expression)
    if out.kind == "collection":
        raise compiler.error(tree.body, "a collection is not a number: use n(...), ht(...) or index a particle")
    run = out.run
    return Observable(name, lambda b: _as_float(run(b)), tuple(sorted(compiler.names)), label,
                      unit, log, periodic, doc=expression)


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
        """True when ``name`` can be computed for ``batch`` (a field, or an observable whose inputs it has)."""
        return batch.has(name) or self.get(name).available(batch)

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
    excluded = {WEIGHT} | components
    for b in batches:
        if b.beams is not None:
            excluded |= {f for f in b.beams.fields if f}
    flat = [n for n in batches[0].fields if n not in excluded and n not in skip and n not in names
            and all(_is_flat_number(b, n) for b in batches)]
    return [n for n in names if n not in skip] + flat


def _mass_of(batch: EventBatch, coll: str, i: int) -> np.ndarray:
    parts = batch.particles(coll, i)
    e, px, py, pz = (parts[c][:, i - 1] for c in ("E", "px", "py", "pz"))
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0))


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


def is_log(observable: Observable, *samples: np.ndarray) -> bool:
    """Log binning for ``observable``: declared log and every sample positive.

    Example:
        >>> is_log(Observable("a", lambda b: b, log=True), np.array([1.0, 2.0]))
        True
    """
    return observable.log and not observable.periodic and all(
        np.nanmin(s) > 0 for s in samples if np.size(s) and np.isfinite(s).any())

