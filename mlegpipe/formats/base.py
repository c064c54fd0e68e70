"""The contract of an event-file writer, and the atomic write every format shares.

A writer is a context manager: ``open()`` creates the file in a hidden temporary
folder beside the destination, ``write(batch)`` appends events, ``close()``
finishes the file and moves it into place, ``abort()`` (on an exception)
throws everything away. An existing output is never touched unless
``overwrite`` is set, and then only once the new file is complete.

Subclasses implement :meth:`EventWriter._begin` (open the temporary file),
:meth:`EventWriter._append` (write one batch, numbered from
``first_event + entries``) and :meth:`EventWriter._finish` (write the trailer
and close), and may implement :meth:`EventWriter._discard`.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from mlegpipe.events import EventBatch
    >>> class Lines(EventWriter):
    ...     def _begin(self, tmp): self._out = tmp.open("w")
    ...     def _append(self, batch, numbers): self._out.writelines(f"{n}\\n" for n in numbers)
    ...     def _finish(self, meta): self._out.close()
    ...     def _discard(self): self._out.close()
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "n.txt"
    >>> with Lines(p, first_event=5) as w:
    ...     w.write(EventBatch.from_columns({"x": np.zeros(3)}))
    >>> p.read_text().split()
    ['5', '6', '7']
"""

from __future__ import annotations

import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import awkward as ak
import numpy as np

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError, OutputError
from mlegpipe.provenance import EVENT_NUMBER, SUM_WEIGHTS, base_provenance

__all__ = ["EventWriter", "to_float32", "with_event_numbers"]


def to_float32(array: ak.Array) -> ak.Array:
    """Cast float64 leaves to float32, field by field (integer fields such as pid are kept): the writers' float32
    storage.

    Example:
        >>> ak.type(to_float32(ak.Array([{"px": 1.0, "pid": 5}]))).content.fields, str(ak.type(
        ...     to_float32(ak.Array([1.0]))).content)
        (['px', 'pid'], 'float32')
    """
    if array.fields:
        return ak.zip({f: to_float32(array[f]) for f in array.fields})
    form = array.layout.form
    while hasattr(form, "content"):
        form = form.content
    return ak.values_astype(array, np.float32) if getattr(form, "primitive", "") == "float64" else array


def with_event_numbers(arrays: ak.Array, numbers: np.ndarray) -> ak.Array:
    """``arrays`` with ``numbers`` as their first field, :data:`~mlegpipe.provenance.EVENT_NUMBER` (replacing
    numbers read from an input file).

    Example:
        >>> with_event_numbers(ak.Array({"x": [1.0, 2.0]}), np.array([7, 8])).fields
        ['event_number', 'x']
    """
    columns = {EVENT_NUMBER: numbers, **{f: arrays[f] for f in arrays.fields if f != EVENT_NUMBER}}
    return ak.zip(columns, depth_limit=1)


class EventWriter(ABC):
    """Write event batches to one file, atomically, numbering the events.

    Arguments:
        path: the output file.
        meta: provenance stored in the file (merged over the first batch's
            ``meta``; beams, the version, units and the sum of weights are added).
        overwrite: replace an existing file once the new one is complete.
        first_event: the number of the first event (shards continue the count).
    """

    #: Format name (``root``, ``hepmc3``, ...), for messages.
    format_name: str = ""

    def __init__(self, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None,
                 overwrite: bool = False, first_event: int = 0) -> None:
        self.path = Path(path)
        self.meta = dict(meta or {})
        self.overwrite = overwrite
        self.first_event = int(first_event)
        self.entries = 0
        self.sum_weights = 0.0
        self.beams: Beams | None = None
        self.batch_meta: dict[str, Any] = {}
        self._tmp: Path | None = None
        self._started = False

    # -- context management -------------------------------------------------
    def __enter__(self) -> EventWriter:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close` / :meth:`abort`."""
        return self._tmp is not None

    def open(self) -> None:
        """Create the temporary output file (called by ``with``)."""
        if self.path.exists() and not self.overwrite:
            raise OutputError("the output file exists already; pass overwrite=True (or --force) to replace it",
                              path=str(self.path))
        if self.path.is_dir():
            raise OutputError(f"the output path is a folder, expected a {self.format_name or 'file'} name",
                              path=str(self.path))
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputError(f"cannot create the output folder: {err.strerror}", path=str(folder)) from None
        tmp_dir = folder / f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            tmp_dir.mkdir()
            self._tmp = tmp_dir / self.path.name
            self._begin(self._tmp)
            self._started = True
        except OSError as err:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            self._tmp = None
            raise OutputError(f"cannot write here: {err.strerror or err}", path=str(self.path)) from None
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            self._tmp = None
            raise

    # -- writing ----------------------------------------------------------------
    def write(self, batch: EventBatch) -> None:
        """Append one batch of events."""
        if self._tmp is None:
            raise OutputError("the writer is not open (use it in a with block)", path=str(self.path))
        if self.entries == 0 and not self.batch_meta:
            self.beams = self.beams or batch.beams
            self.batch_meta = dict(batch.meta)
        numbers = np.arange(self.first_event + self.entries, self.first_event + self.entries + len(batch),
                            dtype=np.int64)
        self._append(batch, numbers)
        self.entries += len(batch)
        self.sum_weights += float(batch.weights.sum()) if len(batch) else 0.0

    def file_meta(self) -> dict[str, Any]:
        """The metadata written into the file: batch meta, then ``meta``, then beams, version, units, counts."""
        meta = {**self.batch_meta, **self.meta}
        if self.beams is not None and "beams" not in meta:
            meta["beams"] = self.beams.to_dict()
        for key, value in base_provenance().items():
            meta.setdefault(key, value)
        meta.setdefault("entries", self.entries)
        meta.setdefault(SUM_WEIGHTS, self.sum_weights)
        meta.setdefault("first_event", self.first_event)
        return meta

    def close(self) -> Path:
        """Finish the file and move it into place; return its path."""
        if self._tmp is None:
            return self.path
        try:
            self._finish(self.file_meta())
            self._started = False
            if self.path.exists() and not self.overwrite:
                raise OutputError("the output file appeared while writing; not replacing it", path=str(self.path))
            os.replace(self._tmp, self.path)
            self._tmp.parent.rmdir()
            self._tmp = None
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard everything written so far (called by ``with`` on an exception)."""
        if self._started:
            self._started = False
            try:
                self._discard()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
        if self._tmp is not None:
            shutil.rmtree(self._tmp.parent, ignore_errors=True)
            self._tmp = None

    def _require_events(self) -> None:
        """For :meth:`_finish`: a file with no events is an error."""
        if self.entries == 0:
            raise DataError("no events were written", path=str(self.path))

    # -- format hooks -------------------------------------------------------------
    @abstractmethod
    def _begin(self, tmp: Path) -> None:
        """Open the temporary file ``tmp`` (it carries the final name)."""

    @abstractmethod
    def _append(self, batch: EventBatch, numbers: np.ndarray) -> None:
        """Write one batch; ``numbers`` are its event numbers."""

    @abstractmethod
    def _finish(self, meta: dict[str, Any]) -> None:
        """Write what remains (trailer, metadata) and close the temporary file."""

    def _discard(self) -> None:  # noqa: B027 - optional hook; the folder is removed either way
        """Close the temporary file without finishing it (the folder is removed after)."""
