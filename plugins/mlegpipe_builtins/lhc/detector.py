"""The `smear-pp` detector: parametric smearing of jets, the prompt lepton and the missing pT at a pp collider.

The pp member of the ``smear`` family (:mod:`mlegpipe_builtins.detectors.smear` is the
DIS one). A card of per-object responses comes from a preset (``atlas-like``, the
default, or ``cms-like``: the Delphes cards, see
:mod:`~mlegpipe_builtins.lhc.detector_presets`); every table or field declared in TOML
replaces the preset's. ``fold`` measures

- the jets (collection ``jets``): each four-momentum scaled by 1 + (sigma_E/E) z, z a
  standard normal, with sigma_E/E = a/sqrt(E) (+) b (+) c/E in zones of true |eta|
  (direction kept; with ``angle_resolution`` eta and phi get Gaussians of that
  absolute width, pT and mass keep the scale); a scale <= 0 loses the jet. Then the
  efficiency formula and the thresholds pT >= ``pt_min``, |eta| <= ``eta_max``, all on
  the measured values; the jets kept are re-ordered by measured pT, their other
  fields (``flavour``, ``pid``) carried along. With ``btag`` each jet carries a flag
  ``btag`` drawn from the rate of its truth flavour (``flavour`` 5 = b, 4 = c, else
  light; or |pid| for parton jets) at its measured pt, eta;
- the lepton (collection ``lepton``, if the events have it; at most one per event,
  pid ±11 or ±13): electrons by a calorimeter resolution of E, muons by a tracking
  resolution sigma_pT/pT = a pT (+) b, then efficiency and thresholds as for jets. It
  stays index-aligned (zeros when not measured, as ``smear`` does); the event flags
  ``lepton_measured`` (``<collection>_measured``) and ``measured`` (the pass flag reports
  and unfoldings read) say whether it was measured;
- the missing pT (fields ``met``, ``met_phi``, if present): the truth vector minus
  Σ (measured − true) pT of the jets and the lepton, a lost object counting as
  measured 0 (its true pT joins the missing pT); with ``met_soft_resolution`` a
  Gaussian of that width (GeV) is added to each component.

As with ``smear``, fields are replaced in place (the truth stays in the truth sample
the detector level is folded from). Objects with a non-finite four-momentum or
E < 0 are lost and left out of the missing-pT sum. Every random number comes from
the seed given to ``fold``, in fixed chunks of :data:`CHUNK_EVENTS` events, one
stream per purpose: the same seed gives the same events.

Formulas (efficiency, tag rates) are safe expressions of the measured ``pt``, ``eta``,
``phi`` (in (-pi, pi]) and ``E``, e.g. ``"(abs(eta) <= 1.5) * 0.95 + (abs(eta) > 1.5) * 0.85"``.

Example (TOML): a preset, and a preset with some of it replaced:

    [detector]
    plugin = "smear-pp"
    preset = "cms-like"
    btag = false            # jets without a truth flavour

    [detector]
    plugin = "smear-pp"
    preset = "atlas-like"
    met_soft_resolution = 8.0
    [detector.jet]
    pt_min = 25.0
    [[detector.jet.resolution]]          # replaces the preset's zones
    abs_eta = [0.0, 2.5]
    stochastic = 0.6                     # a (GeV^1/2)
    constant = 0.03                      # b
    noise = 3.0                          # c (GeV)
    combine = "quadrature"
    [[detector.jet.resolution]]
    abs_eta = [2.5, 4.9]
    stochastic = 1.0
    constant = 0.1
    [detector.btagging]
    b = "0.7"
    c = "0.1"
    light = "0.01"

Example:
    >>> import numpy as np
    >>> from mlegpipe.context import StageContext
    >>> from mlegpipe.events import EventBatch, particle_lists
    >>> det = SmearPPDetector(SmearPPParams(btag=False), StageContext("detector"))
    >>> jets = particle_lists({"pt": [[60.0, 15.0]], "eta": [[0.5, -1.0]], "phi": [[0.0, 2.0]],
    ...                        "mass": [[5.0, 2.0]]})
    >>> ev = EventBatch.from_columns({"jets": jets, "met": [30.0], "met_phi": [1.0]})
    >>> out = det.fold(ev, np.random.SeedSequence(1))
    >>> out.multiplicity("jets").tolist()  # the 15 GeV jet is below the 20 GeV threshold
    [1]
    >>> bool(out.arrays["met"][0] != 30.0)  # the lost jet and the smeared one move the missing pT
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import awkward as ak
import numpy as np

from mlegpipe import hookimpl
from mlegpipe.events import FOUR_MOMENTUM, EventBatch, cartesian
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.formula import Formula, compile_formula
from mlegpipe.schema import build_params, param, suggest
from mlegpipe.stages import Detector, StageContext
from mlegpipe_builtins.detectors.presets import PRESETS as DIS_PRESETS
from mlegpipe_builtins.detectors.smear import CHUNK_EVENTS
from mlegpipe_builtins.lhc import JETS, LEPTON, MET, MET_PHI
from mlegpipe_builtins.lhc.detector_presets import PP_PRESETS, preset_card

__all__ = [
    "CHUNK_EVENTS",
    "DIS_ONLY_OPTIONS",
    "RESPONSE_VARIABLES",
    "BTagger",
    "BTaggingParams",
    "CaloResponseParams",
    "CaloZoneParams",
    "Measurement",
    "ObjectResponse",
    "SmearPPDetector",
    "SmearPPParams",
    "TrackResponseParams",
    "TrackZoneParams",
    "ZoneResolution",
    "jet_flavour",
    "mlegpipe_register_stages",
]

#: Variables of efficiency and tag-rate formulas: the measured pT, eta, phi and energy.
RESPONSE_VARIABLES: tuple[str, ...] = ("pt", "eta", "phi", "E")
_COMBINE = ("quadrature", "linear")
# Random streams: per chunk, one per object kind; per object kind, one per purpose.
_JET, _BTAG, _LEPTON, _MET = range(4)
_SCALE, _ETA, _PHI, _EFFICIENCY = range(4)
_ELECTRON, _MUON = 11, 13


# --- parameters -------------------------------------------------------------------------------------------

@dataclass
class CaloZoneParams:
    """One |eta| zone of a calorimeter resolution, sigma_E/E = a/sqrt(E) (+) b (+) c/E."""

    abs_eta: list[float] = param(doc="the zone in true |eta|: [low, high]")
    stochastic: float = param(0.0, min=0.0, doc="a (GeV^1/2)")
    constant: float = param(0.0, min=0.0, doc="b")
    noise: float = param(0.0, min=0.0, doc="c (GeV)")
    combine: str = param("quadrature", choices=_COMBINE, doc="how the terms add")


@dataclass
class TrackZoneParams:
    """One |eta| zone of a tracking resolution, sigma_pT/pT = a pT (+) b."""

    abs_eta: list[float] = param(doc="the zone in true |eta|: [low, high]")
    slope: float = param(0.0, min=0.0, doc="a (1/GeV)")
    constant: float = param(0.0, min=0.0, doc="b")
    combine: str = param("quadrature", choices=_COMBINE, doc="how the terms add")


_ZONES_DOC = "zones from |eta| = 0 to eta_max; empty: the preset's; a zone without terms measures exactly"


def _table(cls: type, doc: str) -> Any:
    """A nested TOML table of the parameters, every field unset (None) unless declared."""
    return dataclasses.field(default_factory=cls, metadata={"doc": doc})


@dataclass
class _ResponseParams:
    """What every object response declares; None: the preset's value."""

    angle_resolution: float | None = param(None, min=0.0, doc="sigma_eta = sigma_phi (absolute); 0: direction kept")
    efficiency: str | None = param(None, doc="efficiency: formula of the measured pt, eta, phi, E")
    pt_min: float | None = param(None, min=0.0, doc="threshold on the measured pT (GeV)")
    eta_max: float | None = param(None, min=0.0, doc="acceptance: measured |eta| <= eta_max")


