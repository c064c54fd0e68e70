"""HepMC3 and LHE files: writers checked with pyhepmc and pylhe, readers on files of other programs, the
``hepmc`` and ``lhe`` truth sources through TOML, and bad input (exit code 2, the file named, no traceback)."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pyhepmc
import pylhe
import pytest

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch, particle_lists
from mlegpipe.exceptions import DataError
from mlegpipe.formats import open_writer, read_file, read_file_meta

HERA_SIGMA, HERA_SIGMA_ERR = 1.2345678901234e4, 5.25
TT_SIGMA, TT_SIGMA_ERR = 416.123456789, 2.5


# -- samples -------------------------------------------------------------------------------------------


def dis_batch(n: int, seed: int, lepton_energy: np.ndarray | float = 27.6,
              beams: Beams | None = None) -> EventBatch:
    """Scattered positrons of HERA kinematics (e+ along -z, p along +z), 0.01 < y < 0.9, with weights."""
    rng = np.random.default_rng(seed)
    ee = np.broadcast_to(np.asarray(lepton_energy, dtype=np.float64), (n,))
    theta = rng.uniform(2.6, 3.1, n)  # polar angle to the proton direction: the lepton goes backwards
    phi = rng.uniform(-np.pi, np.pi, n)
    y = rng.uniform(0.01, 0.9, n)
    energy = ee * (1 - y) * 2 / (1 - np.cos(theta))  # y = 1 - E'(1 - cos θ) / (2 E_e)
    columns = {"lepton_px": energy * np.sin(theta) * np.cos(phi), "lepton_py": energy * np.sin(theta) * np.sin(phi),
               "lepton_pz": energy * np.cos(theta), "lepton_E": energy, "weight": rng.uniform(0.2, 2.0, n)}
    if beams is not None and any(beams.fields):
        columns["E_e"] = np.array(ee)
    meta = {"generator": "unit-test", "cross_section_pb": HERA_SIGMA, "cross_section_error_pb": HERA_SIGMA_ERR}
    return EventBatch.from_columns(columns, beams or Beams.preset("hera"), meta)


def six_quarks(n: int, seed: int, weighted: bool = True) -> EventBatch:
    """Six quarks (b, u, d̄, b̄, d, ū) whose transverse momenta sum to zero, at the LHC."""
    rng = np.random.default_rng(seed)
    px, py, pz = rng.normal(0, 60, (n, 6)), rng.normal(0, 60, (n, 6)), rng.normal(0, 200, (n, 6))
    px[:, 5], py[:, 5] = -px[:, :5].sum(axis=1), -py[:, :5].sum(axis=1)
    mass = np.array([4.7, 0.0, 0.0, 4.7, 0.0, 0.0])
    energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
    pid = np.tile([5, 2, -1, -5, 1, -2], (n, 1))
    columns = {"quarks": particle_lists({"px": px, "py": py, "pz": pz, "E": energy, "pid": pid})}
    if weighted:
        columns["weight"] = rng.uniform(-0.5, 2.0, n)
    meta = {"generator": "unit-test", "cross_section_pb": TT_SIGMA, "cross_section_error_pb": TT_SIGMA_ERR}
    return EventBatch.from_columns(columns, Beams.preset("lhc13"), meta)


def four_vectors(particles: list) -> np.ndarray:  # noqa: ANN001
    return np.array([[p.momentum.e, p.momentum.px, p.momentum.py, p.momentum.pz] for p in particles])


# -- HepMC3 writer -----------------------------------------------------------------------------------


def test_hepmc_dis_events_read_by_pyhepmc(tmp_path: Path) -> None:
    """Beams, the scattered lepton and the hadronic system X balance; σ, weights and numbers are the batch's."""
    first, second = dis_batch(300, 1), dis_batch(200, 2)
    path = tmp_path / "dis.hepmc"
    with open_writer(path, {"seed": 7}, first_event=1000) as writer:
        writer.write(first)
        writer.write(second)
    batch = EventBatch.concat([first, second])
    lepton = batch.particles("lepton")
    seen = 0
    with pyhepmc.open(path) as f:
        for i, event in enumerate(f):
            seen += 1
            assert event.event_number == 1000 + i
            assert event.momentum_unit == pyhepmc.Units.GEV and event.length_unit == pyhepmc.Units.MM
            assert event.weights == pytest.approx([batch.weights[i]], rel=1e-15)
            assert event.cross_section.xsec() == pytest.approx(HERA_SIGMA, rel=1e-8)
            assert event.cross_section.xsec_err() == pytest.approx(HERA_SIGMA_ERR, rel=1e-8)
            beams = [p for p in event.particles if p.status == 4]
            final = [p for p in event.particles if p.status == 1]
            assert sorted((p.pid, round(p.momentum.e, 10)) for p in beams) == [(-11, 27.6), (2212, 920.0)]
            proton = next(p for p in beams if p.pid == 2212)
            assert proton.momentum.pz == pytest.approx(math.sqrt(920.0**2 - 0.938272**2), rel=1e-14)
            incoming, outgoing = four_vectors(beams).sum(axis=0), four_vectors(final).sum(axis=0)
            assert np.abs(incoming - outgoing).max() <= 1e-6 * incoming[0]
            assert [p.pid for p in final] == [-11, 90]  # the scattered positron, then X
            scattered = final[0].momentum
            np.testing.assert_allclose([scattered.px, scattered.py, scattered.pz, scattered.e],
                                       [lepton[c][i, 0] for c in ("px", "py", "pz", "E")], rtol=1e-14)
            rest = final[1].momentum  # X = k + P - k': its mass is W, above the proton mass
            assert rest.e**2 - rest.px**2 - rest.py**2 - rest.pz**2 > 0.938272**2
            assert all(p.production_vertex.id == final[0].production_vertex.id for p in final)
            if i == 0:
                info = event.run_info
                assert [t.name for t in info.tools] == ["mlegpipe"]
                meta = json.loads(info.attributes["mlegpipe_meta"].astype(str))
                assert meta["seed"] == 7 and meta["cross_section_pb"] == HERA_SIGMA
    assert seen == 500
    meta = read_file_meta(path)
    assert meta["entries"] == 500 and meta["sum_weights"] == pytest.approx(batch.weights.sum(), rel=1e-12)
    assert meta["cross_section_pb"] == HERA_SIGMA and meta["first_event"] == 1000
    assert Beams.from_dict(meta["beams"]) == Beams.preset("hera")


