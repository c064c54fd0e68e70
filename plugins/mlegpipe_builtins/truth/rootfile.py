"""The ``root`` truth source: events from ROOT TTrees, read chunk by chunk with bounded memory.

Features are mapped from branches (``features = {Q2 = "Q2_true", ...}``;
default: every flat branch), particle collections from groups of branches
(``collections = {jets = {pt = "jet_pt", eta = "jet_eta", phi = "jet_phi",
mass = "jet_m"}}``, px/py/pz/E or pt/eta/phi/mass, jagged or fixed-size;
default: the collections mlegpipe writes), and a safe selection string (``cut
= "Q2 > 1 and y < 0.95"``) is applied while reading. Beams come from the
``beams`` parameter or from the file's ``mlegpipe_meta``; a beam energy given
as a string names the branch holding that beam's per-event energy, so a
user's own energy scan needs no mlegpipe metadata::

    beams = { preset = "sym50", lepton_energy = "beam_energy", hadron_energy = "beam_energy" }
    beams = { a = { pdg = 2212, energy = "E_beam" }, b = { pdg = 2212, energy = "E_beam" }, preset = "lhc13" }

Example (TOML):
    [truth]
    plugin = "root"
    files = ["sample_data/hera_pythia_lepton.root"]
    cut = "Q2 > 5"
    events = 50000
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from tqdm import tqdm

from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.events import WEIGHT, EventBatch
from mlegpipe.exceptions import ConfigError, DataError, MlegpipeError
from mlegpipe.formula import compile_formula
from mlegpipe.provenance import EVENT_NUMBER, cross_section_meta
from mlegpipe.rootio import beams_from_meta, describe_tree, expand_paths, read_events
from mlegpipe.schema import param
from mlegpipe.stages import StageContext, TruthSource

__all__ = ["RootSource", "beams_from_param"]


def beams_from_param(value: str | dict[str, Any], path: str) -> Beams:
    """A :class:`Beams` from a preset name or a table (:meth:`mlegpipe.beams.Beams.from_table`).

    Example:
        >>> beams_from_param({"lepton_energy": 10.0, "hadron_energy": 100.0}, "truth.beams").sqrt_s > 60
        True
        >>> beams_from_param({"preset": "lhc13", "energy": "E_beam"}, "truth.beams").fields
        ('E_beam', 'E_beam')
    """
    try:
        return Beams.from_table(value, path=path)
    except MlegpipeError as err:
        raise ConfigError(err.message, path=err.path or path, value=value, hint=err.hint) from None


class RootSource(TruthSource):
    """Events from ROOT files (TTrees), with feature mapping, particle collections and a safe cut."""

    plugin_name: ClassVar[str] = "root"

    @dataclass
    class Params:
        files: list[str] = param([], doc="ROOT files or glob patterns, read in sorted order")
        tree: str = param("events", doc="TTree name")
        features: dict[str, str] = param({}, doc="feature name -> branch; default: every flat branch (but counters "
                                                 "and the weight and event_number branches)")
        collections: dict[str, dict[str, str]] | None = param(
            None, doc="particle collections: name -> {px=..., py=..., pz=..., E=...} or {pt=..., eta=..., phi=..., "
                      "mass=...}, optionally pid=..., charge=...; jagged or fixed-size branches; default: the "
                      "collections written by mlegpipe")
        cut: str = param("", doc="selection, e.g. 'Q2 > 1 and y < 0.95' (safe formula, no Python eval)")
        weight: str = param("", doc="branch holding per-event weights (becomes the 'weight' field)")
        events: int = param(0, min=0, doc="read at most this many events (0: all)")
        step_size: int | str = param("50 MB", doc="chunk size: events (int) or memory ('50 MB')")
        beams: str | dict[str, Any] | None = param(
            None, doc="beam preset or table (an energy given as a branch name: per-event energies); default: "
                      "from file metadata")
        dask: str = param("", doc="read the files through uproot.dask as Dask tasks: 'threads', 'local' (a "
                                  "LocalCluster) or a scheduler address (tcp://host:8786); the same events as the "
                                  "default streaming read (the 'dask' extra)")

    def __init__(self, params: Params, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        where = ctx.name
        if not params.files:
            raise ConfigError("no input files; give a list of ROOT files or glob patterns", path=f"{where}.files")
        self.paths = expand_paths(params.files, where=f"{where}.files")
        self._beams = beams_from_param(params.beams, f"{where}.beams") if params.beams is not None else None
        self._file_meta: dict[str, Any] | None = None
        self._selected = 0
        self.branches, self.collections = self._resolve_columns()
        if params.dask:
            from mlegpipe.sharding import require_dask

            require_dask(f"{where}.dask")

    def _resolve_columns(self) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
        """Feature → branch and collection maps; defaults come from the first file's layout."""
        layout = describe_tree(self.paths[0], self.params.tree)
        self._file_meta, flat = layout["meta"], layout["flat"]
        if layout["entries"] == 0 and len(self.paths) == 1:  # fail when the stage is built, before any training
            raise DataError(f"no events: tree {self.params.tree!r} of {self.paths[0]} has 0 entries",
                            path=f"{self.ctx.name}.files", value=str(self.paths[0]),
                            hint="point files at a ROOT file with events")
        if self.params.features:
            branches = dict(self.params.features)
        else:
            counters = set(layout["counters"])
            skip = {self.params.weight, WEIGHT, EVENT_NUMBER}  # an index is not a feature
            branches = {b: b for b in flat if b not in counters and b not in skip}
        if self.params.weight:
            branches[WEIGHT] = self.params.weight
        elif not self.params.features and WEIGHT in flat:
            branches[WEIGHT] = WEIGHT
        collections = self.params.collections
        if collections is None:
            collections = layout["collections"]
        self._check_layout(layout, branches, collections)
        self._check_beam_fields(layout)
        for name in (f for f in (self.beams.fields if self.beams is not None else ()) if f):
            branches.setdefault(name, name)
        return branches, collections

    def _check_layout(self, layout: dict[str, Any], branches: dict[str, str],
                      collections: dict[str, dict[str, str]]) -> None:
        """Fail at validation time, naming the file and branch, rather than half-way through a run."""
        first = self.paths[0]
        available = layout["branches"]
        wanted = [(f"{self.ctx.name}.features.{f}", b) for f, b in branches.items()]
        wanted += [(f"{self.ctx.name}.collections.{c}.{f}", b) for c, fields in collections.items()
                   for f, b in fields.items()]
        for where, branch in wanted:
            if branch not in available:
                close = difflib.get_close_matches(branch, available, n=3, cutoff=0.5)
                raise DataError(f"no branch {branch!r} in tree {self.params.tree!r} of {first} (from {where})",
                                path=f"{first}: {branch}",
                                hint="close matches: " + ", ".join(close) if close else None)
        if self.params.cut:
            compile_formula(self.params.cut, layout["flat"], f"{self.ctx.name}.cut")

    @property
    def beams(self) -> Beams | None:
        """The ``beams`` parameter, else the file's; per-event energy fields the file declares are kept when the
        parameter declares none."""
        from_file = beams_from_meta(self._file_meta or {})
        if self._beams is None:
            return from_file
        if not any(self._beams.fields) and from_file is not None and any(from_file.fields):
            return dataclasses.replace(self._beams, fields=from_file.fields)
        return self._beams

    def _check_beam_fields(self, layout: dict[str, Any]) -> None:
        """Declared per-event energy branches must exist (and are read as fields)."""
        beams = self.beams
        for name in (f for f in (beams.fields if beams is not None else ()) if f):
            if name not in layout["flat"]:
                close = difflib.get_close_matches(name, layout["branches"], n=3, cutoff=0.5)
                raise DataError(f"the beams declare per-event energies in branch {name!r}, which tree "
                                f"{self.params.tree!r} of {self.paths[0]} does not have", path=f"{self.ctx.name}.beams",
                                value=name, hint="close matches: " + ", ".join(close) if close else None)

    def iter_batches(self) -> Iterator[EventBatch]:
        beams = self.beams
        self._selected = 0
        bar = tqdm(total=self.params.events or None, desc=f"{self.ctx.name}: root", unit="ev",
                   disable=not self.ctx.progress)
        try:
            for batch in self._read():
                self._selected += len(batch)
                bar.update(len(batch))
                yield EventBatch(batch.arrays, beams or batch.beams, {**batch.meta, **cross_section_meta(batch.meta)})
        finally:
            bar.close()
        if self._selected == 0:
            files = ", ".join(str(p) for p in self.paths)
            why = f"no events pass the cut {self.params.cut!r} in" if self.params.cut else \
                f"no events: tree {self.params.tree!r} has 0 entries in"
            raise DataError(f"{why} {files}", path=f"{self.ctx.name}.files", value=[str(p) for p in self.paths])

    def _read(self) -> Iterator[EventBatch]:
        options = {"branches": self.branches, "collections": self.collections, "step_size": self.params.step_size,
                   "cut": self.params.cut or None, "max_events": self.params.events or None,
                   "cut_where": f"{self.ctx.name}.cut"}
        if not self.params.dask:
            return read_events(self.paths, self.params.tree, **options)
        from mlegpipe.rootio_dask import read_events_dask

        return iter(read_events_dask(self.paths, self.params.tree, scheduler=self.params.dask, **options))

    def info(self) -> dict[str, Any]:
        meta = self._file_meta or {}
        out: dict[str, Any] = {"files": [str(p) for p in self.paths], "events_read": self._selected,
                               "features": self.branches}
        if "generator" in meta:
            out["generator"] = meta["generator"]
        out.update(cross_section_meta(meta))
        return out


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the ``root`` truth source."""
    registry.add(RootSource)
