"""Presets of the `smear-pp` detector, as the tables a user would write in TOML.

Both presets transcribe the Delphes 3.5.0 cards (github.com/delphes/delphes,
tag 3.5.0; the two cards are unchanged since commit dda357d of 2017-11-30, so
3.4.2 and later give the same numbers):

- ``atlas-like``: ``cards/delphes_card_ATLAS.tcl``;
- ``cms-like``: ``cards/delphes_card_CMS.tcl``.

What is taken from where (module and parameter of the card):

- jets: the ``HCal`` ``ResolutionFormula``, sigma_E = sqrt(E² b² + E a² + c²) per |eta|
  range, is the jet energy resolution (stochastic a, constant b, noise c). Delphes
  builds its jets from calorimeter towers (ATLAS) or particle flow (CMS), so this
  is the card's hadronic resolution, not a measured jet resolution: for the CMS
  card it is conservative (CMS measures 15-20 % at 30 GeV and about 10 % at
  100 GeV for particle-flow jets, JINST 12 (2017) P02014; this preset gives 28 %
  and 16 %). ``FastJetFinder`` ``JetPTMin`` = 20 GeV is ``pt_min``; the calorimeter
  coverage (HCal towers to |eta| = 4.9, resp. 5.0) is ``eta_max``. The cards have
  no jet efficiency (1) and no jet angle smearing beyond towers (0).
  ``JetEnergyScale`` is a calibration of tower jets and is not applied to
  (calibrated) truth jets.
- b-tagging: the ``BTagging`` ``EfficiencyFormula`` for flavour 5 (b), 4 (c, mistag)
  and 0 (light, mistag), of the jet's pT (ATLAS: ATL-PHYS-PUB-2015-022; CMS:
  arXiv:1211.4462). ``JetFlavorAssociation`` only considers partons with
  |eta| < 2.5 (``PartonEtaMax``), so beyond it a b or c jet is tagged at the
  light rate: the b and c formulas say so explicitly.
- electrons: energy resolution from the ``ECal`` ``ResolutionFormula`` (calorimeter
  form). The CMS barrel and endcap formulas carry an |eta|-dependent factor
  ((1 + 0.64 eta²), resp. (2.16 + 5.6 (|eta| - 2)²)); here it is averaged over
  each zone (1.053, 1.373, 2.013 for |eta| in [0, 0.5], [0.5, 1], [1, 1.5]; 2.627
  for [1.5, 2.5]) and multiplies the terms 0.11, 0.008, 0.40. Efficiency =
  ``ElectronTrackingEfficiency`` × ``ElectronEfficiency``; their zero regions
  (pT <= 10 GeV, |eta| > 2.5) are the thresholds ``pt_min``, ``eta_max``.
- muons: momentum resolution from ``MuonMomentumSmearing``, sigma_pT/pT =
  sqrt(b² + pT² a²) (tracking form; the same in both cards). Efficiency =
  ``MuonTrackingEfficiency`` × ``MuonEfficiency``; ATLAS identifies muons to
  |eta| = 2.7 but tracks them only to 2.5, hence ``eta_max`` = 2.5 (CMS: 2.4).
- missing pT: Delphes sums towers or particle flow and has no separate soft term:
  ``met_soft_resolution`` = 0.

Isolation, pile-up and the tower granularity are not modelled.

Example:
    >>> card = preset_card("atlas-like")
    >>> sorted(card)
    ['btagging', 'electron', 'jet', 'met_soft_resolution', 'muon']
    >>> card["jet"]["resolution"][0]
    {'abs_eta': [0.0, 1.7], 'stochastic': 0.5205, 'constant': 0.0302, 'noise': 1.59}
"""

from __future__ import annotations

import copy
from typing import Any

from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import suggest

__all__ = ["PP_PRESETS", "preset_card"]


def _tracker_only(formula: str, light: str, eta_max: float = 2.5) -> str:
    """A tag rate that falls back to the light rate beyond the tracker (Delphes' PartonEtaMax)."""
    return f"(abs(eta) <= {eta_max}) * ({formula}) + (abs(eta) > {eta_max}) * ({light})"


def _btagging(b: str, c: str, light: str) -> dict[str, str]:
    return {"b": _tracker_only(b, light), "c": _tracker_only(c, light), "light": light}


# Electron efficiency of both cards: ElectronEfficiency (0.95 | 0.85) × ElectronTrackingEfficiency (pT > 1 GeV).
_ELECTRON_EFFICIENCY = ("(abs(eta) <= 1.5) * 0.95 * ((pt <= 100.0) * 0.95 + (pt > 100.0) * 0.99)"
                        " + (abs(eta) > 1.5) * 0.85 * ((pt <= 100.0) * 0.83 + (pt > 100.0) * 0.90)")
# MuonMomentumSmearing of both cards: sigma_pT/pT = sqrt(b² + pT² a²).
_MUON_RESOLUTION = [
    {"abs_eta": [0.0, 0.5], "slope": 1.0e-4, "constant": 0.01},
    {"abs_eta": [0.5, 1.5], "slope": 1.5e-4, "constant": 0.015},
    {"abs_eta": [1.5, 2.5], "slope": 3.5e-4, "constant": 0.025},
]

