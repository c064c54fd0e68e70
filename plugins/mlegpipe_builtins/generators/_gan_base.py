"""Adversarial training shared by the GAN generators (fatgan, cfatgan, dsgan, lsgan).

:class:`AdversarialGenerator` holds everything the four published models have
in common; a model only chooses its feature map (how events become the
features the network generates), which augmented features the discriminator
sees beside them, whether it is conditioned on the beam energy, and its
default adversary and loss weights.

Data flow (one training step = ``critic_steps`` discriminator updates, then one
generator update)::

    noise ─► network ─► z (standardized generated features) ─┬─────────────► [z, aug] ─► discriminator
                                    scaler⁻¹ ─► feature map⁻¹ ─► lepton (E, p) ─► augmented features ─┘

Every step of the generated branch is differentiable, so the discriminator's
judgement of the augmented features (E, p_T, p_z/p_T, ...) trains the network
(thesis ch. 4, Table 4). Real events follow the same path from their encoded
features. With ``preprocess = "asinh"`` (default) the momentum components
p_x, p_y (p_z) and the augmented features pass through asinh((x - median)/MAD)
before standardization: their power-law tails become logarithmic, which on the
HERA and 50 × 50 GeV samples cuts the Q² χ²/ndf of a 1000-step FAT-GAN from
≈ 30 to ≈ 5 (the generated features are still (p_x, p_y, T): the map is exact
and invertible). Augmented features are soft-clipped to ±``AUG_CLIP``
(``c·tanh(x/c)``) so a wild early generator cannot feed the critic p_z/p_T → ∞.

CPU defaults (``preset = "cpu"``): 3 × 128 networks, noise 32, batch 512,
3 critic steps per generator step, Adam 10⁻³ with cosine decay for the
generator, η = 10 for the FAT-GAN MMD² term; the untrained generator's output
layer is calibrated to unit spread (:func:`_calibrate_output`).
``preset = "published"`` gives the thesis sizes (5 × 512, noise 100, Adam
10⁻⁴, 5 critic steps, 100 000 steps).

Levers beyond the thesis (off unless a model's defaults switch them on; cFAT-GAN does):
``energy_scaling`` generates T - ln E_b ≈ ln y instead of T, so the edge
y ≤ 1 stays put across beam energies, and shows the critic its augmented
features in units of E_b; ``random_azimuth`` rotates every generated
(p_x, p_y) by a uniform angle (exact φ symmetry, p_x and p_y share the
quality of p_T); ``mmd_condition`` adds the scaled condition to the MMD
features so the kernel only compares events of like energies; ``log_condition``
feeds the networks the standardized ln E_b (the kinematic edges move linearly
in ln E_b); ``linear_augment`` shows the critic linear copies of augmented
features whose asinh view squeezes a tail (E', p_z below the kinematic peak); ``ema``
samples with a moving average of the generator weights;
``reject_outside_training`` also redraws events below the training sample's Q² cut.

Sampling draws all noise from a NumPy generator seeded by the caller's
``SeedSequence`` (which it does not alter), so the same seed gives the same
events. Events are decoded with :func:`mlegpipe.features.decode_events`:
lepton models get the DIS invariants, and events that break a kinematic limit
(x ∉ (0, 1], y ∉ (0, 1], W² < M², non-finite) are counted and, with
``reject_unphysical``, redrawn by :func:`mlegpipe.features.sample_with_rejection`
(the fractions are in :meth:`AdversarialGenerator.info`).

Example:
    >>> import numpy as np
    >>> from mlegpipe.context import StageContext
    >>> from mlegpipe_builtins.generators.gans import DSGAN
    >>> from mlegpipe.events import EventBatch
    >>> rng = np.random.default_rng(0)
    >>> train = EventBatch.from_columns({"x": rng.normal(2.0, 0.5, 2000)})
    >>> gan = DSGAN(DSGAN.Params(features=["x"], steps=20, validate_every=0), StageContext("generator"))
    >>> _ = gan.fit(train, train)
    >>> len(gan.sample(100, np.random.SeedSequence(1)))
    100
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mlegpipe.beams import Beams
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError, PhysicsError
from mlegpipe.features import (
    AsinhScale,
    CollectionMap,
    FeatureMap,
    LogStandardize,
    Standardize,
    augment,
    decode_events,
    make_feature_map,
    sample_with_rejection,
)
from mlegpipe.generation import single_threaded_kernels
from mlegpipe.losses import mmd2
from mlegpipe.nets import ACTIVATIONS, NORMS, count_parameters, mlp
from mlegpipe.schema import param
from mlegpipe.stages import Discriminator, Generator, NetworkInputs, NetworkProbe, StageContext
from mlegpipe.training import MinibatchSampler, TrainLoop, cosine_schedule
from mlegpipe_builtins.dis import BEAM_ENERGY
from mlegpipe_builtins.dis.kinematics import physical_mask
from mlegpipe_builtins.dis.labels import beams_at

__all__ = [
    "AUG_CLIP",
    "AdversarialGenerator",
    "GANParams",
    "SAMPLE_CHUNK",
    "sliced_wasserstein",
    "soft_clip",
]

#: Events per network pass in :meth:`AdversarialGenerator.sample`: small enough for a layer's activations
#: to stay in cache (for the 3 x 128 CPU network 8192 runs ~2.5x faster per event than 65,536).
SAMPLE_CHUNK = 8_192
#: Soft bound (in standard deviations) on augmented discriminator features.
AUG_CLIP = 10.0
#: Redraw rounds before rejection sampling gives up.
MAX_REJECTION_ROUNDS = 64



def soft_clip(x: torch.Tensor, bound: float = AUG_CLIP) -> torch.Tensor:
    """``bound · tanh(x / bound)``: the identity near 0, smoothly bounded by ±bound.

    Example:
        >>> soft_clip(torch.tensor([0.0, 1e6])).tolist()
        [0.0, 10.0]
    """
    return bound * torch.tanh(x / bound)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, n_random: int = 16, seed: int = 0) -> float:
    """Mean 1D Wasserstein distance over the axes and ``n_random`` fixed random directions.

    Both samples must have the same size (sorted projections are compared).
    It sees marginals and, through the random directions, correlations.

    Example:
        >>> a = np.random.default_rng(0).normal(size=(1000, 2))
        >>> round(sliced_wasserstein(a, a + 1.0, n_random=0), 6)
        1.0
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise DataError(f"sliced Wasserstein needs samples of equal shape, got {a.shape} and {b.shape}")
    d = a.shape[1]
    dirs = [np.eye(d)]
    if n_random:
        r = np.random.default_rng(seed).normal(size=(n_random, d))
        dirs.append(r / np.linalg.norm(r, axis=1, keepdims=True))
    proj = np.concatenate(dirs)
    pa, pb = np.sort(a @ proj.T, axis=0), np.sort(b @ proj.T, axis=0)
    return float(np.abs(pa - pb).mean())


