"""ROOT file input and output for event batches: TTrees written in chunks, read with bounded memory.

Events are stored as one TTree (``events`` by default): flat numeric branches
for event-level fields and, for every jagged particle collection ``name``, a
counter branch ``nname`` plus branches ``name_px``, ``name_py``, ... (uproot's
convention). Provenance (generator, version, seed, beams, cross section) is a
JSON string stored beside the tree as a ``TObjString`` named ``mlegpipe_meta``.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from mlegpipe.events import EventBatch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ev.root"
    >>> _ = write_events(path, EventBatch.from_columns({"x": np.array([0.1, 0.2])}), meta={"seed": 1})
    >>> [len(b) for b in read_events(path)], read_meta(path)["seed"]
    ([2], 1)
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from mlegpipe.beams import Beams
from mlegpipe.events import WEIGHT, EventBatch, is_four_momentum, limit_events, particle_lists
from mlegpipe.exceptions import ConfigError, DataError, MlegpipeError
from mlegpipe.formats.base import EventWriter, to_float32
from mlegpipe.provenance import EVENT_NUMBER, parse_meta
from mlegpipe.rootstamp import fixed_write_time, uuid_sequence

__all__ = [
    "META_KEY",
    "RootWriter",
    "beams_from_meta",
    "compression_setting",
    "describe_tree",
    "expand_paths",
    "format_inspection",
    "inspect_file",
    "read_events",
    "read_meta",
    "write_events",
]

#: Name of the TObjString holding the JSON provenance of a file.
META_KEY = "mlegpipe_meta"

PathLike = str | os.PathLike[str]


def json_default(value: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy values, paths and beams (TypeError otherwise)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Beams):
        return value.to_dict()
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _is_jagged(array: ak.Array) -> bool:
    return isinstance(ak.type(array).content, ak.types.ListType | ak.types.RegularType)


class RootWriter(EventWriter):
    """Write event batches into one TTree, atomically (:class:`~mlegpipe.formats.base.EventWriter`).

    Batches are buffered and written with ``tree.extend`` in chunks of
    ``chunk_events`` events, one basket per branch each (branch types come from
    the first chunk); readers then need only one chunk in memory at a time.
    Batches of exactly ``chunk_events`` events are written without a copy. An
    ``event_number`` branch, the first, numbers the events. The same events give a bitwise
    identical file: ROOT's time stamps and UUIDs are fixed
    (:mod:`mlegpipe.rootstamp`).

    Arguments:
        path: the output ``.root`` file.
        meta: provenance stored as JSON in the ``mlegpipe_meta`` TObjString
            (merged over the ``meta`` of the first batch; beams are added).
        overwrite: replace an existing file (else :class:`OutputError`).
        first_event: number of the first event.
        tree: TTree name.
        chunk_events: events per ``extend`` call and basket (keep ≥ ~100 kB per branch).
        float32: store floating-point branches as float32 (half the size),
            except the fields in ``keep_float64``.
        keep_float64: fields kept in double precision when ``float32`` is set
            (default: ``weight``; per-event beam energies are added, so 27.6 stays 27.6).
        compression: ``"zlib:1"`` (default), ``"lz4:1"``, ``"zstd:1"``, ``"lzma:1"`` or ``"none"``.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.root"
        >>> with RootWriter(p, meta={"generator": "test"}) as w:
        ...     w.write(EventBatch.from_columns({"Q2": np.array([2.0, 3.0])}))
        >>> p.exists()
        True
    """

    format_name = "ROOT"

    def __init__(
        self,
        path: PathLike,
        meta: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        first_event: int = 0,
        tree: str = "events",
        chunk_events: int = 100_000,
        float32: bool = False,
        keep_float64: Sequence[str] = (WEIGHT,),
        compression: str = "zlib:1",
    ) -> None:
        super().__init__(path, meta, overwrite, first_event)
        self.tree_name = tree
        self.chunk_events = max(int(chunk_events), 1)
        self.float32 = float32
        self.keep_float64 = frozenset(keep_float64)
        self.compression = compression_setting(compression)
        self._buffer: list[tuple[ak.Array, np.ndarray]] = []
        self._buffered = 0
        self._fields: list[str] | None = None
        self._file: Any = None
        self._tree: Any = None
        self._stamps = ExitStack()
        self._template: tuple[ak.Array, np.ndarray] | None = None

    def _begin(self, tmp: Path) -> None:
        self._stamps.enter_context(fixed_write_time())
        try:
            self._file = uproot.recreate(tmp, uuid_function=uuid_sequence(self.path.name),
                                         compression=self.compression)
        except BaseException:
            self._stamps.close()
            raise

    def _append(self, batch: EventBatch, numbers: np.ndarray) -> None:
        """Buffer one batch; write a basket when at least ``chunk_events`` events are waiting."""
        arrays = batch.arrays
        if EVENT_NUMBER in arrays.fields:  # numbers read from an input file are replaced by this file's
            arrays = arrays[[f for f in arrays.fields if f != EVENT_NUMBER]]
        if len(batch) == 0:
            if self._template is None:  # an empty first batch still defines the branches
                self._template = (arrays, numbers)
            return
        if self._fields is None:
            self._fields = list(arrays.fields)
            if batch.beams is not None:  # per-event beam energies keep their precision, as weights do
                self.keep_float64 = self.keep_float64 | {f for f in batch.beams.fields if f}
        elif list(arrays.fields) != self._fields:
            raise DataError(f"batch fields {list(arrays.fields)} differ from the first batch's {self._fields}",
                            path=str(self.path))
        self._buffer.append((arrays, numbers))
        self._buffered += len(arrays)
        if self._buffered >= self.chunk_events:
            self._flush()

    def _convert(self, name: str, array: ak.Array) -> Any:
        """A column as written: flat numbers as NumPy (float32 when asked), lists as awkward."""
        narrow = self.float32 and name not in self.keep_float64
        if array.ndim == 1 and not array.fields:
            values = ak.to_numpy(array)
            return values.astype(np.float32) if narrow and values.dtype == np.float64 else values
        return to_float32(array) if narrow else array

    def _flush(self, final: bool = False) -> None:
        """Write whole chunks of ``chunk_events`` (and, when ``final``, the remainder); one basket each."""
        if not self._buffer:
            return
        if len(self._buffer) == 1:
            pending, numbers = self._buffer[0]
        else:
            pending = ak.concatenate([a for a, _ in self._buffer])
            numbers = np.concatenate([n for _, n in self._buffer])
        start, size = 0, self.chunk_events
        while len(pending) - start >= size or (final and start < len(pending)):
            self._extend(pending[start:start + size], numbers[start:start + size])
            start += size
        rest = (ak.to_packed(pending[start:]), numbers[start:].copy())  # copies, so the written part can be freed
        self._buffer, self._buffered = ([rest] if len(rest[0]) else []), len(rest[0])

    def _extend(self, chunk: ak.Array, numbers: np.ndarray) -> None:
        columns = {EVENT_NUMBER: numbers, **{name: self._convert(name, chunk[name]) for name in chunk.fields}}
        if self._tree is None:
            types = {name: _branch_type(name, col, str(self.path)) for name, col in columns.items()}
            self._tree = self._file.mktree(self.tree_name, types)
        self._tree.extend(columns)

    def _finish(self, meta: dict[str, Any]) -> None:
        try:
            self._flush(final=True)
            if self._tree is None and self._template is not None:
                self._extend(*self._template)  # an empty tree with the right branches
            if self._tree is None:
                raise DataError("no events were written", path=str(self.path))
            meta["storage"] = {"compression": str(self.compression or "none"),
                               "float32": self.float32, "float64_fields": sorted(self.keep_float64)}
            self._file[META_KEY] = json.dumps(meta, default=json_default, sort_keys=True)
            self._file.close()
            self._file = None
        finally:
            self._stamps.close()

    def _discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._stamps.close()
        self._buffer, self._buffered = [], 0


def compression_setting(text: str) -> Any:
    """An uproot compression object from ``"algorithm:level"`` (``"none"``: no compression).

    Example:
        >>> compression_setting("lz4:1")
        LZ4(1)
        >>> compression_setting("gzip")
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.ConfigError: compression: unknown compression 'gzip'; choose zlib, lz4, zstd, lzma or none
    """
    name, _, level = str(text).lower().partition(":")
    if name in ("none", ""):
        return None
    kinds = {"zlib": uproot.ZLIB, "lz4": uproot.LZ4, "zstd": uproot.ZSTD, "lzma": uproot.LZMA}
    if name not in kinds:
        raise ConfigError(f"unknown compression {text!r}; choose zlib, lz4, zstd, lzma or none", path="compression")
    try:
        value = int(level) if level else 1
    except ValueError:
        raise ConfigError(f"the compression level must be an integer, got {level!r}", path="compression") from None
    return kinds[name](value)


def _branch_type(name: str, column: ak.Array | np.ndarray, where: str) -> Any:
    """The ``mktree`` type of one column: a NumPy dtype or an awkward list type."""
    if isinstance(column, np.ndarray):
        return column.dtype
    content = ak.type(column).content
    if isinstance(content, ak.types.NumpyType):
        return np.dtype(content.primitive)
    if isinstance(content, ak.types.ListType | ak.types.RegularType):
        return content
    raise DataError(f"cannot write a field of type {content} to a TTree", path=f"{where}: {name}")


def write_events(
    path: PathLike,
    batches: EventBatch | Iterable[EventBatch],
    tree: str = "events",
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    chunk_events: int = 100_000,
    float32: bool = False,
) -> Path:
    """Write one batch or an iterable of batches to ``path``; return the path.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "e.root"
        >>> write_events(p, EventBatch.from_columns({"x": np.ones(3)})).name
        'e.root'
    """
    with RootWriter(path, meta, overwrite, tree=tree, chunk_events=chunk_events, float32=float32) as writer:
        for batch in [batches] if isinstance(batches, EventBatch) else batches:
            writer.write(batch)
    return writer.path


# -- reading ----------------------------------------------------------------------


def expand_paths(paths: PathLike | Sequence[PathLike], where: str = "files") -> list[Path]:
    """Expand file names and glob patterns (sorted); every entry must match something.

    Example:
        >>> expand_paths([])
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.DataError: files: no input files given
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise DataError("no input files given", path=where)
    out: list[Path] = []
    for item in items:
        text = os.fspath(item)
        if glob.has_magic(text):
            found = sorted(glob.glob(os.path.expanduser(text), recursive=True))
            if not found:
                raise DataError("no file matches this pattern", path=where, value=text)
            out.extend(Path(f) for f in found)
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                hint = None if path.is_absolute() else f"relative paths are read from the working directory {Path.cwd()}"
                raise DataError("no such file" if not path.exists() else "not a file", path=str(path), hint=hint)
            out.append(path)
    return out


