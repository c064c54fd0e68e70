"""Events on disk per second: ``mlegpipe generate`` end to end, per format, beside the sampler and the bare libraries.

    python benchmarks/bench_write.py [--events 2000000] [--seed 1]

The default DIS generator (the ``flow`` of ``pipelines/quickstart.toml``,
trained for a few steps: speed does not depend on the weights) samples HERA
events; every figure is measured in this run, on this machine, with torch at
all cores:

- the sampler alone (``generate_blocks``, nothing written);
- ``generate_to_file`` end to end (what ``mlegpipe generate`` runs: sampling
  and writing overlapped on a background thread) for ROOT with the storage
  ``mlegpipe generate`` chooses (float32 kinematics, float64 weights and beam
  energies, LZ4 level 1), ROOT with the old default (float64, ZLIB level 1),
  Parquet, HepMC3 and LHE;
- each format's writer alone on the same pre-generated events, and the bare
  library with the same settings where there is one: uproot
  ``mktree``/``extend`` for ROOT, ``ak.to_parquet`` for Parquet (HepMC3 and
  LHE are written event by event in text: their writers are the bare path).

HepMC3 and LHE run on fewer events (``--text-events``): text formats are
slower by orders of magnitude. Prints one table and writes
``benchmarks/results/bench_write.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import awkward as ak
import numpy as np
import torch

from benchmarks import Figure, format_table, machine_info, write_json
from benchmarks.bench_scale import best_time, dis_truth, make_generator, threads

__all__ = ["main", "measure"]

GROUP = "bench_write"
TARGET = 1e6  # events/s on disk, end to end, ROOT


def _bare_root(columns: dict[str, np.ndarray], path: Path, compression: str, chunk: int = 100_000) -> None:
    import uproot

    from mlegpipe.rootio import compression_setting

    n = len(next(iter(columns.values())))
    with uproot.recreate(path, compression=compression_setting(compression)) as handle:
        tree = handle.mktree("events", {k: v.dtype for k, v in columns.items()})
        for lo in range(0, n, chunk):
            tree.extend({k: v[lo:lo + chunk] for k, v in columns.items()})


def _bare_parquet(columns: dict[str, np.ndarray], path: Path, compression: str, chunk: int = 0) -> None:
    ak.to_parquet(ak.zip(columns, depth_limit=1), path, compression=compression)


def measure(events: int, text_events: int, seed: int, repeat: int) -> dict[str, Any]:
    """Every figure of the table; returns the JSON-able result."""
    from mlegpipe.cli.generate import storage_options
    from mlegpipe.formats import open_writer
    from mlegpipe.generation import generate_blocks, generate_to_file

    truth = dis_truth(20_000, seed)
    with threads(1):
        gen = make_generator("flow", {"validate_every": 0, "checkpoint_every": 0, "distill_steps": 300,
                                      "steps": 30, "reject": "training_range"}, seed)
        gen.fit(truth.take(slice(0, 18_000)), truth.take(slice(18_000, None)))
    cores = torch.get_num_threads()
    figures: list[Figure] = []
    details: dict[str, Any] = {"events": events, "text_events": text_events, "threads": cores}

    t_sample = best_time(lambda: sum(len(b) for b in generate_blocks(gen, events, seed)), repeat)
    sampler = events / t_sample
    blocks = list(generate_blocks(gen, events, seed))
    fields = blocks[0].fields
    keep64 = {"weight", "beam_energy"}
    settings = [  # name, format, writer options, bare-library function or None, events
        ("ROOT float32+LZ4 (generate default)", "root", storage_options("root", None, False), "lz4:1", events),
        ("ROOT float64+ZLIB-1 (old default)", "root", {"float32": False, "compression": "zlib:1"}, "zlib:1", events),
        ("Parquet float32+ZSTD", "parquet", {"float32": True}, "zstd", events),
        ("HepMC3 (text)", "hepmc3", {}, None, text_events),
        ("LHE (text)", "lhe", {}, None, text_events),
    ]
    with tempfile.TemporaryDirectory(prefix="mlegpipe-bench-write-") as tmp_name:
        tmp = Path(tmp_name)
        for label, fmt, options, bare_setting, n in settings:
            suffix = {"root": ".root", "parquet": ".parquet", "hepmc3": ".hepmc", "lhe": ".lhe"}[fmt]
            out = tmp / f"gen{suffix}"
            try:
                t_end = best_time(lambda fmt=fmt, options=options, n=n, out=out: generate_to_file(
                    gen, n, out, seed, overwrite=True, format=fmt, **options), repeat)
            except Exception as err:  # noqa: BLE001 - a missing optional writer is reported, not fatal
                details[label] = f"not measured: {type(err).__name__}: {err}"
                continue
            size = out.stat().st_size / 1e6
            part = blocks[: max(1, -(-n // len(blocks[0])))]  # whole blocks covering n events
            n_part = sum(len(b) for b in part)

            def writer_only(fmt: str = fmt, options: dict[str, Any] = options, part: list[Any] = part,
                            out: Path = out) -> None:
                with open_writer(out.with_name("w" + out.name), format=fmt, overwrite=True, **options) as w:
                    for b in part:
                        w.write(b)

            t_writer = best_time(writer_only, repeat)
            figures += [
                Figure(f"generate -> {label}", n / t_end, "events/s", "sampler alone", sampler, group=GROUP,
                       target=">= 1 M events/s" if fmt == "root" and options.get("float32") else "",
                       meets=(n / t_end >= TARGET) if fmt == "root" and options.get("float32") else None,
                       note=f"{n} events, {size:.1f} MB ({size * 1e6 / n:.1f} B/event), {size / t_end:.0f} MB/s"),
                Figure(f"writer alone -> {label}", n_part / t_writer, "events/s", "sampler alone", sampler,
                       group=GROUP, note="pre-generated events"),
            ]
            if bare_setting is not None:
                dtype = np.float32 if options.get("float32") else np.float64
                columns = {f: np.concatenate([np.asarray(b.column(f)) for b in part]).astype(
                    np.float64 if f in keep64 else dtype) for f in fields}
                columns["event_number"] = np.arange(n_part, dtype=np.int64)
                bare = _bare_root if fmt == "root" else _bare_parquet
                chunk = int(options.get("chunk_events", 100_000))
                t_bare = best_time(lambda bare=bare, columns=columns, suffix=suffix, setting=bare_setting, chunk=chunk:
                               bare(columns, tmp / f"bare{suffix}", setting, chunk), repeat)
                figures.append(Figure(f"writer alone -> {label}", n_part / t_writer, "events/s",
                                      "bare library, same settings", n_part / t_bare, group=GROUP,
                                      note="uproot mktree/extend" if fmt == "root" else "ak.to_parquet"))
    details["sampler_events_per_s"] = sampler
    return {"benchmark": GROUP, "figures": [f.to_dict() for f in figures], "details": details,
            "machine": machine_info(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: measure, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="events for ROOT and Parquet")
    parser.add_argument("--text-events", type=int, default=100_000, help="events for HepMC3 and LHE")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs per figure")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = measure(args.events, args.text_events, args.seed, args.repeat)
    print(format_table([Figure(**f) for f in result["figures"]]))
    for key, value in result["details"].items():
        if isinstance(value, str):
            print(f"{key}: {value}")
    print(f"\nwrote {write_json(GROUP, result)}")
    return result


if __name__ == "__main__":
    main()
