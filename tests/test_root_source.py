"""Tests of the ``root`` truth source: mapping, cuts, collections, beams, bounded-memory reading."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from mlegpipe.beams import Beams
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError, FormulaError
from mlegpipe.rootio import write_events
from mlegpipe.schema import build_params
from mlegpipe_builtins.truth.rootfile import RootSource


def source(ctx_name: str = "truth", **raw) -> RootSource:  # noqa: ANN003
    return RootSource(build_params(RootSource.Params, raw, ctx_name), StageContext(ctx_name, seed=1))


def dis_batch(n: int, seed: int) -> EventBatch:
    rng = np.random.default_rng(seed)
    cols = {name: rng.uniform(0.1, 10, n) for name in ("lepton_E", "lepton_px", "lepton_py", "lepton_pz")}
    cols.update(x=rng.uniform(1e-3, 1, n), Q2=rng.uniform(1, 100, n), y=rng.uniform(0, 1, n),
                W2=rng.uniform(4, 1e4, n), nu=rng.uniform(1, 1e3, n), extra=rng.normal(size=n))
    return EventBatch.from_columns(cols, beams=Beams.preset("hera"), meta={"generator": "unit-test"})


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[list[Path], EventBatch]:
    batches = [dis_batch(3000, s) for s in range(3)]
    paths = [write_events(tmp_path / f"part{i}.root", b) for i, b in enumerate(batches)]
    return paths, EventBatch.concat(batches)


def test_registered() -> None:
    """The entry point names this module and its hook registers the class (without loading every plugin)."""
    import importlib.metadata as md

    from mlegpipe.registry import StageRegistry

    module = md.entry_points(group="mlegpipe")["root"].load()
    registry = StageRegistry()
    module.mlegpipe_register_stages(registry=registry)
    assert registry.get("truth", "root").cls is RootSource


def test_defaults_read_canonical_fields_and_beams(dataset) -> None:  # noqa: ANN001
    paths, full = dataset
    src = source(files=[str(p) for p in paths], step_size=1000)
    out = src.read()
    # every flat branch, the file's own "extra" included (weights and counters apart)
    assert out.fields == ["lepton_E", "lepton_px", "lepton_py", "lepton_pz", "x", "Q2", "y", "W2", "nu", "extra"]
    np.testing.assert_array_equal(out.column("Q2"), full.column("Q2"))
    assert src.beams == Beams.preset("hera") and out.beams == Beams.preset("hera")
    assert src.info()["events_read"] == 9000 and src.info()["generator"] == "unit-test"


def test_glob_cut_events_and_mapping(dataset, tmp_path: Path) -> None:  # noqa: ANN001
    _, full = dataset
    src = source(files=[str(tmp_path / "part*.root")], features={"q2": "Q2", "xbj": "x"},
                 cut="Q2 > 50 and extra < 0.5", step_size=700)
    out = src.read()
    keep = (full.column("Q2") > 50) & (full.column("extra") < 0.5)
    assert out.fields == ["q2", "xbj"]
    np.testing.assert_array_equal(out.column("xbj"), full.column("x")[keep])
    limited = source(files=[str(tmp_path / "part*.root")], cut="Q2 > 50", events=4000, step_size=500).read()
    assert len(limited) == 4000
    np.testing.assert_array_equal(limited.column("Q2"), full.column("Q2")[full.column("Q2") > 50][:4000])


def test_weight_branch_and_beam_override(dataset) -> None:  # noqa: ANN001
    paths, full = dataset
    src = source(files=[str(paths[0])], weight="extra", beams={"preset": "hera", "lepton_energy": 30.0})
    out = src.read()
    np.testing.assert_array_equal(out.weights, full.column("extra")[:3000])
    assert out.beams.lepton_energy == 30.0 and src.beams.hadron_energy == 920.0
    assert source(files=[str(paths[0])], beams="eic10x100").read().beams == Beams.preset("eic10x100")


def test_foreign_file_with_collections(tmp_path: Path) -> None:
    """A tree written by someone else: own branch names, counter npart, no mlegpipe metadata."""
    path = tmp_path / "foreign.root"
    counts = np.array([2, 0, 3, 1])
    px = ak.unflatten(np.arange(6.0), counts)
    part = ak.zip({"px": px, "py": px * 0, "pz": px * 2, "e": px + 1, "id": px * 0 + 211})
    with uproot.recreate(path) as f:
        f.mktree("T", {"Qsq": np.float64, "part": ak.type(part).content})
        f["T"].extend({"Qsq": np.array([1.5, 2.0, 3.0, 4.0]), "part": part})
    fields = {"px": "part_px", "py": "part_py", "pz": "part_pz", "E": "part_e", "pid": "part_id"}
    src = source(files=[str(path)], tree="T", features={"Q2": "Qsq"}, collections={"particles": fields})
    out = src.read()
    assert src.beams is None
    assert ak.to_list(ak.num(out.arrays["particles"])) == [2, 0, 3, 1]
    assert ak.to_list(out.arrays["particles"].E[2]) == [3.0, 4.0, 5.0]
    assert out.momenta().px.ndim == 2
    # no canonical names and no features: every flat branch under its own name
    assert source(files=[str(path)], tree="T").read().fields == ["Qsq", "part"]


def test_errors_name_the_toml_path_file_and_branch(dataset, tmp_path: Path) -> None:  # noqa: ANN001
    paths, _ = dataset
    with pytest.raises(ConfigError, match="truth.files"):
        source(files=[])
    with pytest.raises(DataError, match="truth.files"):
        source(files=[str(tmp_path / "none*.root")])
    with pytest.raises(DataError) as err:
        source(files=[str(paths[0])], features={"Q2": "Q_2"}).read()
    assert "part0.root: Q_2" in str(err.value) and "Q2" in str(err.value)
    with pytest.raises(FormulaError) as ferr:
        source(files=[str(paths[0])], cut="__import__('os').system('true')").read()
    assert "truth.cut" in str(ferr.value)
    with pytest.raises(ConfigError, match="truth.beams"):
        source(files=[str(paths[0])], beams="hear")


def test_bounded_memory_multi_file(tmp_path: Path) -> None:
    """Four files of 150k events (4 float64 branches, 19 MB in all) read in 20k-event steps."""
    n_per_file, n_files = 150_000, 4
    for i in range(n_files):
        rng = np.random.default_rng(i)
        write_events(tmp_path / f"big{i}.root",
                     EventBatch.from_columns({k: rng.normal(size=n_per_file) for k in ("x", "Q2", "y", "nu")}),
                     chunk_events=25_000)
    full_bytes = n_files * n_per_file * 4 * 8
    src = source(files=[str(tmp_path / "big*.root")], step_size=20_000)
    gc.collect()
    tracemalloc.start()
    total, n = 0.0, 0
    for batch in src.iter_batches():
        total += float(batch.column("Q2").sum())
        n += len(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == n_files * n_per_file
    assert peak < full_bytes / 4, f"peak {peak / 1e6:.1f} MB for {full_bytes / 1e6:.1f} MB of data"


SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


@pytest.mark.skipif(not (SAMPLE_DATA / "hera_pythia_lepton.root").exists(), reason="sample_data not made")
def test_sample_data_files() -> None:
    """The shipped files: sizes within budget, provenance, Q² cut, beam conventions, energies."""
    files = sorted(SAMPLE_DATA.glob("*.root"))
    assert all(f.stat().st_size <= 10e6 for f in files) and sum(f.stat().st_size for f in files) <= 25e6
    hera = source(files=[str(SAMPLE_DATA / "hera_pythia_lepton.root")]).read()
    assert len(hera) == 100_000 and hera.beams == Beams.preset("hera")
    assert (hera.column("Q2") > 1).all() and np.median(hera.column("lepton_pz")) < 0
    assert hera.meta["generator"].startswith("Pythia 8") and hera.meta["sigma_pb"] > 0
    train = source(files=[str(SAMPLE_DATA / "sym_multienergy_train.root")]).read()
    test = source(files=[str(SAMPLE_DATA / "sym_multienergy_test.root")]).read()
    assert np.unique(train.column("beam_energy")).tolist() == [10, 20, 30, 40, 50]
    assert np.unique(test.column("beam_energy")).tolist() == [15, 25, 35, 45, 60]
    for ev in (train, test):  # symmetric beams, electron along +z: E' <= E_b, p_z mostly forward
        # E x E scans: the sym50 set-up with both beam energies declared per event (file metadata beam_setup)
        assert ev.beams == Beams.preset("sym50", lepton_energy="beam_energy", hadron_energy="beam_energy")
        assert (ev.column("lepton_E") <= ev.column("beam_energy") * (1 + 1e-6)).all()
        assert np.median(ev.column("lepton_pz") / ev.column("beam_energy")) > 0.5
    full = source(files=[str(SAMPLE_DATA / "hera_pythia_full.root")]).read()
    assert full.momenta().px.ndim == 2 and len(full) >= 2000
