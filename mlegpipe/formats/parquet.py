"""Parquet event files: awkward's own layout, streamed in row groups, the provenance in the key-value metadata.

A Parquet file holds the same content as a ROOT file of
:class:`~mlegpipe.rootio.RootWriter`: one record per event, its flat fields as
columns, each particle collection as a nested list of particle records (not
split into ``nNAME`` / ``NAME_px`` branches), and an ``event_number`` int64
column (:data:`~mlegpipe.provenance.EVENT_NUMBER`). Plain
``ak.from_parquet(path)`` gives the records back, record names (``Momentum4D``)
included; pandas, polars or Spark read the columns. The JSON provenance of
:meth:`~mlegpipe.formats.base.EventWriter.file_meta` is the file's key-value
metadata entry ``mlegpipe_meta``.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> import awkward as ak
    >>> from mlegpipe.events import EventBatch
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "ev.parquet"
    >>> with ParquetWriter(p, meta={"seed": 1}) as w:
    ...     w.write(EventBatch.from_columns({"x": np.array([0.1, 0.2])}))
    >>> ak.from_parquet(p).fields, read_parquet_meta(p)["seed"]
    (['event_number', 'x'], 1)
    >>> [len(b) for b in read_parquet(p)]
    [2]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from mlegpipe.events import WEIGHT, EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.formats.base import EventWriter, to_float32, with_event_numbers
from mlegpipe.provenance import parse_meta

__all__ = ["META_KEY", "ParquetWriter", "parquet_compression", "read_parquet", "read_parquet_meta"]

#: Key of the JSON provenance in the Parquet key-value metadata (the ROOT files' TObjString name).
META_KEY = "mlegpipe_meta"

_CODECS = ("zstd", "lz4", "snappy", "gzip", "brotli", "none")

PathLike = str | os.PathLike[str]


def parquet_compression(text: str) -> tuple[str, int | None]:
    """The codec and level of ``"codec[:level]"``: ``zstd``, ``lz4``, ``snappy``, ``gzip``, ``brotli`` or ``none``.

    Example:
        >>> parquet_compression("zstd:3"), parquet_compression("LZ4")
        (('zstd', 3), ('lz4', None))
        >>> parquet_compression("lzma")
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.ConfigError: compression: unknown Parquet compression 'lzma'; choose zstd, lz4, snappy, gzip, brotli or none
    """
    name, _, level = str(text).lower().partition(":")
    name = name or "none"
    if name not in _CODECS:
        raise ConfigError(f"unknown Parquet compression {text!r}; choose {', '.join(_CODECS[:-1])} or none",
                          path="compression")
    if not level or name in ("none", "snappy", "lz4"):  # pyarrow takes no level for these
        return name, None
    try:
        return name, int(level)
    except ValueError:
        raise ConfigError(f"the compression level must be an integer, got {level!r}", path="compression") from None


class ParquetWriter(EventWriter):
    """Write event batches into one Parquet file, atomically, in row groups (:class:`EventWriter`).

    Batches are buffered and written as row groups of ``row_group_events``
    events (column types come from the first row group; later ones are cast to
    them), so writing needs one row group in memory and readers can read one at
    a time.

    Arguments:
        path: the output ``.parquet`` file.
        meta: provenance stored as JSON under ``mlegpipe_meta`` in the key-value metadata.
        overwrite: replace an existing file (else :class:`~mlegpipe.exceptions.OutputError`).
        first_event: number of the first event.
        row_group_events: events per row group.
        float32: store floating-point fields as float32, except the fields in ``keep_float64``.
        keep_float64: fields kept in double precision with ``float32`` (default ``weight``; per-event
            beam energies are added), as :class:`~mlegpipe.rootio.RootWriter` does.
        compression: ``"zstd:1"`` (default), ``"lz4"``, ``"snappy"``, ``"gzip[:level]"``,
            ``"brotli[:level]"`` or ``"none"``. For 1M DIS events (10 columns) zstd:1 writes about
            8M events/s into 34 MB, lz4 16M events/s into 40 MB (ROOT's zlib:1: 1M events/s, 34 MB).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.parquet"
        >>> with ParquetWriter(p, compression="zstd:3", first_event=10) as w:
        ...     w.write(EventBatch.from_columns({"Q2": np.array([2.0, 3.0])}))
        >>> ak.from_parquet(p)["event_number"].tolist()
        [10, 11]
    """

    format_name = "Parquet"

    def __init__(
        self,
        path: PathLike,
        meta: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        first_event: int = 0,
        row_group_events: int = 100_000,
        float32: bool = False,
        keep_float64: Sequence[str] = (WEIGHT,),
        compression: str = "zstd:1",
    ) -> None:
        super().__init__(path, meta, overwrite, first_event)
        self.row_group_events = max(int(row_group_events), 1)
        self.float32 = float32
        self.keep_float64 = frozenset(keep_float64)
        self.compression, self.compression_level = parquet_compression(compression)
        self._buffer: list[ak.Array] = []
        self._buffered = 0
        self._fields: list[str] | None = None
        self._tmp_path: Path | None = None
        self._writer: Any = None
        self._schema: Any = None
        self._template: ak.Array | None = None

    def _begin(self, tmp: Path) -> None:
        import pyarrow.parquet  # noqa: F401 - fail early (at open) when pyarrow is missing

        self._tmp_path = tmp

    def _append(self, batch: EventBatch, numbers: np.ndarray) -> None:
        """Buffer one batch; write a row group when enough events are waiting."""
        arrays = batch.arrays
        if len(batch) == 0:
            if self._template is None:  # an empty first batch still defines the columns
                self._template = with_event_numbers(arrays, numbers)
            return
        if self._fields is None:
            self._fields = list(arrays.fields)
            if batch.beams is not None:  # per-event beam energies keep their precision, as weights do
                self.keep_float64 = self.keep_float64 | {f for f in batch.beams.fields if f}
        elif list(arrays.fields) != self._fields:
            raise DataError(f"batch fields {list(arrays.fields)} differ from the first batch's {self._fields}",
                            path=str(self.path))
        self._buffer.append(with_event_numbers(arrays, numbers))
        self._buffered += len(arrays)
        if self._buffered >= self.row_group_events:
            self._flush()

    def _flush(self, final: bool = False) -> None:
        """Write whole row groups of ``row_group_events`` (and, when ``final``, the remainder)."""
        if not self._buffer:
            return
        pending = self._buffer[0] if len(self._buffer) == 1 else ak.concatenate(self._buffer)
        start = 0
        while len(pending) - start >= self.row_group_events or (final and start < len(pending)):
            self._write_group(pending[start:start + self.row_group_events])
            start += self.row_group_events
        rest = ak.to_packed(pending[start:])  # a copy, so the written part can be freed
        self._buffer, self._buffered = ([rest] if len(rest) else []), len(rest)

    def _table(self, chunk: ak.Array) -> Any:
        """The Arrow table of one row group, in awkward's Parquet layout (native types plus awkward's metadata)."""
        from awkward._connect.pyarrow.table_conv import convert_awkward_arrow_table_to_native

        if self.float32:
            chunk = ak.zip({f: chunk[f] if f in self.keep_float64 else to_float32(chunk[f]) for f in chunk.fields},
                           depth_limit=1)
        table = ak.to_arrow_table(ak.to_packed(chunk), extensionarray=True, count_nulls=False)
        return convert_awkward_arrow_table_to_native(table)

    def _write_group(self, chunk: ak.Array) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = self._table(chunk)
        if self._writer is None:
            self._schema = table.schema
            # no dictionary encoding (awkward's choice too): on floats it fails and costs a quarter more bytes
            self._writer = pq.ParquetWriter(self._tmp_path, self._schema, compression=self.compression,
                                            compression_level=self.compression_level, use_dictionary=False)
        elif not table.schema.equals(self._schema, check_metadata=False):
            try:  # e.g. 32-bit list offsets of a file read back against the first group's 64-bit ones
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
                raise DataError(f"a batch's column types differ from the first batch's: {err}",
                                path=str(self.path)) from None
        self._writer.write_table(table, row_group_size=len(table))

    def _finish(self, meta: dict[str, Any]) -> None:
        from mlegpipe.rootio import json_default

        self._flush(final=True)
        if self._writer is None and self._template is not None:
            self._write_group(self._template)  # an empty file with the right columns
        if self._writer is None:
            raise DataError("no events were written", path=str(self.path))
        level = "" if self.compression_level is None else f":{self.compression_level}"
        meta["storage"] = {"compression": f"{self.compression}{level}", "float32": self.float32,
                           "float64_fields": sorted(self.keep_float64), "row_group_events": self.row_group_events}
        self._writer.add_key_value_metadata({META_KEY: json.dumps(meta, default=json_default, sort_keys=True)})
        self._writer.close()
        self._writer = None

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._buffer, self._buffered = [], 0


# -- reading ----------------------------------------------------------------------


def _open(path: Path) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` of ``path``; a missing or non-Parquet file is a DataError."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError("no such file" if not path.exists() else "not a file", path=str(path))
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise DataError(f"not a readable Parquet file ({type(err).__name__}: {err})", path=str(path)) from None


def _meta_of(parquet: Any) -> dict[str, Any]:
    return parse_meta((parquet.metadata.metadata or {}).get(META_KEY.encode()))


def read_parquet_meta(path: PathLike) -> dict[str, Any]:
    """The JSON provenance stored in a Parquet file (empty if it has none).

    Example:
        >>> read_parquet_meta("/no/such.parquet")
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.DataError: /no/such.parquet: no such file
    """
    parquet = _open(Path(path))
    try:
        return _meta_of(parquet)
    finally:
        parquet.close()


def read_parquet(
    paths: PathLike | Sequence[PathLike],
    max_events: int | None = None,
    step_size: int = 100_000,
) -> Iterator[EventBatch]:
    """The events of one or more Parquet files, about ``step_size`` events per chunk.

    Row groups are read whole and cut into chunks of ``step_size`` events (the
    last chunk of a file may be shorter), with the beams and provenance of the
    file's metadata.

    Arguments:
        paths: file names or glob patterns.
        max_events: stop after this many events.
        step_size: events per chunk.

    Raises:
        DataError: a missing or non-Parquet file.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.parquet"
        >>> with ParquetWriter(p, row_group_events=4) as w:
        ...     w.write(EventBatch.from_columns({"x": np.arange(10.0)}))
        >>> [len(b) for b in read_parquet(p, step_size=5)], [len(b) for b in read_parquet(p, max_events=3)]
        ([5, 5], [3])
    """
    from mlegpipe.rootio import beams_from_meta, expand_paths

    step = max(int(step_size), 1)
    remaining = max_events
    for path in expand_paths(paths):
        parquet = _open(path)
        try:
            meta = _meta_of(parquet)
            sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)]
        finally:
            parquet.close()
        meta.setdefault("source_file", str(path))
        beams = beams_from_meta(meta)
        carry: ak.Array | None = None
        groups: list[int] = []
        for i in range(len(sizes)):
            groups.append(i)
            waiting = sum(sizes[g] for g in groups) + (len(carry) if carry is not None else 0)
            last = i + 1 == len(sizes)
            if waiting < step and not last:
                continue
            arrays = ak.from_parquet(path, row_groups=groups)
            if carry is not None:
                arrays = ak.concatenate([carry, arrays])
            groups, carry = [], None
            start = 0
            while start < len(arrays):
                if len(arrays) - start < step and not last:  # carried into the next read
                    carry = ak.to_packed(arrays[start:])
                    break
                chunk = arrays[start:start + step]
                start += step
                if remaining is not None:
                    chunk = chunk[:remaining]
                    remaining -= len(chunk)
                if len(chunk):
                    yield EventBatch(chunk, beams, dict(meta))
                if remaining is not None and remaining <= 0:
                    return
