"""``mlegpipe generate CHECKPOINT -n N -o OUT.root|.hepmc|.lhe|.parquet``: sample a trained generator."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_parser", "run"]


def _condition(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, e.g. beam_energy=60, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("generate", help="sample a trained generator into a ROOT, HepMC3, LHE or Parquet file",
                       description="Load a generator checkpoint (weights only, never pickled code) and stream N "
                       "events to a file whose format follows its extension (.root, .hepmc/.hepmc3, .lhe, "
                       ".parquet/.pq) or --format. The same seed gives the same events whatever the chunking. "
                       "Every file records the mlegpipe version, the checkpoint's sha256 and training seed, the "
                       "generation seed, and the σ of the sample the generator was trained on.")
    p.add_argument("checkpoint", help="generator checkpoint (.pt) from a run folder's checkpoints/")
    p.add_argument("-n", "--events", type=int, required=True, help="number of events")
    p.add_argument("-o", "--output", required=True, help="output file (.root, .hepmc, .lhe, .parquet)")
    p.add_argument("--format", choices=["root", "hepmc3", "lhe", "parquet"],
                   help="file format (default: from the output's extension)")
    p.add_argument("--compression", default=None, metavar="ALGO:LEVEL",
                   help="ROOT only: basket compression, e.g. lz4:1 (default), zstd:1, zlib:1, none")
    p.add_argument("--double", action="store_true",
                   help="ROOT and Parquet: store every float in double precision (default: float32 for "
                        "momenta and kinematics, double for weights and beam energies)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    p.add_argument("--condition", type=_condition, action="append", default=[], metavar="NAME=VALUE",
                   help="condition of a conditional generator, e.g. beam_energy=60")
    p.add_argument("--shards", type=int, default=1, help="write K files OUT_000.root ... (same events as one file)")
    p.add_argument("--dask", metavar="SCHEDULER", help="run one Dask task per shard: 'local' starts a LocalCluster, "
                   "otherwise the address of a running scheduler (tcp://host:8786)")
    p.add_argument("--workers", type=int, default=2, help="workers of the local Dask cluster (default 2)")
    p.add_argument("--force", action="store_true", help="overwrite the output file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load, sample, write."""
    from mlegpipe.checkpoint import load_checkpoint
    from mlegpipe.exceptions import ConfigError
    from mlegpipe.formats import format_for
    from mlegpipe.generation import generate_to_file
    from mlegpipe.registry import load_plugins

    if args.events < 1:
        raise ConfigError("the number of events must be positive", path="-n", value=args.events)
    fmt = format_for(args.output, args.format)  # a bad extension fails before the checkpoint is loaded
    if args.dask:
        from mlegpipe.sharding import require_dask

        require_dask()
    options = storage_options(fmt.name, args.compression, args.double)
    if args.shards > 1 or args.dask:
        from mlegpipe.sharding import generate_shards

        provenance = load_checkpoint(args.checkpoint, expect_kind="generator").provenance()
        paths = generate_shards(args.checkpoint, args.events, args.output, args.seed, args.shards,
                                dict(args.condition), provenance, overwrite=args.force,
                                scheduler=args.dask, workers=args.workers, format=fmt.name, **options)
        print(f"wrote {args.events} events to {len(paths)} shards: {paths[0]} ... {paths[-1]}", file=sys.stderr)
        return 0
    from mlegpipe.checkpoint import open_generator

    generator, provenance = open_generator(args.checkpoint, load_plugins())
    path = generate_to_file(generator, args.events, args.output, args.seed, dict(args.condition), provenance,
                            overwrite=args.force, progress=not args.no_progress and sys.stderr.isatty(),
                            format=fmt.name, **options)
    print(f"wrote {args.events} events to {path} ({fmt.name})", file=sys.stderr)
    return 0


def storage_options(fmt: str, compression: str | None, double: bool) -> dict[str, object]:
    """Writer options of ``mlegpipe generate``: float32 storage and fast compression unless asked otherwise.

    Example:
        >>> storage_options("root", None, False)
        {'float32': True, 'compression': 'lz4:1', 'chunk_events': 65536}
        >>> storage_options("hepmc3", None, False)
        {}
    """
    from mlegpipe.exceptions import ConfigError
    from mlegpipe.generation import BLOCK

    if compression is not None and fmt != "root":
        raise ConfigError("--compression applies to ROOT output only", path="--compression", value=compression)
    out: dict[str, object] = {}
    if fmt in ("root", "parquet"):
        out["float32"] = not double
    if fmt == "root":
        out["compression"] = compression or "lz4:1"
        out["chunk_events"] = BLOCK  # one generation block, one basket: no re-chunking copy
    return out