@dataclass
class CaloResponseParams(_ResponseParams):
    """A jet or electron response ([detector.jet], [detector.electron])."""

    resolution: list[CaloZoneParams] = param([], doc=_ZONES_DOC)


@dataclass
class TrackResponseParams(_ResponseParams):
    """A muon response ([detector.muon])."""

    resolution: list[TrackZoneParams] = param([], doc=_ZONES_DOC)


@dataclass
class BTaggingParams:
    """Tag rates by truth flavour: formulas of the measured pt, eta, phi, E ([detector.btagging])."""

    b: str | None = param(None, doc="efficiency for b jets")
    c: str | None = param(None, doc="mistag rate of c jets")
    light: str | None = param(None, doc="mistag rate of light (and gluon) jets")


@dataclass
class _PPOptions:
    """The options of `smear-pp`; the tables override the preset field by field."""

    preset: str = param("atlas-like", doc="pp detector card: " + ", ".join(PP_PRESETS))
    jets: str = param(JETS, doc="the jet collection")
    lepton: str = param(LEPTON, doc="the lepton collection (at most one per event, pid 11 or 13), if present")
    btag: bool = param(True, doc="draw a b-tag flag per jet (needs the jets' truth flavour or parton pid)")
    jet: CaloResponseParams = _table(CaloResponseParams, "[detector.jet]: resolution, efficiency, thresholds")
    electron: CaloResponseParams = _table(CaloResponseParams, "[detector.electron]: the electron response")
    muon: TrackResponseParams = _table(TrackResponseParams, "[detector.muon]: the muon response")
    btagging: BTaggingParams = _table(BTaggingParams, "[detector.btagging]: b-tag and mistag rates")
    met_soft_resolution: float | None = param(None, min=0.0, doc="Gaussian width (GeV) added to each MET component")


