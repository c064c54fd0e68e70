"""``mlegpipe run PIPELINE.toml``: run a whole pipeline into a run folder."""

from __future__ import annotations

import argparse
import sys

from mlegpipe.cli.common import add_pipeline_arguments

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("run", help="run a pipeline and write a run folder",
                       description="Run a pipeline: truth → generator → detector → unfolding → report. Writes the "
                       "resolved config, logs, events as ROOT files, checkpoints, metrics.json and the report.")
    add_pipeline_arguments(p)
    p.add_argument("-o", "--output", help="run folder (default: pipeline.output)")
    p.add_argument("--force", action="store_true", help="replace an existing run folder once the new run is complete")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoints")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--progress", action="store_true", help="progress bars even when not on a terminal")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training on N local processes (re-launches through torchrun; "
                   "same as: torchrun --nproc-per-node N -m mlegpipe run ...)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate then run the pipeline."""
    from mlegpipe import distributed
    from mlegpipe.config import load_config
    from mlegpipe.pipeline import run_pipeline

    if args.nproc > 1 and not distributed.running_under_torchrun():
        return distributed.relaunch(sys.argv[1:], args.nproc)
    config = load_config(args.pipeline, args.overrides)
    progress = False if args.no_progress else (True if args.progress else None)
    if distributed.running_under_torchrun():  # every rank trains; only rank 0 keeps its run folder
        run_dir = distributed.run_ranked(lambda output, force, show: run_pipeline(
            config, output=output, force=force, resume=args.resume, progress=show), args.output, args.force, progress)
        if run_dir is None:
            return 0
    else:
        run_dir = run_pipeline(config, output=args.output, force=args.force, resume=args.resume, progress=progress)
    print(f"run complete: {run_dir}", file=sys.stderr)
    report = run_dir / "report.html"
    if report.exists():
        print(f"report: {report}", file=sys.stderr)
    return 0
