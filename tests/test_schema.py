"""Parameter schemas: types, constraints, unknown keys."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import build_params, describe_params, param


@dataclass
class Inner:
    eta: list[float] = param([-1.0, 1.0])


@dataclass
class P:
    events: int = param(100, min=1)
    q2_min: float = param(1.0, min=0.0, exclusive_min=True)
    preset: str = param("hera", choices=("hera", "eic18x275"))
    cut: str | None = None
    flags: list[str] = param([])
    zone: Inner = param(None)  # type: ignore[assignment]


def test_defaults_and_conversion() -> None:
    p = build_params(P, {"q2_min": 2, "zone": {"eta": [0, 1]}}, "truth")
    assert p.events == 100 and p.q2_min == 2.0 and isinstance(p.q2_min, float)
    assert p.zone.eta == [0.0, 1.0]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"evnts": 3}, "truth.evnts: unknown parameter; known: cut, events, flags, preset, q2_min, zone (did you mean 'events'?)"),
        ({"events": -5}, "truth.events = -5: must be >= 1"),
        ({"events": "many"}, "truth.events = 'many': expected an integer"),
        ({"events": 2.5}, "expected an integer"),
        ({"q2_min": 0.0}, "truth.q2_min = 0.0: must be > 0.0"),
        ({"preset": "hira"}, "expected one of 'hera', 'eic18x275' (did you mean 'hera'?)"),
        ({"flags": "a"}, "truth.flags = 'a': expected a list"),
        ({"flags": [1]}, "truth.flags[0] = 1: expected a string"),
        ({"zone": {"eta": ["x"]}}, "truth.zone.eta[0] = 'x': expected a number"),
        ({"events": True}, "expected an integer"),
    ],
)
def test_errors_name_path_and_value(raw: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_params(P, raw, "truth")
    assert fragment in str(err.value)


def test_describe() -> None:
    rows = {r[0]: r for r in describe_params(P)}
    assert rows["events"][1:3] == ("int", 100)
    assert rows["cut"][1] == "str or nothing"
