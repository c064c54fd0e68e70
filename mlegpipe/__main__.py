"""``python -m mlegpipe``: the command line."""

from mlegpipe.cli import entry

if __name__ == "__main__":  # worker processes import the main module again: only the command runs it
    entry()
