"""Parquet event files: the same content as the ROOT files, awkward's layout, provenance, streaming, errors."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.exceptions import ConfigError, DataError, OutputError
from mlegpipe.formats import open_writer, read_file, read_file_meta
from mlegpipe.formats.parquet import ParquetWriter, read_parquet, read_parquet_meta
from mlegpipe.provenance import EVENT_NUMBER, cross_section

META = {"generator": "test", "cross_section_pb": 1234.5, "cross_section_error_pb": 6.5, "seed": 7}


def dis_batch(n: int, seed: int = 0) -> EventBatch:
    """DIS-like flat events with weights."""
    rng = np.random.default_rng(seed)
    cols = {"x": rng.uniform(1e-3, 1, n), "Q2": rng.exponential(10, n) + 1, "y": rng.uniform(0, 1, n),
            "lepton_E": rng.uniform(5, 25, n), "lepton_px": rng.normal(size=n), "lepton_py": rng.normal(size=n),
            "lepton_pz": rng.normal(size=n), "weight": rng.uniform(0.5, 2, n)}
    return EventBatch.from_columns(cols, beams=Beams.preset("hera"), meta={"generator": "dis-test"})


def jet_batch(n: int, seed: int = 0) -> EventBatch:
    """Events with a jagged ``jets`` collection (with pid) and weights."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, n)
    total = int(counts.sum())
    flat = {"px": rng.normal(30, 10, total), "py": rng.normal(0, 10, total), "pz": rng.normal(0, 50, total),
            "E": rng.uniform(60, 120, total)}
    jets = particle_lists({k: ak.unflatten(v, counts) for k, v in flat.items()}
                          | {"pid": ak.unflatten(rng.choice([1, 2, 21], total).astype(np.int32), counts)})
    return EventBatch.from_columns({"jets": jets, "ht": rng.uniform(50, 500, n), "weight": rng.uniform(0.1, 3, n)},
                                   beams=Beams.preset("lhc13"))


def _write_both(tmp_path: Path, batches: list[EventBatch], name: str, **options: object) -> tuple[Path, Path]:
    paths = tmp_path / f"{name}.parquet", tmp_path / f"{name}.root"
    for path in paths:
        with open_writer(path, META, first_event=100, **options) as writer:
            for batch in batches:
                writer.write(batch)
    return paths


@pytest.mark.parametrize("make", [dis_batch, jet_batch], ids=["dis", "jets"])
def test_parquet_holds_what_root_holds(tmp_path: Path, make) -> None:
    batches = [make(700, 1), make(0, 2), make(450, 3)]
    pq_path, root_path = _write_both(tmp_path, batches, make.__name__)
    parquet = ak.from_parquet(pq_path)  # bare awkward: no mlegpipe needed to read the files back
    root = EventBatch.concat(read_file(root_path)).arrays
    assert len(parquet) == len(root) == 1150
    assert set(parquet.fields) == set(root.fields) == {*batches[0].fields, EVENT_NUMBER}
    assert str(ak.type(parquet[EVENT_NUMBER]).content) == "int64"
    np.testing.assert_array_equal(ak.to_numpy(parquet[EVENT_NUMBER]), np.arange(100, 1250))
    for field in parquet.fields:
        if field == "jets":
            assert ak.all(ak.num(parquet.jets) == ak.num(root.jets))
            assert parquet.jets.fields == root.jets.fields == ["px", "py", "pz", "E", "pid"]
            for leaf in parquet.jets.fields:
                assert ak.all(parquet.jets[leaf] == root.jets[leaf]), leaf
            assert str(ak.type(parquet.jets.pid).content.content) == "int32"
            assert ak.type(parquet.jets).content.content.parameter("__record__") == "Momentum4D"  # vector records
        else:
            np.testing.assert_array_equal(ak.to_numpy(parquet[field]), ak.to_numpy(root[field]), err_msg=field)
    meta, root_meta = read_file_meta(pq_path), read_file_meta(root_path)
    assert cross_section(meta) == cross_section(root_meta) == (1234.5, 6.5)
    for key in ("generator", "seed", "entries", "sum_weights", "first_event", "beams", "units", "mlegpipe_version"):
        assert meta[key] == root_meta[key], key
    assert meta["sum_weights"] == pytest.approx(float(sum(b.weights.sum() for b in batches)))


