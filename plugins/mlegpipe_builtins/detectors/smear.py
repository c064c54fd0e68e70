"""The `smear` detector: eic-smear-like parametric smearing of particles and the scattered lepton.

A detector is a list of devices (see :mod:`mlegpipe_builtins.detectors._devices`),
from a preset (``matrix-0.2`` by default, ``matrix-0.2-1.5T``, ``handbook-1.2``,
``zeus``) or declared in TOML. ``fold`` smears

- a jagged ``particles`` collection (px, py, pz, E, pid, charge) into a list of the
  same length per event, with flags ``measured_E``, ``measured_P``,
  ``measured_angles`` and the measured ``theta``, ``phi`` (lab frame); values of
  what was not measured are 0;
- the scattered lepton (``lepton_E, lepton_px, lepton_py, lepton_pz``; PDG id from
  ``lepton_pid`` or the beams), adding ``lepton_measured_E``, ``lepton_measured_P``
  and the event pass flag ``measured`` (the lepton is measured and, with beams, its
  DIS kinematics defined: the flag learned surrogates and unfolding look for);
  when the lepton is also in the particle list it is smeared once, there;
- and replaces x, Q2, y, W2, nu by the electron method (flag ``measured_electron``)
  and, with particles, adds for each of ``methods`` (default Jacquet-Blondel and
  double-angle; also ``sigma``) ``x_<m>, Q2_<m>, y_<m>`` and ``measured_<m>``
  (e.g. ``x_jb``, ``measured_da``); 0 where undefined.
  The electron method takes the lepton's track momentum, else its calorimeter energy
  along its measured angles. The hadronic final state is every other measured
  particle: tracks with the pion mass hypothesis, else calorimeter energy along the
  measured angles (never both).

Particles with a ``status`` other than 1 (beam, intermediate) and unphysical inputs
(non-finite momentum or E < 0, e.g. from a generator) are kept as not measured.
Zones are in the eic-smear frame (hadron beam along +z): for beams with the lepton
along +z, the z axis is mirrored before smearing and back after (phi unchanged).
Every random number comes from the seed given to ``fold``, in fixed chunks of
:data:`CHUNK_EVENTS` events: the same seed gives the same events.

Example (TOML): a preset, or devices declared one by one (then no preset):

    [detector]
    plugin = "smear"
    preset = "matrix-0.2"
    angle_resolution = 0.001   # optional 1 mrad angles
    threshold_pT = 0.15

    [detector]
    plugin = "smear"
    methods = ["jb", "da", "sigma"]
    [[detector.devices]]
    variable = "P"
    charge = "charged"
    formula = "P * sqrt((0.0002 * P)**2 + 0.005**2)"
    zones = [{eta = [-1.0, 1.0]}]
    [[detector.devices]]
    variable = "E"
    genre = "em"
    form = "calorimeter"        # A (+) B sqrt(E) (+) C E
    terms = [0.02, 0.14, 0.03]
    combine = "quadrature"      # or "linear"
    zones = [{eta = [-1.0, 1.0]}]
    # ... and theta, phi devices: a momentum is measured with phi and two of P, pT, pz, theta

Example:
    >>> import numpy as np
    >>> from mlegpipe.context import StageContext
    >>> from mlegpipe.events import EventBatch
    >>> from mlegpipe.beams import Beams
    >>> det = SmearDetector(SmearDetector.Params(), StageContext("detector"))
    >>> ev = EventBatch.from_columns({"lepton_E": [10.0], "lepton_px": [3.0], "lepton_py": [0.0],
    ...                               "lepton_pz": [-np.sqrt(91.0)]}, beams=Beams.preset("eic10x100"))
    >>> out = det.fold(ev, np.random.SeedSequence(1))
    >>> bool(out.arrays["lepton_measured_P"][0]), bool(out.arrays["measured_electron"][0])
    (True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import awkward as ak
import numpy as np
from tqdm.auto import tqdm

from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.formula import compile_formula
from mlegpipe.schema import build_params, param, suggest
from mlegpipe.stages import Detector, StageContext
from mlegpipe_builtins.detectors._devices import FORMULA_VARIABLES, Device, DeviceParams, compile_devices
from mlegpipe_builtins.detectors._smearing import SmearOptions, smear_flat
from mlegpipe_builtins.detectors.presets import PRESETS, preset_devices
from mlegpipe_builtins.dis import DIS_LABELS, LEPTON_FIELDS
from mlegpipe_builtins.dis.reconstruction import double_angle, electron_method, jacquet_blondel, sigma_method
from mlegpipe_builtins.lhc.detector_presets import PP_PRESETS

__all__ = ["CHUNK_EVENTS", "SmearDetector", "SmearParams", "mlegpipe_register_stages"]

#: Events per random-number chunk (fixed: results do not depend on how fold is called inside a run).
CHUNK_EVENTS = 8192
_PARTICLE_STREAM, _LEPTON_STREAM = 0, 1
#: Mass hypothesis of tracks in the hadronic final state (GeV).
PION_MASS = 0.13957
_OUT_FIELDS = ("px", "py", "pz", "E", "theta", "phi")
_METHODS = ("jb", "da", "sigma")
_FLAGS = ("measured_E", "measured_P", "measured_angles")


@dataclass
class SmearParams:
    """Parameters of the `smear` detector."""

    preset: str = param("", doc=f"detector preset ({', '.join(PRESETS)}); empty: matrix-0.2 unless devices are given")
    devices: list[DeviceParams] = param([], doc="devices declared in TOML ([[detector.devices]]) instead of a preset")
    angle_resolution: float | None = param(None, min=0.0, doc="sigma_theta = sigma_phi (rad) for the matrix presets")
    efficiency: str = param("", doc="Delphes-style efficiency formula of E, P, theta, phi, pT, pz, eta, m; empty: 1")
    threshold_pT: float = param(0.0, min=0.0, doc="tracks below this smeared pT (GeV) are not measured")
    threshold_E_em: float = param(0.0, min=0.0, doc="EM energies below this (GeV) are not measured")
    threshold_E_hadronic: float = param(0.0, min=0.0, doc="hadronic energies below this (GeV) are not measured")
    collection: str = param("particles", doc="the jagged particle collection to smear")
    methods: list[str] = param(["jb", "da"], doc="hadronic reconstruction methods besides the electron method: "
                                                 "jb (Jacquet-Blondel), da (double angle), sigma")


class SmearDetector(Detector):
    """eic-smear-like detector: Gaussian smearing by device, acceptance zones, measured flags."""

    plugin_name: ClassVar[str] = "smear"

    Params: ClassVar[type] = SmearParams

    def __init__(self, params: SmearParams, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        where = ctx.name
        if params.devices and params.preset:
            raise ConfigError("give either a preset or devices, not both", path=f"{where}.preset", value=params.preset)
        if params.devices:
            device_params = params.devices
        else:
            name = params.preset or "matrix-0.2"
            if name in PP_PRESETS:
                raise ConfigError(f"{name!r} is a proton-proton preset: use plugin = \"smear-pp\" (this DIS detector's "
                                  "options methods, angle_resolution, devices do not apply there)",
                                  path=f"{where}.preset", value=name)
            try:
                tables = preset_devices(name, params.angle_resolution)
            except ConfigError as err:
                raise ConfigError(err.message, path=f"{where}.{err.path}", value=err.value, hint=err.hint) from None
            device_params = [build_params(DeviceParams, t, f"{where}.preset[{name}]") for t in tables]
        self.devices: list[Device] = compile_devices(device_params, f"{where}.devices")
        efficiency = compile_formula(params.efficiency, FORMULA_VARIABLES, f"{where}.efficiency") \
            if params.efficiency.strip() else None
        self.options = SmearOptions(efficiency, params.threshold_pT, params.threshold_E_em,
                                    params.threshold_E_hadronic)
        for i, method in enumerate(params.methods):
            if method not in _METHODS:
                raise ConfigError("unknown reconstruction method; known: " + ", ".join(_METHODS),
                                  path=f"{where}.methods[{i}]", value=method, hint=suggest(method, _METHODS))
        smeared = {d.variable for d in self.devices}
        if smeared & {"P", "pT", "pz", "theta"} and "phi" not in smeared:
            ctx.log.warning("%s: momentum devices but no phi device: no momentum will count as measured "
                            "(eic-smear needs phi and two of P, pT, pz, theta)", where)

    # -- folding --------------------------------------------------------------------
    def fold(self, events: EventBatch, seed: np.random.SeedSequence) -> EventBatch:
        """Return the detector-level events, index-aligned with ``events`` (see the module docstring)."""
        has_particles = events.has(self.params.collection)
        has_lepton = all(events.has(f) for f in LEPTON_FIELDS)
        if not (has_particles or has_lepton):
            raise DataError("the smear detector needs a particle collection or the scattered lepton "
                            f"({', '.join(LEPTON_FIELDS)}); have: {', '.join(events.fields)}",
                            path=f"{self.ctx.name}.collection", value=self.params.collection)
        beams = events.beams
        if beams is None:
            self.ctx.log.info("%s: events carry no beams; assuming the hadron beam along +z", self.ctx.name)
            if any(events.has(k) for k in DIS_LABELS):
                self.ctx.log.warning("%s: without beams the DIS variables cannot be reconstructed; x, Q2, ... "
                                     "are left at their input (truth) values", self.ctx.name)
        mirror = beams is not None and beams.lepton_direction == 1
        n = len(events)
        starts = range(0, n, CHUNK_EVENTS)
        pieces: list[dict[str, Any]] = []
        for c, start in enumerate(tqdm(starts, desc=f"{self.ctx.name}: smearing", unit="chunk",
                                       disable=not self.ctx.progress or len(starts) < 2)):
            chunk = events.arrays[start:start + CHUNK_EVENTS]
            pieces.append(self._fold_chunk(chunk, beams, mirror, has_particles, has_lepton,
                                           _child(seed, c)))
        columns: dict[str, Any] = {}
        for key in pieces[0] if pieces else ():
            parts = [p[key] for p in pieces]
            columns[key] = ak.concatenate(parts) if isinstance(parts[0], ak.Array) else np.concatenate(parts)
        out = events.with_columns(**columns)
        out.meta["detector"] = {"plugin": "smear", "preset": self.params.preset or
                                ("custom" if self.params.devices else "matrix-0.2")}
        return out

    def _fold_chunk(self, chunk: ak.Array, beams: Beams | None, mirror: bool, has_particles: bool,
                    has_lepton: bool, seed: np.random.SeedSequence) -> dict[str, Any]:
        out: dict[str, Any] = {}
        m = len(chunk)
        lepton: dict[str, np.ndarray] | None = None
        lepton_truth: dict[str, np.ndarray] | None = None
        lepton_pid = self._lepton_pid(chunk, beams, m) if (has_lepton or beams is not None) else None
        if has_lepton:
            lepton_truth = {"E": _flat(chunk.lepton_E), "px": _flat(chunk.lepton_px), "py": _flat(chunk.lepton_py),
                            "pz": _flat(chunk.lepton_pz), "pid": lepton_pid,
                            "charge": np.where(np.isin(np.abs(lepton_pid), (11, 13, 15)), -np.sign(lepton_pid), 0)}
            lepton = self._smear(lepton_truth, mirror, _child(seed, _LEPTON_STREAM))
        hfs = None
        if has_particles:
            truth, counts = self._particle_truth(chunk[self.params.collection])
            smeared = self._smear(truth, mirror, _child(seed, _PARTICLE_STREAM), truth.get("smearable"))
            smeared["pid"], smeared["charge"] = truth["pid"], truth["charge"]
            event = np.repeat(np.arange(m), counts)
            index = _lepton_index(truth, event, counts, lepton_truth, lepton_pid)
            found = index >= 0
            if lepton is None and beams is not None:
                lepton = {k: np.zeros(m, dtype=v.dtype) for k, v in smeared.items() if k not in ("pid", "charge")}
            if lepton is not None:
                for key in lepton:
                    lepton[key][found] = smeared[key][index[found]]
            record = {k: smeared[k] for k in (*_OUT_FIELDS, "pid", "charge", *_FLAGS)}
            out[self.params.collection] = ak.unflatten(ak.zip(record), counts)
            hfs = _hfs_sums(smeared, event, index[found], m)
        if lepton is not None:
            out.update({"lepton_E": lepton["E"], "lepton_px": lepton["px"], "lepton_py": lepton["py"],
                        "lepton_pz": lepton["pz"], "lepton_measured_E": lepton["measured_E"],
                        "lepton_measured_P": lepton["measured_P"]})
            if beams is not None:
                out.update(self._reconstruct(chunk, lepton, hfs, beams))
                out["measured"] = out["measured_electron"]
            else:
                out["measured"] = lepton["measured_P"] | (lepton["measured_E"] & lepton["measured_angles"])
        return out

    def _lepton_pid(self, chunk: ak.Array, beams: Beams | None, m: int) -> np.ndarray:
        if "lepton_pid" in chunk.fields:
            return _flat(chunk.lepton_pid).astype(np.int64)
        return np.full(m, beams.lepton_pdg if beams is not None else 11, dtype=np.int64)

    def _smear(self, truth: dict[str, np.ndarray], mirror: bool, seed: np.random.SeedSequence,
               smearable: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Smear flat arrays given in the lab frame; results back in the lab frame."""
        sign = -1.0 if mirror else 1.0
        frame = dict(truth, pz=sign * truth["pz"])
        res = smear_flat(frame, self.devices, seed, self.options, smearable)
        unphysical = int(res.pop("unphysical").sum())
        if unphysical:
            self.ctx.log.warning("%s: %d particle(s) with a non-finite momentum or E < 0 left as not measured",
                                 self.ctx.name, unphysical)
        res["pz"] = sign * res["pz"]
        if mirror:
            res["theta"] = np.where(res["measured_angles"], np.pi - res["theta"], 0.0)
        return res

    def _particle_truth(self, parts: ak.Array) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Flat truth arrays of a jagged collection and the per-event counts."""
        missing = [f for f in ("px", "py", "pz", "E", "pid", "charge") if f not in parts.fields]
        if missing:
            raise DataError(f"the particle collection lacks {', '.join(missing)}; have: {', '.join(parts.fields)}",
                            path=self.params.collection)
        counts = np.asarray(ak.to_numpy(ak.num(parts, axis=1)), dtype=np.int64)
        truth = {f: _flat(ak.flatten(parts[f])) for f in ("px", "py", "pz", "E", "pid", "charge")}
        truth["pid"] = truth["pid"].astype(np.int64)
        if "status" in parts.fields:
            truth["smearable"] = _flat(ak.flatten(parts["status"])) == 1
        return truth, counts

    def _reconstruct(self, chunk: ak.Array, lepton: dict[str, np.ndarray], hfs: dict[str, np.ndarray] | None,
                     beams: Beams) -> dict[str, np.ndarray]:
        e_beam = _flat(chunk.beam_energy) if "beam_energy" in chunk.fields else None
        # Electron method: the track momentum, else the calorimeter energy along the measured angles.
        use_p = lepton["measured_P"]
        use_e = ~use_p & lepton["measured_E"] & lepton["measured_angles"]
        energy = np.where(use_p, np.sqrt(lepton["px"] ** 2 + lepton["py"] ** 2 + lepton["pz"] ** 2),
                          np.where(use_e, lepton["E"], 0.0))
        theta, phi = lepton["theta"], lepton["phi"]
        lx = energy * np.sin(theta) * np.cos(phi)
        ly = energy * np.sin(theta) * np.sin(phi)
        lz = energy * np.cos(theta)
        with np.errstate(all="ignore"):
            res = electron_method(energy, lx, ly, lz, beams, e_beam)
        ok = (use_p | use_e) & _finite(res) & (res["Q2"] > 0) & (res["y"] > 0) & (res["x"] > 0)
        cols: dict[str, np.ndarray] = {k: np.where(ok, res[k], 0.0) for k in DIS_LABELS}
        cols["measured_electron"] = ok
        if hfs is None:
            return cols
        sums = (hfs["E"], hfs["px"], hfs["py"], hfs["pz"])
        lepton_ok = use_p | use_e
        for tag in self.params.methods:
            with np.errstate(all="ignore"):
                if tag == "jb":
                    res, good = jacquet_blondel(*sums, beams, e_beam), np.ones(len(energy), dtype=bool)
                elif tag == "da":
                    res, good = double_angle(lx, ly, lz, *sums, beams, e_beam), lepton_ok
                else:
                    res, good = sigma_method(energy, lx, ly, lz, *sums, beams, e_beam), lepton_ok
            good = good & _finite(res) & (res["Q2"] > 0)
            for k in ("x", "Q2", "y"):
                cols[f"{k}_{tag}"] = np.where(good, res[k], 0.0)
            cols[f"measured_{tag}"] = good
        return cols


def _child(seed: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """A SeedSequence keyed below ``seed`` without spawning (calling fold twice gives the same events)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))


