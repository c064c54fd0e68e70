"""Safe, vectorized arithmetic formulas from user strings (selection cuts, resolutions).

A formula is parsed with :mod:`ast` and checked against a whitelist (numbers,
declared variable names, arithmetic, comparisons, ``and``/``or``/``not`` (or
ROOT's ``&&``/``||``/``!``) and a
fixed set of mathematical functions); it is then compiled into nested NumPy
closures. Nothing is ever passed to ``eval`` or ``exec``.

Example:
    >>> import numpy as np
    >>> from mlegpipe.formula import compile_formula
    >>> f = compile_formula("sqrt(0.01**2 + (0.05 * E)**2)", ["E", "theta"], where="detector.devices[0].formula")
    >>> f.variables
    ('E',)
    >>> np.round(f({"E": np.array([0.0, 10.0])}), 4).tolist()
    [0.01, 0.5001]
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from mlegpipe.exceptions import FormulaError
from mlegpipe.schema import suggest

__all__ = ["CONSTANTS", "FUNCTIONS", "Formula", "compile_formula", "parse_expression", "root_to_python"]

#: Longest formula accepted (guards against pathological nesting).
MAX_LENGTH = 4000

Evaluator = Callable[[Mapping[str, Any]], Any]


def _min(*args: Any) -> Any:
    out = args[0]
    for a in args[1:]:
        out = np.minimum(out, a)
    return out


def _max(*args: Any) -> Any:
    out = args[0]
    for a in args[1:]:
        out = np.maximum(out, a)
    return out


#: Allowed functions: name -> (implementation, minimum arity, maximum arity or None).
FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "sqrt": (np.sqrt, 1, 1),
    "exp": (np.exp, 1, 1),
    "log": (np.log, 1, 1),
    "log10": (np.log10, 1, 1),
    "abs": (np.abs, 1, 1),
    "sin": (np.sin, 1, 1),
    "cos": (np.cos, 1, 1),
    "tan": (np.tan, 1, 1),
    "asin": (np.arcsin, 1, 1),
    "acos": (np.arccos, 1, 1),
    "atan": (np.arctan, 1, 1),
    "atan2": (np.arctan2, 2, 2),
    "sinh": (np.sinh, 1, 1),
    "cosh": (np.cosh, 1, 1),
    "tanh": (np.tanh, 1, 1),
    "min": (_min, 2, None),
    "max": (_max, 2, None),
    "hypot": (np.hypot, 2, 2),
}

#: Named constants (a declared variable of the same name takes precedence).
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Pow: np.power,
}

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}

# Why a construct is refused, for the error message (anything unlisted is "not allowed").
_HINTS: dict[type[ast.AST], str] = {
    ast.BitXor: "use ** for powers",
    ast.BitAnd: "use 'and'",
    ast.BitOr: "use 'or'",
    ast.Invert: "use 'not'",
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "indexing is not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.IfExp: "conditional expressions are not allowed; use a comparison",
}


def _token(node: ast.AST, text: str) -> str:
    """The source text of ``node`` (or its type name) for error messages."""
    segment = ast.get_source_segment(text, node) if hasattr(node, "lineno") else None
    return segment if segment else type(node).__name__


class _Compiler:
    """Turn a whitelisted AST into nested closures, collecting the variable names used."""

    def __init__(self, text: str, variables: frozenset[str], where: str) -> None:
        self.text = text
        self.variables = variables
        self.where = where
        self.used: set[str] = set()

    def fail(self, node: ast.AST, reason: str | None = None, hint: str | None = None) -> FormulaError:
        token = _token(node, self.text)
        reason = reason or _HINTS.get(type(node)) or f"{type(node).__name__} is not allowed"
        return FormulaError(f"in formula {self.text!r}: {reason}: {token!r}", path=self.where, hint=hint)

    def compile(self, node: ast.AST) -> Evaluator:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            raise self.fail(node)
        return method(node)

    def visit_Expression(self, node: ast.Expression) -> Evaluator:
        return self.compile(node.body)

    def visit_Constant(self, node: ast.Constant) -> Evaluator:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(node, f"only numbers are allowed as literals, not {type(value).__name__}")
        number = np.float64(value)
        return lambda env: number

    def visit_Name(self, node: ast.Name) -> Evaluator:
        name = node.id
        if name in self.variables:
            self.used.add(name)
            return lambda env: env[name]
        if name in CONSTANTS:
            number = np.float64(CONSTANTS[name])
            return lambda env: number
        if name in FUNCTIONS:
            raise self.fail(node, f"function {name!r} must be called with arguments")
        candidates = sorted(self.variables | CONSTANTS.keys())
        same_case = [c for c in candidates if c.lower() == name.lower()]
        hint = f"did you mean {same_case[0]!r}?" if same_case else suggest(name, candidates)
        known = ", ".join(sorted(self.variables)) or "none"
        raise self.fail(node, f"unknown variable {name!r} (variables: {known})", hint=hint)

    def visit_BinOp(self, node: ast.BinOp) -> Evaluator:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise self.fail(node, _HINTS.get(type(node.op), f"operator {type(node.op).__name__} is not allowed"))
        left, right = self.compile(node.left), self.compile(node.right)
        return lambda env: op(left(env), right(env))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Evaluator:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda env: np.negative(operand(env))
        if isinstance(node.op, ast.UAdd):
            return operand
        if isinstance(node.op, ast.Not):
            return lambda env: np.logical_not(operand(env))
        raise self.fail(node, _HINTS.get(type(node.op), f"operator {type(node.op).__name__} is not allowed"))

    def visit_BoolOp(self, node: ast.BoolOp) -> Evaluator:
        parts = [self.compile(v) for v in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or

        def evaluate(env: Mapping[str, Any]) -> Any:
            out = parts[0](env)
            for part in parts[1:]:
                out = combine(out, part(env))
            return out

        return evaluate

    def visit_Compare(self, node: ast.Compare) -> Evaluator:
        ops = []
        for op in node.ops:
            func = _COMPARE.get(type(op))
            if func is None:
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed")
            ops.append(func)
        operands = [self.compile(node.left)] + [self.compile(c) for c in node.comparators]

        def evaluate(env: Mapping[str, Any]) -> Any:
            values = [o(env) for o in operands]
            out = ops[0](values[0], values[1])
            for i in range(1, len(ops)):
                out = np.logical_and(out, ops[i](values[i], values[i + 1]))
            return out

        return evaluate

    def visit_Call(self, node: ast.Call) -> Evaluator:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node.func, "only the built-in math functions may be called")
        name = node.func.id
        if name not in FUNCTIONS:
            hint = suggest(name, FUNCTIONS)
            raise self.fail(node.func, f"unknown function {name!r} (allowed: {', '.join(sorted(FUNCTIONS))})", hint=hint)
        if node.keywords:
            raise self.fail(node.keywords[0], f"keyword arguments are not allowed in {name}()")
        func, lo, hi = FUNCTIONS[name]
        n = len(node.args)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}"
            raise self.fail(node, f"{name}() takes {want} argument(s), got {n}")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.fail(arg, "argument unpacking is not allowed")
        args = [self.compile(a) for a in node.args]
        return lambda env: func(*(a(env) for a in args))


class Formula:
    """A compiled, whitelisted formula; call it with a mapping of variable arrays.

    Attributes:
        text: the formula as written.
        where: the TOML path (or other location) it came from.
        variables: sorted tuple of the variable names the formula uses.

    Example:
        >>> f = compile_formula("Q2 > 10 and y < 0.9", ["Q2", "y"], where="truth.selection")
        >>> f({"Q2": [5.0, 20.0], "y": [0.5, 0.5]}).tolist()
        [False, True]
    """

    def __init__(self, text: str, where: str, variables: tuple[str, ...], evaluator: Evaluator) -> None:
        self.text = text
        self.where = where
        self.variables = variables
        self._evaluate = evaluator

    def __call__(self, env: Mapping[str, Any]) -> np.ndarray:
        """Evaluate element-wise; plain lists become float arrays, integers become floats.

        Returns a NumPy array (0-d when the formula uses no variable; broadcast it
        yourself). Awkward arrays pass through NumPy's ufunc dispatch unchanged.
        Out-of-domain values (``sqrt(-1)``) give NaN without a warning.
        """
        values: dict[str, Any] = {}
        for name in self.variables:
            if name not in env:
                raise FormulaError(
                    f"formula {self.text!r} needs variable {name!r}, which is not available",
                    path=self.where,
                    hint=suggest(name, env.keys()),
                )
            values[name] = _as_numeric(env[name])
        with np.errstate(all="ignore"):
            out = self._evaluate(values)
        return out if hasattr(out, "ndim") and not isinstance(out, np.generic) else np.asarray(out)

    def __repr__(self) -> str:
        return f"Formula({self.text!r}, where={self.where!r})"


def _as_numeric(value: Any) -> Any:
    if isinstance(value, bool | int | float):
        return np.float64(value)
    if isinstance(value, list | tuple):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, np.ndarray) and value.dtype.kind in "biu":
        return value.astype(np.float64)
    return value


_ROOT_OPERATORS = re.compile(r"&&|\|\||!(?!=)")


def root_to_python(text: str) -> str:
    """ROOT/C logical operators as Python's: ``&&`` → ``and``, ``||`` → ``or``, ``!`` → ``not`` (``!=`` kept).

    ``!`` becomes Python's ``not``, which binds more loosely than a comparison:
    ``!x > 1`` reads as ``not (x > 1)``; write ``!(...)`` to be explicit.

    Example:
        >>> " ".join(root_to_python("Q2 > 1 && !(y >= 0.95) || x != 0").split())
        'Q2 > 1 and not (y >= 0.95) or x != 0'
    """
    return _ROOT_OPERATORS.sub(lambda m: {"&&": " and ", "||": " or "}.get(m.group(), " not "), text)


def parse_expression(text: str, where: str, what: str = "formula") -> ast.Expression:
    """``text`` parsed as one Python expression (nothing is evaluated), for a compiler that whitelists its nodes.

    ROOT's ``&&``, ``||`` and ``!`` are accepted beside ``and``, ``or`` and ``not`` (:func:`root_to_python`).

    Raises:
        FormulaError: the text is longer than :data:`MAX_LENGTH`, is not an expression, or nests too deeply
            for the parser, naming ``where`` and ``what`` it is.

    Example:
        >>> type(parse_expression("a + 1", "cut").body).__name__
        'BinOp'
    """
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"the {what} is longer than {MAX_LENGTH} characters", path=where)
    try:
        return ast.parse(root_to_python(text.strip()), mode="eval")
    except SyntaxError as err:
        col = (err.offset or 1) - 1
        near = text.strip()[max(col, 0) : max(col, 0) + 10] or f"end of {what}"
        raise FormulaError(f"in {what} {text!r}: syntax error near {near!r}", path=where) from None
    except (ValueError, RecursionError, MemoryError) as err:
        raise FormulaError(f"in {what} {text!r}: cannot parse ({err})", path=where) from None


def compile_formula(text: str, variables: Iterable[str], where: str) -> Formula:
    """Parse ``text`` and check it against the whitelist; return a callable :class:`Formula`.

    Arguments:
        text: the formula, Python expression syntax (``**`` for powers).
        variables: the names the formula may use.
        where: the TOML path (or file/branch) the formula came from, for error messages.

    Returns:
        A :class:`Formula`.

    Raises:
        FormulaError: on a syntax error or any construct outside the whitelist,
            naming ``where``, the formula and the offending token.

    Example:
        >>> compile_formula("pT > 0.1 and abs(eta) < 3.5", ["pT", "eta"], "cut").variables
        ('eta', 'pT')
    """
    if not isinstance(text, str):
        raise FormulaError("a formula must be a string", path=where, value=text)
    if not text.strip():
        raise FormulaError("the formula is empty", path=where, value=text)
    tree = parse_expression(text, where)
    compiler = _Compiler(root_to_python(text.strip()), frozenset(variables), where)
    try:
        evaluator = compiler.compile(tree)
    except RecursionError:
        raise FormulaError(f"in formula {text!r}: nested too deeply", path=where) from None
    return Formula(text, where, tuple(sorted(compiler.used)), evaluator)