#: Options of the DIS `smear` detector that smear-pp rejects, with what to write instead.
_DIS_ONLY: dict[str, str] = {
    "methods": "smear-pp reconstructs no DIS kinematics",
    "angle_resolution": "angles are smeared per object: angle_resolution in [{where}.jet], [{where}.electron], ...",
    "devices": "declare the responses as tables [{where}.jet], [{where}.electron], [{where}.muon]",
    "collection": "name the collections with jets = \"...\" and lepton = \"...\"",
    "efficiency": "efficiencies are per object: efficiency in [{where}.jet], [{where}.electron], ...",
    "threshold_pT": "thresholds are per object: pt_min in [{where}.jet], [{where}.electron], ...",
    "threshold_E_em": "thresholds are per object: pt_min in [{where}.electron]",
    "threshold_E_hadronic": "thresholds are per object: pt_min in [{where}.jet]",
}
DIS_ONLY_OPTIONS: dict[str, str] = {
    key: f"{key!r} is an option of the DIS detector (plugin = \"smear\"), not of smear-pp: {instead}"
    for key, instead in _DIS_ONLY.items()}


@dataclass
class SmearPPParams(_PPOptions):
    """Parameters of the `smear-pp` detector; options of the DIS `smear` are rejected with what to write instead
    (:data:`DIS_ONLY_OPTIONS`)."""

    misplaced_keys: ClassVar[dict[str, str]] = DIS_ONLY_OPTIONS


# --- resolutions and responses -------------------------------------------------------------------------------

@dataclass(frozen=True)
class ZoneResolution:
    """A relative resolution in zones of true |eta|: sigma/x = the zone's terms c_k x**p_k, added as declared.

    Attributes:
        variable: ``E`` (calorimeter) or ``pt`` (tracking).
        edges: zone edges in |eta| from 0 (zone i is (edges[i], edges[i+1]], the first one closed);
            beyond the last edge the last zone applies.
        coefficients: ``(zones, terms)``.
        powers: the power of ``variable`` in each term.
        quadrature: per zone, terms added in quadrature (else linearly).

    Example:
        >>> res = calorimeter_resolution([CaloZoneParams(abs_eta=[0.0, 1.0], stochastic=0.5, constant=0.03)], "jet")
        >>> float(np.round(res.relative({"E": np.array([100.0]), "eta": np.array([0.3])})[0], 4))
        0.0583
    """

    variable: str
    edges: np.ndarray
    coefficients: np.ndarray
    powers: tuple[float, ...]
    quadrature: np.ndarray

    def zone(self, eta: np.ndarray) -> np.ndarray:
        """The zone index of each |eta| (edges belong to the lower zone, as in Delphes' ``abs(eta) <= edge``)."""
        return np.searchsorted(self.edges[1:-1], np.abs(eta), side="left")

    def relative(self, kin: dict[str, np.ndarray]) -> np.ndarray:
        """sigma/x for objects of true kinematics ``kin`` (``eta`` and :attr:`variable`, > 0)."""
        zone = self.zone(kin["eta"])
        x = np.asarray(kin[self.variable], dtype=np.float64)[:, None]
        terms = self.coefficients[zone] * x ** np.asarray(self.powers)
        return np.where(self.quadrature[zone], np.sqrt(np.sum(terms**2, axis=1)), np.sum(terms, axis=1))


