"""Arguments shared by several sub-commands."""

from __future__ import annotations

import argparse

__all__ = ["add_pipeline_arguments"]


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """The pipeline file and ``--set`` overrides."""
    parser.add_argument("pipeline", help="pipeline file (TOML)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a parameter, e.g. --set generator.steps=500 (repeatable; value parsed as TOML)")
