"""``mlegpipe report RUN_DIR``: rebuild report.html of a finished run from its files."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the sub-command."""
    p = sub.add_parser("report", help="rebuild the HTML report of a run folder",
                       description="Recompute the metrics and plots of a run from its sample files "
                       "(config.toml, metrics.json, *.root) and write report.html.")
    p.add_argument("run_dir", help="run folder written by 'mlegpipe run'")
    p.add_argument("-o", "--output", help="write the page here instead of RUN_DIR/report.html")
    p.add_argument("--no-recompute", action="store_true",
                   help="do not recompute: use the metrics in metrics.json and the PNGs in plots/")
    p.add_argument("--no-classifier", action="store_true", help="skip the classifier two-sample test")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the page and print its path."""
    from mlegpipe.report.html import build_report

    path = build_report(args.run_dir, args.output, recompute=not args.no_recompute,
                        classifier=not args.no_classifier)
    print(path)
    return 0
