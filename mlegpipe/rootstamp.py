"""Reproducible ROOT file stamps: fixed creation/modification times and UUIDs while uproot writes.

A ROOT file stores, besides the data, the time each key and directory was
written (``fDatime``, ``fDatimeC``, ``fDatimeM``) and a UUID per file and
directory. uproot fills them from ``datetime.datetime.now()`` and
``uuid.uuid1()``, so two runs with the same seed would write the same events
into files that differ in a few bytes. Physics provenance (versions, seed, the
run's real start time) lives in the run folder (``run.log``, ``metrics.json``)
and in the file's ``mlegpipe_meta`` JSON, so the ROOT-level stamps are fixed:

- times: ``SOURCE_DATE_EPOCH`` (the reproducible-builds convention) when set,
  else 1995-01-01 00:00:00, the origin of ROOT's ``TDatime`` encoding;
- UUIDs: ``uuid5`` of the file's name and a counter (:func:`uuid_sequence`).

uproot has an option for the UUIDs (``uuid_function``) but none for the
times, so :func:`fixed_write_time` swaps the ``datetime`` module seen by
uproot's writing modules for one whose ``now()`` is fixed, only while a writer
is open (reference-counted, thread-safe). If a future uproot moves these
calls, the patch simply has nothing to replace and the determinism test in
``tests/test_rootio_determinism.py`` reports it.

Example:
    >>> import uuid
    >>> ids = uuid_sequence("events.root")
    >>> ids() == uuid_sequence("events.root")()
    True
    >>> with fixed_write_time():
    ...     import uproot.writing._cascade as c
    ...     c.datetime.datetime.now().year
    1995
"""

from __future__ import annotations

import datetime as _datetime
import importlib
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace

from mlegpipe.shared_setting import SharedSetting

__all__ = ["PATCHED_MODULES", "fixed_write_time", "stamp_time", "uuid_sequence"]

#: uproot modules that call ``datetime.datetime.now()`` while writing.
PATCHED_MODULES = ("uproot.writing._cascade", "uproot.writing._cascadetree", "uproot.writing._cascadentuple")

_NAMESPACE = uuid.UUID("6f1c2b1e-5a8e-4c3e-9b0e-6d6c6567706d")  # fixed namespace of mlegpipe file UUIDs


def stamp_time() -> _datetime.datetime:
    """The time written into ROOT files: ``SOURCE_DATE_EPOCH`` if set, else 1995-01-01 (naive UTC).

    Example:
        >>> stamp_time().isoformat()
        '1995-01-01T00:00:00'
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch.isdigit():
        stamp = _datetime.datetime.fromtimestamp(int(epoch), tz=_datetime.UTC).replace(tzinfo=None)
        if 1995 <= stamp.year < 2059:  # TDatime holds years 1995..2058
            return stamp
    return _datetime.datetime(1995, 1, 1)


def uuid_sequence(name: str) -> Callable[[], uuid.UUID]:
    """A zero-argument UUID factory for ``uproot.recreate(uuid_function=...)``, deterministic in ``name``.

    Example:
        >>> make = uuid_sequence("a.root")
        >>> make() != make()
        True
    """
    counter = itertools.count()
    return lambda: uuid.uuid5(_NAMESPACE, f"{name}:{next(counter)}")


def _shim(stamp: _datetime.datetime) -> SimpleNamespace:
    class _Fixed(_datetime.datetime):
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _datetime.datetime:  # type: ignore[override]
            return stamp if tz is None else stamp.replace(tzinfo=_datetime.UTC).astimezone(tz)

    names = {name: getattr(_datetime, name) for name in dir(_datetime) if not name.startswith("__")}
    return SimpleNamespace(**{**names, "datetime": _Fixed})


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _patch() -> dict[str, object]:
    shim, saved = _shim(stamp_time()), {}
    for name in PATCHED_MODULES:
        module = _module(name)
        if module is not None and getattr(module, "datetime", None) is _datetime:
            saved[name] = module.datetime
            module.datetime = shim  # type: ignore[attr-defined]
    return saved


def _unpatch(saved: dict[str, object]) -> None:
    for name, original in saved.items():
        module = _module(name)
        if module is not None:
            module.datetime = original  # type: ignore[attr-defined]


_FIXED_TIME = SharedSetting(_patch, _unpatch)


@contextmanager
def fixed_write_time() -> Iterator[None]:
    """Within the block, uproot writes :func:`stamp_time` as every creation/modification time.

    Re-entrant and thread-safe: the original ``datetime`` is restored when the
    last open block exits.
    """
    with _FIXED_TIME():
        yield
