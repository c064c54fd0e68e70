"""Les Houches event files (LHEF 3.0) for parton-level samples: written for showering, read from any generator.

Writing (:class:`LHEWriter`) follows the Les Houches Accord event file
(hep-ph/0609017, LHEF 3.0: arXiv:1405.1067):

- ``<header>`` holds the provenance of
  :meth:`~mlegpipe.formats.base.EventWriter.file_meta` as JSON in an
  ``<mlegpipe>`` element (XML-escaped);
- ``<init>``: the beams' PDG ids and energies (beam a along +z), PDF group 0
  and set −1 (unknown) for hadron beams, 0 and 0 for others, the weighting
  strategy (±3 when every event has the same |weight|, else ±4; negative
  when some weights are), and one process (``process_id``, default 1) with σ
  and its error in pb (0 when σ is unknown) and the largest |weight|;
- every event: ``<event event_number="N">`` (the event number is an
  attribute of the event tag), the event line (number of particles, process
  id, the weight, the scale, α_QED = α_QCD = −1: unknown), two incoming partons
  (status −1; gluons unless ``incoming`` says otherwise, the lepton itself for
  a lepton beam) along ±z with energies ``(E ± pz)/2`` of the sum of the
  outgoing momenta, i.e. momentum fractions x₁,₂ = (E ± pz)/(2 E_beam)
  (= (E ± pz)/√s for symmetric beams), so that E and pz balance exactly, then
  the outgoing particles (status 1, mothers 1 and 2) of every collection of
  the batch, PDG ids as in :func:`~mlegpipe.formats.particles.event_particles`.
  Colour lines are 0 (mlegpipe's events carry no colour flow), lifetimes 0
  and spins 9 (unknown). That is the generic record; a domain that knows its
  process registers a richer one (:mod:`mlegpipe.formats.records`): for
  tt̄ → 6 quarks the LHC domain writes the tops and Ws as decayed resonances
  (status 2) with a gg → tt̄ colour flow, which Pythia 8 showers as is.

px and py balance when the outgoing transverse momenta sum to zero, as they do
for a complete leading-order final state (the six quarks of tt̄). The scale
(SCALUP) is ``scale`` if given, else H_T/2 = Σ m_T / 2 of the outgoing
particles. Numbers are written in the shortest decimal form that reads back
as the same double (``445.7863602075554``, ``6500``, ``1e-05``), so what is
read is exactly what was written. A batch is formatted column by column by
Arrow's compute kernels (no Python loop over events or particles) and streamed
to a temporary file; the header and ``<init>`` (which need the weights of
every event) are written when the file is closed.

Reading (:func:`read_lhe`) uses pylhe; particles are selected into collections
as by :func:`mlegpipe.formats.hepmc.read_hepmc`, and the beams and σ (summed
over processes, errors in quadrature) come from the ``<init>`` block.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> import awkward as ak
    >>> from mlegpipe.beams import Beams
    >>> from mlegpipe.events import EventBatch
    >>> quarks = ak.Array([[{"px": 50.0, "py": 0.0, "pz": 20.0, "E": 60.0, "pid": 5},
    ...                     {"px": -50.0, "py": 0.0, "pz": -80.0, "E": 100.0, "pid": -5}]])
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "bb.lhe"
    >>> with LHEWriter(p, {"cross_section_pb": 2.5}) as w:
    ...     w.write(EventBatch.from_columns({"quarks": quarks}, Beams.preset("lhc13")))
    >>> b = next(read_lhe(p, {"in": {"status": -1}, "out": {"status": 1}}))
    >>> b.particles("in")["E"].tolist(), b.particles("out")["pid"].tolist(), b.meta["cross_section_pb"]
    ([[50.0, 110.0]], [[5.0, -5.0]], 2.5)
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import numpy as np

from mlegpipe.beams import Beam, Beams
from mlegpipe.events import EventBatch, limit_events
from mlegpipe.exceptions import ConfigError, DataError, MlegpipeError
from mlegpipe.formats.base import EventWriter
from mlegpipe.formats.hepmc import named_beams
from mlegpipe.formats.particles import (
    ParticleChunk,
    apply_cut,
    beam_momenta,
    compile_cut,
    particle_selections,
    step_events,
)
from mlegpipe.formats.records import INCOMING_STATUS, PartonRecord, generic_record
from mlegpipe.provenance import CROSS_SECTION, CROSS_SECTION_ERROR, cross_section, parse_meta

__all__ = ["INCOMING_STATUS", "META_ELEMENT", "LHEWriter", "read_lhe", "read_lhe_meta"]

PathLike = str | os.PathLike[str]
log = logging.getLogger("mlegpipe")

#: The ``<header>`` element holding the JSON provenance.
META_ELEMENT = "mlegpipe"


def _number(value: float) -> str:
    """The shortest decimal that reads back as ``value`` (Arrow's formatting, as in the events)."""
    return str(_strings(np.array([float(value)]))[0].as_py())


def _strings(values: np.ndarray) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pa.array(values), pa.large_string())