def _open(path: Path) -> Any:
    if not path.is_file():
        raise DataError("no such file", path=str(path))
    try:
        # memory-mapped: pages are read on demand, never the whole file (fsspec's default buffers more)
        file = uproot.open(path, handler=uproot.source.file.MemmapSource)
    except Exception as err:  # noqa: BLE001 - uproot raises many kinds for a non-ROOT file
        raise DataError(f"not a readable ROOT file ({type(err).__name__}: {err})", path=str(path)) from None
    size, end = path.stat().st_size, int(getattr(file.file, "fEND", 0) or 0)
    if end > size:
        file.close()
        raise DataError(f"truncated ROOT file: its header says {end} bytes, the file has {size} "
                        "(an interrupted copy or write?)", path=str(path))
    return file


def _trees(file: Any) -> list[str]:
    return sorted({k.split(";")[0] for k, c in file.classnames().items() if c in ("TTree", "TNtuple")})


def _get_tree(file: Any, path: Path, tree: str) -> Any:
    trees = _trees(file)
    if tree not in trees:
        hint = difflib.get_close_matches(tree, trees, n=1)
        raise DataError("no such TTree in the file; trees: " + (", ".join(trees) or "none"),
                        path=f"{path}: {tree}", hint=f"did you mean {hint[0]!r}?" if hint else None)
    return file[tree]


