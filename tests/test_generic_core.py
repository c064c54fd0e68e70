"""The generic core: no domain inside it; events with collections; beams of any collider; declared observables;
conditions other than the beam energy; third-party extensions; generators of particle collections."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import awkward as ak
import collider_toys
import numpy as np
import pytest
import uproot

from mlegpipe.beams import PROTON_MASS, Beam, Beams
from mlegpipe.cli import main
from mlegpipe.config import parse_config
from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.exceptions import ConfigError, DataError, FormulaError, PhysicsError
from mlegpipe.observables import compile_observable, observable_set, resolve
from mlegpipe.pipeline import run_pipeline
from mlegpipe.registry import load_plugins

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def registry():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_plugins(extra=[collider_toys])


# -- the core holds no domain ------------------------------------------------------------------------------
def test_the_core_imports_no_domain() -> None:
    """No module of mlegpipe/ imports a plugin package; importing all of them loads none."""
    offenders = []
    for path in sorted((ROOT / "mlegpipe").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == "mlegpipe_builtins"]
    assert offenders == []
    code = ("import pkgutil, importlib, sys, mlegpipe\n"
            "for m in pkgutil.walk_packages(mlegpipe.__path__, 'mlegpipe.'):\n"
            "    if m.name != 'mlegpipe.__main__': importlib.import_module(m.name)\n"
            "print(sorted(n for n in sys.modules if n.startswith('mlegpipe_builtins')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- observables ---------------------------------------------------------------------------------------------
def _two_particles() -> EventBatch:
    # p1 = (E, px, py, pz) = (5, 3, 4, 0), p2 = (13, -5, 0, 12): hand-computed below
    q = particle_lists({"E": [[5.0, 13.0]], "px": [[3.0, -5.0]], "py": [[4.0, 0.0]], "pz": [[0.0, 12.0]]})
    return EventBatch.from_columns({"q": q, "w": [2.0]})


@pytest.mark.parametrize(("expression", "expected"), [
    ("mass(q[0] + q[1])", math.sqrt(18.0**2 - (-2.0) ** 2 - 4.0**2 - 12.0**2)),
    ("pt(q[0] + q[1])", math.hypot(-2.0, 4.0)),
    ("mass(q[0])", 0.0),
    ("pt(q[1])", 5.0),
    ("eta(q[1])", math.asinh(12.0 / 5.0)),
    ("rapidity(q[1])", 0.5 * math.log((13.0 + 12.0) / (13.0 - 12.0))),
    ("deltaphi(q[0], q[1])", (math.atan2(4.0, 3.0) - math.pi + math.pi) % (2 * math.pi) - math.pi),
    ("deltaR(q[0], q[1])", math.hypot(0.0 - math.asinh(12.0 / 5.0),
                                      (math.atan2(4.0, 3.0) - math.pi + math.pi) % (2 * math.pi) - math.pi)),
    ("n(q) + ht(q)", 2.0 + 5.0 + 5.0),
    ("mass(sum(q)) / w", math.sqrt(18.0**2 - 2.0**2 - 4.0**2 - 12.0**2) / 2.0),
])
def test_declared_observables_against_hand_computed_values(expression: str, expected: float) -> None:
    value = compile_observable("o", expression)(_two_particles())
    assert float(value[0]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("expression", [
    "mass(q[0] + q[1])", "pt(sum(q))", "eta(q[1])", "deltaR(q[0], q[1])", "n(q) + ht(q)",
    "sqrt(mass(q[0] + q[1])) * w", "rapidity(q[0] + q[1])", "mass(q[0] - q[1])", "max(pt(q[0]), pt(q[1]))",
])
def test_declared_observables_on_tensors_match_numpy_and_are_differentiable(expression: str) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    n = 64
    p = rng.normal(0.0, 30.0, size=(n, 2, 3))
    e = np.sqrt((p**2).sum(-1) + rng.uniform(1.0, 80.0, size=(n, 2)) ** 2)  # massive particles
    w = rng.uniform(0.5, 2.0, n)
    comps = {"px": p[..., 0], "py": p[..., 1], "pz": p[..., 2], "E": e}
    batch = EventBatch.from_columns({"q": particle_lists({k: v.tolist() for k, v in comps.items()}), "w": w})
    tensors = {f"q{i + 1}_{k}": torch.tensor(v[:, i], requires_grad=True) for k, v in comps.items() for i in range(2)}
    tensors["w"] = torch.tensor(w, requires_grad=True)
    obs = compile_observable("o", expression)
    expected = obs(batch)
    got = obs.tensor(tensors)
    ok = np.isfinite(expected)
    assert ok.sum() > n // 2
    np.testing.assert_allclose(got.detach().numpy()[ok], expected[ok], rtol=1e-10, atol=1e-10)
    got[torch.isfinite(got)].sum().backward()
    grads = [t.grad for t in tensors.values() if t.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_a_plugin_function_observable_on_tensors_is_a_clear_error() -> None:
    torch = pytest.importorskip("torch")
    from mlegpipe.observables import Observable

    numpy_only = Observable("twice", lambda b: np.asarray(b.column("a")).astype(np.float64) * 2, requires=("a",))
    with pytest.raises(ConfigError, match="cannot be computed on tensors"):
        numpy_only.tensor({"a": torch.ones(3)}).sum().item()


def test_automatic_collection_observables() -> None:
    b = _two_particles()
    assert resolve("q2_pt")(b).tolist() == [5.0] and resolve("n_q")(b).tolist() == [2.0]
    jets = particle_lists({"pt": [[40.0, 20.0], [30.0]], "eta": [[0.0, 1.0], [2.0]], "phi": [[0.0, 1.0], [2.0]],
                           "mass": [[1.0, 1.0], [1.0]]})
    second = resolve("jets2_pt")(EventBatch.from_columns({"jets": jets}))
    assert second[0] == pytest.approx(20.0) and np.isnan(second[1])  # an event without a second jet: undefined


@pytest.mark.parametrize(("expression", "message"), [
    ("q.pt", "attribute access is not allowed"),
    ("__import__('os')", "not a known function"),
    ("mass(q[0] + 1)", "particles can only be added"),
    ("mass(q)", "several particles per event"),
    ("q[-1]", "whole number >= 0"),
    ("pt(q[0]", "syntax error"),
    ("-" * 1990 + "pt(q[0])", "nested too deeply"),
])
def test_bad_expressions_name_the_toml_path(expression: str, message: str) -> None:
    with pytest.raises((FormulaError, ConfigError, DataError), match=message) as err:
        observable_set({"bad": expression}).values(_two_particles(), "bad")
    assert "observables.bad" in str(err.value)


# -- beams of any collider ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("preset", "kind", "sqrt_s"), [
    ("lhc13", "pp", 13000.0), ("lhc13.6", "pp", 13600.0), ("tevatron", "ppbar", 1960.0),
    ("hera", "ep", 318.7), ("lep-z", "ee", 91.188), ("eic-eau", "eA", 2 * math.sqrt(18.0 * 110.0)),
    ("rhic-auau200", "AA", 200.0), ("jlab", "fixed-target ep", math.sqrt(PROTON_MASS**2 + 2 * PROTON_MASS * 10.6)),
])
def test_beams_of_each_kind(preset: str, kind: str, sqrt_s: float) -> None:
    beams = Beams.preset(preset)
    assert beams.kind == kind
    assert beams.sqrt_s == pytest.approx(sqrt_s, rel=2e-3)
    assert Beams.from_dict(json.loads(json.dumps(beams.to_dict()))) == beams


def test_beams_from_tables_and_roles() -> None:
    pp = Beams.from_table({"a": {"pdg": 2212, "energy": 6500}, "b": {"pdg": 2212, "energy": 6500}})
    assert pp == Beams.preset("lhc13") and not pp.is_lepton_hadron
    with pytest.raises(PhysicsError, match="not a lepton-hadron set-up"):
        _ = pp.lepton_energy
    ep = Beams.from_table({"lepton_energy": 18.0, "hadron_energy": 275.0})
    assert (ep.lepton_direction, ep.b.pdg, ep.a.pdg) == (-1, 11, 2212)
    assert Beams(Beam(11, 5.0), Beam(-11, 5.0)).kind == "ee"
    with pytest.raises(PhysicsError, match="beams.hadron_energy"):
        Beams.from_table({"lepton_energy": 18.0, "hadron_energy": 0.1})  # below the proton mass
    with pytest.raises(PhysicsError, match="unknown beam preset"):
        Beams.preset("lhc99")


def test_per_event_beams_from_branches(tmp_path: Path) -> None:
    """A user's own E x E scan (no mlegpipe metadata) read with both beams following a declared branch."""
    from mlegpipe_builtins.dis.kinematics import lepton_from_dis

    rng = np.random.default_rng(0)
    energies = np.repeat([10.0, 40.0], 500)
    x, q2 = 10 ** rng.uniform(-1.7, -1, 1000), rng.uniform(2, 3.5, 1000)  # y < 1 at 10 x 10 GeV
    cols = {"E_b": energies, "x_true": x}
    for i, e in enumerate((10.0, 40.0)):
        sel = slice(500 * i, 500 * (i + 1))
        lep = lepton_from_dis(x[sel], q2[sel], rng.uniform(0, 6, 500), Beams.lepton_hadron(e, e, lepton_direction=1))
        for name, v in zip(("lepton_E", "lepton_px", "lepton_py", "lepton_pz"), lep, strict=True):
            cols.setdefault(name, np.empty(1000))[sel] = v
    with uproot.recreate(tmp_path / "scan.root") as f:
        f.mktree("events", {k: np.float64 for k in cols})
        f["events"].extend({k: np.asarray(v) for k, v in cols.items()})
    text = f"""
[pipeline]
seed = 1
[truth]
plugin = "root"
files = ["{tmp_path / 'scan.root'}"]
beams = {{ preset = "sym50", lepton_energy = "E_b", hadron_energy = "E_b" }}
"""
    source = parse_config(text, "scan.toml").stages[0]
    from mlegpipe.pipeline import build_stages

    truth = build_stages(parse_config(text, "scan.toml"))["truth"]
    batch = truth.read()
    assert batch.beams.fields == ("E_b", "E_b") and source.plugin.name == "root"
    np.testing.assert_allclose(resolve("x")(batch), x, rtol=1e-9)  # each event at its own E x E beams
    bad = text.replace('hadron_energy = "E_b"', 'hadron_energy = "E_beam"')
    with pytest.raises(DataError, match="E_beam"):
        build_stages(parse_config(bad, "scan.toml"))