def _zone_edges(zones: list[Any], where: str) -> np.ndarray:
    """Edges of contiguous zones starting at |eta| = 0, or a ConfigError naming the zone."""
    edges = [0.0]
    for i, zone in enumerate(zones):
        lo_hi = zone.abs_eta
        if len(lo_hi) != 2 or not 0.0 <= lo_hi[0] < lo_hi[1]:
            raise ConfigError("a zone is [low, high] in |eta| with 0 <= low < high",
                              path=f"{where}[{i}].abs_eta", value=lo_hi)
        if lo_hi[0] != edges[-1]:
            raise ConfigError(f"zones must be contiguous from |eta| = 0 in increasing order: this one should start "
                              f"at {edges[-1]}", path=f"{where}[{i}].abs_eta", value=lo_hi)
        edges.append(float(lo_hi[1]))
    return np.asarray(edges)


def calorimeter_resolution(zones: list[CaloZoneParams], where: str) -> ZoneResolution:
    """The sigma_E/E = a/sqrt(E) (+) b (+) c/E resolution of the zones.

    Example:
        >>> res = calorimeter_resolution([CaloZoneParams(abs_eta=[0.0, 5.0])], "detector.jet.resolution")
        >>> res.relative({"E": np.array([50.0]), "eta": np.array([1.0])}).tolist()  # no terms: exact
        [0.0]
    """
    return ZoneResolution("E", _zone_edges(zones, where),
                          np.array([[z.stochastic, z.constant, z.noise] for z in zones]), (-0.5, 0.0, -1.0),
                          np.array([z.combine == "quadrature" for z in zones]))


def tracking_resolution(zones: list[TrackZoneParams], where: str) -> ZoneResolution:
    """The sigma_pT/pT = a pT (+) b resolution of the zones.

    Example:
        >>> res = tracking_resolution([TrackZoneParams(abs_eta=[0.0, 2.5], slope=1e-4, constant=0.01)], "muon")
        >>> float(np.round(res.relative({"pt": np.array([100.0]), "eta": np.array([2.0])})[0], 5))
        0.01414
    """
    return ZoneResolution("pt", _zone_edges(zones, where), np.array([[z.slope, z.constant] for z in zones]),
                          (1.0, 0.0), np.array([z.combine == "quadrature" for z in zones]))


def _probability(formula: Formula, env: dict[str, np.ndarray], n: int) -> np.ndarray:
    """A rate formula evaluated per object; a DataError naming the formula when it leaves [0, 1]."""
    values = np.broadcast_to(np.asarray(formula(env), dtype=np.float64), (n,))
    bad = ~((values >= -1e-12) & (values <= 1.0 + 1e-12))
    if bad.any():
        i = int(np.argmax(bad))
        at = {k: round(float(env[k][i]), 4) for k in formula.variables}
        raise DataError(f"formula {formula.text!r} gives {float(values[i])!r} for {int(bad.sum())} object(s), e.g. "
                        f"at {at}; efficiencies and tag rates must lie in [0, 1]", path=formula.where)
    return values


def _polar(px: np.ndarray, py: np.ndarray, pz: np.ndarray, energy: np.ndarray) -> dict[str, np.ndarray]:
    """pt, eta, phi (in (-pi, pi]), E and mass of flat arrays; eta = ±inf along the beam."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.where(pt > 0, np.arcsinh(pz / np.where(pt > 0, pt, 1.0)), np.copysign(np.inf, pz))
    mass = np.sqrt(np.maximum(energy**2 - pt**2 - pz**2, 0.0))
    return {"pt": pt, "eta": eta, "phi": np.arctan2(py, px), "E": energy, "m": mass}


def _stream(seed: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """A SeedSequence keyed below ``seed`` without spawning (folding twice gives the same events)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))


@dataclass(frozen=True)
class Measurement:
    """Measured objects, aligned with the truth: four-momenta (0 when lost), kept, measured kinematics, and
    ``physical`` (a finite truth with E >= 0: the objects that enter the missing-pT sum)."""

    momenta: dict[str, np.ndarray]
    kept: np.ndarray
    kinematics: dict[str, np.ndarray]
    physical: np.ndarray


