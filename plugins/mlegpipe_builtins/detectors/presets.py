"""Detector presets of the `smear` plugin as device tables, exactly as a user would write them in TOML.

Presets (eic-smear convention, hadron beam along +z):

- ``matrix-0.2``: EIC Yellow Report matrix, 3 T (the recommended default); perfect angles
  unless ``angle_resolution`` is given (0.001 = the Handbook's 1 mrad).
- ``matrix-0.2-1.5T``: the same with the 1.5 T tracking: sigma_p/p = 0.2% p (+) 5% for
  |eta| > 2.5, 0.04% p (+) 2% for 1 < |eta| < 2.5 and 0.04% p (+) 1% for |eta| < 1.
- ``handbook-1.2``: EIC detector handbook; 1 mrad angles for EM and hadrons, 0 for muons.
- ``zeus``: ZEUS at HERA, resolution terms added linearly as in the eic-smear script.

Example:
    >>> devices = preset_devices("matrix-0.2")
    >>> sorted({d["variable"] for d in devices})
    ['E', 'P', 'phi', 'theta']
"""

from __future__ import annotations

import math
from typing import Any

from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import suggest

__all__ = ["MATRIX_ETA_EDGES", "PRESETS", "preset_devices"]

#: Pseudorapidity zone edges of the Matrix 0.2 table.
MATRIX_ETA_EDGES: tuple[float, ...] = (-3.5, -2.5, -2.0, -1.0, 1.0, 2.5, 3.5)

# Per eta zone: tracking (a, b) in sigma_p/p = a p (+) b; EM (A, B, C); hadronic (B, C).
_MATRIX_TRACKING_3T = ((0.001, 0.02), (0.0002, 0.01), (0.0002, 0.01), (0.0002, 0.005), (0.0002, 0.01), (0.001, 0.02))
_MATRIX_TRACKING_15T = ((0.002, 0.05), (0.0004, 0.02), (0.0004, 0.02), (0.0004, 0.01), (0.0004, 0.02), (0.002, 0.05))
_MATRIX_EM = ((0.01, 0.025, 0.01), (0.01, 0.025, 0.01), (0.02, 0.08, 0.02), (0.02, 0.14, 0.03), (0.02, 0.12, 0.02),
              (0.02, 0.12, 0.02))
_MATRIX_HAD = ((0.5, 0.1), (0.5, 0.1), (0.5, 0.1), (1.0, 0.1), (0.5, 0.1), (0.5, 0.1))

_HANDBOOK_TRACKING = ((0.001, 0.02), (0.0005, 0.01), (0.0005, 0.01), (0.0005, 0.005), (0.0005, 0.01), (0.001, 0.02))
_HANDBOOK_EM_EDGES = (-4.5, -3.5, -2.5, -2.0, -1.0, 1.0, 2.5, 3.5, 4.5)
_HANDBOOK_EM = ((0.01, 0.01), (0.01, 0.01), (0.01, 0.01), (0.08, 0.02), (0.12, 0.02), (0.12, 0.02), (0.12, 0.02),
                (0.12, 0.02))
_HANDBOOK_HAD = ((0.45, 0.06), (0.45, 0.06), (0.45, 0.06), (0.85, 0.07), (0.45, 0.06), (0.45, 0.06))


