"""The example domain plugin (plugins/mlegpipe-example-decay): the B-VAE slides' 1 → 2 decay toy through the core.

The package is used exactly as a third-party domain would be: found through its
entry point when installed (else registered directly), learned by ``flow`` and
``bvae`` from its own pipeline files, reported and interpreted, without the
core or the DIS domain knowing it. docs/writing-a-domain-plugin.md is checked
against its sources here.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.metadata as md
import json
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import vector
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "plugins" / "mlegpipe-example-decay"
sys.path.insert(0, str(PACKAGE_DIR))

import mlegpipe_example_decay as example  # noqa: E402
from mlegpipe_example_decay import kinematics, observables, physicality, truth  # noqa: E402

from mlegpipe.config import parse_config  # noqa: E402
from mlegpipe.events import EventBatch, particle_lists  # noqa: E402
from mlegpipe.exceptions import ConfigError  # noqa: E402
from mlegpipe.observables import resolve  # noqa: E402
from mlegpipe.physicality import applicable_checks  # noqa: E402
from mlegpipe.physicality import physicality as physicality_of  # noqa: E402
from mlegpipe.pipeline import run_pipeline  # noqa: E402
from mlegpipe.registry import Registry, load_plugins  # noqa: E402
from mlegpipe.stages import StageContext  # noqa: E402

DOC = ROOT / "docs" / "writing-a-domain-plugin.md"
MODULES = (example, kinematics, truth, observables, physicality)
#: What a domain plugin may import from mlegpipe: its public API (mlegpipe.registry only for type hints).
PUBLIC = {"mlegpipe", "mlegpipe.stages", "mlegpipe.events", "mlegpipe.beams", "mlegpipe.observables",
          "mlegpipe.physicality", "mlegpipe.schema", "mlegpipe.exceptions", "mlegpipe.registry"}


def _installed() -> bool:
    try:
        md.distribution("mlegpipe-example-decay")
        return True
    except md.PackageNotFoundError:
        return False


@pytest.fixture(scope="module")
def registry() -> Registry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # installed: found through its entry point like any plugin; else registered directly
        return load_plugins() if _installed() else load_plugins(extra=[example])


def _toy(seed: int = 1, **params: float) -> EventBatch:
    return truth.DecayToy(truth.DecayToy.Params(**params), StageContext("truth", seed=seed)).read()


def _p4(batch: EventBatch, i: int) -> np.ndarray:
    parts = batch.particles("d", 2)
    return np.stack([parts[c][:, i] for c in ("px", "py", "pz", "E")], axis=1)


# -- the package is a plugin ---------------------------------------------------------------------------------

def test_installed_through_entry_point() -> None:
    if not _installed():
        pytest.skip("the example decay plugin is not installed in this environment (make install installs it)")
    reg = load_plugins()
    info = reg.get("truth", "decay-toy")
    assert info.distribution == "mlegpipe-example-decay" and info.version == "0.1.0"
    assert reg.observables.origin("decay_mass") == "mlegpipe_example_decay"
    assert reg.physicality.origin("decay") == "mlegpipe_example_decay"


def test_registers_its_stage_observables_pair_and_check(registry: Registry) -> None:
    assert registry.get("truth", "decay-toy").cls is truth.DecayToy
    for name, observable in example.OBSERVABLES.items():
        assert registry.observables.get(name) is observable and resolve(name, registry) is observable
        assert observable.label and observable.doc
    assert registry.observables.get("decay_mass:decay_opening") is example.MASS_OPENING_PAIR
    assert registry.physicality.get("decay") is example.DECAY_CHECK


def test_sources_use_only_the_public_api() -> None:
    """Only the example package's own files and mlegpipe's public modules: never mlegpipe_builtins."""
    for path in sorted((PACKAGE_DIR / "mlegpipe_example_decay").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith("mlegpipe_builtins"), f"{path.name} imports {name}"
                if name == "mlegpipe" or name.startswith("mlegpipe."):
                    assert name in PUBLIC, f"{path.name} imports {name}, not public API"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and (result.attempted > 0 or module is example)


# -- the toy's physics ---------------------------------------------------------------------------------------

def test_mass_peaks_at_the_parent_mass_with_the_designed_width() -> None:
    batch = _toy(events=40_000, mass=100.0, smear=2.0)
    m12 = example.OBSERVABLES["decay_mass"](batch)
    # m12 ≈ M + (δ1 - δ2)·n: width smear·√2; second-order terms shift the peak by ≈ +0.05 GeV
    assert abs(np.median(m12) - 100.0) < 0.2
    assert abs(np.std(m12) / (2.0 * np.sqrt(2.0)) - 1) < 0.03
    exact = _toy(events=2000, mass=100.0, smear=0.0, parent_momentum=30.0)  # no smearing: exactly the parent mass
    assert np.allclose(example.OBSERVABLES["decay_mass"](exact), 100.0, atol=1e-9)


def test_decay_angle_is_uniform_in_the_parent_frame() -> None:
    """cos θ* of daughter 1 in the rest frame of the (moving) parent, boosted with vector: uniform in [-1, 1]."""
    batch = _toy(seed=4, events=30_000, parent_momentum=40.0)
    parent = vector.array({c: batch.column(f"parent_{c}") for c in ("px", "py", "pz", "E")})
    d1 = _p4(batch, 0)
    rest = vector.array(dict(zip(("px", "py", "pz", "E"), d1.T, strict=True))).boostCM_of_p4(parent)
    cos_theta = rest.pz / rest.p
    assert stats.kstest(cos_theta, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    assert abs(np.mean(cos_theta)) < 4 / np.sqrt(3 * len(cos_theta))  # 4σ of the mean of U(-1, 1)
    # the pair frame stands in for the parent's in the observable: uniform as well (the toy is isotropic)
    pair = example.OBSERVABLES["decay_cos_theta"](batch)
    assert stats.kstest(pair, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # without smearing the daughters are back to back in the parent frame with |p*| = M/2
    exact = _toy(events=500, smear=0.0, parent_momentum=40.0)
    par = vector.array({c: exact.column(f"parent_{c}") for c in ("px", "py", "pz", "E")})
    d1r, d2r = (vector.array(dict(zip(("px", "py", "pz", "E"), _p4(exact, i).T, strict=True))).boostCM_of_p4(par)
                for i in (0, 1))
    assert np.allclose(d1r.p, 50.0, rtol=1e-9) and np.allclose((d1r + d2r).p, 0.0, atol=1e-8)


@pytest.mark.parametrize("parent_momentum", [0.0, 40.0])
def test_momentum_imbalance_is_maxwellian_with_the_designed_scale(parent_momentum: float) -> None:
    smear = 1.5
    batch = _toy(seed=7, events=20_000, smear=smear, parent_momentum=parent_momentum)
    q = example.OBSERVABLES["decay_imbalance"](batch)
    # p_parent - p1 - p2 = -(δ1 + δ2): a Gaussian vector of width smear·√2 per component
    assert stats.kstest(q, stats.maxwell(scale=smear * np.sqrt(2)).cdf).pvalue > 1e-3
    assert abs(q.mean() / (4 * smear / np.sqrt(np.pi)) - 1) < 0.02
    exact = _toy(events=500, smear=0.0, parent_momentum=parent_momentum)
    assert np.allclose(example.OBSERVABLES["decay_imbalance"](exact), 0.0, atol=1e-9)


def test_events_are_reproducible_and_extend_with_more_events() -> None:
    a, b, c = _toy(events=300), _toy(events=300), _toy(events=600)
    assert np.array_equal(_p4(a, 0), _p4(b, 0)) and np.array_equal(_p4(a, 1), _p4(c.take(slice(0, 300)), 1))
    assert not np.array_equal(_p4(a, 0), _p4(_toy(seed=2, events=300), 0))
    assert np.allclose(example.OBSERVABLES["decay_mass"](a), kinematics.invariant_mass(_p4(a, 0), _p4(a, 1)))


def test_daughter_mass_and_pt_cut() -> None:
    batch = _toy(events=3000, daughter_mass=10.0, pt_min=20.0)
    parts = batch.particles("d", 2)
    mass = np.sqrt(parts["E"] ** 2 - parts["px"] ** 2 - parts["py"] ** 2 - parts["pz"] ** 2)
    assert np.allclose(mass, 10.0, rtol=1e-6) and len(batch) == 3000
    assert (np.hypot(parts["px"], parts["py"]) >= 20.0).all()
    src = truth.DecayToy(truth.DecayToy.Params(pt_min=20.0), StageContext("truth"))
    assert src.cuts() == {"daughter_pt_min": 20.0} and _toy_source().cuts() == {}
    assert physicality_of(batch, cuts=src.cuts())["unphysical"] == 0.0
    assert physicality_of(batch, cuts={"daughter_pt_min": 30.0})["daughter_pt_below_cut"] > 0.1


def _toy_source() -> truth.DecayToy:
    return truth.DecayToy(truth.DecayToy.Params(), StageContext("truth"))


def test_bad_parameters_name_the_toml_path(registry: Registry) -> None:
    text = '[pipeline]\nname = "bad"\n[truth]\nplugin = "decay-toy"\nmass = 10.0\ndaughter_mass = 6.0\n'
    with pytest.raises(ConfigError, match=r"truth.*daughter_mass = 6.0"):
        parse_config(text, "bad.toml", registry=registry)
    with pytest.raises(ConfigError, match="truth.smear"):
        parse_config(text.replace("daughter_mass = 6.0", "smear = -1.0"), "bad.toml", registry=registry)


# -- observables and physicality against hand-computed values ------------------------------------------------

def _hand_batch() -> EventBatch:
    # event 1: back to back, at rest, massless: m = 10, opening π, cos θ* = 0.8, balanced
    # event 2: d1 = (6, 0, 8 | 10), d2 = (0, 6, 0 | 6), orthogonal: m² = 16² - 136 = 120, imbalance |(6, 6, 8)|
    d = particle_lists({"px": [[3.0, -3.0], [6.0, 0.0]], "py": [[0.0, 0.0], [0.0, 6.0]],
                        "pz": [[4.0, -4.0], [8.0, 0.0]], "E": [[5.0, 5.0], [10.0, 6.0]]})
    parent = {"parent_px": [0.0, 0.0], "parent_py": [0.0, 0.0], "parent_pz": [0.0, 0.0], "parent_E": [10.0, 16.0]}
    return EventBatch.from_columns({"d": d, **{k: np.array(v) for k, v in parent.items()}})


def test_observables_against_hand_computed_values(registry: Registry) -> None:
    batch = _hand_batch()
    obs = example.OBSERVABLES
    assert np.allclose(obs["decay_mass"](batch), [10.0, np.sqrt(120.0)])
    assert np.allclose(obs["decay_opening"](batch), [np.pi, np.pi / 2])
    assert np.allclose(obs["decay_imbalance"](batch), [0.0, np.sqrt(136.0)])
    # cos θ*: event 1 in its own rest frame 4/5; event 2 boosted into the pair frame with vector
    d1 = vector.array({"px": [6.0], "py": [0.0], "pz": [8.0], "E": [10.0]})
    pair = d1 + vector.array({"px": [0.0], "py": [6.0], "pz": [0.0], "E": [6.0]})
    star = d1.boostCM_of_p4(pair)
    assert np.allclose(obs["decay_cos_theta"](batch), [0.8, (star.pz / star.p)[0]])
    assert obs["decay_imbalance"].available(batch)
    assert not obs["decay_imbalance"].available(batch.select(["d"]))  # generated events: daughters only
    assert obs["decay_mass"].available(batch.select(["d"]))
    assert not obs["decay_mass"].available(EventBatch.from_columns({"d": [1.0]}))  # a flat field d is no collection
    # the declared expressions of the shipped pipelines agree with the registered observables
    cfg = parse_config((PACKAGE_DIR / "pipelines" / "decay_flow.toml").read_text(encoding="utf-8"), "decay_flow.toml",
                       registry=registry)
    declared = cfg.observables.declared
    assert np.allclose(declared["p12"](batch), [0.0, np.sqrt(136.0)])  # the imbalance of a parent at rest
    assert np.allclose(declared["e12"](batch), [10.0, 16.0])


def test_physicality_check(registry: Registry) -> None:
    batch = _hand_batch()
    assert example.DECAY_CHECK in applicable_checks(batch, registry)
    assert example.DECAY_CHECK not in applicable_checks(EventBatch.from_columns({"x": [0.1], "Q2": [2.0]}), registry)
    assert physicality_of(batch, checks=[example.DECAY_CHECK])["unphysical"] == 0.0
    bad = particle_lists({"px": [[3.0, -3.0], [3.0]], "py": [[0.0, 0.0], [0.0]], "pz": [[4.0, -4.0], [4.0]],
                          "E": [[4.9, 5.0], [5.0]]})
    out = physicality_of(EventBatch.from_columns({"d": bad}), checks=[example.DECAY_CHECK])
    assert out["daughter_not_physical"] == 0.5 and out["daughters_missing"] == 0.5 and out["unphysical"] == 1.0


# -- learned from the package's own pipeline files, reported, interpreted ------------------------------------

SHORT = ["truth.events=3000", "report.classifier=false"]


def _run(registry: Registry, toml: str, out: Path, *overrides: str) -> Path:
    cfg = parse_config((PACKAGE_DIR / "pipelines" / toml).read_text(encoding="utf-8"), toml,
                       [*SHORT, *overrides], registry=registry)
    return run_pipeline(cfg, output=str(out), progress=False)


def _check_report(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    generated = metrics["stages"]["report"]["comparisons"]["generated"]
    compared = ["decay_mass", "decay_opening", "decay_cos_theta", "p12", "e12", "d1_pt", "d1_eta", "d1_phi"]
    assert generated["feature_names"] == compared
    assert set(generated["features"]) == set(compared)
    assert all(np.isfinite(generated["features"][n]["chi2_ndf"]) for n in compared)
    assert set(generated["joints"]) == {"decay_mass:decay_opening", "decay_cos_theta:p12"}
    assert generated["physicality"]["unphysical"] == 0.0 and "daughters_missing" in generated["physicality"]
    assert metrics["stages"]["truth"]["imbalance_scale"] == pytest.approx(2 * np.sqrt(2))
    assert (run / "report.html").is_file() and (run / "plots" / "generated__decay_mass.png").is_file()
    return metrics


@pytest.fixture(scope="module")
def flow_run(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(registry, "decay_flow.toml", tmp_path_factory.mktemp("decay") / "flow",
                "generator.steps=20", "generator.validate_every=0", "generator.batch_size=256",
                "generator.checkpoint_every=0")


def test_flow_learns_the_toy_from_the_package_pipeline(flow_run: Path) -> None:
    metrics = _check_report(flow_run)
    assert metrics["stages"]["generator"]["events_sampled"] == 600


def test_bvae_learns_the_toy_from_the_package_pipeline(registry: Registry, tmp_path: Path) -> None:
    run = _run(registry, "decay_bvae.toml", tmp_path / "bvae", "generator.steps=60", "generator.batch_size=256",
               "generator.validate_every=0")
    metrics = _check_report(run)
    assert metrics["stages"]["generator"]["buffer_events"] == 1800
    assert _interpret(run)["generator"] == "bvae"


def _interpret(run: Path) -> dict:
    from mlegpipe.cli import main

    code = main(["-q", "interpret", str(run), "--method", "pca", "--events", "60", "--layers", "1", "-1",
                 "--no-discriminator"])
    assert code == 0
    summary = json.loads((run / "plots" / "interpret.json").read_text(encoding="utf-8"))
    assert summary["generator_maps"] and (run / "plots" / "interpret_generator_pca.png").is_file()
    return summary


def test_interpret_the_flow_run(flow_run: Path) -> None:
    summary = _interpret(flow_run)
    assert summary["generator"] == "flow"


# -- the core keeps a massless collection massless and renders angle labels ---------------------------------

def test_collection_map_keeps_a_zero_mass_constant() -> None:
    from mlegpipe.features import CollectionMap

    fmap = CollectionMap(["d"]).fit(_toy(events=12_000, daughter_mass=0.0))
    assert not [n for n in fmap.names if "mass" in n]


def test_automatic_angle_labels_render() -> None:
    from matplotlib.mathtext import MathTextParser

    for name in ("d1_eta", "d1_phi", "d1_theta"):
        MathTextParser("agg").parse(resolve(name).label)


# -- the documentation page ----------------------------------------------------------------------------------

def test_domain_plugin_page_matches_the_sources() -> None:
    """Every excerpt is verbatim in the file it names; every named module, symbol, file and hook exists."""
    text = DOC.read_text(encoding="utf-8")
    excerpts = re.findall(r"```(?:python|toml)\n# ((?:plugins|mlegpipe|tests)/\S+)\n(.*?)```", text, flags=re.S)
    assert len(excerpts) >= 5
    for path, body in excerpts:
        source = (ROOT / path).read_text(encoding="utf-8")
        for chunk in re.split(r"^\s*# \.\.\.\n", body, flags=re.M):
            assert chunk.strip() and chunk.strip() in source, f"excerpt of {path} drifted:\n{chunk}"
    for dotted in set(re.findall(r"\bmlegpipe_example_decay(?:\.\w+)+", text)):
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                break
            except ModuleNotFoundError:
                continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), f"{dotted} does not exist"
            obj = getattr(obj, attr)
    for path in set(re.findall(r"`((?:plugins|mlegpipe|tests|docs)/[\w./-]+\.(?:py|toml|md))`", text)):
        assert (ROOT / path).is_file(), f"{path} does not exist"
    from mlegpipe import hookspecs

    for hook in hookspecs.__all__:
        if hook.startswith("mlegpipe_register_"):
            assert f"`{hook}`" in text, f"hook {hook} is not documented"