def _flat(values: Any) -> np.ndarray:
    return np.asarray(ak.to_numpy(values))


def _finite(res: dict[str, np.ndarray]) -> np.ndarray:
    return np.isfinite(res["x"]) & np.isfinite(res["Q2"]) & np.isfinite(res["y"])


def _hfs_sums(smeared: dict[str, np.ndarray], event: np.ndarray, lepton_index: np.ndarray,
              m: int) -> dict[str, np.ndarray]:
    """Per-event four-momentum sums of the measured hadronic final state (all but the scattered lepton).

    Tracks count with the pion mass hypothesis, E = sqrt(p² + m_pi²); particles without
    a track but with a calorimeter energy and measured angles count as massless along
    their direction; nothing is counted twice.
    """
    track = smeared["measured_P"].copy()
    calo = ~track & smeared["measured_E"] & smeared["measured_angles"]
    track[lepton_index] = False
    calo[lepton_index] = False
    t, c = np.flatnonzero(track), np.flatnonzero(calo)
    px, py, pz = smeared["px"][t], smeared["py"][t], smeared["pz"][t]
    e, theta, phi = smeared["E"][c], smeared["theta"][c], smeared["phi"][c]
    e_sin = e * np.sin(theta)
    parts = {
        "E": (np.sqrt(px * px + py * py + pz * pz + PION_MASS**2), e),
        "px": (px, e_sin * np.cos(phi)),
        "py": (py, e_sin * np.sin(phi)),
        "pz": (pz, e * np.cos(theta)),
    }
    et, ec = event[t], event[c]
    return {k: np.bincount(et, weights=a, minlength=m) + np.bincount(ec, weights=b, minlength=m)
            for k, (a, b) in parts.items()}


