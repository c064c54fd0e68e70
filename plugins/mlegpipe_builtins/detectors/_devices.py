"""eic-smear-like devices: one smeared variable, a resolution formula and an acceptance.

A device smears ONE of E, P, theta, phi, pT, pz with a Gaussian of absolute width
sigma = f(E, P, theta, phi, pT, pz, eta, m) inside its acceptance: particle genre
(em: |PDG| 11 or 22; hadronic: |PDG| > 110; muon: |PDG| 13; all), charge
(neutral, charged, all) and a union of zones, each a box in true eta or theta,
phi, E, P, pT, pz with inclusive edges. All angles are in the eic-smear frame
(hadron beam along +z). A device is declared in TOML either by a ``formula`` or
by resolution ``terms`` with an explicit ``combine`` rule.

Example:
    >>> from mlegpipe.schema import build_params
    >>> raw = {"variable": "E", "form": "calorimeter", "terms": [0.02, 0.14, 0.03], "genre": "em",
    ...        "zones": [{"eta": [-1.0, 1.0]}]}
    >>> dev = compile_device(build_params(DeviceParams, raw, "detector.devices[0]"), "detector.devices[0]")
    >>> dev.sigma.text
    'sqrt(0.02**2 + 0.14**2 * E + (0.03 * E)**2)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlegpipe.exceptions import ConfigError
from mlegpipe.formula import Formula, compile_formula
from mlegpipe.schema import param, suggest

__all__ = [
    "FORMULA_VARIABLES",
    "SMEARED_VARIABLES",
    "ZONE_KEYS",
    "Device",
    "DeviceParams",
    "Zone",
    "charge_mask",
    "check_overlaps",
    "compile_device",
    "compile_devices",
    "eta_to_theta",
    "genre_mask",
]

#: Variables a device can smear.
SMEARED_VARIABLES: tuple[str, ...] = ("E", "P", "theta", "phi", "pT", "pz")
#: Variables a resolution or efficiency formula can use (true kinematics, eic-smear frame).
FORMULA_VARIABLES: tuple[str, ...] = ("E", "P", "theta", "phi", "pT", "pz", "eta", "m")
#: Keys of a zone table.
ZONE_KEYS: tuple[str, ...] = ("eta", "theta", "phi", "E", "P", "pT", "pz")

GENRES: tuple[str, ...] = ("all", "em", "hadronic", "muon")
CHARGES: tuple[str, ...] = ("all", "neutral", "charged")


@dataclass
class DeviceParams:
    """One device as written in TOML (``[[detector.devices]]``)."""

    variable: str = param("E", choices=SMEARED_VARIABLES, doc="the variable smeared")
    formula: str = param("", doc="absolute width sigma as a formula of E, P, theta, phi, pT, pz, eta, m")
    form: str = param("", choices=("", "calorimeter", "tracking", "constant"),
                      doc="declare sigma by terms: calorimeter [A, B, C] -> A (+) B sqrt(E) (+) C E; "
                          "tracking [a, b] -> P (a P (+) b); constant [c, ...]")
    terms: list[float] = param([], min=0.0, doc="resolution terms for `form`")
    combine: str = param("quadrature", choices=("quadrature", "linear"), doc="how the terms add")
    genre: str = param("all", choices=GENRES, doc="em (|PDG| 11, 22), hadronic (|PDG| > 110), muon, all")
    charge: str = param("all", choices=CHARGES, doc="neutral, charged or all")
    zones: list[dict[str, list[float]]] = param([], doc="union of boxes, e.g. [{eta = [-1.0, 1.0]}]; none = everywhere")
    lognormal: bool = param(False, doc="multiply by a log-normal of the same relative width instead of adding a Gaussian")


def eta_to_theta(eta: float) -> float:
    """Polar angle of a pseudorapidity, theta = 2 atan(exp(-eta)).

    Example:
        >>> round(eta_to_theta(0.0), 6)
        1.570796
    """
    return 2.0 * math.atan(math.exp(-eta))


@dataclass(frozen=True)
class Zone:
    """A box in the true kinematics; ``bounds`` maps a key of :data:`ZONE_KEYS` to inclusive (lo, hi)."""

    bounds: tuple[tuple[str, float, float], ...]

    def contains(self, env: dict[str, np.ndarray], cache: dict[Any, np.ndarray] | None = None) -> np.ndarray:
        """Boolean mask of the particles inside the box (edges inclusive); ``cache`` reuses edge masks."""
        cache = {} if cache is None else cache
        mask = np.ones(len(env["E"]), dtype=bool)
        for bound in self.bounds:
            if bound not in cache:
                key, lo, hi = bound
                values = env[key]
                cache[bound] = (values >= lo) & (values <= hi)
            mask &= cache[bound]
        return mask

    def theta_interval(self) -> tuple[float, float]:
        """The polar-angle range of the box (eta converted), for overlap checks."""
        lo, hi = 0.0, math.pi
        for key, a, b in self.bounds:
            if key == "theta":
                lo, hi = max(lo, a), min(hi, b)
            elif key == "eta":
                lo, hi = max(lo, eta_to_theta(b)), min(hi, eta_to_theta(a))
        return lo, hi

    def interval(self, key: str) -> tuple[float, float]:
        """The range of ``key`` (not eta/theta) in the box; unbounded when not constrained."""
        for k, a, b in self.bounds:
            if k == key:
                return a, b
        return -math.inf, math.inf


def _parse_zone(raw: dict[str, Any], where: str) -> Zone:
    bounds = []
    for key, value in raw.items():
        if key not in ZONE_KEYS:
            raise ConfigError("unknown zone variable; known: " + ", ".join(ZONE_KEYS), path=f"{where}.{key}",
                              hint=suggest(key, ZONE_KEYS))
        if len(value) != 2 or not all(math.isfinite(v) for v in value) or value[0] > value[1]:
            raise ConfigError("a zone edge must be two finite numbers [low, high] with low <= high",
                              path=f"{where}.{key}", value=value)
        bounds.append((key, float(value[0]), float(value[1])))
    if "eta" in raw and "theta" in raw:
        raise ConfigError("give a zone in eta or in theta, not both", path=where, value=raw)
    return Zone(tuple(bounds))


@dataclass(frozen=True)
class Device:
    """A compiled device: smears ``variable`` by ``sigma`` inside its acceptance."""

    variable: str
    sigma: Formula
    genre: str
    charge: str
    zones: tuple[Zone, ...]
    lognormal: bool
    where: str

    def accepts(self, env: dict[str, np.ndarray], pid: np.ndarray, charge: np.ndarray,
                cache: dict[Any, np.ndarray] | None = None) -> np.ndarray:
        """Boolean mask of the particles inside this device's acceptance (true kinematics).

        Example:
            >>> dev = compile_device(DeviceParams(variable="P", formula="0.01 * P", charge="charged",
            ...                                   zones=[{"eta": [-1.0, 1.0]}]), "d")
            >>> env = {"E": np.ones(3), "eta": np.array([0.0, 1.0, 1.5])}
            >>> dev.accepts(env, np.array([211, 211, 211]), np.array([1, 1, 1])).tolist()
            [True, True, False]
        """
        cache = {} if cache is None else cache
        key = ("class", self.genre, self.charge)
        if key not in cache:
            cache[key] = genre_mask(self.genre, pid) & charge_mask(self.charge, charge)
        mask = cache[key]
        if self.zones:
            inside = self.zones[0].contains(env, cache)
            for zone in self.zones[1:]:
                inside = inside | zone.contains(env, cache)
            mask = mask & inside
        return mask


def genre_mask(genre: str, pid: np.ndarray) -> np.ndarray:
    """Particles of a genre: em (|PDG| 11, 22), hadronic (|PDG| > 110), muon (13), all.

    Example:
        >>> genre_mask("em", np.array([11, -11, 22, 211, 13])).tolist()
        [True, True, True, False, False]
    """
    apid = np.abs(pid)
    if genre == "em":
        return (apid == 11) | (apid == 22)
    if genre == "hadronic":
        return apid > 110
    if genre == "muon":
        return apid == 13
    return np.ones(len(apid), dtype=bool)


def charge_mask(charge: str, values: np.ndarray) -> np.ndarray:
    """Particles of a charge class: neutral, charged or all.

    Example:
        >>> charge_mask("charged", np.array([0.0, -1.0, 1.0])).tolist()
        [False, True, True]
    """
    if charge == "neutral":
        return values == 0
    if charge == "charged":
        return values != 0
    return np.ones(len(values), dtype=bool)


def _sigma_text(p: DeviceParams, where: str) -> str:
    """The resolution formula of a device (written, or built from its terms)."""
    if p.formula and p.form:
        raise ConfigError("give a device either `formula` or `form` with `terms`, not both", path=where)
    if p.formula:
        return p.formula
    if not p.form:
        raise ConfigError("a device needs a resolution: `formula = \"...\"` or `form` and `terms`",
                          path=where)
    t = [repr(float(v)) for v in p.terms]
    want = {"calorimeter": 3, "tracking": 2}.get(p.form)
    if (want is not None and len(t) != want) or not t:
        raise ConfigError(f"form {p.form!r} takes {want or 'at least 1'} terms", path=f"{where}.terms",
                          value=p.terms)
    if p.form == "calorimeter":
        a, b, c = t
        if p.combine == "quadrature":
            return f"sqrt({a}**2 + {b}**2 * E + ({c} * E)**2)"
        return f"{a} + {b} * sqrt(E) + {c} * E"
    if p.form == "tracking":
        a, b = t
        if p.combine == "quadrature":
            return f"P * sqrt(({a} * P)**2 + {b}**2)"
        return f"P * ({a} * P + {b})"
    if p.combine == "quadrature":
        return "sqrt(" + " + ".join(f"{v}**2" for v in t) + ")"
    return " + ".join(t)


def compile_device(p: DeviceParams, where: str) -> Device:
    """Validate one device table and compile its resolution formula.

    Example:
        >>> compile_device(DeviceParams(variable="P", form="tracking", terms=[0.0002, 0.005]), "d").sigma.text
        'P * sqrt((0.0002 * P)**2 + 0.005**2)'
    """
    text = _sigma_text(p, where)
    field = f"{where}.formula" if p.formula else f"{where}.terms"
    sigma = compile_formula(text, FORMULA_VARIABLES, field)
    zones = tuple(_parse_zone(z, f"{where}.zones[{i}]") for i, z in enumerate(p.zones))
    return Device(p.variable, sigma, p.genre, p.charge, zones, p.lognormal, where)


def _sets_intersect(a: str, b: str) -> bool:
    return a == "all" or b == "all" or a == b


def _zones_overlap(a: Zone, b: Zone) -> bool:
    """True when two boxes share a region of non-zero size (touching edges are allowed)."""
    lo_a, hi_a = a.theta_interval()
    lo_b, hi_b = b.theta_interval()
    if not (max(lo_a, lo_b) < min(hi_a, hi_b)):
        return False
    for key in ("phi", "E", "P", "pT", "pz"):
        lo_a, hi_a = a.interval(key)
        lo_b, hi_b = b.interval(key)
        if not (max(lo_a, lo_b) < min(hi_a, hi_b)):
            return False
    return True


def check_overlaps(devices: list[Device]) -> None:
    """Raise ConfigError when two devices could smear the same variable of one particle.

    Genres, charges and zones are compared; boxes that only touch at an edge are
    allowed (a particle exactly on the edge is smeared by the first device listed).

    Example:
        >>> a = compile_device(DeviceParams(formula="0.1", zones=[{"eta": [-1.0, 1.0]}]), "devices[0]")
        >>> b = compile_device(DeviceParams(formula="0.2", zones=[{"eta": [1.0, 2.0]}]), "devices[1]")
        >>> check_overlaps([a, b])  # touching at eta = 1 only: allowed
    """
    full = Zone(())
    for i, a in enumerate(devices):
        for b in devices[i + 1 :]:
            if a.variable != b.variable or not _sets_intersect(a.genre, b.genre):
                continue
            if not _sets_intersect(a.charge, b.charge):
                continue
            for za in a.zones or (full,):
                for zb in b.zones or (full,):
                    if _zones_overlap(za, zb):
                        raise ConfigError(
                            f"devices {a.where} and {b.where} both smear {a.variable!r} in an overlapping zone "
                            f"({dict((k, [lo, hi]) for k, lo, hi in za.bounds)} and "
                            f"{dict((k, [lo, hi]) for k, lo, hi in zb.bounds)}); a particle may be smeared "
                            "only once per variable",
                            path=b.where,
                        )


def compile_devices(params: list[DeviceParams], where: str) -> list[Device]:
    """Compile a device list and check it has no overlapping zones for one variable.

    Example:
        >>> devs = compile_devices([DeviceParams(variable="E", formula="0.1 * sqrt(E)", genre="em")], "detector.devices")
        >>> devs[0].where
        'detector.devices[0]'
    """
    devices = [compile_device(p, f"{where}[{i}]") for i, p in enumerate(params)]
    check_overlaps(devices)
    return devices
