"""Iterative Bayesian unfolding: exact answers on diagonal, swapped and 2×2 responses, efficiency, errors."""

from __future__ import annotations

import numpy as np
import pytest

from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.unfold import ibu, response_matrix

EDGES = np.array([0.0, 1.0, 2.0])


def _pairs(table: dict[tuple[int, int], int]) -> tuple[np.ndarray, np.ndarray]:
    """Simulated (vertex, detector) values from counts per (vertex bin, detector bin); bin k ↦ value k + 0.5."""
    v, d = [], []
    for (i, j), n in table.items():
        v += [i + 0.5] * n
        d += [j + 0.5 if j >= 0 else np.nan] * n
    return np.array(v), np.array(d)


@pytest.mark.parametrize("iterations", [1, 4, 50])
def test_diagonal_response_returns_the_data(iterations: int) -> None:
    edges = np.linspace(0.0, 5.0, 6)
    v = np.repeat(np.arange(5) + 0.5, [3, 1, 4, 1, 5])
    resp = response_matrix(v, v, edges, edges)
    np.testing.assert_allclose(resp.matrix, np.eye(5))
    data = np.array([10.0, 0.0, 7.0, 300.0, 2.0])
    np.testing.assert_allclose(ibu(data, resp, iterations), data, rtol=1e-12)


def test_two_by_two_one_iteration_and_convergence_to_the_inverse() -> None:
    # R = [[0.8, 0.3], [0.2, 0.7]] (columns: vertex bins), exact by construction
    v, d = _pairs({(0, 0): 8, (0, 1): 2, (1, 0): 3, (1, 1): 7})
    resp = response_matrix(v, d, EDGES, EDGES)
    r = np.array([[0.8, 0.3], [0.2, 0.7]])
    np.testing.assert_allclose(resp.matrix, r, rtol=1e-12)
    truth = np.array([100.0, 50.0])
    data = r @ truth  # [95, 55]
    # one Bayes step from the flat prior of the simulation (10 events per bin), by hand
    folded = r @ np.array([0.5, 0.5])
    expected = 0.5 * (r.T @ (data / folded))
    np.testing.assert_allclose(ibu(data, resp, 1), expected, rtol=1e-12)
    # many iterations converge to the maximum-likelihood solution R⁻¹ d (positive here)
    np.testing.assert_allclose(ibu(data, resp, 2000), truth, rtol=1e-3)


def test_swapped_bins_and_efficiency_correction() -> None:
    # vertex bin 0 is measured in detector bin 1 half of the time, lost otherwise; bin 1 → bin 0 always
    v, d = _pairs({(0, 1): 5, (0, -1): 5, (1, 0): 10})
    resp = response_matrix(v, d, EDGES, EDGES)
    np.testing.assert_allclose(resp.efficiency, [0.5, 1.0])
    out = ibu(np.array([40.0, 30.0]), resp, 3)
    np.testing.assert_allclose(out, [60.0, 40.0], rtol=1e-12)  # 30 measured / 0.5 efficiency


def test_fakes_are_removed_with_the_acceptance() -> None:
    # a quarter of the simulated detector-level events in bin 0 come from outside the vertex binning
    v = np.array([0.5] * 3 + [7.0] + [1.5] * 4)
    d = np.array([0.5] * 3 + [0.5] + [1.5] * 4)
    resp = response_matrix(v, d, EDGES, EDGES)
    np.testing.assert_allclose(resp.acceptance, [0.75, 1.0])
    np.testing.assert_allclose(ibu(np.array([40.0, 20.0]), resp, 2), [30.0, 20.0], rtol=1e-12)


def test_zero_iterations_give_the_prior_scaled_to_the_data() -> None:
    v, d = _pairs({(0, 0): 3, (1, 1): 1})
    out = ibu(np.array([10.0, 10.0]), response_matrix(v, d, EDGES, EDGES), 0)
    np.testing.assert_allclose(out, [15.0, 5.0])


def test_bad_inputs_raise_clear_errors() -> None:
    v, d = _pairs({(0, 0): 3, (1, 1): 1})
    resp = response_matrix(v, d, EDGES, EDGES)
    with pytest.raises(DataError, match="3 data bins"):
        ibu(np.ones(3), resp)
    with pytest.raises(DataError, match="non-negative"):
        ibu(np.array([1.0, -1.0]), resp)
    with pytest.raises(ConfigError, match="strictly increasing"):
        response_matrix(v, d, np.array([0.0, 2.0, 1.0]), EDGES)
    with pytest.raises(DataError, match="differ in length"):
        response_matrix(v, d[:-1], EDGES, EDGES)
    with pytest.raises(DataError, match="no simulated event"):
        response_matrix(v + 10, d, EDGES, EDGES)