def _zones(edges: tuple[float, ...]) -> list[dict[str, list[float]]]:
    return [{"eta": [lo, hi]} for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def _tracking(rows: tuple[tuple[float, float], ...], edges: tuple[float, ...]) -> list[dict[str, Any]]:
    return [{"variable": "P", "form": "tracking", "terms": [a, b], "combine": "quadrature", "charge": "charged",
             "zones": [zone]} for (a, b), zone in zip(rows, _zones(edges), strict=True)]


def _calorimeter(rows: tuple[tuple[float, ...], ...], edges: tuple[float, ...], genre: str) -> list[dict[str, Any]]:
    out = []
    for terms, zone in zip(rows, _zones(edges), strict=True):
        abc = list(terms) if len(terms) == 3 else [0.0, *terms]
        out.append({"variable": "E", "form": "calorimeter", "terms": abc, "combine": "quadrature", "genre": genre,
                    "zones": [zone]})
    return out


def _angles(sigma: float | str, genre: str, zones: list[dict[str, list[float]]], charge: str = "all") -> list[dict[str, Any]]:
    formula = sigma if isinstance(sigma, str) else repr(float(sigma))
    return [{"variable": v, "formula": formula, "genre": genre, "charge": charge, "zones": zones}
            for v in ("theta", "phi")]


def _matrix(tracking: tuple[tuple[float, float], ...], angle: float) -> list[dict[str, Any]]:
    cover = [{"eta": [-3.5, 3.5]}]
    devices = _tracking(tracking, MATRIX_ETA_EDGES)
    devices += _calorimeter(_MATRIX_EM, MATRIX_ETA_EDGES, "em")
    devices += _calorimeter(_MATRIX_HAD, MATRIX_ETA_EDGES, "hadronic")
    for genre in ("em", "hadronic", "muon"):
        devices += _angles(angle, genre, cover)
    return devices


def _handbook(angle: float) -> list[dict[str, Any]]:
    devices = _tracking(_HANDBOOK_TRACKING, MATRIX_ETA_EDGES)
    devices += _calorimeter(_HANDBOOK_EM, _HANDBOOK_EM_EDGES, "em")
    devices += _calorimeter(_HANDBOOK_HAD, MATRIX_ETA_EDGES, "hadronic")
    devices += _angles(angle, "em", [{"eta": [-4.5, 4.5]}])
    devices += _angles(angle, "hadronic", [{"eta": [-3.5, 3.5]}])
    devices += _angles(0.0, "muon", [{"eta": [-3.5, 3.5]}])
    return devices


def _zeus() -> list[dict[str, Any]]:
    lo, hi = math.radians(15.0), math.radians(164.0)
    calo = [{"eta": [-4.0, 4.0]}]
    th_fwd, th_bwd = 2.0 * math.atan(math.exp(-4.0)), 2.0 * math.atan(math.exp(4.0))
    outside = [{"theta": [th_fwd, lo]}, {"theta": [hi, th_bwd]}]
    track = [{"theta": [lo, hi]}]
    devices: list[dict[str, Any]] = [
        {"variable": "P", "form": "tracking", "terms": [0.0025, 0.0085], "combine": "linear", "charge": "charged",
         "zones": track},
        {"variable": "theta", "formula": "0.0005 * P + 0.003", "charge": "charged", "zones": track},
        {"variable": "phi", "formula": "0.0", "charge": "charged", "zones": track},
        {"variable": "E", "form": "calorimeter", "terms": [0.0, 0.18, 0.0], "combine": "linear", "genre": "em",
         "zones": calo},
        {"variable": "E", "form": "calorimeter", "terms": [0.0, 0.35, 0.0], "combine": "linear", "genre": "hadronic",
         "zones": calo},
    ]
    for genre in ("em", "hadronic"):
        devices += _angles(0.0, genre, calo, charge="neutral")
        devices += _angles(0.0, genre, outside, charge="charged")
    return devices


#: Preset name -> one line of description.
PRESETS: dict[str, str] = {
    "matrix-0.2": "EIC Yellow Report matrix 0.2, 3 T, |eta| < 3.5",
    "matrix-0.2-1.5T": "EIC matrix 0.2 with 1.5 T tracking",
    "handbook-1.2": "EIC detector handbook 1.2, |eta| < 4.5, 1 mrad angles",
    "zeus": "ZEUS at HERA, linear sums, tracking 15-164 deg",
}


def preset_devices(name: str, angle_resolution: float | None = None) -> list[dict[str, Any]]:
    """The device tables of a preset (the same dictionaries a TOML ``devices`` list parses to).

    Arguments:
        name: one of :data:`PRESETS`.
        angle_resolution: sigma_theta = sigma_phi in rad for the Matrix presets
            (default 0: perfect angles); not allowed for the other presets.

    Example:
        >>> len(preset_devices("matrix-0.2", angle_resolution=0.001))
        24
    """
    if name not in PRESETS:
        raise ConfigError("unknown detector preset; known: " + ", ".join(PRESETS), path="preset", value=name,
                          hint=suggest(name, PRESETS))
    if name.startswith("matrix"):
        tracking = _MATRIX_TRACKING_3T if name == "matrix-0.2" else _MATRIX_TRACKING_15T
        return _matrix(tracking, angle_resolution or 0.0)
    if angle_resolution is not None:
        raise ConfigError(f"angle_resolution only applies to the matrix presets; {name!r} fixes its own angles",
                          path="angle_resolution", value=angle_resolution)
    if name == "handbook-1.2":
        return _handbook(0.001)
    return _zeus()