@dataclass(frozen=True)
class ObjectResponse:
    """How one kind of object is measured: resolution, angles, efficiency and acceptance.

    Example:
        >>> resp = ObjectResponse(None, 0.0, compile_formula("1", RESPONSE_VARIABLES, "eff"), 20.0, 2.5)
        >>> truth = {"px": np.array([30.0, 10.0]), "py": np.zeros(2), "pz": np.zeros(2), "E": np.array([30.0, 10.0])}
        >>> resp.measure(truth, np.random.SeedSequence(0)).kept.tolist()
        [True, False]
    """

    resolution: ZoneResolution | None
    angle_resolution: float
    efficiency: Formula
    pt_min: float
    eta_max: float

    def measure(self, truth: dict[str, np.ndarray], seed: np.random.SeedSequence) -> Measurement:
        """Smear, then apply the efficiency and the thresholds; one draw per object and purpose."""
        px, py, pz, energy = (np.asarray(truth[k], dtype=np.float64) for k in FOUR_MOMENTUM)
        n = len(energy)
        physical = np.isfinite(px) & np.isfinite(py) & np.isfinite(pz) & np.isfinite(energy) & (energy >= 0)
        px, py, pz, energy = (np.where(physical, v, 0.0) for v in (px, py, pz, energy))
        true = _polar(px, py, pz, energy)
        ok = physical & (true["pt"] > 0) & (energy > 0)
        scale = np.ones(n)
        if self.resolution is not None:
            index = np.flatnonzero(ok)
            z = np.random.default_rng(_stream(seed, _SCALE)).standard_normal(n)
            scale[index] = 1.0 + self.resolution.relative({k: v[index] for k, v in true.items()}) * z[index]
        ok &= scale > 0
        scale = np.where(ok, scale, 0.0)
        if self.angle_resolution > 0:
            eta = true["eta"] + self.angle_resolution * np.random.default_rng(_stream(seed, _ETA)).standard_normal(n)
            phi = true["phi"] + self.angle_resolution * np.random.default_rng(_stream(seed, _PHI)).standard_normal(n)
            eta = np.where(ok, eta, 0.0)
            pt, mass = scale * true["pt"], scale * true["m"]
            px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
            energy = np.sqrt(px**2 + py**2 + pz**2 + mass**2)
        else:
            px, py, pz, energy = scale * px, scale * py, scale * pz, scale * energy
        reco = _polar(px, py, pz, energy)
        index = np.flatnonzero(ok)
        u = np.random.default_rng(_stream(seed, _EFFICIENCY)).random(n)
        efficiency = _probability(self.efficiency, {k: v[index] for k, v in reco.items()}, len(index))
        ok[index] &= u[index] < efficiency
        kept = ok & (reco["pt"] >= self.pt_min) & (np.abs(reco["eta"]) <= self.eta_max)
        momenta = {k: np.where(kept, v, 0.0) for k, v in zip(FOUR_MOMENTUM, (px, py, pz, energy), strict=True)}
        return Measurement(momenta, kept, reco, physical)


@dataclass(frozen=True)
class BTagger:
    """b-tagging: a jet is tagged with the rate of its truth flavour (5: b, 4: c, other: light).

    Example:
        >>> rate = {k: compile_formula(v, RESPONSE_VARIABLES, k) for k, v in (("b", "1"), ("c", "0"), ("light", "0"))}
        >>> tagger = BTagger(rate["b"], rate["c"], rate["light"])
        >>> kin = {"pt": np.full(3, 50.0), "eta": np.zeros(3), "phi": np.zeros(3), "E": np.full(3, 50.0)}
        >>> tagger.tag(np.array([5, 4, 21]), kin, np.full(3, 0.5)).tolist()
        [True, False, False]
    """

    b: Formula
    c: Formula
    light: Formula

    def tag(self, flavour: np.ndarray, kinematics: dict[str, np.ndarray], uniform: np.ndarray) -> np.ndarray:
        """Tagged where the jet's uniform draw in [0, 1) falls below the rate of its flavour at its kinematics."""
        n = len(flavour)
        tagged = np.zeros(n, dtype=bool)
        light = (flavour != 5) & (flavour != 4)
        for formula, mask in ((self.b, flavour == 5), (self.c, flavour == 4), (self.light, light)):
            index = np.flatnonzero(mask)
            if len(index):
                rate = _probability(formula, {k: kinematics[k][index] for k in RESPONSE_VARIABLES}, len(index))
                tagged[index] = uniform[index] < rate
        return tagged


