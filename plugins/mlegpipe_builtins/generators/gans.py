"""GAN event generators: FAT-GAN, conditional cFAT-GAN, the DS-GAN baseline and the thesis ch. 7 LSGAN.

All four are an :class:`~mlegpipe_builtins.generators._gan_base.AdversarialGenerator`
(one representation, training loop, sampler and state code) and differ in what they generate:

=========  ===========================================  ======================  =============
plugin     generated features                           discriminator also sees  default adversary
=========  ===========================================  ======================  =============
fatgan     p_x, p_y, T = ln(E_b - p∥)                   p_z, E, p_T, p_z/p_T     wgan-gp + η·MMD²
cfatgan    the same, conditioned on beam_energy         + p_x p_y, p_x p_z, p_y p_z  wgan-gp + η·MMD²
dsgan      p_x, p_y, p_z (or any ``features``)           nothing                  wgan-gp
lsgan      ν₁ = ln(E' - p∥), ν₂ = ln(2E_b - E' - p∥); φ uniform  nothing       lsgan
=========  ===========================================  ======================  =============

Example:
    >>> from mlegpipe.registry import load_plugins
    >>> sorted(n for n in load_plugins().names("generator") if n in ("fatgan", "cfatgan", "dsgan", "lsgan"))
    ['cfatgan', 'dsgan', 'fatgan', 'lsgan']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import DataError
from mlegpipe.features import FeatureMap, make_feature_map
from mlegpipe.schema import param
from mlegpipe_builtins.dis.maps import beam_energy_of
from mlegpipe_builtins.generators._gan_base import AdversarialGenerator
from mlegpipe_builtins.generators._gan_params import CPU_PRESET, PUBLISHED_PRESET, GANParams
from mlegpipe_builtins.generators._listed_features import listed_feature_map

__all__ = ["CFATGAN", "DSGAN", "FATGAN", "LSGANGenerator"]

#: FAT-GAN discriminator inputs besides (p_x, p_y, T): thesis ch. 4 (7 features in all).
FATGAN_DISCRIMINATOR_AUGMENT: list[str] = ["pz", "E", "pT", "pz_over_pT"]
#: cFAT-GAN adds the momentum products (thesis ch. 5, Table 4 and physics reference §4).
CFATGAN_DISCRIMINATOR_AUGMENT: list[str] = ["pz", "E", "pT", "pz_over_pT", "px_py", "px_pz", "py_pz"]


def _lepton_map(name: str, events: EventBatch, model: str) -> FeatureMap:
    if events.beams is None:
        raise DataError(f"{model} learns the scattered lepton and needs the beam set-up; the training events "
                        "carry no beams", path="truth.beams")
    missing = [f for f in ("lepton_px", "lepton_py", "lepton_pz") if not events.has(f)]
    if missing:
        raise DataError(f"{model} learns the scattered lepton; the training events have no field {missing[0]!r} "
                        "(fields: " + ", ".join(events.fields) + ")", path=missing[0])
    return make_feature_map(name, events.beams)


class FATGAN(AdversarialGenerator):
    """FAT-GAN (thesis ch. 4): feature-augmented and transformed WGAN-GP for the scattered lepton.

    The network generates (p_x, p_y, T(p_z)) with T = ln(E_b - p∥), so the
    momentum along the lepton beam p∥ = E_b - e^T never exceeds E_b; the
    critic sees those plus the augmented p_z, E, p_T and p_z/p_T computed
    differentiably, and the generator loss adds η·MMD² (thesis eq. 14) between
    generated and training discriminator features. E' can still exceed what
    the beams allow through p_T: such events (0 < x ≤ 1, 0 < y ≤ 1, W² ≥ M²
    broken) are counted and redrawn (``reject_unphysical = true``); the
    fraction is in :meth:`info`. On CPU (``preset = "cpu"``) every generated
    (p_x, p_y) is rotated by a uniform azimuth (``random_azimuth``).

    Example:
        >>> from mlegpipe.context import StageContext
        >>> gan = FATGAN(FATGAN.Params(preset="published"), StageContext("generator"))
        >>> gan.settings["layers"], gan.settings["width"], gan.settings["noise_dim"]
        (5, 512, 100)
    """

    plugin_name: ClassVar[str] = "fatgan"

    @dataclass
    class Params(GANParams):
        pass

    # random_azimuth: on HERA Pythia (bench_gans --models fatgan, 30k events, 2000 steps, one seed) the x
    # χ²/ndf went from 26x to 13x the floor, joint Q²-x 6.6x -> 3.1x, p_T 5.3x -> 1.3x; published: off
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": CPU_PRESET,
                                                    "published": {**PUBLISHED_PRESET, "random_azimuth": False}}
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {
        "mmd_weight": 10.0, "augment": FATGAN_DISCRIMINATOR_AUGMENT, "reject_unphysical": True,
        "random_azimuth": True}

    def make_feature_map(self, events: EventBatch) -> FeatureMap:
        """``lepton_t``: (p_x, p_y, T) with the beam direction of ``events.beams``."""
        return _lepton_map("lepton_t", events, "fatgan")


class CFATGAN(FATGAN):
    """cFAT-GAN (thesis ch. 5): FAT-GAN conditioned on the lepton beam energy.

    Both networks get the beam energy, standardized over the training
    energies; T = ln(E_b - p∥) uses each event's own E_b, so events stay below
    their beam energy at any requested energy. Train on events carrying a
    ``beam_energy`` field with several values; sample at any energy, trained
    or not: ``sample(n, seed, {"beam_energy": 60.0})`` (one value, or one per
    event).

    CPU defaults beyond the thesis (each a :class:`GANParams` switch): the
    network generates T - ln E_b (``energy_scaling``), every generated
    (p_x, p_y) is rotated by a uniform azimuth (``random_azimuth``), the MMD
    compares events of like beam energy (``mmd_condition = 3``), both networks
    see the standardized ln E_b (``log_condition``: the kinematic edges, e.g.
    y_min = Q²_min/4E_b², move linearly in ln E_b, so 10 and 15 GeV are not
    squeezed together) and the cpu preset trains 6000 steps (3.8 CPU-minutes).
    Binned KL of E', p_x, p_y, p_z against 2·10⁵ fresh Pythia events per
    energy, trained on 5·10⁴ events at 10-50 GeV (benchmarks/bench_generators.py
    ``--conditional --kl-events 200000``): with 4000 steps and E_b as the
    condition, training seed 2 left 7.4·10⁻³ at 10 GeV (seed 1: ≤ 3.6·10⁻³);
    now seeds 2 and 3 ≤ 4.2·10⁻³ at 10-50 GeV, seed 1 too except p_z at
    10 GeV (5.05·10⁻³), and 60 GeV ≤ 5.6·10⁻³ (seed 3 chosen after seeds 1
    and 2, as a check). ``linear_augment``
    (linear copies of E and p_z for the critic, whose asinh view squeezes the
    low-E' tail) is off: it helped one seed and hurt the other.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> gan = CFATGAN(CFATGAN.Params(), StageContext("generator"))
        >>> gan.conditions, gan.settings["augment"][-1]
        (['beam_energy'], 'py_pz')
    """

    plugin_name: ClassVar[str] = "cfatgan"

    @dataclass
    class Params(GANParams):
        pass

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {**CPU_PRESET, "steps": 6000},
                                                    # the thesis representation and loss, as published
                                                    "published": {**PUBLISHED_PRESET, "layers": 8,
                                                                  "energy_scaling": False, "random_azimuth": False,
                                                                  "mmd_condition": 0.0, "log_condition": False}}
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {
        "mmd_weight": 10.0, "augment": CFATGAN_DISCRIMINATOR_AUGMENT, "reject_unphysical": True,
        "energy_scaling": True, "mmd_condition": 3.0, "random_azimuth": True, "log_condition": True}
    conditional: ClassVar[bool] = True

    def prepare(self, events: EventBatch) -> CFATGAN:
        """As :meth:`AdversarialGenerator.prepare`, after checking that the training energies vary."""
        energies = np.unique(beam_energy_of(events))
        if len(energies) < 2:
            raise DataError(f"cfatgan learns how events change with the beam energy, but all training events have "
                            f"beam_energy = {float(energies[0]) if len(energies) else None} GeV",
                            path="beam_energy", hint="train on several beam energies, or use plugin = 'fatgan'")
        super().prepare(events)
        self._training_energies = [float(e) for e in energies[:64]]
        return self

    def info(self) -> dict[str, Any]:
        """FAT-GAN figures plus the trained beam energies."""
        out = super().info()
        energies = getattr(self, "_training_energies", None)
        if energies:
            out["training_energies"] = energies
        return out


class DSGAN(AdversarialGenerator):
    """DS-GAN: the naive direct-simulation baseline generating (p_x, p_y, p_z) (or any flat ``features``).

    Nothing keeps its events physical: the fraction breaking a limit
    (E' > E_b in symmetric and fixed-target set-ups shows up as x > 1 or
    y < 0) is counted in :meth:`info` (``unphysical_fraction``) and the events
    are kept. With ``features = ["x", "Q2"]`` (any flat fields) it is a plain
    GAN on those columns, e.g. for the toy densities.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> DSGAN(DSGAN.Params(), StageContext("generator")).settings["mmd_weight"]
        0.0
    """

    plugin_name: ClassVar[str] = "dsgan"

    @dataclass
    class Params(GANParams):
        features: list[str] = param([], doc="flat fields and fixed-multiplicity particle collections to learn "
                                            "directly (empty: the lepton p_x, p_y, p_z)")

    def make_feature_map(self, events: EventBatch) -> FeatureMap:
        """``collection`` on ``features`` if given (flat fields as they are, particles as ln p_T, η, φ, mass),
        else ``lepton_cartesian``."""
        if self.params.features:
            return listed_feature_map("collection", events, self.params.features, registry=self.ctx.lookup(),
                                      where=self.ctx.name)
        return _lepton_map("lepton_cartesian", events, "dsgan")


class LSGANGenerator(AdversarialGenerator):
    """Thesis ch. 7 event generator: (ν₁, ν₂) with least-squares GAN losses, φ uniform.

    ν₁ = ln(E' - p∥), ν₂ = ln(2E_b - E' - p∥) (p∥ along the lepton beam; at a
    collider ν₁ = ln(Q²/2E_b), ν₂ ≈ ln(2E_b y)); the azimuth is drawn
    uniformly. Events with y > 1 or x > 1 are counted and redrawn. The cpu
    preset adds η = 10 times MMD² to the least-squares generator loss (the
    published preset keeps the pure LSGAN loss of thesis eq. 26).

    Use as the vertex-level generator of the unfolding stage, trained through
    a frozen differentiable detector surrogate:

    - ``gen.prepare(reference_events)``: fit the (ν₁, ν₂) scaler on a reference
      sample and build a fresh :attr:`network` (``fit`` does this itself).
    - ``gen.network``: ``nn.Module``, noise ``(n, noise_dim)`` → standardized
      (ν₁, ν₂) ``(n, 2)``; ``gen.noise(n, torch_generator)`` draws its input;
      ``gen.generate_tensor(noise)`` runs it.
    - ``gen.to_physical(z)``: standardized → (ν₁, ν₂) in physical units
      (differentiable); ``gen.scaler`` is the scaler; ``gen.encode(events)``
      goes the other way for real events.
    - ``gen.decode(z, seed=...)``: an :class:`EventBatch` (lepton four-momentum,
      x, Q², y, W², ν; φ uniform from ``seed``); ``gen.physical_mask(events)``.
    - ``gen.state_dict()`` / ``load_state_dict``: as for every generator.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> gan = LSGANGenerator(LSGANGenerator.Params(), StageContext("generator"))
        >>> gan.DEFAULT_DISCRIMINATOR, gan.uniform_phi
        ('lsgan', True)
    """

    plugin_name: ClassVar[str] = "lsgan"

    @dataclass
    class Params(GANParams):
        pass

    # η·MMD² joins the least-squares loss on CPU: in 1000 steps on HERA Pythia events it brings the E'
    # χ²/ndf from 300× to 1.6× the truth floor; the published preset keeps the pure LSGAN loss
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {**CPU_PRESET, "mmd_weight": 10.0},
                                                    "published": {**PUBLISHED_PRESET, "mmd_weight": 0.0}}
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {"mmd_weight": 0.0, "augment": [], "reject_unphysical": True}
    DEFAULT_DISCRIMINATOR: ClassVar[str] = "lsgan"
    uniform_phi: ClassVar[bool] = True

    def make_feature_map(self, events: EventBatch) -> FeatureMap:
        """``nu``: (ν₁, ν₂, φ) with the beam direction of ``events.beams``."""
        return _lepton_map("nu", events, "lsgan")


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the GAN generators: ``fatgan``, ``cfatgan``, ``dsgan``, ``lsgan``."""
    registry.add(FATGAN)
    registry.add(CFATGAN)
    registry.add(DSGAN)
    registry.add(LSGANGenerator)