def test_hepmc_read_back_and_per_event_beam_energies(tmp_path: Path) -> None:
    """An energy scan: every event's beam particle has that event's energy; mlegpipe reads the file back."""
    beams = Beams.preset("hera").overridden({"lepton_energy": "E_e"})
    energies = np.where(np.arange(400) % 2 == 0, 27.6, 18.0)
    batch = dis_batch(400, 3, energies, beams)
    path = tmp_path / "scan.hepmc3"
    with open_writer(path, precision=17) as writer:
        writer.write(batch)
    with pyhepmc.open(path) as f:
        for i, event in enumerate(f):
            positron = next(p for p in event.particles if p.status == 4 and p.pid == -11)
            assert positron.momentum.e == pytest.approx(energies[i], rel=1e-15)
            incoming = four_vectors([p for p in event.particles if p.status == 4]).sum(axis=0)
            outgoing = four_vectors([p for p in event.particles if p.status == 1]).sum(axis=0)
            assert np.abs(incoming - outgoing).max() <= 1e-6 * incoming[0]
    chunks = list(read_file(path, collections={"lepton": {"pid": -11, "n": 1}, "x": {"pid": 90}}, step_size=150))
    assert [len(c) for c in chunks] == [150, 150, 100]
    back = EventBatch.concat(chunks)
    np.testing.assert_array_equal(back.column("event_number"), np.arange(400))
    np.testing.assert_allclose(back.weights, batch.weights, rtol=1e-15)
    np.testing.assert_allclose(back.particles("lepton")["E"][:, 0], batch.column("lepton_E"), rtol=1e-15)
    assert ak.to_list(back.arrays["lepton"].pid[:2]) == [[-11], [-11]]
    assert back.beams.a.pdg == 2212 and back.beams.b.energy == pytest.approx(27.6)  # the first event's
    assert back.meta["cross_section_pb"] == HERA_SIGMA
    cut = EventBatch.concat(list(read_file(path, cut="event_number >= 390 and weight > 0", max_events=5)))
    assert cut.column("event_number").tolist() == [390, 391, 392, 393, 394]


