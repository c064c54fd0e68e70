"""Every file a run or ``mlegpipe generate`` writes carries σ, its error, the version and its provenance."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

import mlegpipe
from mlegpipe.cli import main
from mlegpipe.provenance import CROSS_SECTION, CROSS_SECTION_ERROR, EVENT_NUMBER, SUM_WEIGHTS, sha256_file

ROOT = Path(__file__).resolve().parent.parent
FORMATS = {"root": ".root", "parquet": ".parquet", "hepmc3": ".hepmc", "lhe": ".lhe"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quickstart at a tenth of its size, run through the Python API."""
    out = tmp_path_factory.mktemp("run") / "qs"
    return mlegpipe.run(ROOT / "pipelines" / "quickstart.toml", output=out, progress=False,
                        overrides={"truth.events": 6000, "generator.steps": 60, "pipeline.threads": 1})


def _truth_sigma(run_dir: Path) -> tuple[float, float]:
    import json

    truth = json.loads((run_dir / "metrics.json").read_text())["stages"]["truth"]
    return truth[CROSS_SECTION], truth[CROSS_SECTION_ERROR]


def test_every_run_output_carries_sigma_version_config_and_event_numbers(run_dir: Path) -> None:
    sigma, error = _truth_sigma(run_dir)
    assert 0 < error < 0.01 * sigma  # the dis sampler's integration error
    config = tomllib.loads((run_dir / "config.toml").read_text())
    del config["pipeline"]["output"]  # a location, not how the events were made
    files = sorted(run_dir.glob("*.root"))
    assert {p.stem for p in files} >= {"truth_train", "truth_valid", "truth_test", "generated"}
    for path in files:
        meta = mlegpipe.read_meta(path)
        assert meta[CROSS_SECTION] == sigma and meta[CROSS_SECTION_ERROR] == error, path.name
        assert meta["mlegpipe_version"] == mlegpipe.__version__ and meta["units"]["energy"] == "GeV"
        assert tomllib.loads(meta["config"]) == config and meta["seed"] == config["pipeline"]["seed"]
        events = mlegpipe.read_events(path)
        assert meta[SUM_WEIGHTS] == pytest.approx(float(np.sum(events.weight)) if "weight" in events.fields
                                                  else len(events))
        np.testing.assert_array_equal(events[EVENT_NUMBER], np.arange(len(events)))
    generated = mlegpipe.read_meta(run_dir / "generated.root")
    assert generated["checkpoint_sha256"] == sha256_file(run_dir / "checkpoints" / "generator.pt")
    assert "trained on" in generated["cross_section_origin"]
    assert "cross_section_origin" not in mlegpipe.read_meta(run_dir / "truth_test.root")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_generate_writes_the_checkpoint_provenance_in_every_format(run_dir: Path, tmp_path: Path, fmt: str) -> None:
    checkpoint = run_dir / "checkpoints" / "generator.pt"
    out = tmp_path / f"events{FORMATS[fmt]}"
    assert main(["generate", str(checkpoint), "-n", "3000", "-o", str(out), "--seed", "5", "--no-progress"]) == 0
    meta = mlegpipe.read_meta(out)
    assert meta["checkpoint_sha256"] == sha256_file(checkpoint) and meta["checkpoint"] == "generator.pt"
    assert meta["training_seed"] == 2026 and meta["generation_seed"] == 5
    assert meta["mlegpipe_version"] == mlegpipe.__version__
    sigma, error = _truth_sigma(run_dir)
    assert meta[CROSS_SECTION] == pytest.approx(sigma) and meta[CROSS_SECTION_ERROR] == pytest.approx(error)
    assert "trained on" in meta["cross_section_origin"]
    if fmt in ("root", "parquet"):
        assert len(mlegpipe.read_events(out)) == 3000


