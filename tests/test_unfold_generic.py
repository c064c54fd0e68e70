"""Unfolding on declared observables of any events, not only the DIS lepton: the shipped toy pipeline
(``pipelines/unfold_toy.toml``: correlated ``vertex-gauss`` → ``smear-fields`` → flowfold → ``gan-unfold``, an
observable declared in ``[observables]``), ``ibu`` and ``omnifold`` on the same toy and on a user's own
detector-level ROOT file, the ``smear-fields`` detector, the ``correlation`` of ``vertex-gauss``, and bad
input that must fail with exit code 2 before any training.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w
import uproot

from mlegpipe.config import load_config, parse_config
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.pipeline import run_pipeline
from mlegpipe.rootio import read_events, write_events

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "pipelines" / "unfold_toy.toml"
#: the shipped toy at test size: fewer events and steps, two replicas on one worker, no plots
SMALL = ["truth.events=6000", "sim.events=10000", "surrogate.steps=300", "surrogate.acceptance_steps=100",
         "unfolding.steps=150", "unfolding.pretrain_steps=200", "unfolding.replicas=2", "unfolding.workers=1",
         'unfolding.baselines=["ibu"]', "unfolding.plots=false", "report.plots=false", "report.classifier=false"]


def _samples(run: Path, *names: str) -> dict[str, EventBatch]:
    return {n: EventBatch.concat(list(read_events(run / f"{n}.root"))) for n in names}


def _mean(batch: EventBatch, values: np.ndarray) -> float:
    """Weighted mean over the measured events (all when the batch has no pass flag)."""
    keep = batch.column("measured") > 0.5 if batch.has("measured") else np.ones(len(batch), bool)
    return float(np.average(values[keep], weights=batch.weights[keep]))


def _std(batch: EventBatch, values: np.ndarray) -> float:
    keep = batch.column("measured") > 0.5 if batch.has("measured") else np.ones(len(batch), bool)
    return float(np.sqrt(np.cov(values[keep], aweights=batch.weights[keep])))


def _observables(batch: EventBatch) -> dict[str, np.ndarray]:
    v1, v2 = batch.column("v1"), batch.column("v2")
    return {"v1": v1, "v2": v2, "vsum": v1 + v2, "vdiff": v1 - v2}


def _toy_text(unfolding: dict[str, Any] | None = None, drop: tuple[str, ...] = (), **sections: dict[str, Any]) -> str:
    """The shipped toy pipeline with its [unfolding] table replaced, sections dropped or added."""
    raw = tomllib.loads(TOY.read_text(encoding="utf-8"))
    if unfolding is not None:
        raw["unfolding"] = unfolding
    for name in drop:
        raw.pop(name)
    raw.update(sections)
    report = raw.pop("report")  # keep the report last
    raw["report"] = {**report, "plots": False, "classifier": False}
    return tomli_w.dumps(raw)


# -- (i) the shipped toy, end to end ----------------------------------------------------------------------


def test_toy_pipeline_unfolds_declared_observables_and_closes(tmp_path: Path) -> None:
    """gan-unfold through a learned surrogate moves every observable, the declared vsum too, from the
    simulation's to the pseudo-data truth's mean (shifted by 0.3), and removes the smearing of vdiff."""
    config = load_config(TOY, SMALL)
    run = run_pipeline(config, output=str(tmp_path / "run"), progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    info = metrics["stages"]["unfolding"]
    assert set(info["observables"]) == {"v1", "v2", "vsum", "vdiff"}  # the declared ones among them
    assert info["parametrization"] == "features" and info["critic_nu"] is False
    for name in ("vsum", "vdiff"):
        assert info["observables"][name]["gan"]["vertex"]["w1"] is not None
        assert "ibu" in info["observables"][name]
    assert metrics["stages"]["surrogate"]["acceptance_learned"]  # the 90 % efficiency
    s = _samples(run, "unfolded", "truth_test", "truth_test_detector", "sim_train")
    assert len(s["unfolded"]) > 0 and set(s["unfolded"].fields) >= {"v1", "v2"}
    values = {k: _observables(b) for k, b in s.items()}
    means = {k: {n: _mean(s[k], v) for n, v in obs.items()} for k, obs in values.items()}
    for name in ("v1", "v2", "vsum"):
        unf, truth, sim = (means[k][name] for k in ("unfolded", "truth_test", "sim_train"))
        assert abs(truth - sim) > 0.2, (name, means)  # the pseudo-data really differ from the simulation
        assert abs(unf - truth) < 0.5 * abs(sim - truth), (name, unf, truth, sim)
    # deconvolution: the smearing widens v1 - v2 by 15 % at detector level; the unfolded width is the truth's
    std = {k: _std(s[k], values[k]["vdiff"]) for k in ("unfolded", "truth_test", "truth_test_detector")}
    assert abs(std["unfolded"] - std["truth_test"]) < 0.5 * abs(std["truth_test_detector"] - std["truth_test"]), std


# -- (ii) ibu and omnifold on the same toy, and on a user's own detector-level file ------------------------


def test_ibu_and_omnifold_unfold_the_toy_from_toml(tmp_path: Path) -> None:
    observables = ["v1", "v2", "vsum", "vdiff"]
    text = _toy_text({"plugin": "ibu", "observables": observables, "bins": 16, "replicas": 5}, drop=("surrogate",),
                     omnifold={"kind": "unfolding", "plugin": "omnifold", "observables": observables, "bins": 16,
                               "detector_features": ["v1", "v2"], "epochs": 2, "replicas": 2, "plots": False})
    config = parse_config(text, "unfold_toy_baselines.toml", ["truth.events=4000", "sim.events=8000"])
    assert [s.simulation for s in config.steps if s.spec.kind == "unfolding"] == \
        [["sim_train", "sim_train_detector"]] * 2  # no surrogate: the simulation and its folding
    run = run_pipeline(config, output=str(tmp_path / "run"), progress=False)
    metrics = json.loads((run / "metrics.json").read_text())["stages"]
    assert set(metrics["unfolding"]["observables"]) == set(observables)
    assert set(metrics["omnifold"]["observables"]) == set(observables)
    s = _samples(run, "unfolded", "omnifold_unfolded", "truth_test", "sim_train")
    truth, sim = (_observables(s[k]) for k in ("truth_test", "sim_train"))
    for key in ("unfolded", "omnifold_unfolded"):
        unf = _observables(s[key])
        for name in ("v1", "vsum"):
            moved = _mean(s[key], unf[name])
            t, m = _mean(s["truth_test"], truth[name]), _mean(s["sim_train"], sim[name])
            assert abs(moved - t) < 0.5 * abs(m - t), (key, name, moved, t, m)
        assert metrics["unfolding" if key == "unfolded" else "omnifold"]["observables"]["vsum"]["data_uncorrected"]


def test_ibu_unfolds_a_users_own_detector_level_file(tmp_path: Path) -> None:
    """Detector-level data from a ROOT file (no truth in the pipeline), unfolded through a simulation smeared by
    the declared detector: the result moves to the data's (here known) truth."""
    rng = np.random.default_rng(4)
    n = 5000
    v1 = rng.normal(0.4, 1.0, n)
    v2 = 0.5 * v1 + rng.normal(0.0, np.sqrt(0.75), n)
    data = EventBatch.from_columns({"v1": v1 + 0.4 * rng.normal(size=n), "v2": v2 + 0.4 * rng.normal(size=n)})
    write_events(tmp_path / "mydata.root", data)
    text = f"""
[pipeline]
name = "own-data"
seed = 3
split = [0.5, 0.1, 0.4]
[observables]
vsum = "v1 + v2"
[data]
kind = "truth"
plugin = "root"
files = ["{tmp_path / 'mydata.root'}"]
[sim]
kind = "truth"
plugin = "vertex-gauss"
events = 16000
correlation = 0.5
[detector]
plugin = "smear-fields"
inputs = ["sim_train"]
fields.v1.sigma = 0.4
fields.v2.sigma = 0.4
[unfolding]
plugin = "ibu"
inputs = ["data_test"]
observables = ["v1", "vsum"]
bins = 16
plots = false
"""
    config = parse_config(text, "own_data.toml")
    run = run_pipeline(config, output=str(tmp_path / "run"), progress=False)
    info = json.loads((run / "metrics.json").read_text())["stages"]["unfolding"]
    assert info["data"] == "data_test" and info["truth"] is None
    unfolded = _samples(run, "unfolded")["unfolded"]
    obs = _observables(unfolded)
    assert abs(_mean(unfolded, obs["v1"]) - 0.4) < 0.1
    assert abs(_mean(unfolded, obs["vsum"]) - 0.6) < 0.15


