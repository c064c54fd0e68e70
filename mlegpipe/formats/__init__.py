"""Event file formats: ROOT, HepMC3, LHE and Parquet, chosen by file extension or by name.

Every format has a writer (an :class:`~mlegpipe.formats.base.EventWriter`:
atomic, numbered events, the provenance of :mod:`mlegpipe.provenance`) and a
reader yielding :class:`~mlegpipe.events.EventBatch` chunks. Formats and their
extensions:

- ``root``: ``.root`` (:mod:`mlegpipe.rootio`);
- ``hepmc3``: ``.hepmc``, ``.hepmc3`` (:mod:`mlegpipe.formats.hepmc`);
- ``lhe``: ``.lhe`` (:mod:`mlegpipe.formats.lhe`);
- ``parquet``: ``.parquet``, ``.pq`` (:mod:`mlegpipe.formats.parquet`).

Example:
    >>> format_for("events.hepmc").name, format_for("x.dat", "lhe").name
    ('hepmc3', 'lhe')
    >>> format_for("events.xyz")
    Traceback (most recent call last):
    ...
    mlegpipe.exceptions.ConfigError: events.xyz: unknown event file format '.xyz'; supported: root (.root), hepmc3 (.hepmc, .hepmc3), lhe (.lhe), parquet (.parquet, .pq); choose one with --format
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.formats.base import EventWriter

__all__ = ["FORMATS", "EventWriter", "Format", "format_for", "open_writer", "read_file", "read_file_meta"]


@dataclass(frozen=True)
class Format:
    """One event file format: its name, extensions, and where its writer and readers live.

    ``writer``, ``reader`` and ``meta`` are ``"module:attribute"`` strings,
    imported on first use (pyhepmc, pylhe and pyarrow load only when needed).
    """

    name: str
    extensions: tuple[str, ...]
    writer: str
    reader: str
    meta: str

    def load(self, which: str) -> Any:
        """The writer class, reader or metadata function (``which`` = ``writer``, ``reader`` or ``meta``)."""
        module, _, attribute = getattr(self, which).partition(":")
        return getattr(importlib.import_module(module), attribute)


FORMATS: dict[str, Format] = {
    "root": Format("root", (".root",), "mlegpipe.rootio:RootWriter", "mlegpipe.rootio:read_events",
                   "mlegpipe.rootio:read_meta"),
    "hepmc3": Format("hepmc3", (".hepmc", ".hepmc3"), "mlegpipe.formats.hepmc:HepMC3Writer",
                     "mlegpipe.formats.hepmc:read_hepmc", "mlegpipe.formats.hepmc:read_hepmc_meta"),
    "lhe": Format("lhe", (".lhe",), "mlegpipe.formats.lhe:LHEWriter", "mlegpipe.formats.lhe:read_lhe",
                  "mlegpipe.formats.lhe:read_lhe_meta"),
    "parquet": Format("parquet", (".parquet", ".pq"), "mlegpipe.formats.parquet:ParquetWriter",
                      "mlegpipe.formats.parquet:read_parquet", "mlegpipe.formats.parquet:read_parquet_meta"),
}


def _supported() -> str:
    return ", ".join(f"{f.name} ({', '.join(f.extensions)})" for f in FORMATS.values())


def format_for(path: str | os.PathLike[str], name: str | None = None, where: str = "--format") -> Format:
    """The format named ``name``, else the one of ``path``'s extension.

    Raises:
        ConfigError: an unknown name or extension (the message lists the supported ones).
    """
    if name:
        key = name.lower().lstrip(".")
        key = {"hepmc": "hepmc3"}.get(key, key)
        if key not in FORMATS:
            raise ConfigError(f"unknown event file format; supported: {_supported()}", path=where, value=name)
        return FORMATS[key]
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS.values():
        if suffix in fmt.extensions:
            return fmt
    what = f"unknown event file format {suffix!r}" if suffix else "no file extension to choose a format by"
    raise ConfigError(f"{what}; supported: {_supported()}; choose one with --format", path=str(path))


def open_writer(
    path: str | os.PathLike[str],
    meta: Mapping[str, Any] | None = None,
    *,
    format: str | None = None,  # noqa: A002 - the CLI's name
    overwrite: bool = False,
    first_event: int = 0,
    **options: Any,
) -> EventWriter:
    """A writer for ``path`` in the format of its extension (or ``format``); use it in a ``with`` block.

    ``options`` go to the format's writer (e.g. ``compression`` for ROOT).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "e.root"
        >>> with open_writer(p, {"seed": 1}) as w:
        ...     w.write(EventBatch.from_columns({"x": np.ones(2)}))
        >>> read_file_meta(p)["seed"]
        1
    """
    cls: Callable[..., EventWriter] = format_for(path, format).load("writer")
    return cls(path, meta=meta, overwrite=overwrite, first_event=first_event, **options)


def read_file(path: str | os.PathLike[str], *, format: str | None = None,  # noqa: A002
              **options: Any) -> Iterator[EventBatch]:
    """The events of one file of any format, in chunks (``options`` go to the format's reader).

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "e.root"
        >>> with open_writer(p) as w:
        ...     w.write(EventBatch.from_columns({"x": np.ones(2)}))
        >>> sum(len(b) for b in read_file(p))
        2
    """
    return format_for(path, format, where="format").load("reader")(path, **options)


def read_file_meta(path: str | os.PathLike[str], *, format: str | None = None) -> dict[str, Any]:  # noqa: A002
    """The provenance stored in a file of any format (empty if it has none)."""
    return format_for(path, format, where="format").load("meta")(path)
