"""Make top-pair samples with Pythia 8 once, as ROOT files the ``root`` truth source reads.

Run ``python scripts/make_ttbar_samples.py KIND --events N --seed S --output FILE [--processes P]``
with KIND ``allhad`` (``process = "ttbar-allhad"``: the six quarks of the hard
process) or ``semilep`` (``"ttbar-semilep"``: jets with flavour, the prompt
lepton, the missing p_T). The events are those of a pipeline's ``[truth]``
section with ``plugin = "pythia8"``, the same ``process``, ``pipeline.seed = S``
and ``block_events`` (``--block-events``, default 10 000): blocks are seeded by
their number alone, so ``--processes`` changes the speed, never the events
(only the timing in the metadata). Floats are stored in double precision (the quarks balance in p_T to
1e-10 GeV) unless ``--float32``. σ (Pythia's sigmaGen, combined over the
blocks) and the settings go to the file's metadata (``mlegpipe inspect FILE``).
Progress goes to stderr (tqdm) and one line per finished block to stdout.

The samples of this repository::

    python scripts/make_ttbar_samples.py semilep --events 5000 --seed 20261122 \\
        --output sample_data/ttbar_semilep_small.root
    python scripts/make_ttbar_samples.py allhad --events 10000 --seed 20261122 \\
        --output sample_data/ttbar_allhad_small.root

Example:
    >>> parse_args(["semilep", "--events", "100", "--output", "x.root"]).processes
    1
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import MlegpipeError
from mlegpipe.rootio import RootWriter
from mlegpipe.schema import build_params

__all__ = ["KINDS", "main", "make_sample", "parse_args"]

#: Sample kinds and the ``pythia8`` process each runs.
KINDS: dict[str, str] = {"allhad": "ttbar-allhad", "semilep": "ttbar-semilep"}
DESCRIPTIONS: dict[str, str] = {
    "allhad": "pp -> tt̄ -> b q q̄' b̄ q q̄' at 13 TeV, Pythia 8 hard process (LO, m_t = 172.5 GeV): collection "
              "quarks (px, py, pz, E, pid) in decay-chain order b1 q1 qbar1 b2 q2 qbar2",
    "semilep": "pp -> tt̄ at 13 TeV with exactly one W -> e nu / mu nu, Pythia 8 full events (LO, m_t = 172.5 GeV): "
               "anti-kT R = 0.4 jets (pT > 20 GeV, |eta| < 4.5) with truth flavour, the prompt lepton (with pid), "
               "met and met_phi from the final-state neutrinos",
}
SECTION = "truth"


def _source(kind: str, events: int, seed: int, block_events: int, progress: bool) -> Any:
    from mlegpipe_builtins.truth.pythia import PythiaSource

    raw = {"events": events, "process": KINDS[kind], "block_events": block_events}
    return PythiaSource(build_params(PythiaSource.Params, raw, SECTION),
                        StageContext(SECTION, seed=seed, progress=progress))


def _run_blocks(kind: str, events: int, seed: int, block_events: int, blocks: Sequence[int],
                folder: str) -> list[dict[str, Any]]:
    """Worker: pickle each block's batches to ``folder/block_<i>.pkl``; return the blocks' σ figures."""
    source = _source(kind, events, seed, block_events, progress=False)
    for block in blocks:
        with open(Path(folder) / f"block_{block:06d}.pkl", "wb") as file:
            pickle.dump(list(source.block_batches(block)), file, protocol=pickle.HIGHEST_PROTOCOL)
    return source.info()["blocks"]


def _parallel_batches(source: Any, kind: str, events: int, seed: int, block_events: int, processes: int,
                      blocks: dict[int, dict[str, Any]], folder: Path) -> Iterator[EventBatch]:
    """Blocks made by ``processes`` workers, then handed on in block order (the same batches as one process)."""
    jobs = [list(range(source.n_blocks()))[k::processes] for k in range(processes)]
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = [pool.apply_async(_run_blocks, (kind, events, seed, block_events, job, str(folder)))
                   for job in jobs if job]
        for result in results:
            for figures in result.get():
                blocks[figures["block"]] = figures
                print(f"block {figures['block'] + 1}/{source.n_blocks()}: sigma = {figures['sigma_pb']:.2f} ± "
                      f"{figures['sigma_err_pb']:.2f} pb", flush=True)
    for block in range(source.n_blocks()):
        with open(folder / f"block_{block:06d}.pkl", "rb") as file:  # written just now by our own workers
            yield from pickle.load(file)  # noqa: S301


def make_sample(kind: str, events: int, seed: int, output: Path, *, processes: int = 1, block_events: int = 10_000,
                float32: bool = False, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Generate one sample into ``output``; return its metadata (σ, timing, settings)."""
    from mlegpipe_builtins.truth.pythia import combine_sigma

    source = _source(kind, events, seed, block_events, progress)
    info = source.info()
    start = time.perf_counter()
    blocks: dict[int, dict[str, Any]] = {}
    with RootWriter(output, overwrite=overwrite, float32=float32, chunk_events=50_000) as writer:
        if processes == 1:
            bar = tqdm(total=events, desc=f"{kind}", unit="ev", disable=not progress, mininterval=5.0)
            for block in range(source.n_blocks()):
                t0 = time.perf_counter()
                for batch in source.block_batches(block, bar):
                    writer.write(batch)
                figures = source.info()["blocks"][-1]
                blocks[block] = figures
                seconds = time.perf_counter() - t0
                print(f"block {block + 1}/{source.n_blocks()}: {source.block_size(block)} events in {seconds:.0f} s "
                      f"({source.block_size(block) / seconds:.0f} ev/s), sigma = {figures['sigma_pb']:.2f} ± "
                      f"{figures['sigma_err_pb']:.2f} pb", flush=True)
            bar.close()
        else:
            folder = Path(tempfile.mkdtemp(prefix=".ttbar_blocks_", dir=output.parent))
            try:
                for batch in _parallel_batches(source, kind, events, seed, block_events, processes, blocks, folder):
                    writer.write(batch)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        seconds = time.perf_counter() - start
        ordered = [blocks[b] for b in sorted(blocks)]
        sigma, error = combine_sigma(ordered)
        writer.meta.update({
            "dataset": output.stem, "description": DESCRIPTIONS[kind], "kind": kind, "process": KINDS[kind],
            "seed": seed, "section": SECTION, "block_events": block_events, "events": events,
            "cross_section_pb": sigma, "cross_section_error_pb": error,
            "blocks": ordered, "generator": info["generator"], "settings": info["settings"],
            "beams": source.beams.to_dict(), "seconds": round(seconds, 1), "processes": processes,
            "events_per_s": round(events / seconds, 1), "float32": float32,
            "made_by": "python scripts/make_ttbar_samples.py " + " ".join(sys.argv[1:]),
        })
        meta = dict(writer.meta)
    return meta


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=sorted(KINDS), help="allhad: six quarks; semilep: jets, lepton, MET")
    parser.add_argument("--events", type=int, required=True, help="number of events")
    parser.add_argument("--seed", type=int, default=20261122, help="the pipeline seed (default 20261122)")
    parser.add_argument("--output", type=Path, required=True, help="output .root file")
    parser.add_argument("--processes", type=int, default=1, help="worker processes (blocks run in parallel)")
    parser.add_argument("--block-events", type=int, default=10_000, help="events per seeded block (default 10000)")
    parser.add_argument("--float32", action="store_true", help="store floats in single precision (half the size)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (2 for bad input)."""
    args = parse_args(argv)
    if args.events < 1 or args.processes < 1 or args.block_events < 1:
        print("error: --events, --processes and --block-events must be positive", file=sys.stderr)
        return 2
    try:
        meta = make_sample(args.kind, args.events, args.seed, args.output, processes=args.processes,
                           block_events=args.block_events, float32=args.float32, overwrite=args.overwrite,
                           progress=not args.quiet)
    except MlegpipeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size = args.output.stat().st_size / 1e6
    print(f"{args.output}: {args.events} events, sigma = {meta['sigma_pb']:.2f} ± {meta['sigma_err_pb']:.2f} pb, "
          f"{meta['seconds']:.0f} s ({meta['events_per_s']:.0f} ev/s), {size:.1f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