# -- (iii) the smear-fields detector ----------------------------------------------------------------------


def _detector(fields: dict[str, Any], efficiency: Any = "", section: str = "detector") -> Any:
    from mlegpipe.registry import load_plugins
    from mlegpipe.schema import build_params

    cls = load_plugins().get("detector", "smear-fields").cls
    params = build_params(cls.Params, {"fields": fields, "efficiency": efficiency}, section)
    return cls(params, StageContext(section))


def _gauss(n: int, seed: int = 1) -> EventBatch:
    rng = np.random.default_rng(seed)
    return EventBatch.from_columns({"v1": rng.normal(0.0, 1.0, n), "v2": rng.normal(2.0, 0.5, n),
                                    "tag": np.arange(n, dtype=float)})


def test_smeared_width_efficiency_and_reproducibility() -> None:
    n = 50_000
    events = _gauss(n)
    det = _detector({"v1": {"sigma": 0.4}, "v2": {"sigma": 0.1, "relative": 0.1}}, efficiency=0.9)
    out = det.fold(events, np.random.SeedSequence(5))
    v1, v1_det = events.column("v1"), out.column("v1")
    # the smeared width: sqrt(σ_true² + σ_det²); the residual: σ_det (statistical error σ/√(2n) ≈ 0.3 %)
    assert abs(v1_det.std() - np.sqrt(1.0 + 0.4**2)) < 0.015
    assert abs((v1_det - v1).std() - 0.4) < 0.006
    # σ = 0.1 ⊕ 0.1·|v2| (quadrature), v2 ≈ 2: the residual over the true σ is standard normal
    v2 = events.column("v2")
    pull = (out.column("v2") - v2) / np.hypot(0.1, 0.1 * np.abs(v2))
    assert abs(pull.std() - 1.0) < 0.02 and abs(pull.mean()) < 0.02
    assert np.array_equal(out.column("tag"), events.column("tag"))  # undeclared fields untouched
    passed = out.column("measured")
    assert abs(passed.mean() - 0.9) < 4 * np.sqrt(0.09 / n)
    again = det.fold(events, np.random.SeedSequence(5))
    assert all(np.array_equal(again.column(f), out.column(f)) for f in ("v1", "v2", "measured"))
    other = det.fold(events, np.random.SeedSequence(6))
    assert not np.array_equal(other.column("v1"), out.column("v1"))
    # each field draws its own stream: declaring v2 did not change the noise of v1
    alone = _detector({"v1": {"sigma": 0.4}}, efficiency=0.9).fold(events, np.random.SeedSequence(5))
    assert np.array_equal(alone.column("v1"), v1_det) and np.array_equal(alone.column("measured"), passed)