def test_root_and_parquet_hold_the_same_generated_events(run_dir: Path, tmp_path: Path) -> None:
    checkpoint = str(run_dir / "checkpoints" / "generator.pt")
    for suffix in (".root", ".parquet"):
        assert main(["generate", checkpoint, "-n", "2000", "-o", str(tmp_path / f"e{suffix}"), "--seed", "8"]) == 0
    a, b = mlegpipe.read_events(tmp_path / "e.root"), mlegpipe.read_events(tmp_path / "e.parquet")
    assert a.fields == b.fields
    for field in ("Q2", "x", EVENT_NUMBER):
        np.testing.assert_array_equal(np.asarray(a[field]), np.asarray(b[field]))
    np.testing.assert_array_equal(np.asarray(a.lepton.pt), np.asarray(b.lepton.pt))


def test_an_unknown_extension_is_exit_2_listing_the_formats(run_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "events.xyz"
    assert main(["generate", str(run_dir / "checkpoints" / "generator.pt"), "-n", "10", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "events.xyz" in err and "hepmc3 (.hepmc, .hepmc3)" in err and "parquet" in err
    assert "Traceback" not in err and not out.exists()


def test_a_checkpoint_changed_after_training_is_refused(run_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "checkpoints"
    shutil.copytree(run_dir / "checkpoints", folder)
    other = tmp_path / "other.pt"
    shutil.copy(folder / "generator-last.pt", other)
    shutil.copy(other, folder / "generator.pt")  # a different checkpoint under the recorded name
    out = tmp_path / "e.root"
    assert main(["generate", str(folder / "generator.pt"), "-n", "10", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(folder / "generator.pt") in err and "sha256" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["generate", str(other), "-n", "10", "-o", str(out)]) == 2  # not a generator: named too
    assert str(other) in capsys.readouterr().err


def test_a_root_syntax_cut_selects_what_the_python_spelling_selects(tmp_path: Path) -> None:
    from mlegpipe.config import parse_config

    events = {}
    for cut in ("Q2 > 5 && y < 0.5 || !(x < 0.01)", "Q2 > 5 and y < 0.5 or not (x < 0.01)"):
        text = f"""
[pipeline]
name = "cut"
[truth]
plugin = "root"
files = ["{ROOT / 'sample_data' / 'hera_dis.root'}"]
cut = "{cut}"
events = 5000
"""
        config = parse_config(text, "cut.toml")
        from mlegpipe.pipeline import build_stages

        events[cut] = build_stages(config)["truth"].read()
    a, b = events.values()
    assert len(a) == len(b) > 1000
    q2, y, x = a.column("Q2"), a.column("y"), a.column("x")
    assert np.all(((q2 > 5) & (y < 0.5)) | (x >= 0.01))
    np.testing.assert_array_equal(q2, b.column("Q2"))


def test_generated_hepmc_is_balanced_with_the_run_beams_and_sigma(run_dir: Path, tmp_path: Path) -> None:
    """What Rivet or Delphes reads: beams in, the lepton and X out, balanced to 1e-6, σ of the run's truth."""
    import pyhepmc

    out = tmp_path / "dis.hepmc"
    assert main(["generate", str(run_dir / "checkpoints" / "generator.pt"), "-n", "500", "-o", str(out)]) == 0
    sigma, error = _truth_sigma(run_dir)
    count = 0
    with pyhepmc.open(out) as handle:
        for event in handle:
            beams = [p for p in event.particles if p.status == 4]
            final = [p for p in event.particles if p.status == 1]
            assert sorted((p.pid, round(p.momentum.e, 6)) for p in beams) == [(-11, 27.6), (2212, 920.0)]
            assert sorted(p.pid for p in final) == [-11, 90]  # the scattered positron and the hadronic system X
            p_in = np.sum([[p.momentum.px, p.momentum.py, p.momentum.pz, p.momentum.e] for p in beams], axis=0)
            p_out = np.sum([[p.momentum.px, p.momentum.py, p.momentum.pz, p.momentum.e] for p in final], axis=0)
            assert np.all(np.abs(p_out - p_in) <= 1e-6 * p_in[3])
            assert event.cross_section.xsec() == pytest.approx(sigma)
            assert event.cross_section.xsec_err() == pytest.approx(error)
            assert event.event_number == count
            count += 1
    assert count == 500
