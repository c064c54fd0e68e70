"""``mlegpipe generate CHECKPOINT -n N -o OUT.root``: sample a trained generator."""

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
    p = sub.add_parser("generate", help="sample a trained generator into a ROOT file",
                       description="Load a generator checkpoint (weights only, never pickled code) and stream N "
                       "events to a ROOT file. The same seed gives the same events whatever the chunking.")
    p.add_argument("checkpoint", help="generator checkpoint (.pt) from a run folder's checkpoints/")
    p.add_argument("-n", "--events", type=int, required=True, help="number of events")
    p.add_argument("-o", "--output", required=True, help="output ROOT file")
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
    from mlegpipe.checkpoint import load_generator
    from mlegpipe.exceptions import ConfigError
    from mlegpipe.generation import generate_to_root
    from mlegpipe.registry import load_plugins

    if args.events < 1:
        raise ConfigError("the number of events must be positive", path="-n", value=args.events)
    if args.shards > 1 or args.dask:
        from mlegpipe.sharding import generate_shards

        paths = generate_shards(args.checkpoint, args.events, args.output, args.seed, args.shards,
                                dict(args.condition), {"checkpoint": str(args.checkpoint)}, overwrite=args.force,
                                scheduler=args.dask, workers=args.workers)
        print(f"wrote {args.events} events to {len(paths)} shards: {paths[0]} ... {paths[-1]}", file=sys.stderr)
        return 0
    generator = load_generator(args.checkpoint, load_plugins())
    meta = {"generator": generator.plugin_name, "checkpoint": str(args.checkpoint)}
    path = generate_to_root(generator, args.events, args.output, args.seed, dict(args.condition), meta,
                            overwrite=args.force, progress=not args.no_progress and sys.stderr.isatty())
    print(f"wrote {args.events} events to {path}", file=sys.stderr)
    return 0