def jet_flavour(jets: ak.Array, collection: str, where: str) -> np.ndarray:
    """The flat truth flavour of a jet collection: |flavour|, or |pid| of parton jets (5 b, 4 c, else light).

    Raises:
        DataError: neither field; the message names the collection and ``btag = false``.

    Example:
        >>> jet_flavour(ak.Array([[{"pid": -5}, {"pid": 21}], [{"pid": 4}]]), "jets", "detector").tolist()
        [5, 21, 4]
    """
    for name in ("flavour", "pid"):
        if name in jets.fields:
            return np.abs(np.asarray(ak.to_numpy(ak.flatten(jets[name])), dtype=np.int64))
    raise DataError(f"b-tagging needs the truth flavour of the jets, but collection {collection!r} has neither "
                    f"`flavour` (5 b, 4 c, 0 light) nor a parton `pid`; fields: {', '.join(jets.fields)}",
                    path=f"{where}.jets", value=collection,
                    hint=f"set btag = false in [{where}] to smear the jets without b-tagging")


# --- the card: preset plus TOML overrides -----------------------------------------------------------------------

_SECTIONS: dict[str, type] = {"jet": CaloResponseParams, "electron": CaloResponseParams,
                              "muon": TrackResponseParams, "btagging": BTaggingParams}


def _section(name: str, table: dict[str, Any], override: Any, preset_path: str,
             where: str) -> tuple[Any, dict[str, str]]:
    """One section of the card: the preset's table with every field declared in TOML (not None, not an empty
    zone list) replaced, and the TOML path each field came from."""
    base = build_params(_SECTIONS[name], table, f"{preset_path}.{name}")
    paths = {f.name: f"{preset_path}.{name}.{f.name}" for f in dataclasses.fields(base)}
    declared = {f.name: getattr(override, f.name) for f in dataclasses.fields(override)
                if getattr(override, f.name) not in (None, [])}
    paths.update({k: f"{where}.{name}.{k}" for k in declared})
    return dataclasses.replace(base, **declared), paths


def _response(p: _ResponseParams, paths: dict[str, str]) -> ObjectResponse:
    build = tracking_resolution if isinstance(p, TrackResponseParams) else calorimeter_resolution
    resolution = build(p.resolution, paths["resolution"])
    if resolution.edges[-1] < p.eta_max:
        raise ConfigError(f"the resolution zones ({paths['resolution']}) cover |eta| up to {resolution.edges[-1]} "
                          "only; they must reach eta_max", path=paths["eta_max"], value=p.eta_max)
    efficiency = compile_formula(p.efficiency, RESPONSE_VARIABLES, paths["efficiency"])
    return ObjectResponse(resolution, float(p.angle_resolution), efficiency, float(p.pt_min), float(p.eta_max))


def _preset(params: SmearPPParams, where: str) -> dict[str, Any]:
    name = params.preset
    if name in DIS_PRESETS:
        raise ConfigError(f"{name!r} is a DIS detector preset of plugin \"smear\"; pp presets of smear-pp: "
                          + ", ".join(PP_PRESETS), path=f"{where}.preset", value=name,
                          hint="use plugin = \"smear\" for lepton-hadron events")
    try:
        return preset_card(name)
    except ConfigError as err:
        raise ConfigError(err.message, path=f"{where}.{err.path}", value=err.value, hint=err.hint) from None


# --- the detector ------------------------------------------------------------------------------------------------

