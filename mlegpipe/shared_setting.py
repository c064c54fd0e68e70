"""A process-wide setting held while any ``with`` block uses it, restored when the last one leaves.

Used where a library offers only a global switch: one intra-op torch thread for
data-parallel sampling threads (:func:`mlegpipe.generation.single_threaded_kernels`),
fixed time stamps while uproot writes (:func:`mlegpipe.rootstamp.fixed_write_time`).
Nested blocks and blocks entered from several threads at once share one
application of the setting; the state saved by the first is restored by the last.

Example:
    >>> state = {"value": 0}
    >>> def apply():
    ...     saved, state["value"] = state["value"], 1
    ...     return saved
    >>> setting = SharedSetting(apply, lambda saved: state.update(value=saved))
    >>> with setting(), setting():
    ...     state["value"]
    1
    >>> state["value"]
    0
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["SharedSetting"]


class SharedSetting:
    """``apply()`` on the first entry (its return value is saved), ``restore(saved)`` on the last exit."""

    def __init__(self, apply: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self._apply = apply
        self._restore = restore
        self._lock = threading.Lock()
        self._users = 0
        self._saved: Any = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        """Hold the setting for the block."""
        with self._lock:
            if self._users == 0:
                self._saved = self._apply()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    self._restore(self._saved)
                    self._saved = None
