"""Tests of mlegpipe.rootio: round trips, atomic writes, error messages, inspection."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError, OutputError
from mlegpipe.rootio import (
    META_KEY,
    RootWriter,
    format_inspection,
    inspect_file,
    read_events,
    read_meta,
    write_events,
)


def make_batch(n: int, seed: int = 0, jagged: bool = True) -> EventBatch:
    rng = np.random.default_rng(seed)
    cols: dict = {"x": rng.uniform(1e-3, 1, n), "Q2": rng.exponential(10, n) + 1, "weight": rng.uniform(0.5, 2, n)}
    if jagged:
        counts = rng.integers(0, 6, n)
        total = int(counts.sum())
        particles = ak.zip({
            "px": rng.normal(size=total), "py": rng.normal(size=total), "pz": rng.normal(size=total),
            "E": rng.uniform(1, 5, total), "pid": rng.choice([211, -211, 22, 2212], total).astype(np.int32),
            "charge": rng.choice([-1.0, 0.0, 1.0], total),
        })
        cols["particles"] = ak.unflatten(particles, counts)
    return EventBatch.from_columns(cols, beams=Beams.preset("hera"), meta={"generator": "test", "seed": seed})


def test_round_trip_flat_and_jagged_identical(tmp_path: Path) -> None:
    batch = make_batch(1000)
    path = write_events(tmp_path / "ev.root", batch, meta={"cross_section_pb": 123.5})
    out = EventBatch.concat(read_events(path))
    assert out.fields == ["event_number", *batch.fields]
    np.testing.assert_array_equal(out.column("event_number"), np.arange(1000))
    for name in ("x", "Q2", "weight"):
        np.testing.assert_array_equal(out.column(name), batch.column(name))
    assert ak.all(ak.num(out.arrays["particles"]) == ak.num(batch.arrays["particles"]))
    for field in ("px", "py", "pz", "E", "pid", "charge"):
        assert ak.all(out.arrays["particles"][field] == batch.arrays["particles"][field])
    assert out.beams == Beams.preset("hera")
    assert out.meta["cross_section_pb"] == 123.5 and out.meta["generator"] == "test"
    assert read_meta(path)["entries"] == 1000
    with uproot.open(path) as f:
        assert f.classnames()[f"{META_KEY};1"] == "TObjString"
        assert {"nparticles", "particles_px", "particles_pid"} <= set(f["events"].keys())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5), chunk=st.integers(1, 400),
       step=st.integers(1, 500), seed=st.integers(0, 2**16))
def test_round_trip_any_chunking(tmp_path: Path, sizes: list[int], chunk: int, step: int, seed: int) -> None:
    """Whatever the batch sizes, basket size and read step: the same events come back in order."""
    batches = [make_batch(n, seed + i) for i, n in enumerate(sizes)]
    path = write_events(tmp_path / "h.root", batches, chunk_events=chunk, overwrite=True)
    expected = EventBatch.concat(batches)
    got = list(read_events(path, step_size=step))
    assert all(len(b) <= step for b in got)
    if len(expected) == 0:
        assert got == []
        return
    out = EventBatch.concat(got)
    np.testing.assert_array_equal(out.column("Q2"), expected.column("Q2"))
    assert ak.all(ak.flatten(out.arrays["particles"].px) == ak.flatten(expected.arrays["particles"].px))


def test_chunked_write_and_small_steps_read(tmp_path: Path) -> None:
    batches = [make_batch(700, seed=s) for s in range(4)]
    path = tmp_path / "chunks.root"
    with RootWriter(path, chunk_events=1000) as writer:
        for b in batches:
            writer.write(b)
    assert writer.entries == 2800
    chunks = list(read_events(path, step_size=500))
    assert [len(c) for c in chunks] == [500] * 5 + [300]
    np.testing.assert_array_equal(EventBatch.concat(chunks).column("x"), EventBatch.concat(batches).column("x"))
    with uproot.open(path) as f:
        assert f["events"]["x"].num_baskets == 3  # 1000 + 1000 + 800


def test_float32_halves_float_branches_and_keeps_integers(tmp_path: Path) -> None:
    batch = make_batch(200)
    batch = batch.with_columns(beam_energy=np.full(200, 27.6))
    batch.beams = Beams.preset("hera", lepton_energy="beam_energy")  # a declared per-event energy stays exact
    path = write_events(tmp_path / "f32.root", batch, float32=True)
    with uproot.open(path) as f:
        types = {b: f["events"][b].typename for b in f["events"].keys()}
    assert types["x"] == "float" and types["particles_px"] == "float[]" and types["particles_pid"] == "int32_t[]"
    assert types["beam_energy"] == "double" and types["weight"] == "double"  # kept exact by default
    out = EventBatch.concat(read_events(path))
    np.testing.assert_allclose(out.column("x"), batch.column("x"), rtol=1e-7)


def test_exception_mid_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "broken.root"
    with pytest.raises(RuntimeError), RootWriter(path, chunk_events=100) as writer:
        writer.write(make_batch(500))
        raise RuntimeError("generator crashed")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_never_touched(tmp_path: Path) -> None:
    path = write_events(tmp_path / "keep.root", make_batch(10))
    before = path.read_bytes()
    with pytest.raises(OutputError, match="exists already"):
        write_events(path, make_batch(20))
    with pytest.raises(RuntimeError), RootWriter(path, overwrite=True) as writer:
        writer.write(make_batch(20))
        raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.root"]
    write_events(path, make_batch(20), overwrite=True)
    assert read_meta(path)["entries"] == 20


def test_unwritable_path_names_it(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="afile"):
        write_events(blocker / "sub" / "ev.root", make_batch(5))


def test_missing_and_non_root_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        list(read_events(tmp_path / "nope.root"))
    with pytest.raises(DataError, match="relative paths are read from the working directory"):
        list(read_events("no_such_folder/nope.root"))
    with pytest.raises(DataError, match="no file matches"):
        list(read_events(str(tmp_path / "*.root")))
    text = tmp_path / "text.root"
    text.write_text("hello, I am not ROOT\n" * 10)
    with pytest.raises(DataError, match="not a readable ROOT file") as err:
        list(read_events(text))
    assert "text.root" in str(err.value)


def test_missing_tree_lists_trees(tmp_path: Path) -> None:
    path = write_events(tmp_path / "t.root", make_batch(5), tree="events")
    with pytest.raises(DataError, match="trees: events") as err:
        list(read_events(path, tree="evnets"))
    assert "did you mean 'events'" in str(err.value)


def test_missing_branch_lists_close_matches(tmp_path: Path) -> None:
    path = write_events(tmp_path / "b.root", make_batch(5))
    with pytest.raises(DataError) as err:
        list(read_events(path, branches={"Q2": "Q3"}))
    msg = str(err.value)
    assert "b.root: Q3" in msg and "Q2" in msg and "no such branch" in msg


def test_jagged_branch_where_flat_expected(tmp_path: Path) -> None:
    path = write_events(tmp_path / "j.root", make_batch(5))
    with pytest.raises(DataError, match="jagged") as err:
        list(read_events(path, branches={"px": "particles_px"}))
    assert "particles_px" in str(err.value)


def test_nan_in_branch_names_file_and_branch(tmp_path: Path) -> None:
    batch = make_batch(50, jagged=False)
    q2 = batch.column("Q2")
    q2[17] = np.nan
    path = write_events(tmp_path / "nan.root", batch.with_columns(Q2=q2))
    with pytest.raises(DataError, match="non-finite") as err:
        list(read_events(path))
    assert "nan.root: Q2" in str(err.value)


def test_explicit_branches_and_collections(tmp_path: Path) -> None:
    path = write_events(tmp_path / "m.root", make_batch(40))
    out = EventBatch.concat(read_events(path, branches={"xbj": "x"},
                                        collections={"tracks": {"px": "particles_px", "E": "particles_E"}}))
    assert out.fields == ["xbj", "tracks"]
    assert out.arrays["tracks"].fields == ["px", "E"]


def test_plain_jagged_branch_read_by_default(tmp_path: Path) -> None:
    """A jagged list of numbers (counter ``nhits``) comes back as a jagged field; the counter is dropped."""
    hits = ak.Array([[1.0, 2.0], [], [3.5]])
    with uproot.recreate(tmp_path / "plain.root") as f:
        f.mktree("events", {"E": np.float64, "hits": ak.type(hits).content})
        f["events"].extend({"E": np.array([1.0, 2.0, 3.0]), "hits": hits})
    out = EventBatch.concat(read_events(tmp_path / "plain.root"))
    assert out.fields == ["E", "hits"]
    assert ak.to_list(out.arrays["hits"]) == [[1.0, 2.0], [], [3.5]]


def test_max_events_across_files(tmp_path: Path) -> None:
    paths = [write_events(tmp_path / f"p{i}.root", make_batch(30, seed=i)) for i in range(3)]
    out = EventBatch.concat(read_events(sorted(paths), max_events=75, step_size=20))
    assert len(out) == 75
    # a glob reads the files in sorted order
    glob_out = EventBatch.concat(read_events(str(tmp_path / "p*.root")))
    assert len(glob_out) == 90


def test_cut_uses_safe_formula(tmp_path: Path) -> None:
    pytest.importorskip("mlegpipe.formula")
    batch = make_batch(500)
    path = write_events(tmp_path / "c.root", batch)
    out = EventBatch.concat(read_events(path, cut="Q2 > 5 and x < 0.5", step_size=100))
    expect = (batch.column("Q2") > 5) & (batch.column("x") < 0.5)
    np.testing.assert_array_equal(out.column("x"), batch.column("x")[expect])


def test_empty_batch_writes_empty_tree(tmp_path: Path) -> None:
    path = write_events(tmp_path / "empty.root", make_batch(10).take(slice(0, 0)))
    summary = inspect_file(path)
    assert summary["trees"]["events"]["entries"] == 0
    assert "particles_px" in summary["trees"]["events"]["branches"]
    assert list(read_events(path)) == []
    with pytest.raises(DataError, match="no events"):
        write_events(tmp_path / "none.root", [])
    assert not (tmp_path / "none.root").exists()


def test_inspect_file(tmp_path: Path) -> None:
    path = write_events(tmp_path / "i.root", make_batch(12), meta={"generator": "pythia8"})
    summary = inspect_file(path)
    tree = summary["trees"]["events"]
    assert tree["entries"] == 12 and tree["branches"]["x"] == "double"
    assert tree["collections"] == ["particles"]
    assert summary["meta"]["generator"] == "pythia8"
    text = format_inspection(summary)
    assert "TTree 'events': 12 entries" in text and "particles_px" in text and "pythia8" in text
