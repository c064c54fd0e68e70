"""mlegpipe: machine-learning event generators for nuclear and particle physics.

Plugins import :data:`hookimpl` from here and nothing else from the internals
beyond the stage base classes in :mod:`mlegpipe.stages`.

Example:
    >>> from mlegpipe import hookimpl, __version__
    >>> isinstance(__version__, str)
    True
"""

from mlegpipe.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
__version__ = "0.1.0"