def test_resolution_and_efficiency_formulas() -> None:
    n = 60_000
    events = _gauss(n, seed=2)
    det = _detector({"v1": {"resolution": "0.1 + 0.3 * abs(v1)"}}, efficiency="0.95 - 0.5 * (v1 > 1)")
    out = det.fold(events, np.random.SeedSequence(1))
    v1 = events.column("v1")
    pull = (out.column("v1") - v1) / (0.1 + 0.3 * np.abs(v1))
    assert abs(pull.std() - 1.0) < 0.02
    passed = out.column("measured") > 0.5
    high = v1 > 1
    assert abs(passed[high].mean() - 0.45) < 0.03 and abs(passed[~high].mean() - 0.95) < 0.01
    none = _detector({"v1": {"sigma": 0.1}}).fold(events, np.random.SeedSequence(1))
    assert not none.has("measured")  # no efficiency: every event measured, no flag


def test_detector_bad_values_are_config_errors() -> None:
    events = _gauss(100)
    with pytest.raises(ConfigError) as err:
        _detector({"v9": {"sigma": 0.1}}).fold(events, np.random.SeedSequence(1))
    assert err.value.path == "detector.fields.v9" and "v1, v2" in str(err.value)
    cases = {
        "detector.fields.v1.sigma": ({"v1": {"sigma": -0.1}}, ""),
        "detector.fields.v1.sgma": ({"v1": {"sgma": 0.1}}, ""),
        "detector.fields.v1": ({"v1": {}}, ""),
        "detector.fields.v1.resolution": ({"v1": {"sigma": 0.1, "resolution": "0.2"}}, ""),
        "detector.fields": ({}, ""),
        "detector.efficiency": ({"v1": {"sigma": 0.1}}, 1.5),
    }
    for path, (fields, efficiency) in cases.items():
        with pytest.raises(ConfigError) as err:
            _detector(fields, efficiency)
        assert err.value.path == path, (path, str(err.value))
    with pytest.raises(ConfigError, match="__import__") as err:  # formulas are parsed safely, never run
        _detector({"v1": {"resolution": "__import__('os').system('true')"}})
    assert err.value.path == "detector.fields.v1.resolution"
    with pytest.raises(ConfigError) as err:
        _detector({"v1": {"sigma": 0.1}}, "0.9 * v7")
    assert err.value.path == "detector.efficiency"
    with pytest.raises(DataError) as err:  # a formula that gives a negative σ for some events
        _detector({"v1": {"resolution": "v1"}}).fold(events, np.random.SeedSequence(1))
    assert err.value.path == "detector.fields.v1"


