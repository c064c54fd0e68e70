"""HepMC3 ASCII event files: written for Rivet and detector simulation, read from any generator.

Writing (:class:`HepMC3Writer`): every event is one vertex. Its incoming
particles are the two beams (status 4, their PDG ids and four-momenta from the
batch's :class:`~mlegpipe.beams.Beams`, per-event energies included); its
outgoing particles (status 1) are every particle of every collection of the
batch, collection by collection in the batch's order, and, when the events
have beams, one more particle with PDG id :data:`REST_PID` (90) carrying the
rest of the event, ``beams − Σ listed particles``, so that every event
conserves four-momentum (to the rounding of the file's 17 significant digits):

- for DIS events (a ``lepton`` collection) it is the hadronic final state
  X = k + P − k′, so Rivet's DIS projections (``DISLepton``,
  ``DISKinematics``) see the beams, the scattered lepton and X;
- for parton-level LHC events (the six quarks of tt̄) it is what the hard
  process does not list: beam remnants and initial-state radiation.

Analyses selecting particles by PDG id ignore it; sums over the whole final
state include it, and so balance. Units are GeV and mm. The run information
holds a tool entry (``mlegpipe`` and its version), the provenance of
:meth:`~mlegpipe.formats.base.EventWriter.file_meta` as the JSON string
attribute ``mlegpipe_meta``, σ and its error in pb as the double attributes
``cross_section_pb`` / ``cross_section_error_pb``, and the event count and sum
of weights as ``mlegpipe_counts`` (a JSON string, reserved at a fixed width and
filled in when the file is closed). Every event carries its number, its weight (the batch's
``weight`` field, else 1) and a ``GenCrossSection`` (when σ is known).

Reading (:func:`read_hepmc`): any HepMC3 (or HepMC2) ASCII file, compressed or
not. Particles are selected into named collections by status and PDG id
(default: every final-state particle, ``{"particles": {"status": [1]}}``), in
file order; event-level fields are ``weight``, ``event_number`` and
``n_<collection>``; beams come from the status-4 particles and σ from the
``GenCrossSection`` (or the mlegpipe provenance).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from mlegpipe.beams import Beams
    >>> from mlegpipe.events import EventBatch
    >>> beams = Beams.preset("hera")
    >>> lepton = {"lepton_px": [3.0], "lepton_py": [4.0], "lepton_pz": [-20.0], "lepton_E": [np.sqrt(425.0)]}
    >>> batch = EventBatch.from_columns(lepton, beams, {"cross_section_pb": 1.5e4})
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "dis.hepmc"
    >>> with HepMC3Writer(p, first_event=7) as w:
    ...     w.write(batch)
    >>> b = next(read_hepmc(p, {"lepton": {"pid": [-11, 11]}, "rest": {"pid": REST_PID}}))
    >>> b.column("event_number").tolist(), b.meta["cross_section_pb"], b.beams == beams
    ([7.0], 15000.0, True)
    >>> round(float(b.particles("rest")["E"][0, 0] + b.particles("lepton")["E"][0, 0]), 6)  # = beam energies
    947.6
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlegpipe.beams import Beam, Beams
from mlegpipe.events import EventBatch, limit_events
from mlegpipe.exceptions import ConfigError, DataError, MlegpipeError, OutputError
from mlegpipe.formats.base import EventWriter
from mlegpipe.formats.particles import (
    FINAL_STATUS,
    ParticleChunk,
    ParticleSelection,
    apply_cut,
    beam_momenta,
    compile_cut,
    event_particles,
    particle_masses,
    particle_selections,
    step_events,
)
from mlegpipe.provenance import (
    CROSS_SECTION,
    CROSS_SECTION_ERROR,
    SUM_WEIGHTS,
    cross_section,
    parse_meta,
)
from mlegpipe.rootio import json_default

__all__ = [
    "BEAM_STATUS",
    "COUNTS_ATTRIBUTE",
    "META_ATTRIBUTE",
    "REST_PID",
    "HepMC3Writer",
    "named_beams",
    "read_hepmc",
    "read_hepmc_meta",
]

PathLike = str | os.PathLike[str]

#: PDG id of the particle carrying the rest of an event (beams − Σ listed particles). 90 is the PDG range
#: reserved for generator-specific pseudo-particles ("system" in Pythia 8): for DIS events it is the hadronic
#: system X = k + P − k′, for parton-level LHC events the beam remnants and initial-state radiation.
REST_PID = 90
#: HepMC status of beam particles.
BEAM_STATUS = 4
#: Run-info attribute holding the JSON provenance.
META_ATTRIBUTE = "mlegpipe_meta"
#: Run-info attribute holding the JSON ``{"entries": ..., "sum_weights": ...}``, written when the file is closed.
COUNTS_ATTRIBUTE = "mlegpipe_counts"

_COUNTS_WIDTH = 100  # the counts attribute is reserved at this width and overwritten in place at the end


def _counts_text(entries: int, sum_weights: float) -> str:
    text = json.dumps({"entries": int(entries), SUM_WEIGHTS: float(sum_weights)})
    return text.ljust(_COUNTS_WIDTH)


# -- writing -------------------------------------------------------------------------------


class HepMC3Writer(EventWriter):
    """Write event batches as HepMC3 ASCII, atomically (:class:`~mlegpipe.formats.base.EventWriter`).

    See the module documentation for the event record. Events are built with
    ``GenEvent.from_hepevt`` from arrays prepared for the whole batch, one
    C++ call per event (about 80 000 four-particle events per second).

    Arguments:
        path: the output file (``.hepmc``, ``.hepmc3``).
        meta: provenance (merged over the first batch's ``meta``).
        overwrite: replace an existing file.
        first_event: number of the first event.
        pids: PDG id by collection name, for collections without a ``pid`` field.
        precision: digits after the decimal point of the momenta, 6 to 17 (HepMC3's default, 16, gives
            17 significant digits: every double written exactly).

    Example:
        >>> import tempfile, pathlib
        >>> import awkward as ak
        >>> from mlegpipe.beams import Beams
        >>> b = EventBatch.from_columns({"jets": ak.Array([[{"px": 10.0, "py": 0.0, "pz": 5.0, "E": 12.0}]])},
        ...                             Beams.preset("lhc13"))
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "j.hepmc"
        >>> with HepMC3Writer(p, pids={"jets": 21}) as w:
        ...     w.write(b)
        >>> [line.split()[3] for line in p.read_text().splitlines() if line.startswith("P ")]
        ['2212', '2212', '21', '90']
    """

    format_name = "HepMC3"

    def __init__(self, path: PathLike, meta: Mapping[str, Any] | None = None, overwrite: bool = False,
                 first_event: int = 0, pids: Mapping[str, int] | None = None, precision: int | None = None) -> None:
        super().__init__(path, meta, overwrite, first_event)
        self.pids = {str(k): int(v) for k, v in (pids or {}).items()}
        if precision is not None and (isinstance(precision, bool) or not isinstance(precision, int)
                                      or not 6 <= precision <= 17):
            raise ConfigError("expected a number of digits from 6 to 17", path="precision",
                              value=precision)
        self.precision = precision
        self._file: Path | None = None
        self._writer: Any = None
        self._event: Any = None
        self._xsec: Any = None

    def _begin(self, tmp: Path) -> None:
        self._file = tmp  # opened at the first batch, when the run information is known

    def _run_info(self, meta: dict[str, Any]) -> Any:
        import pyhepmc

        from mlegpipe import __version__

        info = pyhepmc.GenRunInfo()
        info.tools = [("mlegpipe", __version__, "machine-learning event generators")]
        info.weight_names = ["Default"]
        counts = _counts_text(meta.pop("entries", 0), meta.pop(SUM_WEIGHTS, 0.0))
        sigma = cross_section(meta)
        if sigma is not None:
            info.attributes[CROSS_SECTION] = sigma[0]
            info.attributes[CROSS_SECTION_ERROR] = sigma[1]
        info.attributes[COUNTS_ATTRIBUTE] = counts
        info.attributes[META_ATTRIBUTE] = json.dumps(meta, default=json_default, sort_keys=True)
        return info

    def _open_writer(self, meta: dict[str, Any]) -> None:
        import pyhepmc

        assert self._file is not None
        info = self._run_info(meta)
        self._writer = pyhepmc.io.WriterAscii(str(self._file), info)
        if self._writer.failed():
            raise OutputError("cannot open the file for writing", path=str(self.path))
        if self.precision is not None:
            self._writer.precision = self.precision
        self._event = pyhepmc.GenEvent(info, pyhepmc.Units.GEV, pyhepmc.Units.MM)
        sigma = cross_section(meta)
        if sigma is not None:
            self._xsec = pyhepmc.GenCrossSection()
            self._xsec.set_cross_section(sigma[0], sigma[1])

    def _append(self, batch: EventBatch, numbers: np.ndarray) -> None:
        if len(batch) == 0:
            return
        if self._writer is None:
            self._open_writer(self.file_meta())
        beams = batch.beams if batch.beams is not None else self.beams
        if beams is not None and batch.beams is None:
            batch = EventBatch(batch.arrays, beams, batch.meta)
        lead, trail = (2, 1) if beams is not None else (0, 0)
        offsets, (px, py, pz, e, pid) = event_particles(batch, self.pids, str(self.path), lead, trail)
        status = np.full(len(px), FINAL_STATUS, dtype=np.int32)
        parents = None
        if beams is not None:
            ea, eb = beam_momenta(batch)
            first, last = offsets[:-1], offsets[1:] - 1
            index = np.repeat(np.arange(len(batch)), np.diff(offsets))
            listed = np.ones(len(px), dtype=bool)
            listed[first], listed[first + 1], listed[last] = False, False, False
            sums = [np.bincount(index[listed], weights=v[listed], minlength=len(batch)) for v in (px, py, pz, e)]
            px[first], py[first], pz[first], e[first] = 0.0, 0.0, ea[:, 1], ea[:, 0]
            px[first + 1], py[first + 1], pz[first + 1], e[first + 1] = 0.0, 0.0, eb[:, 1], eb[:, 0]
            px[last], py[last] = -sums[0], -sums[1]
            pz[last] = ea[:, 1] + eb[:, 1] - sums[2]
            e[last] = ea[:, 0] + eb[:, 0] - sums[3]
            pid[first], pid[first + 1], pid[last] = beams.a.pdg, beams.b.pdg, REST_PID
            status[first], status[first + 1] = BEAM_STATUS, BEAM_STATUS
            longest = int(np.diff(offsets).max())
            parents = np.tile(np.array([[1, 2]], dtype=np.int32), (longest, 1))
            parents[:2] = 0  # the beams have none (Fortran-style indices: 0 is none)
        mass = particle_masses(px, py, pz, e)
        pid32 = pid.astype(np.int32)
        weights = batch.weights.tolist()
        event, writer, xsec = self._event, self._writer, self._xsec
        bounds = offsets.tolist()
        for i, number in enumerate(numbers.tolist()):
            s, t = bounds[i], bounds[i + 1]
            event.from_hepevt(number, px[s:t], py[s:t], pz[s:t], e[s:t], mass[s:t], pid32[s:t], status[s:t],
                              None if parents is None else parents[:t - s])
            event.weights = [weights[i]]
            if xsec is not None:
                event.cross_section = xsec
            writer.write_event(event)
        if writer.failed():
            raise OutputError("writing the file failed (disk full?)", path=str(self.path))

    def _finish(self, meta: dict[str, Any]) -> None:
        import pyhepmc

        assert self._file is not None
        if self._writer is None:  # no events: a valid file of the header alone
            writer = pyhepmc.io.WriterAscii(str(self._file), self._run_info(dict(meta)))
            writer.close()
            return
        self._writer.close()
        failed = self._writer.failed()
        self._writer = None
        if failed:
            raise OutputError("writing the file failed (disk full?)", path=str(self.path))
        self._patch_counts(int(meta.get("entries", self.entries)), float(meta.get(SUM_WEIGHTS, self.sum_weights)))

    def _patch_counts(self, entries: int, sum_weights: float) -> None:
        """Overwrite the counts attribute reserved in the header with the final values (same width)."""
        assert self._file is not None
        marker = f"\nA {COUNTS_ATTRIBUTE} ".encode()
        with self._file.open("r+b") as handle:
            head = b""
            while marker not in head and b"\nE " not in head:
                piece = handle.read(1 << 16)
                if not piece:
                    break
                head += piece
            at = head.find(marker)
            if at < 0:
                raise DataError("the HepMC3 header has no counts attribute to fill in", path=str(self.path))
            handle.seek(at + len(marker))
            handle.write(_counts_text(entries, sum_weights).encode("ascii"))

    def _discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# -- reading --------------------------------------------------------------------------------


def _open_raw(path: Path) -> IO[bytes]:
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith((".xz", ".lzma")):
        return lzma.open(path, "rb")
    return path.open("rb")


def _check_file(path: Path) -> list[str]:
    """Check that ``path`` is a complete HepMC ASCII file; return its header lines (before the first event)."""
    if not path.exists():
        raise DataError("no such file", path=str(path))
    if not path.is_file():
        raise DataError("not a file", path=str(path))
    header: list[str] = []
    try:
        with _open_raw(path) as handle:
            start = handle.read(256)
            if b"HepMC::Asciiv3" not in start and b"HepMC::IO_GenEvent" not in start:
                raise DataError("not a HepMC3 (or HepMC2) ASCII file: it lacks the HepMC::Version / "
                                "START_EVENT_LISTING header", path=str(path))
            handle.seek(0)
            for raw in handle:
                if raw.startswith((b"E ", b"HepMC::Asciiv3-END", b"HepMC::IO_GenEvent-END")):
                    break
                header.append(raw.decode("utf-8", errors="replace").rstrip("\n"))
            if not path.name.lower().endswith((".gz", ".bz2", ".xz", ".lzma")):
                handle.seek(max(path.stat().st_size - 256, 0))
                if b"END_EVENT_LISTING" not in handle.read():
                    raise DataError("truncated HepMC file: it does not end with the END_EVENT_LISTING line "
                                    "(an interrupted write or copy?)", path=str(path),
                                    hint="append the line HepMC::Asciiv3-END_EVENT_LISTING to read the events "
                                         "before the cut")
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise DataError(f"cannot read the file ({type(err).__name__}: {err})", path=str(path)) from None
    return header


def _header_meta(header: Sequence[str]) -> dict[str, Any]:
    """The mlegpipe provenance and σ attributes of the run information (header lines ``A name value``)."""
    meta: dict[str, Any] = {}
    attributes = {}
    for line in header:
        if line.startswith("A "):
            name, _, value = line[2:].partition(" ")
            attributes[name] = value
    for key in (META_ATTRIBUTE, COUNTS_ATTRIBUTE):
        meta.update(parse_meta(attributes.get(key)))
    for key in (CROSS_SECTION, CROSS_SECTION_ERROR):
        if key in attributes and key not in meta:
            try:
                meta[key] = float(attributes[key])
            except ValueError:
                pass
    return meta


def _beams_of(event: Any) -> Beams | None:
    """Beams from the status-4 particles of an event: the one moving along +z is beam a."""
    found = [(p.pid, p.momentum) for p in event.particles if p.status == BEAM_STATUS]
    if len(found) != 2:
        return None
    found.sort(key=lambda item: -item[1].pz)
    beams = []
    for pid, mom in found:
        energy = float(mom.e)
        mass = float(np.sqrt(max(energy**2 - mom.px**2 - mom.py**2 - mom.pz**2, 0.0)))
        try:
            beams.append(Beam(int(pid), energy))
        except MlegpipeError:
            try:
                beams.append(Beam(int(pid), energy, mass))
            except MlegpipeError:
                return None
    try:
        return Beams(beams[0], beams[1])
    except MlegpipeError:
        return None


def named_beams(beams: Beams | None, meta: Mapping[str, Any]) -> Beams | None:
    """The beams found in a file, as the provenance names them when it describes the same set-up.

    The provenance's beams (with their preset name) are kept when they equal
    the file's; beams with per-event energy fields never are (the events read
    back carry no such fields).

    Example:
        >>> hera = Beams.preset("hera")
        >>> named_beams(Beams(hera.a, hera.b), {"beams": hera.to_dict()}).name
        'hera'
    """
    if beams is None:
        return None
    from mlegpipe.rootio import beams_from_meta

    recorded = beams_from_meta(meta)
    return recorded if recorded is not None and recorded == beams else beams


def _sigma_of(event: Any) -> tuple[float, float] | None:
    xs = event.cross_section
    if xs is None:
        return None
    try:
        value, error = float(xs.xsec()), float(xs.xsec_err())
    except Exception:  # noqa: BLE001 - a malformed attribute in someone else's file
        return None
    return (value, error) if np.isfinite(value) and value > 0 else None


class _Reader:
    """pyhepmc's reader of one file, with the file named in every error."""

    def __init__(self, path: Path) -> None:
        import pyhepmc

        self.path = path
        try:
            self.file = pyhepmc.open(str(path))
        except Exception as err:  # noqa: BLE001 - pyhepmc raises several kinds for unreadable files
            raise DataError(f"cannot read the HepMC file ({type(err).__name__}: {err})", path=str(path)) from None

    def __iter__(self) -> Iterator[Any]:
        while True:
            try:
                event = self.file.read()
            except Exception as err:  # noqa: BLE001
                raise DataError(f"cannot read an event ({type(err).__name__}: {err})", path=str(self.path)) from None
            if event is None:
                return
            yield event

    def close(self) -> None:
        self.file.close()


