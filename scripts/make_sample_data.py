"""Make the ROOT files in sample_data/ (Pythia 8 and ``dis`` DIS samples) and their README table.

Run ``python scripts/make_sample_data.py [--only NAME ...] [--scale 0.01] [--overwrite]``.
Every file holds one TTree ``events`` (float32 floats) and its provenance
(generator, version, seed, settings, cross section) as the JSON TObjString
``mlegpipe_meta``; the README table is rebuilt from those metadata.

Datasets (seed 20261122 unless ``--seed``):

* hera_pythia_lepton: HERA e⁺p 27.6 × 920 GeV, Pythia 8 NC DIS, full event
  (QED radiation included), scattered positron, Q² > 1 GeV² (hard process and
  scattered lepton), 100k events.
* hera_pythia_full: the same with the full final state (``particles``), 5k events.
* hera_dis: the same beams and Q² cut from mlegpipe's ``dis`` sampler (ALLM97).
* sym_multienergy_train / _test: symmetric E × E beams, electron along +z,
  Pythia 8 full events, Q² > 1, 20k events per energy; train E = 10 … 50 GeV,
  held out 15, 25, 35, 45 and 60 GeV; per-event ``beam_energy``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlegpipe.context import StageContext
from mlegpipe.provenance import cross_section, cross_section_meta
from mlegpipe.rootio import RootWriter, inspect_file
from mlegpipe.schema import build_params

__all__ = ["DATASETS", "main", "write_readme"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SEED = 20261122
TRAIN_ENERGIES = (10.0, 20.0, 30.0, 40.0, 50.0)
TEST_ENERGIES = (15.0, 25.0, 35.0, 45.0, 60.0)
LEPTON_CUT = "Q2 > 1"


def _pythia(name: str, seed: int, progress: bool, **raw: Any) -> Any:
    from mlegpipe_builtins.truth.pythia import PythiaSource

    return PythiaSource(build_params(PythiaSource.Params, raw, name), StageContext(name, seed=seed, progress=progress))


def _write(path: Path, sources: list[Any], meta: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Run the sources one after the other into one file; return per-source figures."""
    figures = []
    start = time.perf_counter()
    with RootWriter(path, meta=meta, overwrite=overwrite, float32=True, chunk_events=50_000) as writer:
        for src in sources:
            t0 = time.perf_counter()
            n = 0
            for batch in src.iter_batches():
                writer.write(batch)
                n += len(batch)
            info = src.info()
            info.pop("blocks", None)
            figures.append({"events": n, "seconds": round(time.perf_counter() - t0, 2), **info})
        writer.meta["per_source"] = figures
        writer.meta["seconds"] = round(time.perf_counter() - start, 1)
        if len(figures) == 1:
            writer.meta.update(cross_section_meta(figures[0]))  # the file's σ, in the convention's keys
            for key in ("sigma_process_pb", "sigma_process_error_pb"):
                if key in figures[0]:
                    writer.meta[key] = figures[0][key]
    return {"path": str(path), "figures": figures}


def hera_pythia_lepton(out: Path, seed: int, scale: float, overwrite: bool, progress: bool) -> dict[str, Any]:
    n = max(int(100_000 * scale), 1)
    src = _pythia("hera_pythia_lepton", seed, progress, events=n, beams="hera", q2_min=1.0, level="full",
                  particles=False, cut=LEPTON_CUT)
    meta = {"dataset": "hera_pythia_lepton", "description": "HERA e+p NC DIS, Pythia 8 full events, scattered "
            "positron; Q2 > 1 GeV2 on the hard process and on the scattered lepton", "seed": seed,
            "selection": LEPTON_CUT}
    return _write(out / "hera_pythia_lepton.root", [src], meta, overwrite)


def hera_pythia_full(out: Path, seed: int, scale: float, overwrite: bool, progress: bool) -> dict[str, Any]:
    n = max(int(5_000 * scale), 1)
    src = _pythia("hera_pythia_full", seed, progress, events=n, beams="hera", q2_min=1.0, level="full",
                  particles=True, cut=LEPTON_CUT)
    meta = {"dataset": "hera_pythia_full", "description": "HERA e+p NC DIS, Pythia 8 full events with the "
            "complete final state (particles: px, py, pz, E, pid, charge)", "seed": seed, "selection": LEPTON_CUT}
    return _write(out / "hera_pythia_full.root", [src], meta, overwrite)


