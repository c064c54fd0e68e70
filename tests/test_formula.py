"""Tests of the safe formula parser: correctness against NumPy and the whitelist."""

from __future__ import annotations

import numpy as np
import pytest

from mlegpipe.exceptions import ConfigError, FormulaError
from mlegpipe.formula import FUNCTIONS, compile_formula

RNG = np.random.default_rng(7)
X = RNG.uniform(0.1, 0.9, 50)
Y = RNG.uniform(0.1, 0.9, 50)
ENV = {"x": X, "y": Y}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x + y * 2 - 1 / y", X + Y * 2 - 1 / Y),
        ("-x ** 2", -(X**2)),
        ("2 ** -x", 2.0**-X),
        ("(x + y) / (x - y + 3)", (X + Y) / (X - Y + 3)),
        ("sqrt(x) + exp(y) + log(x) + log10(y)", np.sqrt(X) + np.exp(Y) + np.log(X) + np.log10(Y)),
        ("abs(x - y)", np.abs(X - Y)),
        ("sin(x) * cos(y) + tan(x)", np.sin(X) * np.cos(Y) + np.tan(X)),
        ("asin(x) + acos(y) + atan(x) + atan2(y, x - 0.5)", np.arcsin(X) + np.arccos(Y) + np.arctan(X) + np.arctan2(Y, X - 0.5)),
        ("sinh(x) + cosh(y) + tanh(x)", np.sinh(X) + np.cosh(Y) + np.tanh(X)),
        ("min(x, y) + max(x, y, 0.5)", np.minimum(X, Y) + np.maximum(np.maximum(X, Y), 0.5)),
        ("hypot(x, y)", np.hypot(X, Y)),
        ("pi * x + e", np.pi * X + np.e),
        ("1e-3 * x + 7", 1e-3 * X + 7),
    ],
)
def test_arithmetic_matches_numpy(text: str, expected: np.ndarray) -> None:
    out = compile_formula(text, ["x", "y"], "test")(ENV)
    np.testing.assert_allclose(out, expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x < y", X < Y),
        ("x <= 0.5", X <= 0.5),
        ("x > y", X > Y),
        ("x >= 0.5", X >= 0.5),
        ("x == x", np.ones_like(X, dtype=bool)),
        ("x != y", X != Y),
        ("0.2 < x < 0.6 <= y", (0.2 < X) & (X < 0.6) & (0.6 <= Y)),
        ("x > 0.5 and y < 0.5", (X > 0.5) & (Y < 0.5)),
        ("x > 0.8 or y < 0.2 or x < 0.15", (X > 0.8) | (Y < 0.2) | (X < 0.15)),
        ("not x > 0.5", ~(X > 0.5)),
        ("not (x > 0.5 and y > 0.5)", ~((X > 0.5) & (Y > 0.5))),
    ],
)
def test_logic_is_elementwise(text: str, expected: np.ndarray) -> None:
    out = compile_formula(text, ["x", "y"], "test")(ENV)
    assert out.dtype == bool
    np.testing.assert_array_equal(out, expected)


def test_variables_lists_only_used_names() -> None:
    f = compile_formula("sqrt(E) + pi", ["E", "theta", "phi"], "w")
    assert f.variables == ("E",)
    assert compile_formula("0.01", ["E"], "w").variables == ()


def test_constant_formula_and_scalars() -> None:
    assert float(compile_formula("0.5 * 4", [], "w")({})) == 2.0
    assert float(compile_formula("x / 2", ["x"], "w")({"x": 3})) == 1.5  # integers become floats


def test_integer_arrays_become_float() -> None:
    out = compile_formula("x ** -1", ["x"], "w")({"x": np.array([2, 4])})
    np.testing.assert_allclose(out, [0.5, 0.25])


def test_variable_shadows_constant() -> None:
    assert float(compile_formula("e", ["e"], "w")({"e": 3.0})) == 3.0


def test_out_of_domain_gives_nan_silently() -> None:
    with np.errstate(all="raise"):
        out = compile_formula("sqrt(x - 1)", ["x"], "w")({"x": np.array([0.0, 5.0])})
    assert np.isnan(out[0]) and out[1] == 2.0


def test_awkward_arrays_pass_through() -> None:
    ak = pytest.importorskip("awkward")
    arr = ak.Array([[1.0, 4.0], [], [9.0]])
    out = compile_formula("sqrt(x) > 1.5", ["x"], "w")({"x": arr})
    assert out.tolist() == [[False, True], [], [True]]


