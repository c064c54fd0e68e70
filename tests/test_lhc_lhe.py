"""LHE output of tt̄ → 6 quarks: tops and Ws as resonances, a colour flow, and Pythia 8 showers the file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import awkward as ak
import numpy as np
import pylhe
import pytest

import mlegpipe
from mlegpipe.events import EventBatch
from mlegpipe.formats import open_writer
from mlegpipe.rootio import read_events

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "ttbar_allhad_small.root"
SIGMA = {"cross_section_pb": 234.7, "cross_section_error_pb": 1.2}


@pytest.fixture(scope="module")
def truth() -> EventBatch:
    return EventBatch.concat(read_events(SAMPLE, max_events=300))


def _without_pid(batch: EventBatch, seed: int = 3) -> EventBatch:
    quarks = batch.arrays["quarks"]
    columns = {"quarks": ak.zip({c: quarks[c] for c in ("px", "py", "pz", "E")})}
    return EventBatch.from_columns(columns, batch.beams, {"process": "ttbar-allhad", "generation_seed": seed})


def _write(batch: EventBatch, path: Path) -> Path:
    with open_writer(path, SIGMA) as writer:
        writer.write(batch)
    return path


def _p(particle: pylhe.LHEParticle) -> np.ndarray:
    return np.array([particle.px, particle.py, particle.pz, particle.e])


def test_the_record_holds_the_decay_chain_balanced_at_every_vertex(truth: EventBatch, tmp_path: Path) -> None:
    path = _write(truth, tmp_path / "tt.lhe")
    assert pylhe.LHEFile.fromfile(path).init.procInfo[0].xSection == pytest.approx(234.7)
    quarks = truth.particles("quarks", 6)
    for i, event in enumerate(pylhe.LHEFile.fromfile(path).events):
        parts = event.particles
        assert [int(p.id) for p in parts[:8]] == [21, 21, 6, -6, 24, 5, -24, -5]
        assert [int(p.status) for p in parts] == [-1, -1, 2, 2, 2, 1, 2, 1, 1, 1, 1, 1]
        assert [int(p.id) for p in parts[8:]] == [int(v) for v in np.asarray(quarks["pid"][i])[[1, 2, 4, 5]]]
        for parent in (2, 3, 4, 6):  # t, t̄, W⁺, W⁻: four-momentum = sum of its daughters', mass = their mass
            daughters = [p for p in parts if int(p.mother1) == parent + 1]
            assert len(daughters) == 2
            total = sum(_p(d) for d in daughters)
            np.testing.assert_allclose(_p(parts[parent]), total, rtol=1e-12, atol=1e-9)
            assert parts[parent].m == pytest.approx(np.sqrt(total[3] ** 2 - total[:3] @ total[:3]), rel=1e-9)
        incoming = sum(_p(p) for p in parts if p.status == -1)
        outgoing = sum(_p(p) for p in parts if p.status == 1)
        np.testing.assert_allclose(incoming, outgoing, rtol=1e-12, atol=1e-8)
        # colour conservation: outgoing colours and incoming anticolours pair with the opposite ones
        flow = Counter()
        for p in parts:
            if p.status == 2:
                continue
            sign = 1 if p.status == 1 else -1
            flow[int(p.color1)] += sign
            flow[int(p.color2)] -= sign
        assert all(v == 0 for c, v in flow.items() if c)
        if i == 40:
            break


def test_generated_events_get_ckm_flavours_reproducibly(truth: EventBatch, tmp_path: Path) -> None:
    a = _write(_without_pid(truth), tmp_path / "a.lhe")
    b = _write(_without_pid(truth), tmp_path / "b.lhe")
    c = _write(_without_pid(truth, seed=4), tmp_path / "c.lhe")
    assert a.read_bytes().split(b"</header>")[1] == b.read_bytes().split(b"</header>")[1]
    assert a.read_bytes().split(b"</header>")[1] != c.read_bytes().split(b"</header>")[1]
    pairs = Counter()
    for event in pylhe.LHEFile.fromfile(a).events:
        ids = [int(p.id) for p in event.particles]
        assert ids[5] == 5 and ids[7] == -5
        plus, minus = (ids[8], ids[9]), (ids[10], ids[11])
        assert plus[0] in (2, 4) and plus[1] in (-1, -3)  # W⁺ → up-type quark, down-type antiquark
        assert minus[0] in (1, 3) and minus[1] in (-2, -4)
        pairs[plus] += 1
    cabibbo = (pairs[(2, -3)] + pairs[(4, -1)]) / sum(pairs.values())
    assert cabibbo < 0.15  # |V_us|² + |V_cd|² ≈ 5 % of W⁺ decays


def test_pythia_showers_the_file_keeping_the_resonance_masses(truth: EventBatch, tmp_path: Path) -> None:
    pythia8 = pytest.importorskip("pythia8mc")
    path = _write(_without_pid(truth.take(slice(0, 40))), tmp_path / "gen.lhe")
    wanted = {i: ev.particles[2].m for i, ev in enumerate(pylhe.LHEFile.fromfile(path).events)}
    pythia = pythia8.Pythia("", False)
    for setting in ("Beams:frameType = 4", f"Beams:LHEF = {path}", "Next:numberCount = 0",
                    "HadronLevel:all = off", "PartonLevel:MPI = off"):
        assert pythia.readString(setting)
    assert pythia.init()
    showered = 0
    for i in range(40):
        assert pythia.next(), f"Pythia failed on event {i}"
        tops = [p for p in pythia.process if p.idAbs() == 6]
        assert len(tops) == 2
        assert tops[0].m() == pytest.approx(wanted[i], abs=1e-3)  # the resonance is read, not rebuilt
        showered += 1
    assert showered == 40


def test_a_pipeline_writes_its_samples_as_lhe_with_the_truth_sigma(tmp_path: Path) -> None:
    """The all-hadronic study's LHE output, end to end: TOML `also_write = ["lhe"]`."""
    text = f"""
[pipeline]
name = "tt-lhe"
seed = 5
threads = 1
also_write = ["lhe"]
[truth]
plugin = "root"
files = ["{SAMPLE}"]
events = 3000
[generator]
plugin = "flow"
features = ["quarks"]
feature_map = "ttbar_chain"
flow = "maf"
transforms = 1
hidden = [8]
steps = 20
"""
    (tmp_path / "tt.toml").write_text(text)
    run_dir = mlegpipe.run(tmp_path / "tt.toml", output=tmp_path / "run", progress=False)
    lhe = run_dir / "generated.lhe"
    meta = mlegpipe.read_meta(lhe)
    truth = mlegpipe.read_meta(run_dir / "truth_test.root")
    assert meta["cross_section_pb"] == pytest.approx(truth["cross_section_pb"])
    assert truth["cross_section_pb"] > 200
    assert meta["process"] == "ttbar-allhad" and len(meta["checkpoint_sha256"]) == 64
    events = list(pylhe.LHEFile.fromfile(lhe).events)
    left_out = meta.get("unphysical_events_left_out", 0)  # a 20-step flow makes a few impossible events
    assert len(events) + left_out == len(mlegpipe.read_events(run_dir / "generated.root"))
    assert left_out < 0.05 * len(events)
    assert [int(p.status) for p in events[0].particles].count(2) == 4  # t, t̄, W⁺, W⁻
    assert (run_dir / "truth_test.lhe").is_file()


def test_an_impossible_event_is_left_out_and_counted_or_refused(truth: EventBatch, tmp_path: Path) -> None:
    quarks = truth.arrays["quarks"][:20]
    boosted = ak.zip({"px": quarks.px, "py": quarks.py, "pz": quarks.pz + 7000.0 * (np.arange(20) == 3)[:, None],
                      "E": quarks.E + 7000.0 * (np.arange(20) == 3)[:, None]})
    batch = EventBatch.from_columns({"quarks": boosted}, truth.beams, {"process": "ttbar-allhad"})
    path = _write(batch, tmp_path / "skip.lhe")
    numbers = [int(e.eventinfo.attributes["event_number"]) if hasattr(e.eventinfo, "attributes") else None
               for e in pylhe.LHEFile.fromfile(path).events]
    assert len(numbers) == 19 and mlegpipe.read_meta(path)["unphysical_events_left_out"] == 1
    from mlegpipe.exceptions import DataError

    with pytest.raises(DataError, match="event 3 cannot come from two incoming partons"):
        with open_writer(tmp_path / "strict.lhe", SIGMA, unphysical="error") as writer:
            writer.write(batch)
    assert not (tmp_path / "strict.lhe").exists()