# -- pipelines of collections ----------------------------------------------------------------------------------
JETS = """
[pipeline]
name = "jets"
seed = 4
split = [0.6, 0.2, 0.2]
[observables]
m_j12 = {{ expr = "mass(jets[0] + jets[1])", unit = "GeV" }}
ht = "ht(jets)"
compare = ["n_jets", "jets1_pt", "jets1_eta", "m_j12", "ht", "met"]
pairs = [["jets1_pt", "met"]]
[truth]
plugin = "toy-jets"
events = 6000
[generator]
plugin = "flow"
features = ["jets", "met"]
{conditions}
steps = {steps}
validate_every = 0
checkpoint_every = 0
transforms = 2
[second]
kind = "generator"
plugin = "flow"
features = ["met"]
steps = 50
validate_every = 0
checkpoint_every = 0
[report]
plugin = "html"
plots = false
classifier = false
"""


def test_a_variable_multiplicity_collection_is_learned_and_two_generators_are_reported(registry,
                                                                                        tmp_path: Path) -> None:
    cfg = parse_config(JETS.format(conditions="", steps=600), "jets.toml", registry=registry)
    run = run_pipeline(cfg, output=str(tmp_path / "run"), progress=False)
    metrics = json.loads((run / "metrics.json").read_text())["stages"]["report"]["comparisons"]
    assert set(metrics) == {"generated", "second"}  # both generator sections are compared with the truth
    gen = metrics["generated"]["features"]
    assert list(gen) == ["n_jets", "jets1_pt", "jets1_eta", "m_j12", "ht", "met"]
    assert "jets1_pt:met" in metrics["generated"]["joints"]
    assert metrics["second"]["feature_names"] == ["n_jets", "jets1_pt", "jets1_eta", "m_j12", "ht", "met"] or \
        "skipped" in metrics["second"]
    from mlegpipe.rootio import read_events

    events = EventBatch.concat(read_events(run / "generated.root"))
    counts = np.bincount(events.multiplicity("jets"), minlength=4)[1:] / len(events)
    np.testing.assert_allclose(counts, collider_toys.JET_MULTIPLICITY, atol=0.04)  # the categorical is learned
    pt = events.particles("jets")["px"]  # ordered by p_T as in training
    pts = np.hypot(events.particles("jets")["px"], events.particles("jets")["py"])
    assert np.all(np.nan_to_num(np.diff(pts, axis=1), nan=-1.0) <= 1e-9) and pt.shape[1] == 3
    assert gen["n_jets"]["chi2_ndf"] < 3.0 * max(gen["n_jets"]["chi2_ndf_floor"], 1.0)