def _calibrate_output(net: nn.Sequential, inputs: torch.Tensor) -> None:
    """Rescale the last linear layer so the untrained network's outputs have mean 0 and unit spread.

    PyTorch's default initialization shrinks the spread layer by layer: an
    untrained generator emits a narrow blob at the centre of the standardized
    data, and a critic facing a blob inside the data builds a cone whose apex
    (zero gradient) the two-sided gradient penalty makes costly to cross. A
    generator that starts as wide as the data does not start in that trap.
    """
    last = net[-1]
    if not isinstance(last, nn.Linear):
        return
    with torch.no_grad():
        out = net(inputs)
        std = out.std(dim=0).clamp_min(1e-6)
        last.weight /= std[:, None]
        last.bias.copy_((last.bias - out.mean(dim=0)) / std)


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
                                 "log_condition": False, "linear_augment": [],
                                 "random_azimuth": False, "energy_scaling": False}
#: Generated features that ``energy_scaling`` shifts by -ln E_b. p_x, p_y stay in GeV: the low-Q² bulk of p_T
#: does not scale with E_b, and dividing them by E_b too doubled their KL at 10 and 50 GeV.
_SHIFTED_BY_LOG_ENERGY: tuple[str, ...] = ("lepton_T",)


class AdversarialGenerator(Generator):
    """A generator trained adversarially; subclasses pick the representation.

    Subclass interface:
        PRESETS: ``{"cpu": {...}, "published": {...}}`` values for ``None`` parameters.
        MODEL_DEFAULTS: defaults of ``mmd_weight``, ``augment``, ``reject_unphysical``.
        DEFAULT_DISCRIMINATOR: ``"wgan-gp"`` or ``"lsgan"`` (used when ``fit`` gets none).
        conditional: conditioned on the per-event ``beam_energy``.
        uniform_phi: the last feature of the map is the azimuth, drawn uniformly
            instead of generated (unpolarized scattering).
        make_feature_map(events): the :class:`~mlegpipe.features.FeatureMap`.

    Public tensors and networks (also used by the unfolding stage):
        network: ``nn.Module`` mapping ``noise (n, noise_dim [+1])`` to standardized
            generated features ``(n, n_generated)``.
        scaler: the :class:`~mlegpipe.features.Standardize` of those features.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": CPU_PRESET, "published": PUBLISHED_PRESET}
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {"mmd_weight": 0.0, "augment": [], "reject_unphysical": False}
    DEFAULT_DISCRIMINATOR: ClassVar[str] = "wgan-gp"
    conditional: ClassVar[bool] = False
    uniform_phi: ClassVar[bool] = False

    def __init__(self, params: Any, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        self.settings = self._resolve()
        self.features: list[str] = []
        self.conditions: list[str] = [BEAM_ENERGY] if self.conditional else []
        self.feature_map: FeatureMap | None = None
        self.beams: Beams | None = None
        self.pre = AsinhScale([])
        self.scaler = Standardize()
        self.aug_pre = AsinhScale([])
        self.aug_scaler = Standardize()
        self.cond_scaler = LogStandardize() if self.settings["log_condition"] else Standardize()
        self.network: nn.Module | None = None
        self.discriminator: Discriminator | None = None
        self.discriminator_net: nn.Module | None = None
        self._stats: dict[str, float] = {"sampled": 0, "unphysical": 0, "outside_training": 0, "rejected": 0}
        #: {field: (low, high)} of the training events, enforced with ``reject_outside_training``
        self.ranges: dict[str, tuple[float, float]] = {}
        self._training: dict[str, Any] = {}

    # -- configuration ------------------------------------------------------------------------------
    def _resolve(self) -> dict[str, Any]:
        preset = self.PRESETS[self.params.preset]
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self.params):
            value = getattr(self.params, f.name)
            if value is None:
                value = preset[f.name] if f.name in preset else self.MODEL_DEFAULTS.get(f.name,
                                                                                        BASE_DEFAULTS.get(f.name))
            out[f.name] = value
        return out

    def make_feature_map(self, events: EventBatch) -> FeatureMap:
        """The feature map of this model for ``events`` (subclasses override)."""
        raise NotImplementedError

    @property
    def n_generated(self) -> int:
        """Number of features the network outputs."""
        self._require_prepared()
        return len(self.feature_map.names) - (1 if self.uniform_phi else 0)

    @property
    def generated_names(self) -> list[str]:
        """Names of the generated features (the network's outputs, before standardization)."""
        self._require_prepared()
        return list(self.feature_map.names[: self.n_generated])

    @property
    def has_physical_limits(self) -> bool:
        """True when the feature map's decoded events have domain limits to check (the DIS lepton maps)."""
        return self.feature_map is not None and bool(self.feature_map.range_fields)

    def _require_prepared(self) -> None:
        if self.feature_map is None or self.network is None:
            raise ConfigError(f"generator {self.plugin_name or type(self).__name__!r} is used before it was "
                              "trained or loaded", path=self.ctx.name)

    # -- preparation: feature map, scalers, network ----------------------------------------------------
    def _beam_energy(self, events: EventBatch) -> np.ndarray:
        """The feature map's per-event context (the lepton beam energy of DIS maps; zeros for maps without one)."""
        if self.feature_map is not None and self.feature_map.needs_context:
            return self.feature_map.context_of(events)
        return np.zeros(len(events))

    def _full_features(self, events: EventBatch) -> np.ndarray:
        """All map features of ``events`` (float64, unstandardized)."""
        return self.feature_map.encode(events)

    def _lepton(self, raw: torch.Tensor, eb: torch.Tensor, phi: torch.Tensor | None) -> torch.Tensor:
        """The ``(n, 4)`` lepton (E, px, py, pz) of raw generated features (differentiable)."""
        full = raw if phi is None else torch.cat([raw, phi[:, None]], dim=1)
        return self.feature_map.inverse(full, eb)

    def prepare(self, events: EventBatch) -> AdversarialGenerator:
        """Fit the feature map and scalers to ``events`` and build a fresh network; returns self.

        ``fit`` calls this on the training sample. The unfolding stage calls it
        on a reference sample (e.g. an initial guess) before training
        :attr:`network` itself through a detector surrogate.
        """
        if len(events) < 2:
            raise DataError("a GAN needs at least two training events", path=self.ctx.name, value=len(events))
        self.beams = events.beams
        self.feature_map = self.make_feature_map(events).fit(events)
        if isinstance(self.feature_map, CollectionMap) and self.feature_map.variable is not None:
            raise ConfigError(f"collection {self.feature_map.variable!r} has a variable multiplicity: learn it with "
                              "plugin = \"flow\", which draws the multiplicity and generates the particles given it",
                              path=f"{self.ctx.name}.features", value=self.feature_map.variable)
        self.features = list(self.feature_map.fields)
        full = self._full_features(events)
        k = len(self.feature_map.names) - (1 if self.uniform_phi else 0)
        asinh = self.settings["preprocess"] == "asinh"
        self.pre = AsinhScale([asinh and n in self.feature_map.heavy_tailed for n in self.feature_map.names[:k]])
        self._check_energy_scaling(k)
        scaled = self._to_scaled(torch.from_numpy(full[:, :k]), torch.from_numpy(self._beam_energy(events)))
        generated = self.pre.fit(scaled).transform(scaled)
        self.scaler.fit(generated, events.weights)
        if self.settings["augment"] or self.settings["linear_augment"]:
            eb = torch.from_numpy(self._beam_energy(events))
            aug = self._augment(self.feature_map.inverse(torch.from_numpy(full), eb), eb)
            self.aug_pre = AsinhScale([asinh] * len(self.settings["augment"])
                                      + [False] * len(self.settings["linear_augment"]))
            self.aug_scaler.fit(self.aug_pre.fit(aug).transform(aug), events.weights)
        if self.conditional:
            self.cond_scaler.fit(self._beam_energy(events)[:, None], events.weights)
        if self.settings["random_azimuth"] and list(self.feature_map.names[:2]) != ["lepton_px", "lepton_py"]:
            raise ConfigError("random_azimuth rotates (lepton_px, lepton_py), the first two generated features; "
                              f"this model generates {list(self.feature_map.names[:k])}",
                              path=f"{self.ctx.name}.random_azimuth", value=True)
        self.ranges = self._training_ranges(events)
        self.network = self._build_network(k)
        return self

    def _training_ranges(self, events: EventBatch) -> dict[str, tuple[float, float]]:
        """The selection edges ``reject_outside_training`` keeps (see :class:`GANParams`)."""
        if not (self.settings["reject_outside_training"] and self.has_physical_limits and self.beams is not None):
            return {}
        from mlegpipe_builtins.dis.physicality import dis_variables

        labels = {k: events.column(k) for k in ("Q2", "W2", "y") if events.has(k)}
        if len(labels) < 3:
            labels = {k: v for k, v in dis_variables(events).items() if k in ("Q2", "W2", "y")}
        if self.conditional:
            return {"Q2": (float(np.min(labels["Q2"])), float("inf"))}
        return {k: (float(np.min(v)), float(np.max(v))) for k, v in labels.items()}

    def inside_training_ranges(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """True for events inside :attr:`ranges` (all True without ``reject_outside_training``)."""
        n = len(next(iter(columns.values()))) if columns else 0
        ok = np.ones(n, dtype=bool)
        with np.errstate(invalid="ignore"):
            for name, (low, high) in self.ranges.items():
                ok &= (columns[name] >= low) & (columns[name] <= high)
        return ok

    def _check_energy_scaling(self, k: int) -> None:
        names = list(self.feature_map.names[:k])
        if self.settings["energy_scaling"] and not any(n in _SHIFTED_BY_LOG_ENERGY for n in names):
            raise ConfigError(f"energy_scaling needs T = ln(E_b - p∥) (feature map lepton_t); this model generates "
                              f"{names}", path=f"{self.ctx.name}.energy_scaling", value=True)

    def _energy_shift(self, eb: torch.Tensor | np.ndarray | float | None, n: int, k: int) -> torch.Tensor:
        """Per-event shift ``(n, k)`` of the generated features under ``energy_scaling``: ln E_b on T, else 0."""
        eb = self._require_energy(eb, n).to(torch.float64)[:, None]
        shift = torch.tensor([name in _SHIFTED_BY_LOG_ENERGY for name in self.feature_map.names[:k]])
        return torch.where(shift, torch.log(eb), torch.zeros_like(eb))

    def _to_scaled(self, raw: torch.Tensor, eb: torch.Tensor | None) -> torch.Tensor:
        if not self.settings["energy_scaling"]:
            return raw
        return raw - self._energy_shift(eb, len(raw), raw.shape[1]).to(raw.dtype)

    def _from_scaled(self, scaled: torch.Tensor, eb: torch.Tensor | None) -> torch.Tensor:
        if not self.settings["energy_scaling"]:
            return scaled
        return scaled + self._energy_shift(eb, len(scaled), scaled.shape[1]).to(scaled.dtype)

    def _require_energy(self, eb: torch.Tensor | np.ndarray | float | None, n: int) -> torch.Tensor:
        if eb is None:
            raise ConfigError("this generator learns energy-scaled features (energy_scaling = true): give the beam "
                              "energy", path=f"{self.ctx.name}.energy_scaling", value=None)
        return torch.as_tensor(np.broadcast_to(np.asarray(eb, dtype=np.float64), (n,)).copy()) \
            if not isinstance(eb, torch.Tensor) else eb.expand(n)

    def _augment(self, lepton: torch.Tensor, eb: torch.Tensor) -> torch.Tensor:
        """The augmented features of the ``(n, 4)`` leptons (in units of E_b with ``energy_scaling``)."""
        if self.settings["energy_scaling"]:
            lepton = lepton / eb.to(lepton.dtype)[:, None]
        fields, registry = self.feature_map.fields, self.ctx.lookup()
        out = augment(lepton, fields, self.settings["augment"], path=f"{self.ctx.name}.augment", registry=registry)
        if self.settings["linear_augment"]:  # the linear copies (see GANParams.linear_augment)
            out = torch.cat([out, augment(lepton, fields, self.settings["linear_augment"],
                                          path=f"{self.ctx.name}.linear_augment", registry=registry)], dim=1)
        return out

    def _build_network(self, n_out: int, calibrate: bool = True) -> nn.Module:
        s = self.settings
        n_in = s["noise_dim"] + len(self.conditions)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed("init"))
            net = mlp(n_in, n_out, [s["width"]] * s["layers"], s["activation"], s["dropout"], s["residual"],
                      s["norm"], s["leaky_slope"])
            if calibrate:
                _calibrate_output(net, torch.randn(4096, n_in))
        return net

    # -- tensors (differentiable) ----------------------------------------------------------------------
    def encode(self, events: EventBatch) -> torch.Tensor:
        """Standardized generated features of ``events`` (float32 ``(n, n_generated)``)."""
        self._require_prepared()
        full = torch.from_numpy(self._full_features(events)[:, : self.n_generated])
        scaled = self._to_scaled(full, torch.from_numpy(self._beam_energy(events)))
        return self.scaler.transform(self.pre.transform(scaled)).float()

    def to_physical(self, z: torch.Tensor, beam_energy: torch.Tensor | np.ndarray | float | None = None
                    ) -> torch.Tensor:
        """Undo the standardization (and asinh preprocessing): generated features in physical units.

        Differentiable; compute in float64 for exact inverses. ``beam_energy``
        (per event, GeV) is needed with ``energy_scaling``.
        """
        return self._from_scaled(self.pre.inverse(self.scaler.inverse(z)), beam_energy)

    def rotate_azimuth(self, z: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """Standardized generated features ``z`` with (p_x, p_y) rotated by the angles ``phi`` (differentiable).

        Rotations about the beam axis keep p_T, p_z and E, so physical events
        stay physical; :attr:`settings` ``random_azimuth`` applies a uniform
        one to every generated event.

        Example:
            >>> # gen.rotate_azimuth(z, torch.full((len(z),), np.pi))  # (p_x, p_y) -> (-p_x, -p_y)
        """
        raw = self.pre.inverse(self.scaler.inverse(z.to(torch.float64)))  # a rotation commutes with E_b scaling
        phi = phi.to(torch.float64)
        c, s = torch.cos(phi), torch.sin(phi)
        px, py = raw[:, 0], raw[:, 1]
        raw = torch.cat([torch.stack([c * px - s * py, s * px + c * py], dim=1), raw[:, 2:]], dim=1)
        return self.scaler.transform(self.pre.transform(raw)).to(z.dtype)

    def condition_tensor(self, beam_energy: np.ndarray | torch.Tensor) -> torch.Tensor | None:
        """Standardized conditioning input ``(n, 1)`` for per-event beam energies (None if unconditional)."""
        if not self.conditional:
            return None
        eb = torch.as_tensor(np.asarray(beam_energy, dtype=np.float64))[:, None]
        return self.cond_scaler.transform(eb).float()

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gaussian noise ``(n, noise_dim)`` for :attr:`network` (float32)."""
        return torch.randn(n, self.settings["noise_dim"], generator=generator)

    def generate_tensor(self, noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Standardized generated features ``network([noise, cond])`` (differentiable)."""
        self._require_prepared()
        inputs = noise if cond is None else torch.cat([noise, cond], dim=1)
        return self.network(inputs)

    def discriminator_features(self, z: torch.Tensor, beam_energy: torch.Tensor | None = None,
                               phi: torch.Tensor | None = None) -> torch.Tensor:
        """What the discriminator sees: ``[z, soft_clip(standardized augmented features)]``.

        Arguments:
            z: standardized generated features ``(n, n_generated)``.
            beam_energy: per-event lepton beam energy (GeV), for maps that need it.
            phi: azimuths for models that draw φ uniformly (only used by augmentations).
        """
        names = [*self.settings["augment"], *self.settings["linear_augment"]]
        if not names:
            return z
        if beam_energy is None:
            beam_energy = torch.full((len(z),), float(self.beams.lepton_energy) if self.beams else 0.0)
        eb = beam_energy.to(torch.float64)
        raw = self.to_physical(z.to(torch.float64), eb)
        if self.uniform_phi and phi is None:
            phi = torch.zeros(len(z), dtype=torch.float64)
        lepton = self._lepton(raw, eb, None if phi is None else phi.to(torch.float64))
        aug = self.aug_scaler.transform(self.aug_pre.transform(self._augment(lepton, eb)))
        return torch.cat([z, soft_clip(aug).to(z.dtype)], dim=1)

    def _real_discriminator_features(self, events: EventBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(discriminator features, beam energy, φ) of real events."""
        z = self.encode(events)
        full = self._full_features(events) if self.uniform_phi else None
        eb = torch.from_numpy(self._beam_energy(events))
        phi = torch.from_numpy(full[:, -1]) if self.uniform_phi else torch.zeros(len(events), dtype=torch.float64)
        with torch.no_grad():
            feats = self.discriminator_features(z, eb, phi if self.uniform_phi else None)
        return feats, eb, phi

    def interpretation_inputs(self, events: EventBatch) -> NetworkInputs:
        """What the networks see for ``events``: standardized generated features, condition, map context, φ.

        The context is the feature map's (the lepton beam energy of the DIS
        lepton maps). The discriminator's input is
        ``discriminator_features(features, context, extra["phi"])`` followed
        by ``condition`` (see :mod:`mlegpipe.interpret.probes`).
        """
        self._require_prepared()
        eb = self._beam_energy(events)
        extra = {"phi": torch.from_numpy(self._full_features(events)[:, -1])} if self.uniform_phi else {}
        return NetworkInputs(self.encode(events), self.condition_tensor(eb), eb, extra)

    def network_probe(self) -> NetworkProbe:
        """:attr:`network`, fed ``[noise]`` or ``[noise, standardized condition]`` (:class:`~mlegpipe.stages.NetworkProbe`).

        Decoded events are the network's own output (before a ``random_azimuth``
        rotation), at the beam energy read back from the standardized condition.
        """
        self._require_prepared()

        def inputs(n: int, values: Mapping[str, float] | None, gen: torch.Generator) -> list[torch.Tensor]:
            noise = self.noise(n, gen)
            if not self.conditional:
                return [noise]
            return [noise, self.condition_tensor(self._sample_beam_energy(n, (values or {}).get(BEAM_ENERGY)))]

        def forward(*tensors: torch.Tensor) -> torch.Tensor:
            return self.generate_tensor(*tensors)

        def decode(tensors: Sequence[torch.Tensor], seed: np.random.SeedSequence) -> EventBatch:
            with torch.no_grad():
                z = forward(*tensors)
                eb = self.cond_scaler.inverse(tensors[1].double())[:, 0].numpy() if self.conditional else None
            return self.decode(z, eb, seed)

        return NetworkProbe(self.network, "network", inputs, forward, decode, list(self.conditions))

    # -- events ----------------------------------------------------------------------------------------
    def decode_columns(self, z: torch.Tensor, beam_energy: np.ndarray | float | None = None,
                       seed: np.random.SeedSequence | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Event columns of standardized generated features ``z`` and the mask of physical events.

        Uses :func:`mlegpipe.features.decode_events`: lepton models get the DIS
        invariants x, Q², y, W², ν (each event at its own beam energy) and the
        kinematic limits are checked. Models with ``uniform_phi`` draw the
        azimuth uniformly from ``seed``.
        """
        self._require_prepared()
        eb = self._sample_beam_energy(len(z), beam_energy)
        raw = self.to_physical(z.detach().to(torch.float64), torch.from_numpy(eb)).numpy()
        if self.uniform_phi:
            rng = np.random.default_rng(seed if seed is not None else self.ctx.seed_sequence("phi"))
            raw = np.concatenate([raw, rng.uniform(-np.pi, np.pi, len(raw))[:, None]], axis=1)
        with np.errstate(all="ignore"):
            return decode_events(self.feature_map, raw, eb, self.beams)

    def decode(self, z: torch.Tensor, beam_energy: np.ndarray | float | None = None,
               seed: np.random.SeedSequence | None = None) -> EventBatch:
        """Events from standardized generated features ``z``, unphysical ones included (no rejection).

        Example:
            >>> # events = gen.decode(gen.generate_tensor(gen.noise(1000)), seed=np.random.SeedSequence(3))
        """
        columns, _ = self.decode_columns(z, beam_energy, seed)
        return self._events(columns)

    def _sample_beam_energy(self, n: int, beam_energy: np.ndarray | float | None) -> np.ndarray:
        if beam_energy is None:
            if self.conditional:
                raise ConfigError("this generator is conditional on beam_energy; give a value",
                                  path=f"{self.ctx.name}.conditions.beam_energy", value=None)
            beam_energy = self.beams.lepton_energy if self.beams is not None else 0.0
        eb = np.broadcast_to(np.asarray(beam_energy, dtype=np.float64), (n,)).copy()
        if self.conditional and (not np.isfinite(eb).all() or (eb <= 0).any()):
            raise PhysicsError("beam energies must be positive numbers of GeV",
                               path=f"{self.ctx.name}.conditions.beam_energy", value=float(eb.min()))
        return eb

    def _events(self, columns: dict[str, np.ndarray]) -> EventBatch:
        beams = self.beams
        eb = columns.get(BEAM_ENERGY)
        if self.conditional and beams is not None and eb is not None and len(eb) and np.all(eb == eb[0]):
            beams = beams_at(beams, float(eb[0]))
        return EventBatch.from_columns(self.feature_map.assemble(columns), beams, {"generator": self.plugin_name})

    def physical_mask(self, events: EventBatch) -> np.ndarray:
        """True for events inside the kinematic limits (finite; lepton models: 0 < x, y ≤ 1, W² ≥ M², ...)."""
        values = events.matrix(self.features)
        ok = np.isfinite(values).all(axis=1)
        if self.has_physical_limits and self.beams is not None:
            eb = events.column(BEAM_ENERGY) if events.has(BEAM_ENERGY) else np.full(len(events),
                                                                                 self.beams.lepton_energy)
            for energy in np.unique(eb):
                sel = eb == energy
                beams = beams_at(self.beams, float(energy))
                ok[sel] &= physical_mask(events.column("x")[sel], events.column("Q2")[sel],
                                         events.column("y")[sel], events.column("W2")[sel], beams)
        return ok

    # -- training --------------------------------------------------------------------------------------
    def _default_discriminator(self) -> Discriminator:
        from mlegpipe_builtins.discriminators.critics import LSGAN, WGANGP

        cls = {"wgan-gp": WGANGP, "lsgan": LSGAN}[self.DEFAULT_DISCRIMINATOR]
        stage = cls(cls.Params(), self.ctx.child("discriminator"))
        stage.plugin_name = stage.plugin_name or self.DEFAULT_DISCRIMINATOR
        return stage

    def default_discriminator(self) -> Discriminator:
        """A fresh instance of the adversary :meth:`fit` trains against when given none."""
        return self._default_discriminator()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        return torch.optim.Adam(self.network.parameters(), lr=s["lr"], betas=(s["beta1"], s["beta2"]))

    def fit(self, train: EventBatch, valid: EventBatch, discriminator: Discriminator | None = None) -> dict[str, Any]:
        """Train adversarially against ``discriminator`` (None: the model's default adversary).

        Returns:
            ``{"history": [per-step dicts], "best_step", "best_metric", "seconds", "discriminator"}``;
            the metric is the sliced Wasserstein distance between generated and
            validation events in the discriminator's feature space (lower is better).
        """
        s = self.settings
        start = time.perf_counter()
        self.prepare(train)
        disc = discriminator if discriminator is not None else self._default_discriminator()
        self.discriminator = disc
        real, eb_real, _ = self._real_discriminator_features(train)
        cond_real = self.condition_tensor(eb_real.numpy())
        n_disc = real.shape[1]
        d_net = disc.build(n_disc, len(self.conditions))
        self.discriminator_net = d_net
        make_opt = getattr(disc, "make_optimizer", None)
        opt_d = make_opt(d_net.parameters()) if make_opt is not None else torch.optim.Adam(
            d_net.parameters(), lr=s["lr"], betas=(s["beta1"], s["beta2"]))
        opt_g = self._make_optimizer()
        net = self.network  # the weights the optimizer trains
        ema = float(s["ema"])
        if ema > 0:  # validation and sampling use the moving average of net's weights
            self.network = copy.deepcopy(net).requires_grad_(False)
        batch_gen = self.ctx.torch_generator("batches")
        noise_gen = self.ctx.torch_generator("noise")
        tensors = [real, eb_real] + ([cond_real] if cond_real is not None else [])
        weights = torch.from_numpy(train.weights) if train.has("weight") else None
        sampler = MinibatchSampler(*tensors, batch_size=s["batch_size"], generator=batch_gen, weights=weights)
        mmd_weight = float(s["mmd_weight"])
        sigmas = list(s["mmd_sigmas"])
        mmd_condition = float(s["mmd_condition"])

        def fake_batch(eb: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
            noise = self.noise(len(eb), noise_gen)
            z = net(noise if cond is None else torch.cat([noise, cond], dim=1))
            if s["random_azimuth"]:
                z = self.rotate_azimuth(z, (torch.rand(len(eb), generator=noise_gen, dtype=torch.float64) * 2 - 1)
                                        * np.pi)
            phi = (torch.rand(len(eb), generator=noise_gen, dtype=torch.float64) * 2 - 1) * np.pi \
                if self.uniform_phi and s["augment"] else None
            return self.discriminator_features(z, eb, phi)

        def step(i: int) -> dict[str, float]:
            net.train()
            d_net.train()
            loss_d = torch.zeros(())
            for _ in range(s["critic_steps"]):
                batch = sampler()
                x_real, eb = batch[0], batch[1]
                cond = batch[2] if cond_real is not None else None
                with torch.no_grad():
                    x_fake = fake_batch(eb, cond)
                opt_d.zero_grad(set_to_none=True)
                loss_d = disc.discriminator_loss(d_net, x_real, x_fake, cond)
                loss_d.backward()
                opt_d.step()
            batch = sampler()
            x_real, eb = batch[0], batch[1]
            cond = batch[2] if cond_real is not None else None
            for p in d_net.parameters():
                p.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            x_fake = fake_batch(eb, cond)
            loss_adv = disc.generator_loss(d_net, x_fake, cond)
            loss_g = loss_adv
            out = {"loss_d": float(loss_d.detach()), "loss_g": float(loss_adv.detach())}
            if mmd_weight > 0:
                m = s["mmd_events"]
                if cond is not None and mmd_condition > 0:  # (features, c·condition): compare like energies
                    term = mmd2(torch.cat([x_fake[:m], mmd_condition * cond[:m]], dim=1),
                                torch.cat([x_real[:m], mmd_condition * cond[:m]], dim=1), sigmas)
                else:
                    term = mmd2(x_fake[:m], x_real[:m], sigmas)
                loss_g = loss_g + mmd_weight * term
                out["mmd2"] = float(term.detach())
            loss_g.backward()
            opt_g.step()
            if ema > 0:  # warm-up: the average forgets the early weights quickly
                with torch.no_grad():
                    decay = min(ema, (1.0 + i) / (10.0 + i))
                    for p_avg, p in zip(self.network.parameters(), net.parameters(), strict=True):
                        p_avg.lerp_(p, 1.0 - decay)
            for p in d_net.parameters():
                p.requires_grad_(True)
            return out

        validate = self._make_validation(valid)
        generators = {"batches": batch_gen, "noise": noise_gen}
        disc_gen = getattr(disc, "random_generator", None)
        if callable(disc_gen):
            generators["discriminator"] = disc_gen()
        loop = TrainLoop(
            self.ctx, step, s["steps"],
            modules={"generator": self.network, "discriminator": d_net,
                     **({"generator_trained": net} if ema > 0 else {})},
            optimizers={"generator": opt_g, "discriminator": opt_d},
            validate_fn=validate, validate_every=s["validate_every"] if validate is not None else 0,
            lr_schedule=cosine_schedule(s["steps"]) if s["lr_schedule"] == "cosine" else None,
            checkpoint_every=s["checkpoint_every"] if self.ctx.run_dir is not None else 0,
            generators=generators, desc=f"{self.ctx.name} ({self.plugin_name or type(self).__name__})",
        )
        history = loop.run(resume=True if s["resume"] or getattr(self.ctx, "resume", False) else None)
        self.network.eval()
        net.eval()
        d_net.eval()
        self._training = {
            "best_step": loop.best_step, "best_metric": loop.best_metric,
            "seconds": time.perf_counter() - start, "steps": s["steps"],
            "generator_parameters": count_parameters(self.network),
            "discriminator_parameters": count_parameters(d_net),
            "discriminator": getattr(disc, "plugin_name", "") or type(disc).__name__,
        }
        return {"history": history, **self._training}

    def _make_validation(self, valid: EventBatch) -> Any:
        """The validation function: sliced W₁ in discriminator space (+ unphysical fraction)."""
        if valid is None or len(valid) < 2 or self.settings["validate_every"] == 0:
            return None
        n = min(len(valid), self.settings["valid_events"])
        subset = valid.take(slice(0, n))
        real, eb, _ = self._real_discriminator_features(subset)
        real_np = real.numpy()
        cond = self.condition_tensor(eb.numpy())
        seed = self.ctx.torch_seed("validate")

        def validate(i: int) -> dict[str, float]:
            gen = torch.Generator().manual_seed(seed)
            self.network.eval()
            with torch.no_grad():
                z = self.generate_tensor(self.noise(n, gen), cond)
                if self.settings["random_azimuth"]:
                    z = self.rotate_azimuth(z, (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * np.pi)
                phi = (torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * np.pi \
                    if self.uniform_phi and self.settings["augment"] else None
                fake = self.discriminator_features(z, eb, phi).numpy()
            out = {"metric": sliced_wasserstein(real_np, np.nan_to_num(fake, nan=1e6, posinf=1e6, neginf=-1e6))}
            if self.has_physical_limits:
                _, ok = self.decode_columns(z, eb.numpy(), np.random.SeedSequence(seed))
                out["unphysical"] = float(1.0 - ok.mean())
            return out

        return validate

    # -- sampling --------------------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        seed: np.random.SeedSequence,
        conditions: Mapping[str, np.ndarray | float] | None = None,
    ) -> EventBatch:
        """Generate ``n`` events reproducibly from ``seed`` (see the module docstring).

        Example:
            >>> # gen.sample(10_000, np.random.SeedSequence(7), {"beam_energy": 60.0})  # cfatgan
        """
        self._require_prepared()
        if n < 0:
            raise ConfigError("the number of events must be >= 0", path=f"{self.ctx.name}.sample", value=n)
        conditions = dict(conditions or {})
        unknown = [c for c in conditions if c not in self.conditions]
        if unknown:
            raise ConfigError("this generator takes no such condition; it takes: " + (", ".join(self.conditions)
                              or "none"), path=f"{self.ctx.name}.conditions", value=unknown[0])
        eb_all = self._sample_beam_energy(n, conditions.get(BEAM_ENERGY))
        reject = bool(self.settings["reject_unphysical"])
        self.network.eval()
        rng = np.random.default_rng(seed)
        counts = {"unphysical": 0, "outside_training": 0}
        # all threads go to data-parallel chunks with single-threaded kernels (see single_threaded_kernels)
        workers = torch.get_num_threads()

        def draw(slots: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
            eb = eb_all[slots]
            z = torch.empty(len(slots), self.n_generated)
            chunks = []  # noise drawn in order, so the events do not depend on the threads below
            for lo in range(0, len(slots), SAMPLE_CHUNK):
                hi = min(lo + SAMPLE_CHUNK, len(slots))
                chunks.append((lo, hi, torch.from_numpy(rng.standard_normal((hi - lo, self.settings["noise_dim"]),
                                                                            dtype=np.float32))))

            def run(chunk: tuple[int, int, torch.Tensor]) -> None:
                lo, hi, noise = chunk
                with torch.inference_mode():
                    z[lo:hi] = self.generate_tensor(noise, self.condition_tensor(eb[lo:hi]))

            if workers > 1 and len(chunks) > 1:  # data-parallel chunks (cache-sized matmuls, no barriers)
                with ThreadPoolExecutor(min(workers, len(chunks))) as pool:
                    list(pool.map(run, chunks))
            else:
                for chunk in chunks:
                    run(chunk)
            if self.settings["random_azimuth"]:
                z = self.rotate_azimuth(z, torch.from_numpy(rng.uniform(-np.pi, np.pi, len(slots))))
            phi_seed = np.random.SeedSequence(int(rng.integers(2**63)))
            columns, ok = self.decode_columns(z, eb, phi_seed)
            inside = self.inside_training_ranges(columns)
            counts["unphysical"] += int((~ok).sum())
            counts["outside_training"] += int((ok & ~inside).sum())
            return columns, (ok if reject else np.ones(len(slots), dtype=bool)) & inside

        with single_threaded_kernels():
            columns, drawn, rejected = sample_with_rejection(draw, n, MAX_REJECTION_ROUNDS)
        self._stats["sampled"] += drawn
        self._stats["unphysical"] += counts["unphysical"]
        self._stats["outside_training"] += counts["outside_training"]
        self._stats["rejected"] += rejected
        events = self._events(columns)
        events.meta.update({"drawn": drawn, "unphysical_drawn": counts["unphysical"],
                            "outside_training_drawn": counts["outside_training"],
                            "rejected_fraction": rejected / drawn if drawn else 0.0})
        return events

    # -- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Network weights, scalers, feature map, beams and sampling statistics."""
        self._require_prepared()
        state: dict[str, Any] = {
            "network": {k: v.detach().clone() for k, v in self.network.state_dict().items()},
            "scaler": self.scaler.state_dict(),
            "pre": self.pre.state_dict(),
            "feature_map": self.feature_map.config(),
            "beams": self.beams.to_dict() if self.beams is not None else None,
            "energy_scaling": bool(self.settings["energy_scaling"]),
            "log_condition": bool(self.settings["log_condition"]),
            "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()},
            "training": {k: v for k, v in self._training.items() if v is not None},
        }
        if self.aug_scaler.fitted:
            state["aug_scaler"] = self.aug_scaler.state_dict()
            state["aug_pre"] = self.aug_pre.state_dict()
        if self.cond_scaler.fitted:
            state["cond_scaler"] = self.cond_scaler.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the ``Params`` must match the saved ones)."""
        try:
            self.beams = Beams.from_dict(dict(state["beams"])) if state.get("beams") else None
            if state.get("hadron_follows") and self.beams is not None and not any(self.beams.fields):
                # states written before beams declared their per-event energy fields (symmetric scans)
                self.beams = self.beams.overridden({"lepton_energy": BEAM_ENERGY, "hadron_energy": BEAM_ENERGY})
            if bool(state.get("energy_scaling", False)) != bool(self.settings["energy_scaling"]):
                raise CheckpointError(f"the state was trained with energy_scaling = {state.get('energy_scaling', False)}"
                                      f", these parameters say {self.settings['energy_scaling']}",
                                      path=f"{self.ctx.name}.energy_scaling",
                                      hint="set energy_scaling to the value it was trained with")
            if self.conditional and bool(state.get("log_condition", False)) != bool(self.settings["log_condition"]):
                raise CheckpointError(f"the state was trained with log_condition = {state.get('log_condition', False)}"
                                      f", these parameters say {self.settings['log_condition']}",
                                      path=f"{self.ctx.name}.log_condition",
                                      hint="set log_condition to the value it was trained with")
            self.feature_map = make_feature_map(dict(state["feature_map"]), self.beams, registry=self.ctx.lookup())
            self.features = list(self.feature_map.fields)
            self.scaler.load_state_dict(state["scaler"])
            self.pre.load_state_dict(state["pre"])
            if "aug_scaler" in state:
                self.aug_scaler.load_state_dict(state["aug_scaler"])
                self.aug_pre.load_state_dict(state["aug_pre"])
            self.ranges = {k: (float(v[0]), float(v[1])) for k, v in dict(state.get("ranges", {})).items()}
            if "cond_scaler" in state:
                self.cond_scaler.load_state_dict(state["cond_scaler"])
            self.network = self._build_network(len(self.scaler.mean), calibrate=False)
            self.network.load_state_dict(dict(state["network"]))
        except (KeyError, RuntimeError, TypeError) as err:
            raise CheckpointError(f"state does not fit generator {self.plugin_name or type(self).__name__!r} with "
                                  f"these parameters: {type(err).__name__}: {str(err).splitlines()[0]}",
                                  path=self.ctx.name) from None
        self._training = dict(state.get("training", {}))
        self.network.eval()

    def info(self) -> dict[str, Any]:
        """Training figures and the physicality counts of everything sampled so far."""
        out: dict[str, Any] = {k: v for k, v in self._training.items() if v is not None}
        sampled = self._stats["sampled"]
        if sampled:
            out["unphysical_fraction"] = self._stats["unphysical"] / sampled
            out["outside_training_fraction"] = self._stats["outside_training"] / sampled
            out["rejected_fraction"] = self._stats["rejected"] / sampled
            out["sampled_events"] = int(sampled)
        out["reject_unphysical"] = bool(self.settings["reject_unphysical"])
        return out