def test_hepmc_pids_of_collections_without_pid(tmp_path: Path) -> None:
    """pid from the field, else the writer's pids option, else 0; beams missing: no beams and no rest."""
    jets = particle_lists({"px": [[10.0, -10.0]], "py": [[0.0, 0.0]], "pz": [[5.0, 5.0]], "E": [[12.0, 12.0]]})
    photons = particle_lists({"px": [[1.0]], "py": [[0.0]], "pz": [[0.0]], "E": [[1.0]], "pid": [[22]]})
    batch = EventBatch.from_columns({"jets": jets, "photons": photons, "met_px": [0.0], "met_py": [0.0],
                                     "met_pz": [0.0], "met_E": [0.0]})
    path = tmp_path / "nobeams.hepmc"
    with open_writer(path, pids={"jets": 21}) as writer:
        writer.write(batch)
    with pyhepmc.open(path) as f:
        event = f.read()
    assert [(p.pid, p.status) for p in event.particles] == [(21, 1), (21, 1), (22, 1), (0, 1)]


# -- LHE writer ---------------------------------------------------------------------------------------


def test_lhe_six_quarks_read_by_pylhe(tmp_path: Path) -> None:
    """<init> σ and beams, exact weights and momenta, incoming gluons along ±z with 0 < x <= 1, balance."""
    batch = six_quarks(600, 4)
    path = tmp_path / "tt.lhe"
    with open_writer(path, first_event=50) as writer:
        writer.write(batch.take(slice(0, 250)))
        writer.write(batch.take(slice(250, None)))
    lhe = pylhe.LHEFile.fromfile(path)
    info, processes = lhe.init.initInfo, lhe.init.procInfo
    assert (info.beamA, info.beamB, info.energyA, info.energyB) == (2212, 2212, 6500.0, 6500.0)
    assert info.weightingStrategy == -4  # weighted, some weights negative
    assert len(processes) == info.numProcesses == 1
    assert processes[0].xSection == TT_SIGMA and processes[0].error == TT_SIGMA_ERR
    assert processes[0].unitWeight == np.abs(batch.weights).max()
    header = next(e for e in lhe.header.extra_elements if e.tag == "mlegpipe")
    assert json.loads(header.text)["entries"] == 600
    quarks = batch.particles("quarks")
    count = 0
    for i, event in enumerate(lhe.events):
        count += 1
        assert int(event.attributes["event_number"]) == 50 + i
        assert event.eventinfo.weight == batch.weights[i]  # the shortest round-trip decimal: exact
        incoming = [p for p in event.particles if p.status == -1]
        outgoing = [p for p in event.particles if p.status == 1]
        assert [p.id for p in incoming] == [21, 21] and [p.id for p in outgoing] == [5, 2, -1, -5, 1, -2]
        assert all(p.px == 0 and p.py == 0 and p.e == abs(p.pz) for p in incoming)
        assert incoming[0].pz > 0 > incoming[1].pz
        x1, x2 = incoming[0].e / 6500.0, incoming[1].e / 6500.0
        assert 0 < x1 <= 1 and 0 < x2 <= 1
        assert all(p.mother1 == 1 and p.mother2 == 2 for p in outgoing)
        p_in = np.sum([[p.e, p.px, p.py, p.pz] for p in incoming], axis=0)
        p_out = np.sum([[p.e, p.px, p.py, p.pz] for p in outgoing], axis=0)
        assert np.abs(p_in - p_out).max() <= 1e-9 * p_in[0]
        np.testing.assert_array_equal([p.px for p in outgoing], quarks["px"][i])
        np.testing.assert_array_equal([p.e for p in outgoing], quarks["E"][i])
    assert count == 600
    back = EventBatch.concat(list(read_file(path, collections={"quarks": {"status": 1, "n": 6}}, step_size=200)))
    np.testing.assert_array_equal(back.particles("quarks")["pz"], quarks["pz"])
    np.testing.assert_array_equal(back.weights, batch.weights)
    assert back.column("event_number")[0] == 50 and back.beams == Beams.preset("lhc13")
    assert back.meta["cross_section_pb"] == TT_SIGMA


