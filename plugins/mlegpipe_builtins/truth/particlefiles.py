"""The ``hepmc`` and ``lhe`` truth sources: events from HepMC3 and Les Houches files of any generator.

Both read particle records (not ROOT-style columns): every file is a list of
events, every event a list of particles with a PDG id, a status and a
four-momentum. ``collections`` selects which particles form which named
collection, by PDG id and status (default: every final-state particle, one
collection ``particles``); ``n`` fixes a collection's multiplicity (every event
must have exactly n, as a feature map of the six quarks of tt̄ expects; a
file with another multiplicity is an error naming the event)::

    collections = { particles = { status = 1 } }                       # the default
    collections = { lepton = { pid = [11, -11], status = 1, n = 1 },
                    hadrons = { pid = [211, -211, 321, -321, 2212, -2212] } }
    collections = { quarks = { pid = [1, -1, 2, -2, 3, -3, 4, -4, 5, -5], status = 1, n = 6 } }   # LHE tt̄

Intermediate particles (HepMC status 2, LHE status 2 resonances and −1
incoming partons) are skipped unless a collection asks for their status. Event
fields are ``weight`` (the first event weight), ``event_number`` and
``n_<collection>``; ``cut`` selects on them. Beams come from the file (HepMC
status-4 particles, the LHE ``<init>`` block) unless ``beams`` overrides them;
σ (pb) from the file (HepMC ``GenCrossSection``, the LHE ``<init>`` processes,
or mlegpipe's provenance) is reported by :meth:`ParticleFileSource.info` and
carried by the events.

Example (TOML):
    [truth]
    plugin = "hepmc"
    files = ["pythia_dis/*.hepmc"]
    collections = { lepton = { pid = [-11], status = 1 } }
    events = 100000
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tqdm import tqdm

from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.formats.hepmc import read_hepmc, read_hepmc_meta
from mlegpipe.formats.lhe import read_lhe, read_lhe_meta
from mlegpipe.formats.particles import compile_cut, particle_selections
from mlegpipe.provenance import CROSS_SECTION, CROSS_SECTION_ERROR, cross_section
from mlegpipe.rootio import beams_from_meta, expand_paths
from mlegpipe.schema import param
from mlegpipe.stages import StageContext, TruthSource
from mlegpipe_builtins.truth.rootfile import beams_from_param

__all__ = ["HepMCSource", "LHESource", "ParticleFileSource"]


@dataclass
class ParticleFileParams:
    """Parameters shared by the ``hepmc`` and ``lhe`` truth sources."""

    files: list[str] = param([], doc="event files or glob patterns, read in sorted order")
    collections: dict[str, dict[str, int | list[int]]] | None = param(
        None, doc="particle collections: name -> {pid = id or [ids] (default: any), status = code or [codes] "
                  "(default: 1), n = exact multiplicity, checked}; default: "
                  "{particles = {status = 1}}")
    cut: str = param("", doc="selection on weight, event_number and n_<collection>, e.g. 'n_particles >= 2' "
                             "(safe formula, no Python eval)")
    events: int = param(0, min=0, doc="read at most this many events (0: all)")
    beams: str | dict[str, Any] | None = param(
        None, doc="beam preset or table overriding the file's beams (HepMC status-4 particles, LHE <init>)")
    step_size: int = param(10_000, min=1, doc="events per chunk")


class ParticleFileSource(TruthSource):
    """Events from particle-record files (the shared part of the ``hepmc`` and ``lhe`` sources).

    Subclasses name their format and reader functions.

    Example:
        >>> import tempfile, pathlib
        >>> from mlegpipe.formats import open_writer
        >>> from mlegpipe.schema import build_params
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "dis.hepmc"
        >>> lepton = {"lepton_px": [3.0], "lepton_py": [0.0], "lepton_pz": [-20.0], "lepton_E": [409.0 ** 0.5]}
        >>> with open_writer(p, {"cross_section_pb": 3.0}) as w:
        ...     w.write(EventBatch.from_columns(lepton, Beams.preset("hera")))
        >>> params = build_params(HepMCSource.Params, {"files": [str(p)], "collections": {"e": {"pid": -11}}}, "truth")
        >>> src = HepMCSource(params, StageContext("truth"))
        >>> src.read().multiplicity("e").tolist(), src.info()["cross_section_pb"], src.beams.name
        ([1], 3.0, 'hera')
    """

    Params = ParticleFileParams
    #: The format's name in messages.
    format_label: ClassVar[str] = ""

    @staticmethod
    def read_file(path: Path, **options: Any) -> Iterator[EventBatch]:
        """The format's reader (:func:`~mlegpipe.formats.hepmc.read_hepmc` or :func:`~mlegpipe.formats.lhe.read_lhe`)."""
        raise NotImplementedError

    @staticmethod
    def read_meta(path: Path) -> dict[str, Any]:
        """The format's provenance reader."""
        raise NotImplementedError

    def __init__(self, params: ParticleFileParams, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        where = ctx.name
        if not params.files:
            raise ConfigError(f"no input files; give a list of {self.format_label} files or glob patterns",
                              path=f"{where}.files")
        self.paths = expand_paths(params.files, where=f"{where}.files")
        self.selections = particle_selections(params.collections, f"{where}.collections")
        compile_cut(params.cut or None, self.selections, f"{where}.cut")  # fail now, naming the TOML path
        self._beams = beams_from_param(params.beams, f"{where}.beams") if params.beams is not None else None
        self._file_meta = type(self).read_meta(self.paths[0])  # a broken first file fails at validation
        self._selected = 0
        self._files_read = 0
        self._sigma: tuple[float, float] | None = cross_section(self._file_meta)

    @property
    def beams(self) -> Beams | None:
        """The ``beams`` parameter, else the first file's beams."""
        return self._beams if self._beams is not None else beams_from_meta(self._file_meta)

    def iter_batches(self) -> Iterator[EventBatch]:
        self._selected, self._files_read = 0, 0
        remaining = self.params.events or None
        reader: Callable[..., Iterator[EventBatch]] = type(self).read_file
        bar = tqdm(total=self.params.events or None, desc=f"{self.ctx.name}: {self.plugin_name}", unit="ev",
                   disable=not self.ctx.progress)
        try:
            for path in self.paths:
                self._files_read += 1
                for batch in reader(path, collections=self.params.collections, max_events=remaining,
                                    step_size=self.params.step_size, cut=self.params.cut or None,
                                    cut_where=f"{self.ctx.name}.cut"):
                    self._selected += len(batch)
                    self._sigma = cross_section(batch.meta) or self._sigma
                    bar.update(len(batch))
                    yield EventBatch(batch.arrays, self._beams or batch.beams, batch.meta)
                    if remaining is not None:
                        remaining -= len(batch)
                if remaining is not None and remaining <= 0:
                    return
        finally:
            bar.close()

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {"files": [str(p) for p in self.paths], "files_read": self._files_read,
                               "events_read": self._selected, "collections": [s.name for s in self.selections]}
        if "generator" in self._file_meta:
            out["generator"] = self._file_meta["generator"]
        if self._sigma is not None:
            out[CROSS_SECTION], out[CROSS_SECTION_ERROR] = self._sigma
        return out


class HepMCSource(ParticleFileSource):
    """Events from HepMC3 (or HepMC2) ASCII files, compressed or not, with particles selected by id and status.

    Example (TOML):
        [truth]
        plugin = "hepmc"
        files = ["sherpa_dis_*.hepmc.gz"]
        collections = { lepton = { pid = [11, -11], status = 1, n = 1 } }
        cut = "weight > 0"
        beams = "hera"          # optional: else the file's status-4 beam particles
    """

    plugin_name: ClassVar[str] = "hepmc"
    format_label: ClassVar[str] = "HepMC3"

    @staticmethod
    def read_file(path: Path, **options: Any) -> Iterator[EventBatch]:
        return read_hepmc(path, **options)

    @staticmethod
    def read_meta(path: Path) -> dict[str, Any]:
        return read_hepmc_meta(path)


class LHESource(ParticleFileSource):
    """Events from Les Houches event files (parton level), with particles selected by id and status.

    Example (TOML):
        [truth]
        plugin = "lhe"
        files = ["madgraph_ttbar/unweighted_events.lhe.gz"]
        collections = { quarks = { status = 1, n = 6 } }
        events = 100000
    """

    plugin_name: ClassVar[str] = "lhe"
    format_label: ClassVar[str] = "LHE"

    @staticmethod
    def read_file(path: Path, **options: Any) -> Iterator[EventBatch]:
        return read_lhe(path, **options)

    @staticmethod
    def read_meta(path: Path) -> dict[str, Any]:
        return read_lhe_meta(path)


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the ``hepmc`` and ``lhe`` truth sources."""
    registry.add(HepMCSource)
    registry.add(LHESource)