_ATLAS: dict[str, Any] = {
    "jet": {
        "resolution": [  # HCal: sqrt(E² b² + E a² + c²)
            {"abs_eta": [0.0, 1.7], "stochastic": 0.5205, "constant": 0.0302, "noise": 1.59},
            {"abs_eta": [1.7, 3.2], "stochastic": 0.706, "constant": 0.0500, "noise": 0.0},
            {"abs_eta": [3.2, 4.9], "stochastic": 1.00, "constant": 0.09420, "noise": 0.0},
        ],
        "angle_resolution": 0.0,
        "efficiency": "1",
        "pt_min": 20.0,
        "eta_max": 4.9,
    },
    "btagging": _btagging(b="0.80 * tanh(0.003 * pt) * (30 / (1 + 0.086 * pt))",
                          c="0.20 * tanh(0.02 * pt) * (1 / (1 + 0.0034 * pt))",
                          light="0.002 + 7.3e-06 * pt"),
    "electron": {
        "resolution": [  # ECal: sqrt(E² 0.0017² + E 0.101²) for |eta| <= 3.2
            {"abs_eta": [0.0, 3.2], "stochastic": 0.101, "constant": 0.0017, "noise": 0.0},
        ],
        "angle_resolution": 0.0,
        "efficiency": _ELECTRON_EFFICIENCY,
        "pt_min": 10.0,
        "eta_max": 2.5,
    },
    "muon": {
        "resolution": _MUON_RESOLUTION,
        "angle_resolution": 0.0,
        # MuonEfficiency (0.95 | 0.85) × MuonTrackingEfficiency (0.99 | 0.98 for pT > 1 GeV)
        "efficiency": "(abs(eta) <= 1.5) * 0.95 * 0.99 + (abs(eta) > 1.5) * 0.85 * 0.98",
        "pt_min": 10.0,
        "eta_max": 2.5,
    },
    "met_soft_resolution": 0.0,
}

_CMS: dict[str, Any] = {
    "jet": {
        "resolution": [  # HCal: sqrt(E² b² + E a²)
            {"abs_eta": [0.0, 3.0], "stochastic": 1.50, "constant": 0.050, "noise": 0.0},
            {"abs_eta": [3.0, 5.0], "stochastic": 2.70, "constant": 0.130, "noise": 0.0},
        ],
        "angle_resolution": 0.0,
        "efficiency": "1",
        "pt_min": 20.0,
        "eta_max": 5.0,
    },
    "btagging": _btagging(b="0.85 * tanh(0.0025 * pt) * (25.0 / (1 + 0.063 * pt))",
                          c="0.25 * tanh(0.018 * pt) * (1 / (1 + 0.0013 * pt))",
                          light="0.01 + 0.000038 * pt"),
    "electron": {
        "resolution": [  # ECal: factor(eta) sqrt(E² 0.008² + E 0.11² + 0.40²), factor averaged per zone
            {"abs_eta": [0.0, 0.5], "stochastic": 0.1159, "constant": 0.00843, "noise": 0.4213},
            {"abs_eta": [0.5, 1.0], "stochastic": 0.1511, "constant": 0.01099, "noise": 0.5493},
            {"abs_eta": [1.0, 1.5], "stochastic": 0.2215, "constant": 0.01611, "noise": 0.8053},
            {"abs_eta": [1.5, 2.5], "stochastic": 0.2889, "constant": 0.02101, "noise": 1.0507},
        ],
        "angle_resolution": 0.0,
        "efficiency": _ELECTRON_EFFICIENCY,
        "pt_min": 10.0,
        "eta_max": 2.5,
    },
    "muon": {
        "resolution": _MUON_RESOLUTION,
        "angle_resolution": 0.0,
        # MuonEfficiency 0.95 × MuonTrackingEfficiency (0.99 | 0.98, falling as exp(0.5 - pT/2 TeV) above 1 TeV)
        "efficiency": "0.95 * ((abs(eta) <= 1.5) * 0.99 + (abs(eta) > 1.5) * 0.98)"
                      " * ((pt <= 1000.0) + (pt > 1000.0) * exp(0.5 - 0.0005 * pt))",
        "pt_min": 10.0,
        "eta_max": 2.4,
    },
    "met_soft_resolution": 0.0,
}

#: Preset name -> one line of description.
PP_PRESETS: dict[str, str] = {
    "atlas-like": "Delphes 3.5.0 ATLAS card: calorimeter jets to |eta| 4.9, ATL-PHYS-PUB-2015-022 b-tagging",
    "cms-like": "Delphes 3.5.0 CMS card: HCal resolution for jets to |eta| 5.0, arXiv:1211.4462 b-tagging",
}
_CARDS: dict[str, dict[str, Any]] = {"atlas-like": _ATLAS, "cms-like": _CMS}


def preset_card(name: str) -> dict[str, Any]:
    """The tables of a preset: ``jet``, ``electron``, ``muon``, ``btagging`` and ``met_soft_resolution``.

    Arguments:
        name: one of :data:`PP_PRESETS`.

    Returns:
        A fresh copy (the caller may change it).

    Raises:
        ConfigError: unknown name (path ``preset``), with a suggestion.

    Example:
        >>> preset_card("cms-like")["muon"]["eta_max"]
        2.4
    """
    if name not in _CARDS:
        raise ConfigError("unknown pp detector preset; known: " + ", ".join(PP_PRESETS), path="preset", value=name,
                          hint=suggest(name, PP_PRESETS))
    return copy.deepcopy(_CARDS[name])
