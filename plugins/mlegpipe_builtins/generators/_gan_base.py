"""The GAN generator (fatgan, cfatgan, dsgan, lsgan): a network composed with a representation, trainer and sampler.

:class:`AdversarialGenerator` owns the generator network and composes

- :class:`~mlegpipe_builtins.generators._gan_representation.GANRepresentation`:
  events ⇄ standardized generated features, the critic's augmented features,
  the condition (energy scaling, random azimuth, uniform φ, asinh preprocessing);
- :class:`~mlegpipe_builtins.generators._gan_trainer.AdversarialTrainer`: the
  adversarial loop (critic steps, generator step with η·MMD², EMA, validation);
- :class:`~mlegpipe_builtins.generators._gan_sampler.AdversarialSampler`:
  noise → network in chunks on threads → events, rejection with counts.

A model (:mod:`~mlegpipe_builtins.generators.gans`) only chooses its feature
map, its presets and defaults (:mod:`~mlegpipe_builtins.generators._gan_params`:
the augmented features the critic sees, η, the representation options), whether
it is conditioned on the beam energy, and its default adversary.

CPU defaults (``preset = "cpu"``): 3 × 128 networks, noise 32, batch 512,
3 critic steps per generator step, Adam 10⁻³ with cosine decay for the
generator, η = 10 for the FAT-GAN MMD² term; the untrained generator's output
layer is calibrated to unit spread (:func:`calibrate_output`).
``preset = "published"`` gives the thesis sizes (5 × 512, noise 100, Adam
10⁻⁴, 5 critic steps, 100 000 steps).

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

import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError
from mlegpipe.features import FeatureMap, Standardize
from mlegpipe.nets import mlp
from mlegpipe.stages import Discriminator, Generator, NetworkInputs, NetworkProbe, StageContext, checked_conditions
from mlegpipe_builtins.dis import BEAM_ENERGY
from mlegpipe_builtins.generators._gan_params import CPU_PRESET, PUBLISHED_PRESET, resolve_settings
from mlegpipe_builtins.generators._gan_representation import GANRepresentation
from mlegpipe_builtins.generators._gan_sampler import AdversarialSampler, SampleCounts, training_ranges
from mlegpipe_builtins.generators._gan_trainer import AdversarialTrainer

__all__ = ["AdversarialGenerator", "calibrate_output"]


def calibrate_output(net: nn.Sequential, inputs: torch.Tensor) -> None:
    """Rescale the last linear layer so the untrained network's outputs have mean 0 and unit spread.

    PyTorch's default initialization shrinks the spread layer by layer: an
    untrained generator emits a narrow blob at the centre of the standardized
    data, and a critic facing a blob inside the data builds a cone whose apex
    (zero gradient) the two-sided gradient penalty makes costly to cross. A
    generator that starts as wide as the data does not start in that trap.

    Example:
        >>> x = torch.randn(1000, 4, generator=torch.Generator().manual_seed(0))
        >>> net = mlp(4, 2, [16, 16])
        >>> calibrate_output(net, x)
        >>> [round(v, 4) + 0.0 for v in (*net(x).mean(dim=0).tolist(), *net(x).std(dim=0).tolist())]
        [0.0, 0.0, 1.0, 1.0]
    """
    last = net[-1]
    if not isinstance(last, nn.Linear):
        return
    with torch.no_grad():
        out = net(inputs)
        std = out.std(dim=0).clamp_min(1e-6)
        last.weight /= std[:, None]
        last.bias.copy_((last.bias - out.mean(dim=0)) / std)


class AdversarialGenerator(Generator):
    """A generator trained adversarially; subclasses pick the feature map and defaults.

    Subclass interface:
        PRESETS: ``{"cpu": {...}, "published": {...}}`` values for ``None`` parameters.
        MODEL_DEFAULTS: defaults of ``mmd_weight``, ``augment``, ``reject_unphysical``, ``mmd_observables`` and the
            representation.
        DEFAULT_DISCRIMINATOR: ``"wgan-gp"``, ``"lsgan"`` or ``"jsgan"`` (used when ``fit`` gets none).
        conditional: conditioned on the per-event ``beam_energy``.
        uniform_phi: the last feature of the map is the azimuth, drawn uniformly
            instead of generated (unpolarized scattering).
        make_feature_map(events): the :class:`~mlegpipe.features.FeatureMap`.

    Public tensors and networks (also used by model interpretation and benchmarks):
        network: ``nn.Module`` mapping ``noise (n, noise_dim [+1])`` to standardized
            generated features ``(n, n_generated)``.
        representation: the fitted :class:`GANRepresentation` (``scaler`` is its standardization).
        ranges: ``{field: (low, high)}`` of the training selection kept by ``reject_outside_training``.
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": CPU_PRESET, "published": PUBLISHED_PRESET}
    MODEL_DEFAULTS: ClassVar[dict[str, Any]] = {"mmd_weight": 0.0, "augment": [], "reject_unphysical": False}
    DEFAULT_DISCRIMINATOR: ClassVar[str] = "wgan-gp"
    conditional: ClassVar[bool] = False
    uniform_phi: ClassVar[bool] = False

    def __init__(self, params: Any, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        self.settings = resolve_settings(self.params, self.PRESETS, self.MODEL_DEFAULTS)
        self.features: list[str] = []
        self.conditions: list[str] = [BEAM_ENERGY] if self.conditional else []
        self.representation = self._new_representation()
        self.network: nn.Module | None = None
        self.discriminator: Discriminator | None = None
        self.discriminator_net: nn.Module | None = None
        self.ranges: dict[str, tuple[float, float]] = {}
        self._counts = SampleCounts()
        self._training: dict[str, Any] = {}

    def _new_representation(self) -> GANRepresentation:
        return GANRepresentation.from_settings(self.settings, conditional=self.conditional,
                                               uniform_phi=self.uniform_phi, registry=self.ctx.lookup(),
                                               where=self.ctx.name)

    def make_feature_map(self, events: EventBatch) -> FeatureMap:
        """The feature map of this model for ``events`` (subclasses override)."""
        raise NotImplementedError

    @property
    def feature_map(self) -> FeatureMap | None:
        """The fitted feature map (None before :meth:`prepare` or :meth:`load_state_dict`)."""
        return self.representation.feature_map

    @property
    def beams(self) -> Any:
        """The beams of the training events."""
        return self.representation.beams

    @property
    def scaler(self) -> Standardize:
        """The standardization of the generated features."""
        return self.representation.scaler

    def _require_prepared(self) -> None:
        if self.feature_map is None or self.network is None:
            raise ConfigError(f"generator {self.plugin_name or type(self).__name__!r} is used before it was "
                              "trained or loaded", path=self.ctx.name)

    # -- the network ------------------------------------------------------------------------------------
    def _build_network(self, n_out: int, calibrate: bool = True) -> nn.Module:
        s = self.settings
        n_in = s["noise_dim"] + len(self.conditions)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed("init"))
            net = mlp(n_in, n_out, [s["width"]] * s["layers"], s["activation"], s["dropout"], s["residual"],
                      s["norm"], s["leaky_slope"])
            if calibrate:
                calibrate_output(net, torch.randn(4096, n_in))
        return net

    def prepare(self, events: EventBatch) -> AdversarialGenerator:
        """Fit the representation to ``events`` and build a fresh network; returns self.

        ``fit`` calls this on the training sample; a caller training
        :attr:`network` itself (e.g. through a detector surrogate) calls it on a reference sample.
        """
        self.representation = self._new_representation().fit(events, self.make_feature_map(events))
        self.features = list(self.feature_map.fields)
        limited = self.representation.has_physical_limits and self.beams is not None
        self.ranges = training_ranges(events, conditional=self.conditional) \
            if self.settings["reject_outside_training"] and limited else {}
        self.network = self._build_network(self.representation.n_generated)
        return self

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Gaussian noise ``(n, noise_dim)`` for :attr:`network` (float32)."""
        return torch.randn(n, self.settings["noise_dim"], generator=generator)

    def generate_tensor(self, noise: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Standardized generated features ``network([noise, cond])`` (differentiable)."""
        self._require_prepared()
        return self.network(noise if cond is None else torch.cat([noise, cond], dim=1))

    # -- the representation's tensors -------------------------------------------------------------------
    def encode(self, events: EventBatch) -> torch.Tensor:
        """Standardized generated features of ``events`` (float32 ``(n, n_generated)``)."""
        self._require_prepared()
        return self.representation.encode(events)

    def to_physical(self, z: torch.Tensor, beam_energy: torch.Tensor | np.ndarray | float | None = None
                    ) -> torch.Tensor:
        """Generated features in physical units from standardized ones (differentiable; see the representation)."""
        return self.representation.to_physical(z, beam_energy)

    def condition_tensor(self, beam_energy: np.ndarray | torch.Tensor) -> torch.Tensor | None:
        """Standardized conditioning input ``(n, 1)`` for per-event beam energies (None if unconditional)."""
        return self.representation.condition_tensor(beam_energy)

    def discriminator_features(self, z: torch.Tensor, beam_energy: torch.Tensor | None = None,
                               phi: torch.Tensor | None = None) -> torch.Tensor:
        """What the discriminator sees of standardized features ``z``: ``[z, soft-clipped augmented features]``."""
        return self.representation.discriminator_features(z, beam_energy, phi)

    def decode(self, z: torch.Tensor, beam_energy: np.ndarray | float | None = None,
               seed: np.random.SeedSequence | None = None) -> EventBatch:
        """Events from standardized generated features ``z``, unphysical ones included (no rejection).

        Models with a uniform azimuth draw it from ``seed`` (default: the stage's ``phi`` stream).

        Example:
            >>> # events = gen.decode(gen.generate_tensor(gen.noise(1000)), seed=np.random.SeedSequence(3))
        """
        self._require_prepared()
        columns, _ = self.representation.decode_columns(z, beam_energy, seed if seed is not None
                                                        else self.ctx.seed_sequence("phi"))
        return self.representation.events(columns, {"generator": self.plugin_name})

    def physical_mask(self, events: EventBatch) -> np.ndarray:
        """True for events inside the kinematic limits (finite; lepton models: 0 < x, y ≤ 1, W² ≥ M², ...)."""
        return self.representation.physical_mask(events)

    # -- interpretation ---------------------------------------------------------------------------------
    def interpretation_inputs(self, events: EventBatch) -> NetworkInputs:
        """What the networks see for ``events``: standardized generated features, condition, map context, φ.

        The discriminator's input is ``discriminator_features(features, context, extra["phi"])``
        followed by ``condition`` (see :mod:`mlegpipe.interpret.probes`).
        """
        self._require_prepared()
        return self.representation.network_inputs(events)

    def network_probe(self) -> NetworkProbe:
        """:attr:`network`, fed ``[noise]`` or ``[noise, standardized condition]`` (:class:`~mlegpipe.stages.NetworkProbe`).

        Decoded events are the network's own output (before a ``random_azimuth``
        rotation), at the beam energy read back from the standardized condition.
        """
        self._require_prepared()
        rep = self.representation

        def inputs(n: int, values: Mapping[str, float] | None, gen: torch.Generator) -> list[torch.Tensor]:
            noise = self.noise(n, gen)
            if not self.conditional:
                return [noise]
            return [noise, rep.condition_tensor(rep.beam_energies(n, (values or {}).get(BEAM_ENERGY)))]

        def decode(tensors: Sequence[torch.Tensor], seed: np.random.SeedSequence) -> EventBatch:
            with torch.no_grad():
                z = self.generate_tensor(*tensors)
                eb = rep.beam_energy_of(tensors[1]) if self.conditional else None
            return self.decode(z, eb, seed)

        return NetworkProbe(self.network, "network", inputs, self.generate_tensor, decode, list(self.conditions))

    # -- training ---------------------------------------------------------------------------------------
    def default_discriminator(self) -> Discriminator:
        """A fresh instance of the adversary :meth:`fit` trains against when given none."""
        from mlegpipe_builtins.discriminators.critics import JSGAN, LSGAN, WGANGP

        cls = {"wgan-gp": WGANGP, "lsgan": LSGAN, "jsgan": JSGAN}[self.DEFAULT_DISCRIMINATOR]
        stage = cls(cls.Params(), self.ctx.child("discriminator"))
        stage.plugin_name = stage.plugin_name or self.DEFAULT_DISCRIMINATOR
        return stage

    def fit(self, train: EventBatch, valid: EventBatch, discriminator: Discriminator | None = None) -> dict[str, Any]:
        """Train adversarially against ``discriminator`` (None: the model's default adversary).

        Returns:
            ``{"history": [per-step dicts], "best_step", "best_metric", "seconds", "discriminator", ...}``;
            the metric is the sliced Wasserstein distance between generated and
            validation events in the discriminator's feature space (lower is better).
        """
        start = time.perf_counter()
        self.prepare(train)
        disc = discriminator if discriminator is not None else self.default_discriminator()
        self.discriminator = disc
        trainer = AdversarialTrainer(self.representation, self.settings, self.ctx,
                                     desc=f"{self.ctx.name} ({self.plugin_name or type(self).__name__})")
        result = trainer.train(self.network, disc, train, valid)
        self.network, self.discriminator_net = result.network, result.discriminator_net
        figures = result.figures
        self._training = {
            "best_step": figures["best_step"], "best_metric": figures["best_metric"],
            "seconds": time.perf_counter() - start, "steps": figures["steps"],
            "generator_parameters": figures["generator_parameters"],
            "discriminator_parameters": figures["discriminator_parameters"],
            "discriminator": getattr(disc, "plugin_name", "") or type(disc).__name__,
        }
        return {"history": result.history, **self._training}

    # -- sampling ---------------------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        seed: np.random.SeedSequence,
        conditions: Mapping[str, np.ndarray | float] | None = None,
    ) -> EventBatch:
        """Generate ``n`` events reproducibly from ``seed`` (see :mod:`~mlegpipe_builtins.generators._gan_sampler`).

        Example:
            >>> # gen.sample(10_000, np.random.SeedSequence(7), {"beam_energy": 60.0})  # cfatgan
        """
        self._require_prepared()
        if n < 0:
            raise ConfigError("the number of events must be >= 0", path=f"{self.ctx.name}.sample", value=n)
        conditions = checked_conditions(conditions, self.conditions, f"{self.ctx.name}.conditions")
        beam_energy = self.representation.beam_energies(n, conditions.get(BEAM_ENERGY))
        sampler = AdversarialSampler(self.network, self.representation, noise_dim=self.settings["noise_dim"],
                                     reject=bool(self.settings["reject_unphysical"]), ranges=self.ranges)
        columns, counts = sampler.sample(beam_energy, np.random.default_rng(seed))
        self._counts.add(counts)
        events = self.representation.events(columns, {"generator": self.plugin_name})
        events.meta.update({"drawn": counts.sampled, "unphysical_drawn": counts.unphysical,
                            "outside_training_drawn": counts.outside_training,
                            "rejected_fraction": counts.rejected / counts.sampled if counts.sampled else 0.0})
        return events

    # -- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Network weights, the representation (scalers, feature map, beams), ranges and training figures."""
        self._require_prepared()
        return {
            "network": {k: v.detach().clone() for k, v in self.network.state_dict().items()},
            **self.representation.state_dict(),
            "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()},
            "training": {k: v for k, v in self._training.items() if v is not None},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the ``Params`` must match the saved ones)."""
        try:
            self.representation = self._new_representation().load_state_dict(state)
            self.features = list(self.feature_map.fields)
            self.ranges = {k: (float(v[0]), float(v[1])) for k, v in dict(state.get("ranges", {})).items()}
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
        out.update(self._counts.fractions())
        out["reject_unphysical"] = bool(self.settings["reject_unphysical"])
        return out
