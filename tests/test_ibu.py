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


# -- against the reference implementation (pyunfold, a test-only dependency) --------------------------------


@pytest.mark.parametrize("prior", ["explicit", "simulation"])
def test_ibu_agrees_with_pyunfold(prior: str) -> None:
    pyunfold = pytest.importorskip("pyunfold")

    # a random but fixed weighted simulation: 5 vertex (cause) × 6 detector (effect) bins, 15 % of the events
    # lost, vertex bin 4 never measured (efficiency 0), vertex values outside [0, 5] that land in the detector
    # binning are fakes (acceptance < 1)
    rng = np.random.default_rng(20240611)
    n = 3000
    vertex = rng.uniform(-0.5, 5.5, n)
    detector = 1.2 * vertex + rng.normal(0.0, 0.6, n)
    detector[rng.random(n) < 0.15] = np.nan
    detector[(vertex >= 4.0) & (vertex <= 5.0)] = np.nan
    resp = response_matrix(vertex, detector, np.linspace(0.0, 5.0, 6), np.linspace(0.0, 6.0, 7),
                           weights=rng.uniform(0.5, 1.5, n))
    assert resp.matrix.shape == (6, 5)
    assert (resp.efficiency[:4] > 0.5).all() and (resp.efficiency < 0.9).all() and resp.efficiency[4] == 0.0
    assert resp.acceptance.min() < 0.5 and resp.acceptance.max() == pytest.approx(1.0)
    data = rng.poisson(400.0, 6).astype(np.float64)
    ours_prior = np.array([1.0, 4.0, 2.0, 0.5, 3.0]) if prior == "explicit" else None

    # The mapping to pyunfold's conventions (pyunfold/mix.py, Mixer.smear):
    #   response      = resp.matrix: the same orientation, effects × causes, P(effect j | cause i); its column
    #                   sums are the efficiencies in both
    #   efficiencies  = resp.efficiency: pyunfold divides by them (1/0 := 0) exactly where we do
    #   data          = acceptance × data: we remove the fakes before unfolding, pyunfold has no notion of them
    #   prior         = ours normalized (pyunfold requires sum 1; we normalize any positive prior, the default being
    #                   the simulation's vertex counts). Its scale is irrelevant after one step: a Bayes step is
    #                   homogeneous of degree 0 in the prior. We zero the prior in bins without efficiency,
    #                   pyunfold does not, but those bins have a zero response column and so never enter R p.
    #   stopping      = never (the test statistic is >= 0, so never < -1): exactly max_iter iterations, one row of
    #                   return_iterations per iteration; no callbacks, hence no smoothing.
    # The errors pyunfold requires only feed its covariance, not the unfolded spectrum.
    reference_prior = resp.vertex_counts if ours_prior is None else ours_prior
    iterations = pyunfold.iterative_unfold(
        data=resp.acceptance * data, data_err=np.sqrt(data),
        response=resp.matrix, response_err=np.full(resp.matrix.shape, 0.01),
        efficiencies=resp.efficiency, efficiencies_err=np.full(5, 0.01),
        prior=reference_prior / reference_prior.sum(), ts="ks", ts_stopping=-1.0, max_iter=5,
        return_iterations=True)
    assert iterations["num_iterations"].tolist() == [1, 2, 3, 4, 5]
    for n_iter, expected in zip(iterations["num_iterations"], iterations["unfolded"], strict=True):
        got = ibu(data, resp, int(n_iter), prior=ours_prior)
        assert got[4] == expected[4] == 0.0
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=0.0)
    # the iterations did move the spectrum away from the prior (the comparison is not trivial)
    first, last = iterations["unfolded"].iloc[0], iterations["unfolded"].iloc[-1]
    assert np.abs(last[:4] / first[:4] - 1.0).max() > 0.05


# -- event weights carrying binned results ------------------------------------------------------------------


def test_marginal_weights_reproduce_every_unfolded_marginal() -> None:
    from mlegpipe.unfold import marginal_weights

    rng = np.random.default_rng(2)
    a = rng.normal(size=20000)
    b = 0.6 * a + 0.8 * rng.normal(size=20000)
    edges = np.linspace(-3.0, 3.0, 13)
    responses = {n: response_matrix(v, v, edges, edges) for n, v in (("a", a), ("b", b))}
    centres = 0.5 * (edges[1:] + edges[:-1])
    targets = {"a": np.exp(-0.5 * (centres - 0.4) ** 2), "b": np.exp(-0.5 * (centres + 0.2) ** 2 / 1.2)}
    w = marginal_weights({"a": a, "b": b}, targets, responses)
    assert w.mean() == pytest.approx(1.0)
    for name, values in (("a", a), ("b", b)):
        inside = (values >= edges[0]) & (values <= edges[-1])
        got = np.histogram(values[inside], edges, weights=w[inside])[0]
        np.testing.assert_allclose(got / got.sum(), targets[name] / targets[name].sum(), atol=1e-6)