# -- (iv) vertex-gauss correlation ------------------------------------------------------------------------


def _vertex_gauss(seed: int = 3, **params: Any) -> Any:
    from mlegpipe_builtins.truth.toys import VertexGaussSource

    return VertexGaussSource(VertexGaussSource.Params(**params), StageContext("truth", seed=seed))


@pytest.mark.parametrize("dim, rho", [(2, 0.5), (3, -0.3), (4, 0.8)])
def test_vertex_gauss_reproduces_its_correlation(dim: int, rho: float) -> None:
    n = 50_000
    src = _vertex_gauss(events=n, dim=dim, correlation=rho, mean=0.3, sigma=2.0)
    batch = src.read()
    points = np.stack([batch.column(f"v{i + 1}") for i in range(dim)], axis=1)
    corr = np.corrcoef(points.T)[np.triu_indices(dim, 1)]
    assert np.abs(corr - rho).max() < 5 * (1 - rho**2) / np.sqrt(n)  # the standard error of r
    assert np.abs(points.mean(0) - 0.3).max() < 5 * 2.0 / np.sqrt(n)
    assert np.abs(points.std(0) - 2.0).max() < 5 * 2.0 / np.sqrt(2 * n)
    toy = src.exact_density()
    # the quantile cells (decorrelated coordinates) keep equal probability
    assert toy.quantile_fractions(points, 3).max() < 1 / 3**dim + 5 * np.sqrt(1 / 3**dim / n)
    from scipy.stats import multivariate_normal

    cov = 4.0 * ((1 - rho) * np.eye(dim) + rho)
    np.testing.assert_allclose(toy.pdf(points[:5]), multivariate_normal(np.full(dim, 0.3), cov).pdf(points[:5]))


def test_vertex_gauss_without_correlation_draws_the_independent_events() -> None:
    from mlegpipe_builtins.truth.toys import BLOCK_EVENTS

    src = _vertex_gauss(seed=11, events=1000, dim=3, mean=-1.0, sigma=1.5)
    batch = src.read()
    expected = -1.0 + 1.5 * src.ctx.rng("sample", 0).standard_normal((BLOCK_EVENTS, 3))[:1000]
    assert np.array_equal(np.stack([batch.column(f"v{i}") for i in (1, 2, 3)], axis=1), expected)
    assert "correlation" not in src.info()


