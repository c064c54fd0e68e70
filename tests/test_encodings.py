"""Piecewise-linear input encoding (mlegpipe.encodings)."""

from __future__ import annotations

import pytest
import torch

from mlegpipe.encodings import PiecewiseLinearEncoding
from mlegpipe.exceptions import ConfigError


def test_positions_inside_and_outside_the_range() -> None:
    enc = PiecewiseLinearEncoding(1, bins=4, low=0.0, high=4.0)
    out = enc(torch.tensor([[-1.0], [0.0], [2.5], [4.0], [9.0]]))
    assert out.tolist() == [
        [-1.0, 0.0, 0.0, 0.0, 0.0],   # below: every interval empty, the raw value kept
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [2.5, 1.0, 1.0, 0.5, 0.0],    # two intervals full, half of the third
        [4.0, 1.0, 1.0, 1.0, 1.0],
        [9.0, 1.0, 1.0, 1.0, 1.0],    # above: all full; the raw column still tells 9 from 4
    ]


def test_features_are_encoded_independently() -> None:
    enc = PiecewiseLinearEncoding(2, bins=2, low=-1.0, high=1.0)
    out = enc(torch.tensor([[0.5, -0.5]]))
    assert out.tolist() == [[0.5, -0.5, 1.0, 0.5, 0.5, 0.0]]
    assert enc.n_out == 6


def test_gradient_is_one_over_the_interval_width_plus_the_raw_path() -> None:
    enc = PiecewiseLinearEncoding(1, bins=8, low=-4.0, high=4.0)   # intervals of width 1
    x = torch.tensor([[0.3], [7.0]], requires_grad=True)
    enc(x).sum().backward()
    # inside the range: raw (1) + the one interval it lies in (1/1); outside: the raw path only
    assert x.grad.flatten().tolist() == pytest.approx([2.0, 1.0])


def test_the_sum_of_positions_recovers_the_value_inside_the_range() -> None:
    enc = PiecewiseLinearEncoding(1, bins=16, low=-4.0, high=4.0)
    x = torch.linspace(-3.9, 3.9, 41)[:, None]
    positions = enc(x)[:, 1:]
    assert torch.allclose(-4.0 + 0.5 * positions.sum(1), x.flatten(), atol=1e-6)


@pytest.mark.parametrize(("features", "bins", "low", "high"), [(1, 0, -1.0, 1.0), (0, 4, -1.0, 1.0),
                                                              (1, 4, 1.0, 1.0)])
def test_bad_settings_are_config_errors(features: int, bins: int, low: float, high: float) -> None:
    with pytest.raises(ConfigError):
        PiecewiseLinearEncoding(features, bins, low, high)