def test_marginal_weights_keep_the_prior_where_the_unfolding_has_no_efficiency() -> None:
    from mlegpipe.unfold import marginal_weights

    v = np.array([0.5, 0.5, 1.5, 1.5, 2.5, 9.0])
    d = np.array([0.5, 0.5, 1.5, 1.5, np.nan, 9.0])  # bin 2 is never measured; 9.0 lies outside the binning
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    resp = response_matrix(v, d, edges, edges)
    w = marginal_weights({"a": v}, {"a": np.array([3.0, 1.0, 0.0])}, {"a": resp})
    # the measured bins share their total 3 : 1; the unmeasured bin and the event outside keep weight 1 (× norm)
    np.testing.assert_allclose(w / w[4], [1.5, 1.5, 0.5, 0.5, 1.0, 1.0])


# -- the ``ibu`` plugin in a pipeline -----------------------------------------------------------------------


def test_ibu_plugin_unfolds_a_toy_pipeline_without_a_surrogate(toy_registry, tmp_path) -> None:  # noqa: ANN001
    from unfold_toy import run_toy, toy_config

    from mlegpipe.report.analysis import analyse_run

    config = toy_config(toy_registry, "ibu", "replicas = 8")
    step = next(s for s in config.steps if s.section == "unfolding")
    assert step.surrogate is None and step.simulation == ["sim_train", "sim_train_detector"]
    assert step.inputs == ["truth_test_detector"] and step.reference == "truth_test"
    run, samples = run_toy(config, tmp_path / "run")
    import json

    info = json.loads((run / "metrics.json").read_text())["stages"]["unfolding"]
    assert (info["data"], info["truth"], info["simulation"]) == ("truth_test_detector", "truth_test",
                                                                   ["sim_train", "sim_train_detector"])
    for name in ("a", "b"):
        entry = info["observables"][name]
        # the binning covers the simulation too: its low tail, where the data have few events, is unrecoverable
        assert entry["ibu"]["vertex_pulls"]["bins"] >= 10 and len(entry["unrecoverable_bins"]) <= 2
        # IBU recovers the shifted truth far better than the uncorrected data do
        assert entry["ibu"]["triangular_e3"] < 0.5 * entry["data_uncorrected"]["triangular_e3"]
        assert len(info["binned"][name]["ibu"]["mean"]) == 12
        # IBU's iterations stop short of the truth (the prior regularizes): most pulls within 2, not 68 % within 1
        assert entry["ibu"]["vertex_pulls"]["within_2"] >= 0.75
    assert info["summary"]["ibu_vertex_pulls_within_1"] > 0
    assert info["weights_marginal_residual"] < 1e-4
    # the unfolded sample: the simulation weighted to the IBU marginals; its mean moved to the truth's
    unfolded, truth, sim = samples["unfolded"], samples["truth_test"], samples["sim_train"]
    assert len(unfolded) == len(sim) and len(samples["refolded"]) == len(samples["sim_train_detector"])
    for name in ("a", "b"):
        moved = np.average(unfolded.column(name), weights=unfolded.weights)
        assert abs(moved - truth.column(name).mean()) < 0.05 < abs(sim.column(name).mean() - truth.column(name).mean())
    # the report compares the unfolded sample with the data's truth, the refolded one with the data
    plan = config.report_plan
    assert {(c.model, c.reference, c.level) for c in plan.comparisons if c.kind == "unfolding"} >= {
        ("unfolded", "truth_test", "vertex"), ("refolded", "truth_test_detector", "detector")}
    analysis = analyse_run(samples, plan, classifier=False, plots=False)
    table = analysis.metrics["comparisons"]["unfolded"]["features"]
    assert set(table) >= {"a", "b"}


def test_ibu_plugin_without_simulation_pairs_is_a_config_error(toy_registry, tmp_path) -> None:  # noqa: ANN001
    from unfold_toy import toy_config

    from mlegpipe.exceptions import ConfigError
    from mlegpipe.pipeline import run_pipeline

    config = toy_config(toy_registry, "ibu", 'simulation = ["sim_train", "nope"]')
    with pytest.raises(ConfigError, match="no such sample") as err:
        run_pipeline(config, output=str(tmp_path / "run"), progress=False)
    assert err.value.path == "unfolding.simulation"


def test_ibu_plugin_in_a_pipeline_without_any_simulation_is_a_config_error(toy_registry, tmp_path) -> None:  # noqa: ANN001
    from mlegpipe.config import parse_config
    from mlegpipe.exceptions import ConfigError
    from mlegpipe.pipeline import run_pipeline

    text = '[truth]\nplugin = "test-gauss"\nevents = 400\n[unfolding]\nplugin = "ibu"\ninputs = ["truth_test"]\n'
    config = parse_config(text, "no_simulation.toml", registry=toy_registry)  # no surrogate needed to plan it
    assert config.steps[-1].simulation == []
    with pytest.raises(ConfigError, match="simulated \\(vertex, detector\\) pairs") as err:
        run_pipeline(config, output=str(tmp_path / "run"), progress=False)
    assert err.value.path == "unfolding.simulation"