def _meta_from_file(file: Any) -> dict[str, Any]:
    if META_KEY not in {k.split(";")[0] for k in file.keys()}:
        return {}
    return parse_meta(str(file[META_KEY]))


def read_meta(path: PathLike) -> dict[str, Any]:
    """The JSON provenance stored in a file (empty if it has none).

    Example:
        >>> read_meta("/no/such.root")
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.DataError: /no/such.root: no such file
    """
    path = Path(path)
    with _open(path) as file:
        return _meta_from_file(file)


def beams_from_meta(meta: Mapping[str, Any]) -> Beams | None:
    """The :class:`Beams` recorded in file metadata, or None.

    Files of several beam energies written before beams declared their
    per-event fields carry ``beam_setup`` (a preset and, per beam role, the
    branch of its energy); those are read as that preset with those fields.

    Example:
        >>> beams_from_meta({"beams": None, "beam_setup": {"preset": "sym50", "lepton_energy": "beam_energy",
        ...                  "hadron_energy": "beam_energy"}}).fields
        ('beam_energy', 'beam_energy')
    """
    data = meta.get("beams")
    if isinstance(data, dict):
        try:
            return Beams.from_dict(data)
        except (TypeError, ValueError, MlegpipeError):
            return None
    setup = meta.get("beam_setup")
    if isinstance(setup, dict) and isinstance(setup.get("preset"), str):
        try:
            return Beams.from_table(dict(setup))
        except (TypeError, ValueError, MlegpipeError):
            return None
    return None


