"""The ``mlegpipe`` command line.

Each sub-command is a module of this package with ``add_parser(subparsers)``
and ``run(args) -> int``. Errors caused by user input print one paragraph and
exit with code 2 (``--debug`` shows the traceback); success exits 0.

Example:
    >>> main(["--version"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence

from mlegpipe import __version__
from mlegpipe.exceptions import MlegpipeError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("run", "validate", "plugins", "inspect", "generate", "report", "compare", "interpret", "landscape")

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="mlegpipe",
        description="Machine-learning event generators: train, sample, fold and unfold events from TOML pipelines.",
    )
    parser.add_argument("--version", action="version", version=f"mlegpipe {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--strict-plugins", action="store_true", help="make a plugin that fails to load fatal")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mlegpipe.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"mlegpipe.cli.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (it may be replaced)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # noqa: ANN001
        pass


def _configure_logging(quiet: bool) -> None:
    root = logging.getLogger("mlegpipe")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.WARNING if quiet else logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.quiet)
    if args.strict_plugins:
        import os

        os.environ["MLEGPIPE_STRICT_PLUGINS"] = "1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return int(args.func(args) or EXIT_OK)
    except MlegpipeError as err:
        if args.debug:
            traceback.print_exc()
        print(f"mlegpipe {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"mlegpipe {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
