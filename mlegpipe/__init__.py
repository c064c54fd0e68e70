"""mlegpipe: machine-learning event generators for nuclear and particle physics.

The Python API (:mod:`mlegpipe.api`) is at the top level and loads on first
use: :func:`load_pipeline`, :func:`run`, :func:`load_generator`,
:func:`sample`, :func:`read_events`, :func:`write_events`, :func:`read_meta`.
Plugins import :data:`hookimpl` from here and the stage base classes from
:mod:`mlegpipe.stages`.

Example:
    >>> import mlegpipe
    >>> isinstance(mlegpipe.__version__, str), callable(mlegpipe.sample)
    (True, True)
"""

from typing import Any

from mlegpipe.hookspecs import hookimpl

__all__ = ["__version__", "events_from_columns", "hookimpl", "load_generator", "load_pipeline", "read_events",
           "read_meta", "run", "sample", "show_progress", "write_events"]
__version__ = "0.1.0"

_API = {"events_from_columns", "load_generator", "load_pipeline", "read_events", "read_meta", "run", "sample",
        "show_progress", "write_events"}


def __getattr__(name: str) -> Any:
    """The API functions, imported from :mod:`mlegpipe.api` on first use (keeps ``import mlegpipe`` light)."""
    if name in _API:
        from mlegpipe import api

        return getattr(api, name)
    raise AttributeError(f"module 'mlegpipe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