def test_lhe_unweighted_strategy_and_hepmc3_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "unweighted.lhe"
    with open_writer(path) as writer:
        writer.write(six_quarks(20, 5, weighted=False))
    assert pylhe.LHEFile.fromfile(path).init.initInfo.weightingStrategy == 3
    with pyhepmc.open(path) as f:  # HepMC3's own LHEF reader accepts the file too
        assert sum(1 for _ in f) == 20


def test_lhe_refuses_events_that_two_partons_cannot_make_when_asked(tmp_path: Path) -> None:
    batch = six_quarks(3, 6)
    huge = particle_lists({"px": [[0.0]] * 3, "py": [[0.0]] * 3, "pz": [[7000.0]] * 3, "E": [[7000.0]] * 3})
    batch = EventBatch.from_columns({"quarks": huge}, batch.beams)
    with pytest.raises(DataError, match=r"huge.lhe: event 0 cannot come from two incoming partons.*x1 = 1\.07"):
        with open_writer(tmp_path / "huge.lhe", unphysical="error") as writer:
            writer.write(batch)
    assert not (tmp_path / "huge.lhe").exists()


# -- files written by other programs -----------------------------------------------------------------------


def write_foreign_hepmc(path: Path, n: int, seed: int) -> None:
    """pp -> Z (status 2) -> mu+ mu-, plus a photon, built with pyhepmc's object API."""
    rng = np.random.default_rng(seed)
    with pyhepmc.open(path, "w") as f:
        for i in range(n):
            event = pyhepmc.GenEvent(pyhepmc.Units.GEV, pyhepmc.Units.MM)
            event.event_number = i
            beam_a = pyhepmc.GenParticle((0, 0, 6500.0, 6500.0), 2212, 4)
            beam_b = pyhepmc.GenParticle((0, 0, -6500.0, 6500.0), 2212, 4)
            muons = []
            for sign in (1, -1):
                pt, eta, phi = rng.uniform(20, 60), rng.normal(0, 1.5), rng.uniform(-np.pi, np.pi)
                px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
                muons.append(pyhepmc.GenParticle((px, py, pz, math.sqrt(px**2 + py**2 + pz**2 + 0.1057**2)),
                                                 13 * sign, 1))
            total = [sum(m.momentum[k] for m in muons) for k in range(4)]
            z = pyhepmc.GenParticle(tuple(total), 23, 2)
            photon = pyhepmc.GenParticle((1.0, 2.0, 3.0, math.sqrt(14.0)), 22, 1)
            hard = pyhepmc.GenVertex()
            for p in (beam_a, beam_b):
                hard.add_particle_in(p)
            hard.add_particle_out(z)
            hard.add_particle_out(photon)
            decay = pyhepmc.GenVertex()
            decay.add_particle_in(z)
            for m in muons:
                decay.add_particle_out(m)
            event.add_vertex(hard)
            event.add_vertex(decay)
            event.weights = [1.0 + (i % 3)]
            xs = pyhepmc.GenCrossSection()
            xs.set_cross_section(1900.0 + i, 10.0)  # a running estimate, as Pythia writes it
            event.cross_section = xs
            f.write(event)


