"""``mlegpipe validate PIPELINE.toml``: check a pipeline without running it."""

from __future__ import annotations

import argparse

from mlegpipe.cli.common import add_pipeline_arguments

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("validate", help="check a pipeline without running it",
                       description="Parse the pipeline, validate every stage's parameters against its plugin's "
                       "schema, resolve how samples flow between stages and build the stages, without running them.")
    add_pipeline_arguments(p)
    p.add_argument("--show", action="store_true", help="print the resolved configuration (TOML)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate and print the plan."""
    from mlegpipe.config import load_config
    from mlegpipe.pipeline import build_stages
    config = load_config(args.pipeline, args.overrides)
    steps = config.steps
    build_stages(config)
    print(f"{config.source}: valid pipeline {config.settings.name!r}, seed {config.settings.seed}")
    for step in steps:
        reads = ", ".join(step.train_on + step.inputs) or "-"
        writes = ", ".join(step.outputs) or "-"
        print(f"  [{step.section}] {step.spec.kind} {step.spec.plugin.name!r}: reads {reads}; writes {writes}")
    if args.show:
        print(config.resolved_toml())
    return 0