def hera_dis(out: Path, seed: int, scale: float, overwrite: bool, progress: bool) -> dict[str, Any]:
    from mlegpipe_builtins.truth.dis import DISTruth

    n = max(int(100_000 * scale), 1)
    src = DISTruth(build_params(DISTruth.Params, {"events": n, "beams": "hera", "q2_min": 1.0}, "hera_dis"),
                   StageContext("hera_dis", seed=seed, progress=progress))
    meta = {"dataset": "hera_dis", "description": "HERA e+p inclusive DIS from mlegpipe's dis sampler "
            "(ALLM97 F2, one-photon exchange, Born level), Q2 > 1 GeV2, W2 > 3 GeV2", "seed": seed,
            "generator": "mlegpipe dis (ALLM97)"}
    return _write(out / "hera_dis.root", [src], meta, overwrite)


def _multienergy(out: Path, name: str, energies: tuple[float, ...], seed: int, scale: float, overwrite: bool,
                 progress: bool) -> dict[str, Any]:
    n = max(int(20_000 * scale), 1)
    sources = [_pythia(f"{name}/E{e:g}", seed, progress, events=n, q2_min=1.0, level="full", particles=False,
                       cut=LEPTON_CUT, beams={"preset": "sym50", "lepton_energy": e, "hadron_energy": e})
               for e in energies]
    meta = {"dataset": name, "description": "symmetric E x E GeV e-p NC DIS (electron along +z), Pythia 8 full "
            "events, scattered electron, Q2 > 1 GeV2; per-event beam_energy = E (both beams)", "seed": seed,
            "selection": LEPTON_CUT, "beam_energies": list(energies), "settings": "per energy: see per_source",
            # one file, several beam set-ups: no single Beams; read beam_energy per event
            "beams": None, "beam_setup": {"preset": "sym50", "lepton_energy": "beam_energy",
                                          "hadron_energy": "beam_energy"}}
    return _write(out / f"{name}.root", sources, meta, overwrite)


def sym_multienergy_train(out: Path, seed: int, scale: float, overwrite: bool, progress: bool) -> dict[str, Any]:
    return _multienergy(out, "sym_multienergy_train", TRAIN_ENERGIES, seed, scale, overwrite, progress)


def sym_multienergy_test(out: Path, seed: int, scale: float, overwrite: bool, progress: bool) -> dict[str, Any]:
    return _multienergy(out, "sym_multienergy_test", TEST_ENERGIES, seed, scale, overwrite, progress)


DATASETS: dict[str, Callable[..., dict[str, Any]]] = {
    "hera_pythia_lepton": hera_pythia_lepton,
    "hera_pythia_full": hera_pythia_full,
    "hera_dis": hera_dis,
    "sym_multienergy_train": sym_multienergy_train,
    "sym_multienergy_test": sym_multienergy_test,
}


def _fmt_sigma(meta: dict[str, Any]) -> str:
    rows = meta.get("per_source") or []
    parts = []
    for row in rows:
        found = cross_section(row)
        if found is None:
            continue
        sigma, err = found
        label = f"E={row['beam_energy']:g}: " if "beam_energy" in row and len(rows) > 1 else ""
        parts.append(f"{label}{sigma:.4g} ± {err:.2g}" if err is not None else f"{label}{sigma:.4g}")
    return "; ".join(parts) or "–"


