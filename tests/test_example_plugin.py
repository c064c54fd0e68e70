"""The example third-party plugin (plugins/mlegpipe-example-detector) runs in a pipeline."""

from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "mlegpipe-example-detector"))

import mlegpipe_example_detector as example  # noqa: E402

from mlegpipe.config import parse_config  # noqa: E402
from mlegpipe.pipeline import run_pipeline  # noqa: E402
from mlegpipe.registry import load_plugins  # noqa: E402

PIPELINE = """
[pipeline]
name = "example-plugin"
seed = 5
split = [0.5, 0.25, 0.25]

[truth]
plugin = "dis"
beams = "hera"
events = 8000

[detector]
plugin = "calorimeter"
stochastic = 0.15
constant = 0.03
"""


def _registry():
    try:
        md.distribution("mlegpipe-example-detector")
        return load_plugins()  # installed: found through its entry point like any plugin
    except md.PackageNotFoundError:
        return load_plugins(extra=[example])  # not installed: registered directly


def test_installed_through_entry_point() -> None:
    try:
        dist = md.distribution("mlegpipe-example-detector")
    except md.PackageNotFoundError:
        pytest.skip("the example plugin is not installed in this environment (make install installs it)")
    info = load_plugins().get("detector", "calorimeter")
    assert info.distribution == dist.metadata["Name"] and info.version == "0.1.0"


def test_runs_in_a_pipeline_with_its_resolution(tmp_path: Path) -> None:
    cfg = parse_config(PIPELINE, "example.toml", registry=_registry())
    run = run_pipeline(cfg, output=str(tmp_path / "run"), progress=False)
    truth = uproot.open(run / "truth_train.root")["events"].arrays(library="np")
    reco = uproot.open(run / "truth_train_detector.root")["events"].arrays(library="np")
    e_true, e_reco = truth["lepton_E"], reco["lepton_E"]
    band = (e_true > 20) & (e_true < 30)
    rel = (e_reco[band] - e_true[band]) / e_true[band]
    expected = np.sqrt(0.15**2 / e_true[band] + 0.03**2).mean()
    assert abs(rel.std() / expected - 1) < 0.08  # ~1000 events: 2-3% statistical precision on a width
    # the DIS variables are recomputed from the measured lepton
    assert not np.allclose(reco["Q2"], truth["Q2"])
    assert np.allclose(reco["Q2"], truth["Q2"], rtol=0.5)