def read_hepmc_meta(path: PathLike) -> dict[str, Any]:
    """The provenance of a HepMC file: mlegpipe's ``mlegpipe_meta`` attribute if any, σ and beams.

    σ (convention keys, pb) comes from the mlegpipe provenance, else from the first event's
    ``GenCrossSection``; ``beams`` are the first event's beam particles (as the provenance
    names them, see :func:`named_beams`).

    Raises:
        DataError: the file is missing, not HepMC or truncated.

    Example:
        >>> read_hepmc_meta("/no/such.hepmc")
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.DataError: /no/such.hepmc: no such file
    """
    path = Path(path)
    meta = _header_meta(_check_file(path))
    reader = _Reader(path)
    try:
        first = next(iter(reader), None)
    finally:
        reader.close()
    if first is not None:
        sigma = _sigma_of(first)
        if sigma is not None and cross_section(meta) is None:
            meta[CROSS_SECTION], meta[CROSS_SECTION_ERROR] = sigma
        beams = named_beams(_beams_of(first), meta)
        if beams is not None:
            meta["beams"] = beams.to_dict()
    return meta


def read_hepmc(
    path: PathLike,
    collections: Mapping[str, Mapping[str, Any]] | None = None,
    max_events: int | None = None,
    step_size: int = 10_000,
    cut: str | None = None,
    cut_where: str = "cut",
) -> Iterator[EventBatch]:
    """The events of a HepMC3 (or HepMC2) ASCII file, in chunks of ``step_size`` events.

    Arguments:
        path: the file (``.gz``, ``.bz2``, ``.xz`` compressed too).
        collections: name → ``{pid = int | [ints], status = int | [ints], n = int}``:
            the particles of each collection (status default ``[1]``; with ``n``
            every event must have exactly n: a fixed multiplicity, checked);
            default ``{"particles": {"status": [1]}}``. Particles keep file order.
        max_events: stop after this many (selected) events.
        step_size: events per chunk.
        cut: a selection on the event-level fields ``weight``, ``event_number``,
            ``n_<collection>`` (:func:`mlegpipe.formula.compile_formula`).
        cut_where: where the cut came from (a TOML path), for error messages.

    Yields:
        :class:`EventBatch` chunks: ``weight`` (the first event weight),
        ``event_number``, ``n_<collection>`` and the collections (``px, py, pz,
        E, pid``); beams from the first event's status-4 particles; meta with
        the provenance and σ (the mlegpipe provenance's, else the
        ``GenCrossSection`` of the chunk's last event: generators such as
        Pythia 8 refine it event by event) and ``source_file``.

    Raises:
        DataError: a missing, unreadable or truncated file, a file without
            events, an event with another multiplicity than a collection's ``n``.

    Example:
        >>> next(read_hepmc("/no/such.hepmc"))
        Traceback (most recent call last):
        ...
        mlegpipe.exceptions.DataError: /no/such.hepmc: no such file
    """
    path = Path(path)
    selections = particle_selections(collections)
    formula = compile_cut(cut, selections, cut_where)
    step = step_events(step_size)
    base_meta = _header_meta(_check_file(path))
    own_sigma = cross_section(base_meta) is not None
    base_meta.setdefault("source_file", str(path))
    if max_events is not None and max_events <= 0:
        return
    yield from limit_events(_chunks(path, selections, step, base_meta, formula, own_sigma), max_events)