def write_foreign_lhe(path: Path, n: int, seed: int) -> None:
    """A hand-written LHEF 1.0 file: u ubar -> Z (status 2) -> mu- mu+, two processes, no event numbers."""
    rng = np.random.default_rng(seed)
    lines = ['<LesHouchesEvents version="1.0">', "<!-- written by hand -->", "<header>",
             "<MGVersion> 3.5.0 </MGVersion>", "</header>", "<init>",
             "  2212  2212  6.500000e+03  6.500000e+03  0  0  247000  247000  3  2",
             "  3.0000000e+02  4.0000000e+00  1.0000000e+00  1",
             "  1.0000000e+02  3.0000000e+00  1.0000000e+00  2", "</init>"]
    for i in range(n):
        mass, pz = rng.normal(91.19, 2.5), rng.normal(0, 100)
        energy = math.sqrt(mass**2 + pz**2)
        x1e, x2e = (energy + pz) / 2, (energy - pz) / 2
        cos, phi = rng.uniform(-1, 1), rng.uniform(-np.pi, np.pi)
        sin = math.sqrt(1 - cos**2)
        half = mass / 2  # muons massless in the Z frame, boosted along z
        beta, gamma = pz / energy, energy / mass
        mu = []
        for sign in (1, -1):
            kx, ky, kz = sign * half * sin * math.cos(phi), sign * half * sin * math.sin(phi), sign * half * cos
            mu.append((kx, ky, gamma * (kz + beta * half), gamma * (half + beta * kz)))
        lines += ["<event>", f" 5  {1 + i % 2}  {1.0 + i % 2:+.7e}  9.1188e+01  7.546771e-03  1.18e-01",
                  f"  2 -1  0  0  501  0  0.0 0.0 {x1e:+.10e} {x1e:.10e} 0.0 0.0 9.0",
                  f" -2 -1  0  0  0  501  0.0 0.0 {-x2e:+.10e} {x2e:.10e} 0.0 0.0 9.0",
                  f" 23  2  1  2  0  0  0.0 0.0 {pz:+.10e} {energy:.10e} {mass:.10e} 0.0 9.0"]
        lines += [f" {pid}  1  3  3  0  0  {m[0]:+.10e} {m[1]:+.10e} {m[2]:+.10e} {m[3]:.10e} 0.0 0.0 -1.0"
                  for pid, m in zip((13, -13), mu, strict=True)]
        lines += ["# a comment line", "</event>"]
    lines.append("</LesHouchesEvents>")
    path.write_text("\n".join(lines) + "\n")


def test_foreign_hepmc_skips_intermediates(tmp_path: Path) -> None:
    path = tmp_path / "pythia_like.hepmc"
    write_foreign_hepmc(path, 10, 1)
    batch = EventBatch.concat(list(read_file(path)))
    assert batch.multiplicity("particles").tolist() == [3] * 10  # photon, mu+, mu-: the Z (status 2) is skipped
    assert sorted(ak.to_list(batch.arrays["particles"].pid[0])) == [-13, 13, 22]
    assert batch.weights.tolist() == [1.0 + (i % 3) for i in range(10)]
    assert batch.beams == Beams.preset("lhc13")
    assert batch.meta["cross_section_pb"] == 1909.0  # the last event's running estimate
    assert read_file_meta(path)["cross_section_pb"] == 1900.0  # the first event's
    z = EventBatch.concat(list(read_file(path, collections={"z": {"status": 2}})))
    assert z.multiplicity("z").tolist() == [1] * 10 and ak.to_list(z.arrays["z"].pid[:, 0]) == [23] * 10


def test_foreign_lhe_init_sums_processes(tmp_path: Path) -> None:
    path = tmp_path / "madgraph_like.lhe"
    write_foreign_lhe(path, 6, 2)
    meta = read_file_meta(path)
    assert meta["cross_section_pb"] == 400.0 and meta["cross_section_error_pb"] == 5.0
    batch = EventBatch.concat(list(read_file(path)))
    assert batch.multiplicity("particles").tolist() == [2] * 6  # incoming (-1) and the Z (2) are skipped
    assert batch.column("event_number").tolist() == list(range(6))
    assert batch.weights.tolist() == [1.0, 2.0] * 3
    assert batch.beams == Beams.preset("lhc13")
    muons = batch.particles("particles")
    mass = np.sqrt((muons["E"].sum(1)) ** 2 - sum(muons[c].sum(1) ** 2 for c in ("px", "py", "pz")))
    assert np.all(np.abs(mass - 91.19) < 15)