def test_multiplicity_and_any_field_as_conditions(registry, tmp_path: Path) -> None:
    """A flow conditioned on c and on the jet multiplicity: generate at fixed values from the command line."""
    cfg = parse_config(JETS.format(conditions='conditions = ["c", "n_jets"]', steps=400), "jets.toml",
                       registry=registry)
    run = run_pipeline(cfg, output=str(tmp_path / "run"), progress=False)
    ckpt = run / "checkpoints" / "generator.pt"
    outs = {}
    for c in (1.2, 2.8):
        out = tmp_path / f"c{c}.root"
        assert main(["generate", str(ckpt), "-n", "3000", "-o", str(out), "--condition", f"c={c}",
                     "--condition", "n_jets=2"]) == 0
        from mlegpipe.rootio import read_events

        outs[c] = EventBatch.concat(read_events(out))
    assert (outs[1.2].multiplicity("jets") == 2).all()
    # the p_T scale follows c (truth: 20 c (1 + Exp))
    ratio = np.median(resolve("jets1_pt")(outs[2.8])) / np.median(resolve("jets1_pt")(outs[1.2]))
    assert 1.8 < ratio < 2.9
    assert main(["generate", str(ckpt), "-n", "10", "-o", str(tmp_path / "x.root")]) == 2  # c missing