def test_read_parquet_streams_with_beams_and_meta(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    with ParquetWriter(path, META, row_group_events=300) as writer:
        for seed in range(3):
            writer.write(jet_batch(400, seed))
    from pyarrow.parquet import ParquetFile

    assert ParquetFile(path).num_row_groups == 4  # 1200 events in row groups of 300
    chunks = list(read_parquet(path, step_size=500))
    assert [len(c) for c in chunks] == [500, 500, 200]
    assert all(c.beams == Beams.preset("lhc13") for c in chunks)
    assert chunks[0].meta["cross_section_pb"] == 1234.5 and chunks[0].meta["source_file"] == str(path)
    assert EventBatch.concat(chunks).multiplicity("jets").tolist() == \
        EventBatch.concat([jet_batch(400, s) for s in range(3)]).multiplicity("jets").tolist()
    assert sum(len(c) for c in read_parquet([path, path], max_events=1300)) == 1300
    assert read_parquet_meta(path)["storage"]["row_group_events"] == 300


def test_float32_and_compression_options(tmp_path: Path) -> None:
    batch = jet_batch(2000)
    small = tmp_path / "f32.parquet"
    with open_writer(small, float32=True, compression="zstd:3") as writer:
        writer.write(batch)
    arrays = ak.from_parquet(small)
    assert str(ak.type(arrays.ht).content) == "float32" and str(ak.type(arrays.weight).content) == "float64"
    assert str(ak.type(arrays.jets.px).content.content) == "float32"
    assert str(ak.type(arrays.jets.pid).content.content) == "int32"
    storage = read_parquet_meta(small)["storage"]
    assert storage["compression"] == "zstd:3" and storage["float32"]
    with pytest.raises(ConfigError, match="unknown Parquet compression"):
        open_writer(tmp_path / "bad.parquet", compression="lzma")


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file") as err:
        list(read_parquet(tmp_path / "missing.parquet"))
    assert "missing.parquet" in str(err.value)
    text = tmp_path / "not.parquet"
    text.write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="not a readable Parquet file") as err:
        read_parquet_meta(text)
    assert str(text) in str(err.value)
    with pytest.raises(DataError, match="no events were written"), ParquetWriter(tmp_path / "empty.parquet"):
        pass
    assert not (tmp_path / "empty.parquet").exists()


def test_atomic_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    with pytest.raises(RuntimeError), open_writer(path) as writer:
        writer.write(dis_batch(10))
        raise RuntimeError("interrupted")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with open_writer(path) as writer:
        writer.write(dis_batch(10))
    with pytest.raises(OutputError, match="exists already"):
        open_writer(path).open()
    with open_writer(path, overwrite=True) as writer:
        writer.write(dis_batch(3))
    assert len(ak.from_parquet(path)) == 3
    with pytest.raises(DataError, match="differ from the first batch"), open_writer(tmp_path / "b.parquet") as writer:
        writer.write(dis_batch(5))
        writer.write(jet_batch(5))


@pytest.mark.parametrize(("sizes", "group", "step"), [([5, 0, 7], 3, 4), ([10], 10, 3), ([1, 1, 1], 1, 100),
                                                      ([8, 9], 5, 5)])
def test_any_row_groups_and_steps_give_the_events_in_order(tmp_path: Path, sizes, group, step) -> None:
    path = tmp_path / "c.parquet"
    with ParquetWriter(path, row_group_events=group) as writer:
        for i, n in enumerate(sizes):
            writer.write(jet_batch(n, i))
    chunks = list(read_parquet(path, step_size=step))
    assert all(len(c) == step for c in chunks[:-1]) and 0 < len(chunks[-1]) <= step
    out = EventBatch.concat(chunks)
    np.testing.assert_array_equal(out.column(EVENT_NUMBER), np.arange(sum(sizes)))
    np.testing.assert_array_equal(out.column("ht"), EventBatch.concat([jet_batch(n, i) for i, n in
                                                                       enumerate(sizes)]).column("ht"))
