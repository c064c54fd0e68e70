"""Observable expressions: a whitelisted :mod:`ast` of names, particles and functions, compiled to closures.

Example:
    >>> from mlegpipe.events import particle_lists
    >>> j = particle_lists({"pt": [[30.0]], "eta": [[0.0]], "phi": [[0.0]], "mass": [[0.0]]})
    >>> compile_observable("ptj", "pt(j[0]) / 2")(EventBatch.from_columns({"j": j})).tolist()
    [15.0]
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError, FormulaError
from mlegpipe.formula import CONSTANTS, FUNCTIONS, parse_expression, root_to_python
from mlegpipe.observables.base import Observable
from mlegpipe.observables.particles import (
    _COLLECTION_FUNCTIONS,
    PAIR_FUNCTIONS,
    PARTICLE_FUNCTIONS,
    _collection_sum,
    _field,
    _ht,
    _particle,
    _single,
)
from mlegpipe.observables.resolve import _auto_or_registered
from mlegpipe.observables.tensors import _as_float, _dispatching, _full
from mlegpipe.schema import suggest

__all__ = ["compile_observable"]

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
    tree = parse_expression(expression, where, "expression")
    compiler = _ExpressionCompiler(root_to_python(expression.strip()), where,
                                   resolver or (lambda n: _auto_or_registered(n)))
    try:
        out = compiler.visit(tree)
    except RecursionError:
        raise FormulaError(f"in expression {expression!r}: nested too deeply", path=where) from None
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
