"""``mlegpipe run PIPELINE.toml``: run a whole pipeline into a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
                   help="data-parallel training on N processes per node (re-launches through torchrun; "
                   "same as: torchrun --nproc-per-node N -m mlegpipe run ...)")
    p.add_argument("--nnodes", type=int, default=1, metavar="M",
                   help="nodes of a multi-node launch: run the same command on every node with its --node-rank")
    p.add_argument("--node-rank", type=int, default=0, metavar="K", help="this node's rank, 0 to M-1")
    p.add_argument("--master", metavar="HOST:PORT",
                   help="address of node 0 for a multi-node launch (127.0.0.1:PORT for nodes on this machine)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate then run the pipeline (validated before torchrun starts: bad input is exit 2, one paragraph)."""
    from mlegpipe import distributed
    from mlegpipe.config import load_config
    from mlegpipe.pipeline import build_stages, check_run_folder, run_pipeline

    config = load_config(args.pipeline, args.overrides)
    launching = (args.nproc > 1 or args.nnodes > 1) and not distributed.running_under_torchrun()
    if launching:
        build_stages(config)  # the stages check their inputs (files, branches, presets) when they are built
        if args.node_rank == 0:  # node 0 writes the run folder: it must be free, as run_pipeline will demand
            check_run_folder(config, args.output, args.force or args.resume)
        return distributed.relaunch(sys.argv[1:], args.nproc, args.nnodes, args.node_rank, args.master)
    progress = False if args.no_progress else (True if args.progress else None)
    if distributed.running_under_torchrun():  # every rank trains; only rank 0 keeps its run folder
        run_dir = distributed.run_ranked(lambda output, force, show: run_pipeline(
            config, output=output, force=force, resume=args.resume, progress=show), args.output, args.force, progress)
        if run_dir is not None:
            _announce(run_dir)
        # the process group is shut down and every file is closed: leave without the interpreter's teardown, in
        # which a gloo thread still joinable aborted a finished rank ("terminate called without an active
        # exception", exit -6) once in a loaded two-node test
        _exit_now(0)
    else:
        run_dir = run_pipeline(config, output=args.output, force=args.force, resume=args.resume, progress=progress)
    _announce(run_dir)
    return 0


def _announce(run_dir: Path) -> None:
    print(f"run complete: {run_dir}", file=sys.stderr)
    report = run_dir / "report.html"
    if report.exists():
        print(f"report: {report}", file=sys.stderr)


def _exit_now(code: int) -> None:
    """Flush the log and the standard streams, then end the process at once."""
    import logging
    import os

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
