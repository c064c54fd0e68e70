"""Launching data-parallel runs: validated before torchrun, one console, rank 0 writes, two nodes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    master = f"127.0.0.1:{_free_port()}"
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