def test_a_fixed_multiplicity_collection_is_learned_by_a_gan(registry, tmp_path: Path) -> None:
    text = """
[pipeline]
seed = 2
[truth]
plugin = "toy-pair"
events = 3000
[generator]
plugin = "dsgan"
features = ["p"]
steps = 200
validate_every = 0
checkpoint_every = 0
"""
    run = run_pipeline(parse_config(text, "pair.toml", registry=registry), output=str(tmp_path / "r"), progress=False)
    from mlegpipe.rootio import read_events

    events = EventBatch.concat(read_events(run / "generated.root"))
    assert (events.multiplicity("p") == 2).all()
    mass = resolve("p1_mass")(events)
    np.testing.assert_allclose(mass, 0.0, atol=1e-3)  # massless stays massless (a constant; E² - p² rounding)


def test_a_third_party_feature_map_and_observable_through_hooks(registry, tmp_path: Path) -> None:
    text = """
[pipeline]
seed = 3
[truth]
plugin = "toy-jets"
events = 2000
[generator]
plugin = "flow"
feature_map = "log_c"
steps = 100
validate_every = 0
checkpoint_every = 0
[report]
plugin = "html"
plots = false
classifier = false
"""
    assert "log_c" in registry.feature_maps and "c_squared" in registry.observables
    run = run_pipeline(parse_config(text, "third.toml", registry=registry), output=str(tmp_path / "r"),
                       progress=False)
    comparisons = json.loads((run / "metrics.json").read_text())["stages"]["report"]["comparisons"]
    assert "c_squared" in comparisons["generated"]["features"]  # the plugin's observable is compared
    from mlegpipe.rootio import read_events

    assert (EventBatch.concat(read_events(run / "generated.root")).column("c") > 0).all()


@pytest.mark.parametrize(("observables", "message"), [
    ('m = "mass(q[0] + q[1])"', "no such particle collection"),          # a collection the truth does not have
    ('m = "mass(jets[0] + jets[3])"', "never has a particle at index 3"),  # at most three jets
    ('m = "jets.pt"', "attribute access"),
    ('m = "exp(pt(jets[0])) + sneaky(1)"', "not a known function"),
])
def test_bad_observables_name_the_toml_path(registry, tmp_path: Path, observables: str, message: str) -> None:
    text = f"[pipeline]\nseed = 1\n[observables]\n{observables}\n[truth]\nplugin = \"toy-jets\"\nevents = 200\n"
    with pytest.raises((DataError, FormulaError, ConfigError), match=message) as err:
        run_pipeline(parse_config(text, "bad.toml", registry=registry), output=str(tmp_path / "out"),
                     progress=False)
    assert "bad.toml: observables.m" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_observable_of_a_missing_collection_exits_2_from_the_command_line(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[pipeline]\nseed = 1\n[observables]\nm_jj = "mass(jets[0] + jets[1])"\n'
                    '[truth]\nplugin = "dis"\nevents = 300\n', encoding="utf-8")
    assert main(["run", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "observables.m_jj" in err and "no such particle collection" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_collection_column_is_a_clear_error() -> None:
    b = _two_particles()
    with pytest.raises(DataError, match="is a particle collection"):
        b.column("q")
    assert ak.num(b.collection("q")).tolist() == [2]