def describe_tree(path: PathLike, tree: str = "events") -> dict[str, Any]:
    """Branch layout of one TTree: all branches, the flat ones, counters, collections found, file metadata,
    and its number of ``entries``.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> p = write_events(pathlib.Path(tempfile.mkdtemp()) / "d.root", EventBatch.from_columns({"x": np.ones(2)}))
        >>> describe_tree(p)["flat"]
        ['event_number', 'x']
    """
    path = Path(path)
    with _open(path) as file:
        ttree = _get_tree(file, path, tree)
        names = list(ttree.keys())
        return {"branches": names, "flat": [b for b in names if not _branch_is_jagged(ttree[b])],
                "counters": sorted(_counters(ttree)), "collections": _auto_collections(names),
                "meta": _meta_from_file(file), "entries": int(ttree.num_entries)}


def _auto_collections(branch_names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Collections written by :class:`RootWriter`: counter ``nNAME`` plus ``NAME_field`` branches."""
    found: dict[str, dict[str, str]] = {}
    names = set(branch_names)
    for counter in branch_names:
        if not counter.startswith("n") or len(counter) < 2:
            continue
        coll = counter[1:]
        fields = {b[len(coll) + 1:]: b for b in branch_names if b.startswith(coll + "_")}
        if fields and counter in names:
            found[coll] = fields
    return found


def _close_branch(name: str, available: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(available), n=3, cutoff=0.5)
    return "close matches: " + ", ".join(close) if close else None


def _counters(tree: Any) -> set[str]:
    """Names of the branches that count the entries of jagged branches."""
    out = set()
    for name in tree.keys():
        counter = tree[name].count_branch
        if counter is not None:
            out.add(counter.name)
    return out


def _resolve_columns(
    tree: Any,
    path: Path,
    branches: Mapping[str, str] | None,
    collections: Mapping[str, Mapping[str, str]] | None,
) -> tuple[dict[str, str], dict[str, dict[str, str]], dict[str, str]]:
    """Check the requested branches exist with the right shape; return (flat, collections, plain lists).

    With neither ``branches`` nor ``collections`` given, every branch is read:
    flat ones as flat fields, ``nNAME`` + ``NAME_*`` groups as collections, any
    other jagged branch as a jagged field of numbers (counters are dropped).
    """
    available = list(tree.keys())
    lists: dict[str, str] = {}
    if branches is None and collections is None:
        auto = _auto_collections(available)
        used = {b for fields in auto.values() for b in fields.values()} | _counters(tree)
        rest = [b for b in available if b not in used]
        flat = {b: b for b in rest if not _branch_is_jagged(tree[b]) and not _branch_is_fixed_array(tree[b])}
        lists = {b: b for b in rest if b not in flat}
        colls: dict[str, dict[str, str]] = {k: dict(v) for k, v in auto.items()}
    else:
        flat = dict(branches or {})
        colls = {k: dict(v) for k, v in (collections or {}).items()}
    for feature, branch in flat.items():
        if branch not in available:
            raise DataError(f"no such branch in tree {tree.name!r} (needed for {feature!r})",
                            path=f"{path}: {branch}", hint=_close_branch(branch, available))
        if _branch_is_jagged(tree[branch]) or _branch_is_fixed_array(tree[branch]):
            raise DataError(f"branch holds a list per event ({tree[branch].typename}) but {feature!r} needs one "
                            "number per event; declare it under collections", path=f"{path}: {branch}")
    for coll, fields in colls.items():
        for field, branch in fields.items():
            if branch not in available:
                raise DataError(f"no such branch in tree {tree.name!r} (needed for {coll}.{field})",
                                path=f"{path}: {branch}", hint=_close_branch(branch, available))
            if not (_branch_is_jagged(tree[branch]) or _branch_is_fixed_array(tree[branch])):
                raise DataError(f"branch holds one number per event but {coll}.{field} needs a list per event",
                                path=f"{path}: {branch}")
    return flat, colls, lists


def _branch_is_jagged(branch: Any) -> bool:
    interp = branch.interpretation
    if isinstance(interp, uproot.interpretation.jagged.AsJagged | uproot.interpretation.objects.AsObjects):
        return True
    return branch.count_branch is not None


def _branch_is_fixed_array(branch: Any) -> bool:
    """A fixed-size array per event (``q_px[6]/D``): a collection of fixed multiplicity."""
    return bool(getattr(branch.interpretation, "inner_shape", ()))


def _check_finite(array: ak.Array, path: Path, branch: str, start: int) -> None:
    flat = ak.to_numpy(ak.flatten(array, axis=None))
    if flat.dtype.kind != "f":
        return
    bad = ~np.isfinite(flat)
    if bad.any():
        raise DataError(f"{int(bad.sum())} non-finite values (NaN or inf) in the chunk starting at entry {start}",
                        path=f"{path}: {branch}")


def read_events(
    paths: PathLike | Sequence[PathLike],
    tree: str = "events",
    branches: Mapping[str, str] | None = None,
    collections: Mapping[str, Mapping[str, str]] | None = None,
    step_size: int | str = "50 MB",
    cut: str | None = None,
    max_events: int | None = None,
    cut_where: str = "cut",
) -> Iterator[EventBatch]:
    """Iterate over the events of one or more files in chunks of bounded size.

    Arguments:
        paths: file names or glob patterns.
        tree: TTree name.
        branches: feature name → branch name for flat fields (default: every
            flat branch under its own name).
        collections: jagged collections, name → {field → branch}, e.g.
            ``{"particles": {"px": "part_px", ...}}`` (default: collections
            written by :class:`RootWriter`, found from their counters).
        step_size: events per chunk (int) or memory per chunk ("50 MB").
        cut: a selection on the features (and any other flat branch of the
            tree), parsed safely by :func:`mlegpipe.formula.compile_formula`
            (e.g. ``"Q2 > 1 and y < 0.95"``); never evaluated as Python.
        max_events: stop after this many (selected) events.
        cut_where: where the cut came from (a TOML path), for error messages.

    Yields:
        :class:`EventBatch` chunks, with ``meta`` and ``beams`` from the file metadata.

    Raises:
        DataError: missing or non-ROOT file, missing tree or branch, a jagged
            branch where a flat one is needed, NaN or inf values.

    Example:
        >>> sum(len(b) for b in read_events([]))
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.DataError: files: no input files given
    """
    files = expand_paths(paths)
    yield from limit_events(_read_files(files, tree, branches, collections, step_size, cut, cut_where), max_events)


def _read_files(files: Sequence[Path], tree: str, branches: Mapping[str, str] | None,
                collections: Mapping[str, Mapping[str, str]] | None, step_size: int | str, cut: str | None,
                cut_where: str) -> Iterator[EventBatch]:
    """Every selected event of ``files``, chunk by chunk (:func:`read_events` without its limit)."""
    for path in files:
        with _open(path) as file:
            ttree = _get_tree(file, path, tree)
            meta = _meta_from_file(file)
            meta.setdefault("source_file", str(path))
            beams = beams_from_meta(meta)
            plan = _plan(ttree, path, branches, collections, cut, cut_where)
            start = 0
            for chunk in ttree.iterate(plan.branches(), step_size=step_size, library="ak"):
                yield plan.batch(chunk, beams, meta, path, start)
                start += len(chunk)


@dataclass(frozen=True)
class ReadPlan:
    """How a chunk of branches becomes events: flat fields, collections, plain lists and the compiled cut.

    Shared by the streaming reader (:func:`read_events`) and the Dask reader
    (:func:`mlegpipe.rootio_dask.read_events_dask`), so both give the same events.
    """

    flat: dict[str, str]
    collections: dict[str, dict[str, str]]
    lists: dict[str, str]
    selection: Any = None
    cut_branches: dict[str, str] = dataclasses.field(default_factory=dict)

    def branches(self) -> list[str]:
        """Every branch the plan reads."""
        return sorted(set(self.flat.values()) | set(self.cut_branches.values()) | set(self.lists.values())
                      | {b for f in self.collections.values() for b in f.values()})

    def batch(self, chunk: ak.Array, beams: Beams | None, meta: dict[str, Any], path: Path, start: int) -> EventBatch:
        """The selected events of one chunk (``start``: its first entry, for error messages)."""
        for branch in self.branches():
            _check_finite(chunk[branch], path, branch, start)
        columns: dict[str, Any] = {feature: chunk[branch] for feature, branch in {**self.flat, **self.lists}.items()}
        for coll, fields in self.collections.items():  # px, py, pz, E (or pt, eta, phi, mass), pid, charge
            parts = {f: chunk[b] for f, b in fields.items()}
            columns[coll] = particle_lists(parts) if is_four_momentum(parts) else ak.zip(parts)
        batch = EventBatch.from_columns(columns, beams, meta)
        if self.selection is not None:
            env = {name: _as_numpy(chunk[branch]) for name, branch in self.cut_branches.items()}
            mask = np.broadcast_to(np.asarray(self.selection(env), dtype=bool), (len(chunk),))
            batch = batch.take(mask)
        return batch


def plan_reading(path: Path, tree: str, branches: Mapping[str, str] | None,
                 collections: Mapping[str, Mapping[str, str]] | None, cut: str | None,
                 cut_where: str = "cut") -> tuple[ReadPlan, dict[str, Any]]:
    """The :class:`ReadPlan` for one file (checked against its tree) and the file's metadata."""
    with _open(path) as file:
        return _plan(_get_tree(file, path, tree), path, branches, collections, cut, cut_where), _meta_from_file(file)


def _plan(ttree: Any, path: Path, branches: Mapping[str, str] | None,
          collections: Mapping[str, Mapping[str, str]] | None, cut: str | None, cut_where: str) -> ReadPlan:
    flat, colls, lists = _resolve_columns(ttree, path, branches, collections)
    selection, cut_branches = _compile_cut(cut, cut_where, ttree, path, flat) if cut else (None, {})
    return ReadPlan(flat, colls, lists, selection, cut_branches)


def _compile_cut(cut: str, where: str, tree: Any, path: Path, flat: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    """Compile a selection over the features and the file's other flat branches; return it and name → branch."""
    from mlegpipe.formula import compile_formula

    names = dict(flat)
    for branch in tree.keys():
        if branch not in names and not _branch_is_jagged(tree[branch]):
            names[branch] = branch
    formula = compile_formula(cut, sorted(names), where=where)
    return formula, {name: names[name] for name in formula.variables}


def _as_numpy(array: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(array), dtype=np.float64)


# -- inspection ----------------------------------------------------------------------


def inspect_file(path: PathLike) -> dict[str, Any]:
    """Summarize a ROOT file: its TTrees (entries, branches with types) and metadata.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> p = write_events(pathlib.Path(tempfile.mkdtemp()) / "i.root", EventBatch.from_columns({"x": np.ones(4)}))
        >>> inspect_file(p)["trees"]["events"]["entries"]
        4
    """
    path = Path(path)
    with _open(path) as file:
        trees = {}
        for name in _trees(file):
            t = file[name]
            trees[name] = {
                "entries": int(t.num_entries),
                "branches": {b: t[b].typename for b in t.keys()},
                "collections": sorted(_auto_collections(list(t.keys()))),
            }
        others = {k.split(";")[0]: c for k, c in file.classnames().items()
                  if c not in ("TTree", "TNtuple") and k.split(";")[0] != META_KEY}
        return {"file": str(path), "size_bytes": path.stat().st_size, "trees": trees, "objects": others,
                "meta": _meta_from_file(file)}


def format_inspection(summary: Mapping[str, Any]) -> str:
    """Human-readable text of :func:`inspect_file` for ``mlegpipe inspect``.

    Example:
        >>> print(format_inspection({"file": "a.root", "size_bytes": 10, "trees": {}, "objects": {}, "meta": {}}))
        a.root (10 bytes)
          no TTrees
    """
    lines = [f"{summary['file']} ({summary['size_bytes']} bytes)"]
    trees = summary.get("trees", {})
    if not trees:
        lines.append("  no TTrees")
    for name, tree in trees.items():
        lines.append(f"  TTree {name!r}: {tree['entries']} entries, {len(tree['branches'])} branches")
        width = max((len(b) for b in tree["branches"]), default=0)
        for branch, typename in tree["branches"].items():
            lines.append(f"    {branch:<{width}}  {typename}")
        if tree.get("collections"):
            lines.append("    collections: " + ", ".join(tree["collections"]))
    for name, cls in summary.get("objects", {}).items():
        lines.append(f"  {cls} {name!r}")
    meta = summary.get("meta") or {}
    if meta:
        lines.append("  metadata (mlegpipe_meta):")
        for key in sorted(meta):
            lines.append(f"    {key}: {json.dumps(meta[key], default=str)}")
    return "\n".join(lines)

