"""``mlegpipe inspect FILE.root``: summarise trees, branches and entry counts."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("inspect", help="summarise a ROOT file",
                       description="Summarise the trees, branches (with types), entry counts and mlegpipe "
                       "metadata of a ROOT file.")
    p.add_argument("file", help="ROOT file")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the summary."""
    from mlegpipe.rootio import format_inspection, inspect_file

    summary = inspect_file(args.file)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_inspection(summary))
    return 0