def _event_text(numbers: np.ndarray, record: PartonRecord, weights: np.ndarray, scale: np.ndarray,
                process_id: int) -> memoryview:
    """The ``<event>`` blocks of a batch as bytes, formatted by Arrow's kernels.

    Every line is one string of an Arrow array (particle lines from their
    columns, one opening per event); an index puts them in file order and the
    data buffer of the reordered array is the text.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    def text(value: str) -> Any:
        return pa.scalar(value, pa.large_string())

    n = len(numbers)
    offsets, sizes = record.offsets, record.sizes
    join = pc.binary_join_element_wise
    columns = (record.pid, record.status, record.mother1, record.mother2, record.color1, record.color2,
               record.px, record.py, record.pz, record.e, record.mass)
    lines = join(*(_strings(v) for v in columns), text("0 9\n"), text(" "))
    opening = join(text('<event event_number="'), _strings(numbers), text('">\n'), _strings(sizes),
                   text(f" {process_id} "), _strings(weights), text(" "), _strings(scale), text(" -1 -1\n"),
                   text(""))
    count = len(record.px)
    pieces = pa.concat_arrays([opening, lines, pa.array(["</event>\n"], pa.large_string())])
    events = np.arange(n, dtype=np.int64)
    order = np.empty(n + count + n, dtype=np.int64)
    order[offsets[:-1] + 2 * events] = events  # opening i
    particle = np.arange(count, dtype=np.int64)
    order[particle + 2 * np.repeat(events, sizes) + 1] = n + particle
    order[offsets[1:] + 2 * events + 1] = n + count  # closing
    ordered = pieces.take(pa.array(order))
    _, ends, data = ordered.buffers()
    bounds = np.frombuffer(ends, dtype=np.int64)[ordered.offset:ordered.offset + len(ordered) + 1]
    return memoryview(data)[int(bounds[0]):int(bounds[-1])]


class LHEWriter(EventWriter):
    """Write parton-level event batches as an LHEF 3.0 file, atomically (:class:`EventWriter`).

    See the module documentation for the record. The events need beams.

    Arguments:
        path: the output ``.lhe`` file.
        meta: provenance (merged over the first batch's ``meta``).
        overwrite: replace an existing file.
        first_event: number of the first event.
        pids: PDG id by collection name, for collections without a ``pid`` field.
        incoming: PDG ids of the two incoming partons (default: 21 for hadron
            beams, the beam particle for lepton and photon beams).
        scale: the event scale SCALUP in GeV (default: H_T/2 of the outgoing particles).
        process_id: the process id (IDPRUP, LPRUP).
        record: the parton record (:mod:`mlegpipe.formats.records`): ``"auto"``
            (the one registered for the events' ``process``, else generic),
            ``"generic"``, or a registered name (``mlegpipe plugins`` lists them).
        unphysical: an event no two incoming partons can make (a momentum
            fraction above 1: a generator's unphysical event) is left out with
            a logged warning and counted in the header's ``unphysical_events_left_out``
            (``"skip"``, the default), or is an error (``"error"``).

    Example:
        >>> import tempfile, pathlib
        >>> from mlegpipe.beams import Beams
        >>> b = EventBatch.from_columns({"lepton_px": [3.0], "lepton_py": [0.0], "lepton_pz": [-4.0],
        ...                              "lepton_E": [5.0]}, Beams.preset("hera"))
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "e.lhe"
        >>> with LHEWriter(p, first_event=3) as w:
        ...     w.write(b)
        >>> print(p.read_text().split("<event")[1].split("</event>")[0])
         event_number="3">
        3 1 1 1.5 -1 -1
        21 -1 0 0 0 0 0 0 0.5 0.5 0 0 9
        -11 -1 0 0 0 0 0 0 -4.5 4.5 0 0 9
        -11 1 1 2 0 0 3 0 -4 5 0 0 9
        <BLANKLINE>
    """

    format_name = "LHE"

    def __init__(self, path: PathLike, meta: Mapping[str, Any] | None = None, overwrite: bool = False,
                 first_event: int = 0, pids: Mapping[str, int] | None = None,
                 incoming: Sequence[int] | None = None, scale: float | None = None, process_id: int = 1,
                 record: str = "auto", unphysical: str = "skip") -> None:
        super().__init__(path, meta, overwrite, first_event)
        self.pids = {str(k): int(v) for k, v in (pids or {}).items()}
        if incoming is not None and len(incoming) != 2:
            raise ConfigError("expected the PDG ids of the two incoming partons", path="incoming", value=incoming)
        self.incoming = None if incoming is None else (int(incoming[0]), int(incoming[1]))
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ConfigError("expected a positive scale in GeV", path="scale", value=scale)
        self.scale = scale
        self.process_id = int(process_id)
        self.record = str(record)
        if unphysical not in ("skip", "error"):
            raise ConfigError("expected 'skip' or 'error'", path="unphysical", value=unphysical)
        self.unphysical = unphysical
        self._skipped = 0
        self._file: Path | None = None
        self._body: IO[bytes] | None = None
        self._body_path: Path | None = None
        self._max_weight = 0.0
        self._min_abs = math.inf
        self._negative = False

    # -- the file ---------------------------------------------------------------------------
    def _begin(self, tmp: Path) -> None:
        self._file = tmp
        self._body_path = tmp.parent / (tmp.name + ".events")
        self._body = self._body_path.open("wb")

    def _record(self, batch: EventBatch, numbers: np.ndarray) -> PartonRecord:
        """The batch's parton record: the builder registered for its process, else the generic one."""
        def generic(events: EventBatch, numbers: np.ndarray) -> PartonRecord:
            return generic_record(events, numbers, self.pids, self.incoming, str(self.path))

        meta = {**self.batch_meta, **self.meta}
        name = self.record if self.record != "auto" else str(meta.get("process", "generic"))
        if name == "generic":
            return generic(batch, numbers)
        from mlegpipe.registry import default_registry

        builders = default_registry().parton_records
        if name not in builders:
            if self.record == "auto":
                return generic(batch, numbers)
            raise ConfigError("no parton record of this name; registered: " + (", ".join(builders) or "none")
                              + ", generic", path="record", value=name)
        return builders.get(name)(batch, numbers, meta, generic)

    def _append(self, batch: EventBatch, numbers: np.ndarray) -> None:
        n = len(batch)
        if n == 0:
            return
        beams = batch.beams if batch.beams is not None else self.beams
        if beams is None:
            raise DataError("LHE files need beams and these events have none; give the events beams (the "
                            "truth source's beams parameter)", path=str(self.path))
        if batch.beams is None:
            batch = EventBatch(batch.arrays, beams, batch.meta)
        record = self._record(batch, numbers)
        weights = batch.weights
        if not record.valid.all():
            from mlegpipe.formats.records import unphysical_message

            energies = beam_momenta(batch)
            out = record.status == 1
            index = record.event_index()
            total_e = np.bincount(index[out], weights=record.e[out], minlength=n)
            total_pz = np.bincount(index[out], weights=record.pz[out], minlength=n)
            message = unphysical_message((total_e + total_pz) / 2, (total_e - total_pz) / 2,
                                         (energies[0][:, 0], energies[1][:, 0]), record.valid, numbers)
            if self.unphysical == "error":
                raise DataError(message, path=str(self.path))
            keep = record.valid
            self._skipped += int((~keep).sum())
            log.warning("%s: %d events left out (%s)", self.path.name, int((~keep).sum()), message)
            record, numbers, weights, n = record.take(keep), numbers[keep], weights[keep], int(keep.sum())
            if n == 0:
                return
        if self.scale is not None:
            scale = np.full(n, float(self.scale))
        else:  # H_T / 2 of the outgoing particles
            out = record.status == 1
            mt = np.sqrt(np.maximum(record.e**2 - record.pz**2, 0.0))
            scale = np.bincount(record.event_index()[out], weights=mt[out], minlength=n) / 2
        if not np.isfinite(weights).all():
            raise DataError("non-finite event weights (NaN or inf)", path=f"{self.path}: weight")
        self._max_weight = max(self._max_weight, float(np.abs(weights).max()))
        self._min_abs = min(self._min_abs, float(np.abs(weights).min()))
        self._negative = self._negative or bool((weights < 0).any())
        assert self._body is not None
        self._body.write(_event_text(numbers, record, weights, scale, self.process_id))

    def _init_block(self, meta: Mapping[str, Any]) -> str:
        beams = self.beams
        assert beams is not None
        f = _number
        same = self.entries > 0 and self._max_weight - self._min_abs <= 1e-12 * self._max_weight
        strategy = (3 if same else 4) * (-1 if self._negative else 1)
        sigma = cross_section(meta) or (0.0, 0.0)
        pdf = [(0, -1) if not (beam.is_lepton or beam.pdg == 22) else (0, 0) for beam in beams.beams]
        from mlegpipe import __version__

        return ("<init>\n"
                f"{beams.a.pdg} {beams.b.pdg} {f(beams.a.energy)} {f(beams.b.energy)} "
                f"{pdf[0][0]} {pdf[1][0]} {pdf[0][1]} {pdf[1][1]} {strategy} 1\n"
                f"{f(sigma[0])} {f(sigma[1])} {f(self._max_weight)} {self.process_id}\n"
                f'<generator name="mlegpipe" version="{escape(__version__)}">machine-learning event generators'
                "</generator>\n</init>\n")

    def _finish(self, meta: dict[str, Any]) -> None:
        if self._skipped:
            meta["unphysical_events_left_out"] = self._skipped
        from mlegpipe.rootio import json_default

        assert self._file is not None and self._body is not None and self._body_path is not None
        self._body.close()
        if self.beams is None:
            raise DataError("no events were written (an LHE file needs the beams of its events)",
                            path=str(self.path))
        header = (f'<LesHouchesEvents version="3.0">\n<header>\n<{META_ELEMENT}>'
                  f"{escape(json.dumps(meta, default=json_default, sort_keys=True))}</{META_ELEMENT}>\n</header>\n")
        with self._file.open("w", encoding="utf-8") as out:
            out.write(header + self._init_block(meta))
            out.flush()
            with self._body_path.open("rb") as body:
                shutil.copyfileobj(body, out.buffer, 1 << 20)
            out.write("</LesHouchesEvents>\n")
        self._body_path.unlink()

    def _discard(self) -> None:
        if self._body is not None:
            self._body.close()


# -- reading ---------------------------------------------------------------------------------------


def _parse_warnings(caught: Sequence[warnings.WarningMessage]) -> str | None:
    for item in caught:
        if "Parse Error" in str(item.message):
            return str(item.message)
    return None


def _open_lhe(path: Path) -> Any:
    """pylhe's reader of ``path`` with the header and ``<init>`` read; DataError naming the file otherwise."""
    if not path.exists():
        raise DataError("no such file", path=str(path))
    if not path.is_file():
        raise DataError("not a file", path=str(path))
    import pylhe

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            lhe = pylhe.LHEFile.fromfile(str(path))
        except (OSError, EOFError) as err:
            raise DataError(f"cannot read the file ({type(err).__name__}: {err})", path=str(path)) from None
        except Exception as err:  # noqa: BLE001 - pylhe raises ValueError, IndexError, AttributeError, ...
            problem = _parse_warnings(caught) or f"{type(err).__name__}: {err}"
            raise DataError(f"not a readable LHE file: broken header or <init> block ({problem})",
                            path=str(path)) from None
    init = lhe.init
    info = init.initInfo
    if len(init.procInfo) != info.numProcesses or not init.procInfo:
        lhe.events.close()
        raise DataError(f"broken <init> block: it declares {info.numProcesses} processes and lists "
                        f"{len(init.procInfo)}", path=str(path))
    numbers = [info.energyA, info.energyB] + [v for p in init.procInfo for v in (p.xSection, p.error)]
    if not all(math.isfinite(v) for v in numbers):
        lhe.events.close()
        raise DataError("broken <init> block: non-finite beam energies or cross sections", path=str(path))
    return lhe


def _beams_of(init: Any) -> Beams | None:
    info = init.initInfo
    try:
        return Beams(Beam(int(info.beamA), float(info.energyA)), Beam(int(info.beamB), float(info.energyB)))
    except MlegpipeError:
        return None


def _meta_of(lhe: Any) -> dict[str, Any]:
    """The ``<mlegpipe>`` provenance of the header, σ from ``<init>`` (when it has none) and the beams."""
    meta: dict[str, Any] = {}
    header = lhe.header
    for element in getattr(header, "extra_elements", None) or []:
        if element.tag == META_ELEMENT:
            meta.update(parse_meta(element.text))
    processes = lhe.init.procInfo
    total = float(sum(p.xSection for p in processes))
    if cross_section(meta) is None and total > 0:
        meta[CROSS_SECTION] = total
        meta[CROSS_SECTION_ERROR] = float(math.sqrt(sum(p.error**2 for p in processes)))
    return meta


def read_lhe_meta(path: PathLike) -> dict[str, Any]:
    """The provenance of an LHE file: the ``<mlegpipe>`` header element if any, σ and beams from ``<init>``.

    σ (convention keys, pb) is the provenance's, else the sum over the ``<init>`` processes (errors
    in quadrature; a total of 0 means unknown).

    Raises:
        DataError: the file is missing or its header or ``<init>`` block is broken.

    Example:
        >>> read_lhe_meta("/no/such.lhe")
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.DataError: /no/such.lhe: no such file
    """
    path = Path(path)
    lhe = _open_lhe(path)
    try:
        meta = _meta_of(lhe)
        beams = named_beams(_beams_of(lhe.init), meta)
        if beams is not None:
            meta["beams"] = beams.to_dict()
        return meta
    finally:
        lhe.events.close()


def read_lhe(
    path: PathLike,
    collections: Mapping[str, Mapping[str, Any]] | None = None,
    max_events: int | None = None,
    step_size: int = 10_000,
    cut: str | None = None,
    cut_where: str = "cut",
) -> Iterator[EventBatch]:
    """The events of an LHE file (with pylhe), in chunks of ``step_size`` events.

    Arguments:
        path: the file (gzip-compressed too).
        collections: name → ``{pid = int | [ints], status = int | [ints], n = int}``
            as for :func:`mlegpipe.formats.hepmc.read_hepmc` (default: every
            particle of status 1, ``{"particles": {"status": [1]}}``; incoming
            partons have status −1, intermediate resonances 2).
        max_events: stop after this many (selected) events.
        step_size: events per chunk.
        cut: a selection on ``weight``, ``event_number`` and ``n_<collection>``.
        cut_where: where the cut came from (a TOML path), for error messages.

    Yields:
        :class:`EventBatch` chunks: ``weight`` (XWGTUP), ``event_number`` (the
        event tag's ``event_number`` attribute, else the position in the file),
        ``n_<collection>`` and the collections; beams from ``<init>``; meta with
        the provenance, σ and ``source_file``.

    Raises:
        DataError: a missing file, a broken header or ``<init>`` block, a
            malformed or truncated event, a file without events.

    Example:
        >>> next(read_lhe("/no/such.lhe"))
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.DataError: /no/such.lhe: no such file
    """
    path = Path(path)
    selections = particle_selections(collections)
    formula = compile_cut(cut, selections, cut_where)
    step = step_events(step_size)
    lhe = _open_lhe(path)
    events = iter(lhe.events)
    if max_events is not None and max_events <= 0:
        events.close()
        return
    try:
        meta = _meta_of(lhe)
        beams = named_beams(_beams_of(lhe.init), meta)
        if beams is not None:
            meta["beams"] = beams.to_dict()
        meta.setdefault("source_file", str(path))
        chunk = ParticleChunk(selections, path)

        def chunks() -> Iterator[EventBatch]:
            position = 0
            while True:
                done = _read_chunk(events, chunk, step, position, path)
                position += len(chunk)
                if position == 0:
                    raise DataError("the LHE file has no events", path=str(path))
                if len(chunk):
                    yield apply_cut(chunk.batch(beams, meta), formula)
                chunk.clear()
                if done:
                    return

        yield from limit_events(chunks(), max_events)
    finally:
        events.close()


def _read_chunk(events: Any, chunk: ParticleChunk, step: int, position: int, path: Path) -> bool:
    """Read up to ``step`` events into ``chunk``; True at the end of the file."""
    done = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            while len(chunk) < step:
                event = next(events, None)
                if event is None:
                    done = True
                    break
                number = event.attributes.get("event_number") if event.attributes else None
                parts = event.particles
                pid = np.array([p.id for p in parts], dtype=np.int64)
                status = np.array([p.status for p in parts], dtype=np.int64)
                mom = np.array([(p.px, p.py, p.pz, p.e) for p in parts], dtype=np.float64).reshape(-1, 4)
                chunk.add(int(number) if number is not None else position + len(chunk), event.eventinfo.weight,
                          pid, status, mom[:, 0], mom[:, 1], mom[:, 2], mom[:, 3])
        except MlegpipeError:
            raise
        except (ValueError, IndexError, KeyError, AttributeError, ElementTree.ParseError) as err:
            raise DataError(f"malformed event after event {position + len(chunk)} of the file "
                            f"({type(err).__name__}: {err})", path=str(path)) from None
    problem = _parse_warnings(caught)
    if problem is not None:
        raise DataError(f"malformed or truncated LHE file after event {position + len(chunk)} ({problem}; an "
                        "interrupted write or copy?)", path=str(path))
    return done