def _lepton_index(truth: dict[str, np.ndarray], event: np.ndarray, counts: np.ndarray,
                  lepton: dict[str, np.ndarray] | None, lepton_pid: np.ndarray | None) -> np.ndarray:
    """Flat index of the scattered lepton in each event's particle list (-1: none).

    With lepton fields: the particle of the lepton's PDG id closest in momentum
    (it must coincide to 1e-6 relative); without: the highest-pT particle with the
    beam lepton's PDG id.
    """
    m = len(counts)
    index = np.full(m, -1, dtype=np.int64)
    if lepton_pid is None or len(event) == 0:
        return index
    cand = np.flatnonzero(truth["pid"] == lepton_pid[event])
    if not len(cand):
        return index
    ev = event[cand]
    if lepton is not None:
        score = ((truth["px"][cand] - lepton["px"][ev]) ** 2 + (truth["py"][cand] - lepton["py"][ev]) ** 2
                 + (truth["pz"][cand] - lepton["pz"][ev]) ** 2)
        limit = (1e-6 * (1.0 + np.abs(lepton["E"][ev]))) ** 2
    else:
        score = -np.hypot(truth["px"][cand], truth["py"][cand])
        limit = np.zeros(len(cand))
    order = np.lexsort((score, ev))  # by event, then best score first
    ev_sorted = ev[order]
    first = order[np.r_[True, ev_sorted[1:] != ev_sorted[:-1]]]
    good = score[first] <= limit[first]
    index[ev[first[good]]] = cand[first[good]]
    return index


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the `smear` detector."""
    registry.add(SmearDetector)