def _sigma_summary(out: Path) -> list[str]:
    """Sentences comparing Pythia's HERA cross section with the dis sampler's."""
    from mlegpipe.rootio import read_meta

    lines = []
    if (out / "hera_pythia_lepton.root").exists():
        m = read_meta(out / "hera_pythia_lepton.root")
        process = m.get("sigma_process_pb", m.get("sigma_pb"))
        process_err = m.get("sigma_process_error_pb", m.get("sigma_err_pb"))
        lines.append(f"Pythia 8 σ(HERA e⁺p, Q²_hard > 1 GeV²) = sigmaGen = {process:.4g} ± {process_err:.2g} pb "
                     f"({process / 1e6:.3f} µb); with the scattered-lepton Q² > 1 selection "
                     f"{m.get('sigma_selected_pb', m.get('cross_section_pb')):.4g} pb.")
        if (out / "hera_dis.root").exists():
            d = read_meta(out / "hera_dis.root")
            lines.append("The dis sampler (ALLM97 F₂, F_L = 0, one-photon exchange, W² > 3 GeV²) gives "
                         "{:.4g} ± {:.2g} pb; ".format(*cross_section(d))
                         + f"Pythia / dis = {process / d['cross_section_pb']:.3f}.")
        lines.append("")
    return lines


def write_readme(out: Path) -> Path:
    """Rebuild sample_data/README.md from the metadata of the files present."""
    lines = [
        "# Sample data",
        "",
        "Made by `python scripts/make_sample_data.py` (seeded, reproducible). Each file holds one TTree `events` "
        "(floats stored as float32) and its provenance as the JSON TObjString `mlegpipe_meta` "
        "(`mlegpipe inspect FILE` or `mlegpipe.rootio.read_meta`). Jagged particle lists are stored as a counter "
        "`nparticles` plus `particles_px, _py, _pz, _E, _pid, _charge`.",
        "",
        "Pythia 8 DIS: neutral-current γ*/Z exchange (`WeakBosonExchange:ff2ff(t:gmZ)`), `PDF:lepton = off`, "
        "`SpaceShower:dipoleRecoil = on`, `SpaceShower:pTmaxMatch = 2`, `PhaseSpace:Q2Min = 1`; full events "
        "(showers incl. QED radiation off the lepton, remnants, hadronization). The DIS labels x, Q², y, W², ν are "
        "computed from the final scattered lepton, and the selection Q² > 1 GeV² is applied to them as well. "
        "σ is Pythia's sigmaGen (Q²_hard > 1) times the efficiency of that selection.",
        "",
        "| file | events | generator | beams | selection | σ (pb) | branches | size | seed | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    total = 0
    for name in DATASETS:
        path = out / f"{name}.root"
        if not path.exists():
            continue
        summary = inspect_file(path)
        meta = summary["meta"]
        tree = summary["trees"]["events"]
        size = path.stat().st_size
        total += size
        beams = meta.get("beams")
        if beams:
            beam_text = f"{beams['lepton_pdg']:+d} {beams['lepton_energy']:g} × p {beams['hadron_energy']:g} GeV, " \
                        f"lepton along {'+' if beams['lepton_direction'] == 1 else '-'}z"
        else:
            beam_text = "E × E GeV, E = " + ", ".join(f"{e:g}" for e in meta.get("beam_energies", [])) + \
                        "; e⁻ along +z"
        branches = ", ".join(b for b in tree["branches"] if not b.startswith("particles_")) + \
            (", particles_*" if tree["collections"] else "")
        generator = meta.get("generator", "?")
        lines.append(f"| {path.name} | {tree['entries']} | {generator} | {beam_text} | "
                     f"{meta.get('selection', 'Q2 > 1, W2 > 3')} | {_fmt_sigma(meta)} | {branches} | "
                     f"{size / 1e6:.1f} MB | {meta.get('seed')} | {meta.get('seconds', '?')} |")
    lines += ["", f"Total size: {total / 1e6:.1f} MB.", ""]
    lines += _sigma_summary(out)
    readme = out / "README.md"
    readme.write_text("\n".join(lines), encoding="utf-8")
    return readme


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "sample_data", help="output folder")
    parser.add_argument("--only", action="append", choices=list(DATASETS), help="make only these (repeatable)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--scale", type=float, default=1.0, help="scale every event count (quick tests)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)
    for name in args.only or list(DATASETS):
        t0 = time.perf_counter()
        result = DATASETS[name](args.out, args.seed, args.scale, args.overwrite, args.progress)
        events = sum(f["events"] for f in result["figures"])
        print(f"{name}: {events} events in {time.perf_counter() - t0:.1f} s -> {result['path']}", file=sys.stderr)
    print(write_readme(args.out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