class SmearPPDetector(Detector):
    """Delphes-like pp detector: jet and lepton resolutions, efficiencies, thresholds, b-tagging, missing pT."""

    plugin_name: ClassVar[str] = "smear-pp"

    Params: ClassVar[type] = SmearPPParams

    def __init__(self, params: SmearPPParams, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        where = ctx.name
        card = _preset(params, where)
        preset_path = f"{where}.preset[{params.preset}]"
        resolved, paths = {}, {}
        for name in _SECTIONS:
            resolved[name], paths[name] = _section(name, card[name], getattr(params, name), preset_path, where)
        self.jet = _response(resolved["jet"], paths["jet"])
        self.electron = _response(resolved["electron"], paths["electron"])
        self.muon = _response(resolved["muon"], paths["muon"])
        self.tagger: BTagger | None = None
        if params.btag:
            tags = resolved["btagging"]
            self.tagger = BTagger(*(compile_formula(getattr(tags, k), RESPONSE_VARIABLES, paths["btagging"][k])
                                    for k in ("b", "c", "light")))
        soft = params.met_soft_resolution
        self.met_soft_resolution = float(card["met_soft_resolution"] if soft is None else soft)
        #: The card in force (JSON-able), recorded in the detector-level sample's metadata.
        self.card: dict[str, Any] = {k: dataclasses.asdict(v) for k, v in resolved.items()}
        self.card["met_soft_resolution"] = self.met_soft_resolution

    def info(self) -> dict[str, Any]:
        """The preset and the card in force."""
        return {"preset": self.params.preset, "card": self.card}

    # -- folding --------------------------------------------------------------------------------------------
    def fold(self, events: EventBatch, seed: np.random.SeedSequence) -> EventBatch:
        """Return the detector-level events, index-aligned with ``events`` (see the module docstring)."""
        where, jets = self.ctx.name, self.params.jets
        if not (jets in events.fields and events.has_collection(jets)):
            raise DataError("the smear-pp detector needs a jagged jet collection; collections: "
                            + (", ".join(events.collections) or "none"), path=f"{where}.jets", value=jets,
                            hint=suggest(jets, events.collections))
        if self.tagger is not None:
            jet_flavour(events.arrays[jets][:0], jets, where)  # fail before smearing anything
        lepton = _LeptonLayout.of(events, self.params.lepton, where)
        has_met = events.has(MET) and events.has(MET_PHI)
        if not has_met:
            self.ctx.log.info("%s: no %s, %s fields: the missing pT is not recomputed", where, MET, MET_PHI)
        pieces = [self._fold_chunk(events.arrays[start:start + CHUNK_EVENTS], lepton, has_met, _stream(seed, c))
                  for c, start in enumerate(range(0, len(events), CHUNK_EVENTS))]
        columns: dict[str, Any] = {}
        for key in pieces[0] if pieces else ():
            parts = [p[key] for p in pieces]
            columns[key] = ak.concatenate(parts) if isinstance(parts[0], ak.Array) else np.concatenate(parts)
        out = events.with_columns(**columns)
        out.meta["detector"] = {"plugin": self.plugin_name, "preset": self.params.preset}
        return out

    def _fold_chunk(self, chunk: ak.Array, lepton: _LeptonLayout | None, has_met: bool,
                    seed: np.random.SeedSequence) -> dict[str, Any]:
        m = len(chunk)
        out: dict[str, Any] = {}
        shift = np.zeros((2, m))  # Σ (measured − true) px, py per event
        jets = chunk[self.params.jets]
        counts = np.asarray(ak.to_numpy(ak.num(jets, axis=1)), dtype=np.int64)
        flat = cartesian({f: np.asarray(ak.to_numpy(ak.flatten(jets[f]))) for f in jets.fields})
        event = np.repeat(np.arange(m), counts)
        measured = self.jet.measure(flat, _stream(seed, _JET))
        _add_shift(shift, flat, measured, event)
        record = {**measured.momenta, **{k: v for k, v in flat.items() if k not in FOUR_MOMENTUM}}
        if self.tagger is not None:
            flavour = jet_flavour(jets, self.params.jets, self.ctx.name)
            kept = measured.kept  # lost jets draw too: the streams stay aligned with the input jets
            uniform = np.random.default_rng(_stream(seed, _BTAG)).random(len(kept))
            record["btag"] = np.zeros(len(kept), dtype=bool)
            record["btag"][kept] = self.tagger.tag(flavour[kept], {k: v[kept] for k, v in measured.kinematics.items()},
                                                   uniform[kept])
        out[self.params.jets] = _kept_by_pt(record, measured.kept, event, m)
        if lepton is not None:
            out.update(self._fold_lepton(chunk, lepton, shift, _stream(seed, _LEPTON)))
        if has_met:
            met, phi = (np.asarray(ak.to_numpy(chunk[k]), dtype=np.float64) for k in (MET, MET_PHI))
            mx, my = met * np.cos(phi) - shift[0], met * np.sin(phi) - shift[1]
            if self.met_soft_resolution > 0:
                z = np.random.default_rng(_stream(seed, _MET)).standard_normal((2, m))
                mx, my = mx + self.met_soft_resolution * z[0], my + self.met_soft_resolution * z[1]
            out[MET], out[MET_PHI] = np.hypot(mx, my), np.arctan2(my, mx)
        return out

    def _fold_lepton(self, chunk: ak.Array, layout: _LeptonLayout, shift: np.ndarray,
                     seed: np.random.SeedSequence) -> dict[str, Any]:
        m = len(chunk)
        truth, pid, event = layout.read(chunk)
        momenta = {k: np.zeros(len(pid)) for k in FOUR_MOMENTUM}
        kept = np.zeros(len(pid), dtype=bool)
        for code, response in ((_ELECTRON, self.electron), (_MUON, self.muon)):
            index = np.flatnonzero(np.abs(pid) == code)
            part = {k: v[index] for k, v in truth.items()}
            measured = response.measure(part, _stream(seed, code))
            _add_shift(shift, part, measured, event[index])
            kept[index] = measured.kept
            for k in FOUR_MOMENTUM:
                momenta[k][index] = measured.momenta[k]
        flag = np.zeros(m, dtype=bool)
        flag[event[kept]] = True
        return {**layout.write(chunk, momenta), f"{layout.name}_measured": flag, "measured": flag}


def _add_shift(shift: np.ndarray, truth: dict[str, np.ndarray], measured: Measurement, event: np.ndarray) -> None:
    """Add Σ (measured − true) px, py per event of the physical objects (a lost one measured as 0)."""
    m = shift.shape[1]
    for row, k in enumerate(("px", "py")):
        delta = np.where(measured.physical, measured.momenta[k] - np.asarray(truth[k], dtype=np.float64), 0.0)
        shift[row] += np.bincount(event, weights=delta, minlength=m)


def _kept_by_pt(record: dict[str, np.ndarray], kept: np.ndarray, event: np.ndarray, m: int) -> ak.Array:
    """The kept objects as a jagged Momentum4D collection, ordered by pT within each event."""
    counts = np.bincount(event[kept], minlength=m)
    lists = ak.unflatten(ak.zip({k: v[kept] for k, v in record.items()}, with_name="Momentum4D"), counts)
    order = ak.argsort(np.hypot(lists.px, lists.py), axis=1, ascending=False, stable=True)
    return lists[order]


@dataclass(frozen=True)
class _LeptonLayout:
    """Where the lepton lives: a jagged collection (``lepton: var * {px, ..., pid}``) or flat fields
    (``lepton_px, ..., lepton_pid``); read and written back in the same form."""

    name: str
    jagged: bool
    where: str

    @staticmethod
    def of(events: EventBatch, name: str, where: str) -> _LeptonLayout | None:
        if not events.has_collection(name):
            return None
        jagged = name in events.fields
        fields = events.arrays[name].fields if jagged else [f[len(name) + 1:] for f in events.fields
                                                           if f.startswith(f"{name}_")]
        if "pid" not in fields:
            raise DataError(f"the lepton collection {name!r} has no pid: the detector needs 11 (electron) or 13 "
                            f"(muon) to choose its response; fields: {', '.join(fields)}", path=f"{where}.lepton",
                            value=name)
        if jagged and int(events.multiplicity(name).max(initial=0)) > 1:
            raise DataError(f"the lepton collection {name!r} has events with more than one lepton; smear-pp measures "
                            "one prompt lepton per event", path=f"{where}.lepton", value=name)
        return _LeptonLayout(name, jagged, where)

    def read(self, chunk: ak.Array) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Flat true four-momenta, pid and event index of the leptons present."""
        if self.jagged:
            parts = chunk[self.name]
            event = np.repeat(np.arange(len(chunk)), np.asarray(ak.to_numpy(ak.num(parts, axis=1))))
            values = cartesian({k: np.asarray(ak.to_numpy(ak.flatten(parts[k]))) for k in parts.fields})
            values = {k: values[k] for k in (*FOUR_MOMENTUM, "pid")}
        else:
            event = np.arange(len(chunk))
            values = {k: np.asarray(ak.to_numpy(chunk[f"{self.name}_{k}"])) for k in (*FOUR_MOMENTUM, "pid")}
        pid = values.pop("pid").astype(np.int64)
        other = np.flatnonzero(~np.isin(np.abs(pid), (_ELECTRON, _MUON)))
        if len(other):
            raise DataError(f"{len(other)} lepton(s) with a pid other than ±11, ±13 (e.g. {int(pid[other[0]])}); "
                            "smear-pp measures electrons and muons", path=f"{self.where}.lepton", value=self.name)
        return values, pid, event

    def write(self, chunk: ak.Array, momenta: dict[str, np.ndarray]) -> dict[str, Any]:
        """The measured leptons in the input's form (other fields kept)."""
        if not self.jagged:
            return {f"{self.name}_{k}": v for k, v in momenta.items()}
        parts = chunk[self.name]
        counts = np.asarray(ak.to_numpy(ak.num(parts, axis=1)))
        other = [k for k in parts.fields if k not in (*FOUR_MOMENTUM, "pt", "eta", "phi", "mass")]
        record = {**momenta, **{k: ak.flatten(parts[k]) for k in other}}
        return {self.name: ak.unflatten(ak.zip(record, with_name="Momentum4D"), counts)}


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the `smear-pp` detector."""
    registry.add(SmearPPDetector)