def _chunks(path: Path, selections: Sequence[ParticleSelection], step: int, base_meta: Mapping[str, Any],
            formula: Any, own_sigma: bool) -> Iterator[EventBatch]:
    """Every selected event of the file, ``step`` events read per batch (:func:`read_hepmc` without its limit)."""
    chunk = ParticleChunk(selections, path)
    beams: Beams | None = None
    sigma: tuple[float, float] | None = None
    seen = 0
    reader = _Reader(path)
    try:
        for event in reader:
            if seen == 0:
                beams = named_beams(_beams_of(event), base_meta)
            seen += 1
            if not own_sigma:
                sigma = _sigma_of(event) or sigma
            parts = event.numpy.particles
            weights = event.weights
            chunk.add(event.event_number, float(weights[0]) if len(weights) else 1.0, parts.pid, parts.status,
                      parts.px, parts.py, parts.pz, parts.e)
            if len(chunk) >= step:
                batch = _finish_chunk(chunk, beams, base_meta, sigma, formula)
                chunk.clear()
                if batch is not None:
                    yield batch
        if seen == 0:
            raise DataError("the HepMC file has no events", path=str(path))
        batch = _finish_chunk(chunk, beams, base_meta, sigma, formula)
        if batch is not None:
            yield batch
    finally:
        reader.close()


def _finish_chunk(chunk: ParticleChunk, beams: Beams | None, base_meta: Mapping[str, Any],
                  sigma: tuple[float, float] | None, formula: Any) -> EventBatch | None:
    if len(chunk) == 0:
        return None
    meta = dict(base_meta)
    if sigma is not None:
        meta[CROSS_SECTION], meta[CROSS_SECTION_ERROR] = sigma
    if beams is not None:
        meta["beams"] = beams.to_dict()
    batch = apply_cut(chunk.batch(beams, meta), formula)
    return batch if len(batch) else None