# -- the truth sources, through TOML ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry():  # noqa: ANN201
    """The installed plugins, plus the particle-file sources when their entry point is not installed yet."""
    import mlegpipe_builtins.truth.particlefiles as module
    from mlegpipe.registry import load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = load_plugins()
        if "hepmc" not in reg.names("truth"):
            reg = load_plugins(extra=[module])
    return reg


PIPELINE = """
[pipeline]
name = "{name}"
seed = 5
split = [0.6, 0.2, 0.2]

[truth]
plugin = "{plugin}"
files = ["{files}"]
collections = {{ muons = {{ pid = [13, -13], n = 2 }} }}

[generator]
plugin = "flow"
features = ["muons"]
steps = 50
batch_size = 128
transforms = 1
hidden = [8]
validate_every = 0
checkpoint_every = 0
"""


@pytest.mark.parametrize("plugin", ["hepmc", "lhe"])
def test_flow_trains_on_files_of_other_programs(registry, tmp_path: Path, plugin: str) -> None:  # noqa: ANN001
    from mlegpipe.config import parse_config
    from mlegpipe.pipeline import run_pipeline

    path = tmp_path / f"sample.{plugin}"
    (write_foreign_hepmc if plugin == "hepmc" else write_foreign_lhe)(path, 500, 3)
    text = PIPELINE.format(name=plugin, plugin=plugin, files=str(tmp_path / f"*.{plugin}"))
    config = parse_config(text, f"{plugin}.toml", registry=registry)
    run = run_pipeline(config, output=str(tmp_path / "run"), progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    truth = metrics["stages"]["truth"]
    assert truth["events"] == truth["events_read"] == 500 and truth["files"] == [str(path)]
    sigma = 1900.0 + 499 if plugin == "hepmc" else 400.0
    assert truth["cross_section_pb"] == sigma
    generated = read_file_meta(run / "generated.root")
    assert generated["cross_section_pb"] == sigma
    muons = EventBatch.concat(list(read_file(run / "generated.root")))
    assert len(muons) == 100 and muons.multiplicity("muons").tolist() == [2] * 100


def test_source_parameters_and_info(registry, tmp_path: Path) -> None:  # noqa: ANN001
    from mlegpipe.context import StageContext
    from mlegpipe.exceptions import ConfigError, FormulaError
    from mlegpipe.schema import build_params

    path = tmp_path / "a.hepmc"
    write_foreign_hepmc(path, 30, 4)
    cls = registry.get("truth", "hepmc").cls

    def source(**raw):  # noqa: ANN003, ANN202
        return cls(build_params(cls.Params, raw, "truth"), StageContext("truth", seed=1))

    src = source(files=[str(path)], cut="weight > 1.5", events=12, beams="hera", step_size=7)
    out = src.read()
    assert len(out) == 12 and np.all(out.weights > 1.5) and out.beams == Beams.preset("hera")
    assert src.info()["events_read"] == 12 and src.info()["cross_section_pb"] > 1900
    with pytest.raises(FormulaError, match="truth.cut"):
        source(files=[str(path)], cut="n_jets > 1")
    with pytest.raises(ConfigError, match="truth.collections.mu.pdg"):
        source(files=[str(path)], collections={"mu": {"pdg": 13}})
    with pytest.raises(DataError, match=r"event 0 has 1 particles of collection 'mu'.*n = 2"):
        source(files=[str(path)], collections={"mu": {"pid": 13, "n": 2}}).read()
    lhe_cls = registry.get("truth", "lhe").cls
    assert lhe_cls.plugin_name == "lhe" and "TOML" in (lhe_cls.__doc__ or "")


def test_entry_point_module_registers_both_sources() -> None:
    import mlegpipe_builtins.truth.particlefiles as module
    from mlegpipe.registry import StageRegistry

    reg = StageRegistry()
    module.mlegpipe_register_stages(registry=reg)
    assert reg.get("truth", "hepmc").cls is module.HepMCSource and reg.get("truth", "lhe").cls is module.LHESource


# -- bad input -----------------------------------------------------------------------------------------------


def empty_hepmc(path: Path) -> Path:
    writer = pyhepmc.io.WriterAscii(str(path))
    writer.close()
    return path


def broken_init_lhe(path: Path, init: str) -> Path:
    path.write_text(f'<LesHouchesEvents version="3.0">\n<init>\n{init}\n</init>\n<event>\n'
                    " 1 1 1.0 91.0 -1 -1\n 13 1 0 0 0 0 1.0 0.0 0.0 1.0 0.0 0 9\n</event>\n</LesHouchesEvents>\n")
    return path


@pytest.mark.parametrize("init", [
    "2212 2212 6500 6500 0 0",                                          # missing fields
    "2212 2212 6500 six 0 0 -1 -1 3 1\n1.0 0.1 1.0 1",                   # non-numeric
    "2212 2212 6500 6500 0 0 -1 -1 3 2\n1.0 0.1 1.0 1",                  # a process missing
])
def test_lhe_broken_init_is_a_data_error_naming_the_file(tmp_path: Path, init: str) -> None:
    path = broken_init_lhe(tmp_path / "broken.lhe", init)
    for call in (lambda: read_file_meta(path), lambda: next(read_file(path))):
        with pytest.raises(DataError) as err:
            call()
        assert str(path) in str(err.value) and "init" in str(err.value)


def test_bad_files_are_data_errors_naming_the_file(tmp_path: Path) -> None:
    empty = empty_hepmc(tmp_path / "empty.hepmc")
    with pytest.raises(DataError, match=f"{empty}: the HepMC file has no events"):
        next(read_file(empty))
    text = tmp_path / "text.hepmc"
    text.write_text("px py pz E\n1 2 3 4\n")
    with pytest.raises(DataError, match=f"{text}: not a HepMC3"):
        next(read_file(text))
    good = tmp_path / "good.hepmc"
    write_foreign_hepmc(good, 20, 5)
    cut = tmp_path / "cut.hepmc"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=f"{cut}: truncated HepMC file"):
        next(read_file(cut))
    lhe = tmp_path / "good.lhe"
    with open_writer(lhe) as writer:
        writer.write(six_quarks(50, 6))
    cut_lhe = tmp_path / "cut.lhe"
    cut_lhe.write_bytes(lhe.read_bytes()[: lhe.stat().st_size * 2 // 3])
    with pytest.raises(DataError, match=f"{cut_lhe}: malformed or truncated LHE file"):
        list(read_file(cut_lhe))
    no_events = broken_init_lhe(tmp_path / "none.lhe", "2212 2212 6500 6500 0 0 -1 -1 3 1\n1.0 0.1 1.0 1")
    no_events.write_text(no_events.read_text().split("<event>")[0] + "</LesHouchesEvents>\n")
    with pytest.raises(DataError, match=f"{no_events}: the LHE file has no events"):
        next(read_file(no_events))
    for missing in (tmp_path / "missing.hepmc", tmp_path / "missing.lhe"):
        for call in (lambda p=missing: read_file_meta(p), lambda p=missing: next(read_file(p))):
            with pytest.raises(DataError, match=f"{missing}: no such file"):
                call()


@pytest.mark.parametrize("case", ["empty", "broken_init", "missing"])
def test_cli_exit_code_2_without_traceback(registry, tmp_path: Path, capsys, case: str) -> None:  # noqa: ANN001
    from mlegpipe.cli import main

    if case == "empty":
        plugin, path, expected = "hepmc", empty_hepmc(tmp_path / "empty.hepmc"), "has no events"
    elif case == "broken_init":
        plugin, path, expected = "lhe", broken_init_lhe(tmp_path / "broken.lhe", "2212 2212 6500"), "init"
    else:
        plugin, path, expected = "hepmc", tmp_path / "missing.hepmc", "no such file"
    toml = tmp_path / "bad.toml"
    toml.write_text(PIPELINE.format(name="bad", plugin=plugin, files=str(path)))
    code = main(["run", str(toml), "-o", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(path) in err and expected in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
