"""Parameters of the GAN generators, the two presets and how ``None`` values are filled.

Every :class:`GANParams` field left ``None`` takes the value of the chosen
preset (``cpu``: small networks fast on two cores; ``published``: the thesis
sizes), else the model's ``MODEL_DEFAULTS``, else :data:`BASE_DEFAULTS`
(:func:`resolve_settings`).

Example:
    >>> resolve_settings(GANParams(preset="published"), {"cpu": CPU_PRESET, "published": PUBLISHED_PRESET},
    ...                  {"mmd_weight": 10.0})["noise_dim"]
    100
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlegpipe.nets import ACTIVATIONS, NORMS
from mlegpipe.schema import fill_none, param

__all__ = ["BASE_DEFAULTS", "CPU_PRESET", "GANParams", "PUBLISHED_PRESET", "resolve_settings"]


@dataclass
class GANParams:
    """Parameters of every GAN generator; ``None`` takes the value of ``preset`` (or the model's default)."""

    preset: str = param("cpu", choices=("cpu", "published"),
                        doc="'cpu': small and fast on 2 cores; 'published': the paper's sizes and steps")
    noise_dim: int | None = param(None, min=1, max=4096, doc="dimension of the Gaussian noise")
    layers: int | None = param(None, min=1, max=64, doc="hidden layers of the generator network")
    width: int | None = param(None, min=1, max=8192, doc="neurons per hidden layer")
    activation: str | None = param(None, choices=(*ACTIVATIONS, None), doc="hidden activation")
    leaky_slope: float | None = param(None, min=0.0, max=1.0, doc="negative slope of leaky_relu")
    dropout: float | None = param(None, min=0.0, max=0.95, doc="dropout in the generator (training only)")
    residual: bool | None = param(None, doc="skip connections between equal-width layers (thesis Fig. 48)")
    norm: str | None = param(None, choices=(*NORMS, None), doc="weight normalization")
    steps: int | None = param(None, min=0, doc="generator updates")
    batch_size: int | None = param(None, min=2, doc="events per batch")
    critic_steps: int | None = param(None, min=1, max=100, doc="discriminator updates per generator update")
    lr: float | None = param(None, min=0.0, exclusive_min=True, doc="Adam learning rate of the generator")
    beta1: float | None = param(None, min=0.0, max=1.0, doc="Adam β₁ of the generator")
    beta2: float | None = param(None, min=0.0, max=1.0, doc="Adam β₂ of the generator")
    lr_schedule: str | None = param(None, choices=("constant", "cosine", None),
                                    doc="learning-rate schedule of both networks (cpu preset: cosine decay)")
    mmd_weight: float | None = param(None, min=0.0, doc="η: weight of MMD² in the generator loss (thesis eq. 14)")
    mmd_sigmas: list[float] = param([0.2, 0.5, 1.0], min=0.0, exclusive_min=True,
                                    doc="Gaussian kernel widths of the MMD (standardized units)")
    mmd_events: int = param(256, min=2, doc="events of each batch used in the MMD (its cost grows as the square)")
    mmd_condition: float | None = param(None, min=0.0,
                                        doc="conditional models: the standardized beam energy times this factor "
                                            "joins the MMD features, so the kernel compares events of nearby "
                                            "energies only (0: MMD of the pooled energies)")
    mmd_observables: list[str] | None = param(None, doc="How to GAN LHC Events: declared observables (e.g. resonance "
                                                         "masses m_W1, m_t1) whose MMD² between generated and training "
                                                         "events, one Breit–Wigner kernel each, joins the generator "
                                                         "loss (None: model's; [] none)")
    mmd_observable_widths: list[float] | None = param(None, min=0.0, exclusive_min=True,
                                                      doc="full width Γ of each observable's Breit–Wigner kernel "
                                                          "(None: each observable's declared peak width)")
    mmd_observable_weight: float | None = param(None, min=0.0, doc="weight of the observables' MMD² in the generator "
                                                                   "loss (None: model's, else 1 as published; 0: "
                                                                   "the ablation without it)")
    mmd_observable_scales: list[float] | None = param(None, min=0.0, exclusive_min=True,
                                                      doc="the observables' kernel is the sum of Breit–Wigner "
                                                          "kernels of widths Γ times each of these (None: model's; "
                                                          "[1] as published)")
    mmd_observable_events: int | None = param(None, min=2, doc="generated and training events of each batch in the "
                                                               "observables' MMD² (None: model's; its cost grows as "
                                                               "the square)")
    energy_scaling: bool | None = param(None, doc="generate T - ln E_b ≈ ln y instead of T = ln(E_b - p∥) and show the "
                                                  "critic its augmented features in units of E_b: the edge y ≤ 1 sits "
                                                  "at the same place at every beam energy (lepton_t map; p_x, p_y stay "
                                                  "in GeV, as the low-Q² bulk of p_T does not scale with E_b)")
    log_condition: bool | None = param(None, doc="conditional models: the networks see the standardized ln E_b instead of "
                                                 "E_b (the kinematic edges, e.g. y_min = Q²_min / 4E_b², move "
                                                 "linearly in ln E_b, so the low energies are not squeezed together)")
    ema: float | None = param(None, min=0.0, max=0.9999,
                              doc="decay of an exponential moving average of the generator weights, which "
                                  "validation and sampling use (0: the trained weights themselves)")
    random_azimuth: bool | None = param(None, doc="rotate every generated (p_x, p_y) by a uniform azimuth, in "
                                                  "training and sampling (unpolarized scattering is φ-symmetric)")
    augment: list[str] | None = param(None, doc="augmented features shown to the discriminator (None: model's)")
    preprocess: str = param("asinh", choices=("asinh", "none"),
                            doc="asinh((x - median)/MAD) on p_x, p_y, p_z and the augmented features before "
                                "standardizing (log-like tails); 'none': standardize only, as published")
    linear_augment: list[str] | None = param(None, doc="augmented features shown to the critic once more, standardized "
                                                       "without the asinh map (None: model's). Under energy_scaling E "
                                                       "and p_z are bounded by E_b and peak just below it: asinh((x - "
                                                       "median)/MAD) resolves the peak but squeezes the whole low-E' "
                                                       "tail into a sliver; the linear copy resolves the tail")
    reject_unphysical: bool | None = param(None, doc="redraw events that break a physical limit (None: model's)")
    reject_outside_training: bool | None = param(
        None, doc="lepton models: also redraw events outside the training sample's selection: Q² below its "
                  "smallest Q² (the sample's Q² cut), and for unconditional models Q², W², y outside its range "
                  "(conditional models: those edges move with the beam energy, only the Q² cut is kept)")
    validate_every: int = param(250, min=0, doc="validate every this many steps (0: never)")
    valid_events: int = param(5000, min=10, doc="events generated for each validation")
    checkpoint_every: int = param(500, min=0, doc="in a run: write a resumable training checkpoint every this many "
                                                   "steps (0: never)")
    resume: bool = param(False, doc="continue from the last training checkpoint in the run folder (also: "
                                    "mlegpipe run --resume)")


CPU_PRESET: dict[str, Any] = {
    "noise_dim": 32, "layers": 3, "width": 128, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.0,
    "residual": False, "norm": "none", "steps": 3000, "batch_size": 512, "critic_steps": 3,
    "lr": 1e-3, "beta1": 0.5, "beta2": 0.9, "lr_schedule": "cosine",
}
PUBLISHED_PRESET: dict[str, Any] = {
    "noise_dim": 100, "layers": 5, "width": 512, "activation": "leaky_relu", "leaky_slope": 0.2, "dropout": 0.0,
    "residual": False, "norm": "none", "steps": 100_000, "batch_size": 1024, "critic_steps": 5,
    "lr": 1e-4, "beta1": 0.5, "beta2": 0.9, "lr_schedule": "constant",
}


#: Defaults of the parameters that neither the preset nor the model's ``MODEL_DEFAULTS`` gives.
BASE_DEFAULTS: dict[str, Any] = {"reject_outside_training": False, "ema": 0.0, "mmd_condition": 0.0,
                                 "mmd_observables": [], "mmd_observable_weight": 1.0, "mmd_observable_events": 256,
                                 "mmd_observable_scales": [1.0],
                                 "log_condition": False, "linear_augment": [],
                                 "random_azimuth": False, "energy_scaling": False}


def resolve_settings(params: GANParams, presets: Mapping[str, Mapping[str, Any]],
                     model_defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter by name, each ``None`` filled from the preset, the model's defaults, :data:`BASE_DEFAULTS`.

    Example:
        >>> s = resolve_settings(GANParams(steps=7), {"cpu": CPU_PRESET}, {"augment": ["E"]})
        >>> s["steps"], s["width"], s["augment"], s["ema"]
        (7, 128, ['E'], 0.0)
    """
    return fill_none(params, presets[params.preset], model_defaults, BASE_DEFAULTS)
