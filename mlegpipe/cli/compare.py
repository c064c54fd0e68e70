"""``mlegpipe compare RUN_A RUN_B``: two runs' metrics and plots side by side in one HTML page."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("compare", help="compare two runs side by side",
                       description="Write an HTML page with the metrics of two run folders in one table "
                       "(with their difference) and their plots in pairs.")
    p.add_argument("run_a", help="first run folder")
    p.add_argument("run_b", help="second run folder")
    p.add_argument("-o", "--output", default="compare.html", help="output page (default: compare.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the page and print its path."""
    from mlegpipe.report.compare import compare_runs

    print(compare_runs(args.run_a, args.run_b, args.output))
    return 0
