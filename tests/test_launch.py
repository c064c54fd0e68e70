"""Launching data-parallel runs: validated before torchrun, one console, rank 0 writes, two nodes on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from ranks import free_port

PIPELINE = """
[pipeline]
name = "launch"
seed = 4

[truth]
plugin = "dis"
beams = "hera"
events = 3000

[generator]
plugin = "flow"
flow = "maf"
transforms = 1
hidden = [8]
steps = 4
batch_size = 255
validate_every = 0

[report]
plugin = "html"
plots = false
"""


def _mlegpipe(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mlegpipe", "run", *args, "--no-progress"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _events(run: Path) -> dict[str, np.ndarray]:
    with uproot.open(run / "generated.root") as f:
        return f["events"].arrays(library="np")


@pytest.fixture()
def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "launch.toml"
    path.write_text(PIPELINE)
    return path


def test_bad_input_is_exit_2_before_torchrun_starts(pipeline: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(PIPELINE.replace('plugin = "dis"\nbeams = "hera"', 'plugin = "root"\nfiles = ["missing.root"]'))
    done = _mlegpipe("--nproc", "2", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "missing.root: no such file" in done.stderr and len(done.stderr.strip().splitlines()) <= 2
    assert "torch" not in done.stderr and "Traceback" not in done.stderr
    (tmp_path / "taken").mkdir()
    done = _mlegpipe("--nproc", "2", str(pipeline), "-o", "taken", cwd=tmp_path)
    assert done.returncode == 2 and "the run folder exists already" in done.stderr
    done = _mlegpipe("--nnodes", "2", str(pipeline), cwd=tmp_path)
    assert done.returncode == 2 and "--master HOST:PORT" in done.stderr


def test_a_rank_failing_at_run_time_is_its_exit_code_and_one_line(tmp_path: Path) -> None:
    few = tmp_path / "few.toml"
    few.write_text(PIPELINE.replace("events = 3000", "events = 4"))  # the split fails in the truth step
    done = _mlegpipe("--nproc", "2", str(few), cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "too few to split" in done.stderr and "exit code 2" in done.stderr
    assert "Traceback" not in done.stderr and "ChildFailedError" not in done.stderr


@pytest.mark.slow
def test_two_nodes_on_loopback_equal_one_node_with_two_ranks(pipeline: Path, tmp_path: Path) -> None:
    one = _mlegpipe("--nproc", "2", str(pipeline), "-o", "one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    assert one.stderr.count("[generator] done in") == 1  # rank 1 logs to rank 0's run.log, not the console
    log = (tmp_path / "one" / "run.log").read_text()
    assert "[rank 1]" in log and log.count("[generator] done in") == 2
    master = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    node = [sys.executable, "-m", "mlegpipe", "run", "--nnodes", "2", "--master", master, str(pipeline), "-o", "two",
            "--no-progress"]
    second = subprocess.Popen([*node, "--node-rank", "1"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    first = subprocess.run([*node, "--node-rank", "0"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=240, check=False)
    _, second_err = second.communicate(timeout=240)
    assert first.returncode == 0 and second.returncode == 0, first.stderr[-2000:] + second_err[-2000:]
    assert "[generator]" not in second_err  # node 1 says nothing unless something fails
    a, b = _events(tmp_path / "one"), _events(tmp_path / "two")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)  # same seed, same world size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["launch.toml", "one", "two"]


TTBAR = Path(__file__).resolve().parent.parent / "sample_data" / "ttbar_allhad_small.root"
ROOT = Path(__file__).resolve().parent.parent
_TINY_DIS = PIPELINE.split("[generator]")[0]
#: trainer -> (pipeline text or a shipped pipeline with overrides, the sample its training makes)
TRAINERS: dict[str, tuple[str, list[str], str]] = {
    "fatgan": (_TINY_DIS + '[generator]\nplugin = "fatgan"\nsteps = 4\nbatch_size = 255\nvalidate_every = 0\n',
               [], "generated"),
    "bvae": (_TINY_DIS + '[generator]\nplugin = "bvae"\nsteps = 4\nbatch_size = 255\nvalidate_every = 0\n',
             [], "generated"),
    "howtogan": (f'[pipeline]\nname = "h"\nseed = 4\n[truth]\nplugin = "root"\nfiles = ["{TTBAR}"]\nevents = 1500\n'
                 '[generator]\nplugin = "howtogan"\nsteps = 4\nlayers = 2\nwidth = 32\nbatch_size = 127\n'
                 'mmd_observable_events = 64\nvalidate_every = 0\ncheckpoint_every = 0\n', [], "generated"),
    "flowfold": (_TINY_DIS + '[detector]\nplugin = "smear"\npreset = "matrix-0.2"\n[flowfold]\nkind = "detector"\n'
                 'plugin = "flowfold"\ninputs = ["truth_test"]\nvertex_features = ["lepton_E", "lepton_P", '
                 '"lepton_eta", "lepton_phi"]\ndetector_features = ["lepton_E", "lepton_P"]\nsteps = 4\n', [],
                 "truth_test_flowfold"),
    "gan-unfold": (str(ROOT / "pipelines" / "unfold_closure.toml"),
                   ["truth.events=3000", "sim.events=3000", "surrogate.steps=4", "unfolding.steps=4",
                    "unfolding.replicas=2", "report.plots=false"], "unfolded"),
}


@pytest.mark.slow
@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_each_trainer_on_two_ranks_gives_the_same_events_twice(trainer: str, tmp_path: Path) -> None:
    text, sets, sample = TRAINERS[trainer]
    if text.endswith(".toml"):
        toml = Path(text)
    else:
        toml = tmp_path / f"{trainer}.toml"
        toml.write_text(text)
    overrides = [arg for s in sets for arg in ("--set", s)]
    runs = []
    for out in ("a", "b"):
        done = _mlegpipe("--nproc", "2", str(toml), "-o", out, *overrides, cwd=tmp_path, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(tmp_path / out)
    files = sorted(p.name for p in runs[0].glob("*.root"))
    assert f"{sample}.root" in files and files == sorted(p.name for p in runs[1].glob("*.root"))
    with uproot.open(runs[0] / f"{sample}.root") as fa, uproot.open(runs[1] / f"{sample}.root") as fb:
        a, b = fa["events"].arrays(), fb["events"].arrays()
    assert a.fields == b.fields and ak.array_equal(a, b), trainer
    assert {p.name for p in tmp_path.iterdir()} <= {"a", "b", f"{trainer}.toml"}  # rank 1 left nothing behind