@pytest.mark.parametrize("dim, rho", [(2, 1.0), (2, -1.0), (3, -0.5), (5, -0.3), (1, 0.2)])
def test_vertex_gauss_rejects_a_correlation_without_a_covariance(dim: int, rho: float) -> None:
    with pytest.raises(ConfigError) as err:
        _vertex_gauss(events=10, dim=dim, correlation=rho)
    assert err.value.path == "truth.correlation" and err.value.value == rho


# -- (v) bad input: exit code 2, one paragraph, before any training -----------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mlegpipe", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_an_observable_the_surrogate_cannot_give_fails_before_training(tmp_path: Path) -> None:
    proc = _cli("run", str(TOY), "--no-progress", "-o", str(tmp_path / "run"), "--set", 'unfolding.observables=["v1", "v3"]')
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "unfolding.observables = 'v3'" in proc.stderr and "vertex features ['v1', 'v2']" in proc.stderr
    assert "[surrogate]" not in proc.stderr  # raised before the surrogate's training started


def test_an_unknown_observable_in_dis_unfolding_fails_before_training(tmp_path: Path) -> None:
    proc = _cli("run", "pipelines/unfold_closure.toml", "--no-progress", "-o", str(tmp_path / "run"),
                "--set", "truth.events=1500", "--set", "sim.events=1500",
                "--set", 'unfolding.observables=["Q2", "lepton_thta"]')
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "[surrogate]" not in proc.stderr
    assert "unfolding.observables = 'lepton_thta'" in proc.stderr and "vertex features ['lepton_E'" in proc.stderr


def test_ibu_and_omnifold_name_the_bad_observable_or_feature(tmp_path: Path) -> None:
    text = _toy_text({"plugin": "ibu", "observables": ["v1", "v3"]}, drop=("surrogate",))
    with pytest.raises(ConfigError) as err:
        run_pipeline(parse_config(text, "t.toml", ["truth.events=600", "sim.events=600"]),
                     output=str(tmp_path / "a"), progress=False)
    assert err.value.path == "unfolding.observables" and err.value.value == "v3"
    assert "the data 'truth_test_detector'" in str(err.value)
    text = _toy_text({"plugin": "omnifold", "observables": ["v1"], "vertex_features": ["v1", "w2"]},
                     drop=("surrogate",))
    with pytest.raises(ConfigError) as err:
        run_pipeline(parse_config(text, "t.toml", ["truth.events=600", "sim.events=600"]),
                     output=str(tmp_path / "b"), progress=False)
    assert err.value.path == "unfolding.vertex_features" and err.value.value == "w2"


@pytest.mark.parametrize("files", [1, 2])
def test_an_empty_detector_level_file_to_unfold_names_the_file(tmp_path: Path, files: int) -> None:
    """A user's data file with a tree but no entries: exit 2 naming the file (one file: when the stages are
    built; several: when they are read), before the surrogate trains."""
    paths = [tmp_path / f"empty{i}.root" for i in range(files)]
    for path in paths:
        with uproot.recreate(path) as f:
            f.mktree("events", {"v1": np.float64, "v2": np.float64})
    text = _toy_text(drop=("truth",), data={"kind": "truth", "plugin": "root", "files": [str(p) for p in paths]})
    raw = tomllib.loads(text)
    order = ["pipeline", "observables", "data", "sim", "detector", "surrogate", "unfolding", "report"]
    raw = {k: raw[k] for k in order}
    raw["detector"]["inputs"] = ["sim_train", "sim_valid", "sim_test"]
    raw["surrogate"]["inputs"] = ["sim_test"]
    raw["unfolding"]["inputs"] = ["data_test"]
    path = tmp_path / "own_data.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    proc = _cli("run", str(path), "--no-progress", "-o", str(tmp_path / "run"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "[surrogate]" not in proc.stderr
    assert "data.files" in proc.stderr and "no events" in proc.stderr and str(paths[-1]) in proc.stderr
