"""``python -m mlegpipe``: the command line."""

from mlegpipe.cli import entry

entry()