FORBIDDEN = [
    ("__import__('os')", "__import__"),
    ("x.real", "x.real"),
    ("x.__class__", "x.__class__"),
    ("x[0]", "x[0]"),
    ("lambda: 1", "lambda"),
    ("'abc'", "'abc'"),
    ("x ^ 2", "x ^ 2"),
    ("x & y", "x & y"),
    ("x | y", "x | y"),
    ("~x", "~x"),
    ("x // 2", "x // 2"),
    ("x % 2", "x % 2"),
    ("x << 1", "x << 1"),
    ("[i for i in x]", "[i for i in x]"),
    ("{i for i in x}", "{i for i in x}"),
    ("(i for i in x)", "(i for i in x)"),
    ("[x, y]", "[x, y]"),
    ("(x, y)", "(x, y)"),
    ("{'a': 1}", "{'a': 1}"),
    ("open('f')", "open"),
    ("eval('1')", "eval"),
    ("np.sqrt(x)", "np.sqrt"),
    ("sqrt", "sqrt"),
    ("sqrt(x)(y)", "sqrt(x)"),
    ("sqrt(*x)", "*x"),
    ("sqrt(x=1)", "x=1"),
    ("x if y else 1", "x if y else 1"),
    ("(z := 1)", "z := 1"),
    ("x in y", "x in y"),
    ("x is y", "x is y"),
    ("True", "True"),
    ("None", "None"),
    ("1j", "1j"),
    ("b'x'", "b'x'"),
    ("f'{x}'", "f'{x}'"),
    ("x @ y", "x @ y"),
    ("atan2(x)", "atan2(x)"),
    ("sqrt(x, y)", "sqrt(x, y)"),
    ("min(x)", "min(x)"),
]


@pytest.mark.parametrize(("text", "token"), FORBIDDEN)
def test_forbidden_constructs_are_rejected(text: str, token: str) -> None:
    with pytest.raises(FormulaError) as info:
        compile_formula(text, ["x", "y"], "truth.selection")
    message = str(info.value)
    assert message.startswith("truth.selection: ")
    assert repr(text) in message  # the formula text
    assert token in message  # the offending token


@pytest.mark.parametrize("text", ["x +", "x ** * 2", "(x", "x y", "import os", "x = 1", ""])
def test_syntax_errors_are_formula_errors(text: str) -> None:
    with pytest.raises(FormulaError, match="detector.efficiency"):
        compile_formula(text, ["x"], "detector.efficiency")


def test_unknown_variable_suggests_close_name() -> None:
    with pytest.raises(FormulaError) as info:
        compile_formula("thta > 0.1", ["theta", "phi", "E"], "detector.devices[2].formula")
    message = str(info.value)
    assert "detector.devices[2].formula" in message
    assert "'thta'" in message
    assert "did you mean 'theta'?" in message


def test_unknown_variable_suggests_other_case() -> None:
    with pytest.raises(FormulaError, match="did you mean 'pT'"):
        compile_formula("pt > 0.2", ["pT", "eta"], "cut")


def test_unknown_function_suggests_close_name() -> None:
    with pytest.raises(FormulaError, match="did you mean 'sqrt'"):
        compile_formula("sqr(x)", ["x"], "w")


def test_formula_error_is_a_config_error() -> None:
    assert issubclass(FormulaError, ConfigError)


def test_missing_variable_at_call_time() -> None:
    f = compile_formula("x + y", ["x", "y"], "cut")
    with pytest.raises(FormulaError, match="'y'"):
        f({"x": X})


def test_non_string_and_overlong_formula() -> None:
    with pytest.raises(FormulaError):
        compile_formula(3.0, ["x"], "w")  # type: ignore[arg-type]
    with pytest.raises(FormulaError, match="longer"):
        compile_formula("x + " * 2000 + "x", ["x"], "w")


def test_huge_exponent_does_not_hang_or_raise() -> None:
    out = compile_formula("10 ** 10 ** 10", [], "w")({})
    assert np.isinf(out)


def test_every_whitelisted_function_is_tested() -> None:
    tested = {"sqrt", "exp", "log", "log10", "abs", "sin", "cos", "tan", "asin", "acos", "atan", "atan2"}
    tested |= {"sinh", "cosh", "tanh", "min", "max", "hypot"}
    assert tested == set(FUNCTIONS)


def test_root_logical_operators_select_the_same_events() -> None:
    """A cut written as in ROOT selects exactly what the Python spelling selects; `!=` keeps its meaning."""
    rng = np.random.default_rng(3)
    env = {"Q2": rng.uniform(0, 10, 1000), "y": rng.uniform(0, 1, 1000), "x": rng.integers(0, 3, 1000) * 1.0}
    root = compile_formula("Q2 > 1 && y < 0.95 || !(x != 0)", ["Q2", "y", "x"], "truth.cut")(env)
    python = compile_formula("Q2 > 1 and y < 0.95 or not (x != 0)", ["Q2", "y", "x"], "truth.cut")(env)
    expected = ((env["Q2"] > 1) & (env["y"] < 0.95)) | (env["x"] == 0)
    np.testing.assert_array_equal(root, expected)
    np.testing.assert_array_equal(python, expected)
    assert 0 < expected.sum() < 1000


def test_root_operators_do_not_open_a_door_to_python() -> None:
    with pytest.raises(FormulaError, match="truth.cut"):
        compile_formula("!__import__('os') && Q2 > 1", ["Q2"], "truth.cut")
