"""The ``flow`` generator: a normalizing flow (zuko NSF or MAF) trained by maximum likelihood.

The flow learns the features of a :mod:`feature map <mlegpipe.features.maps>`,
standardized, optionally conditional on any event-level fields
(``conditions = ["beam_energy"]``, ``["sqrt_s"]``, ``["n_jets"]``). The events
become features in :class:`~mlegpipe_builtins.generators._flow_space.FlowSpace`:
a domain's map (the DIS default ``nu_scaled``: ``(ln Q², ln y, φ)`` of the
scattered lepton at a collider, φ drawn uniformly, ln y learned as a logit),
or, given ``features``, the event fields and particle collections themselves
(``collection``: per particle ln p_T, η, φ, mass; a variable multiplicity is
learned as a categorical and conditions the rest). Hard edges of the training
sample (a generation cut) are mapped to infinity (``edges = "auto"``), heavy
tails compressed (``preprocess = "auto"``). Generated events outside the
map's physical limits (and, with ``reject = "training_range"``, outside the
training range of the map's ``range_fields``) are redrawn and counted:
:meth:`FlowGenerator.info` reports the fraction.

Sampling uses the exact autoregressive inverse pruned to what each step needs
(``sampler = "fast"``, :mod:`~mlegpipe_builtins.generators._flow_fast`: 3.5x
fewer FLOPs than zuko's ``transform.inv`` for three features, same events up
to float rounding); ``sampler = "zuko"`` keeps zuko's own inverse.
``sampler = "distilled"`` (:mod:`~mlegpipe_builtins.generators._flow_distill`)
regresses a ReLU MLP (``distill_hidden``) on the exact inverse at the end of
``fit`` and samples with it: an approximation of the flow judged on held-out
truth like any generator (``benchmarks/bench_generators.py --samplers``).
``sampler = "auto"`` takes the feature map's hint (distilled for the DIS lepton
maps, where it was measured; fast otherwise). Checkpoints of earlier versions
are migrated on loading (:mod:`~mlegpipe_builtins.generators._flow_state`).

Example (TOML):
    [generator]
    plugin = "flow"
    steps = 2500
    features = ["jets", "met"]      # particle collections and fields, or a domain map by default
    conditions = ["n_jets"]         # optional
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import zuko

from mlegpipe import distributed as ddp
from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.features import sample_with_rejection
from mlegpipe.generation import map_spans, single_threaded_kernels
from mlegpipe.metrics.distances import sample_chi2_ndf
from mlegpipe.schema import param
from mlegpipe.stages import Discriminator, Generator, NetworkInputs, NetworkProbe, StageContext
from mlegpipe.training import MinibatchSampler, TrainLoop, bootstrap_indices, cosine_schedule, warmup_schedule
from mlegpipe.training.cuda_graph import GraphedLoss
from mlegpipe_builtins.dis import BEAM_ENERGY
from mlegpipe_builtins.generators._flow_distill import DistilledSampler, distill
from mlegpipe_builtins.generators._flow_fast import FastFlowSampler
from mlegpipe_builtins.generators._flow_space import FlowSpace
from mlegpipe_builtins.generators._flow_state import migrate_state

__all__ = ["PRESETS", "FlowGenerator", "mlegpipe_register_stages"]

#: Size presets; a preset only changes parameters left at their defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "small": {"steps": 400, "transforms": 3, "hidden": [32, 32], "batch_size": 512, "validate_every": 100},
    "large": {"steps": 8000, "transforms": 6, "hidden": [128, 128], "bins": 12, "batch_size": 2048},
    # beam-energy scans: an ensemble of three longer-trained flows (bench_energies: the replicas' mixture
    # scatters less than one flow where the energy lies beyond the trained range)
    "scan": {"steps": 6000, "replicas": 3},
}
_SAMPLE_BLOCK = 262_144
_DISTILL_POOL = 1 << 20  # (noise, features) pairs the distilled sampler is regressed on
_DISTILL_STEPS_PER_STEP, _DISTILL_STEPS_MAX = 2.4, 6000  # distill_steps = 0: measured at 6000 for 2500 steps
_CONTEXT_MARGIN = 0.5  # distil conditional flows this fraction of the trained context span beyond it
_CHUNKED = (FastFlowSampler, DistilledSampler)  # samplers that run their chunks on data-parallel threads
_DECODE_CHUNK = 32768  # events a thread samples, unprocesses and decodes at a time (arrays that stay in cache)
_DEFAULT_MAP = "nu_scaled"  # without `features`: the DIS map measured best (README)
_DEFAULT_SCAN_MAP = "dis_scaling"  # conditional on the beam energy: limits fixed at every energy (bench_energies)


@dataclass
class FlowParams:
    """Parameters of the ``flow`` generator."""

    feature_map: str = param("auto",
                             doc="how events become features: a registered map (DIS: nu_scaled (ln Q2, ln y, phi at a "
                                 "collider; best measured), dis_scaling (ln Q2, ln a, phi: every kinematic limit at "
                                 "the same place at every beam energy), nu, lepton_t, lepton_cartesian), columns (the "
                                 "flat fields in `features`) or collection (fields and particle collections in "
                                 "`features`); auto: collection when `features` are given, dis_scaling when "
                                 "conditional on the beam energy alone, else nu_scaled")
    features: list[str] = param([], doc="event fields and particle collections to learn (columns / collection)")
    conditions: list[str] = param([], doc="event-level fields the flow is conditioned on (beam_energy, sqrt_s, "
                                          "n_jets, ...): sampling needs a value of each")
    conditional: bool = param(False, doc="shorthand for conditions = [\"beam_energy\"] (the per-event lepton beam "
                                         "energy of DIS energy scans)")
    log_conditions: bool | None = param(None, doc="the networks see the standardized ln of each condition (positive "
                                                  "ones: beam energies, sqrt_s) instead of the value itself, so a "
                                                  "model of an energy scan interpolates and extrapolates in ln E; "
                                                  "default: on when the condition is the beam energy alone")
    azimuth: str = param("uniform", choices=("uniform", "learned"),
                         doc="features the map declares exactly uniform (the DIS lepton azimuth): drawn uniformly "
                             "in [-pi, pi) (the flow then models one dimension fewer) or learned")
    flow: str = param("nsf", choices=("nsf", "maf"), doc="neural spline flow or masked affine flow")
    preset: str = param("default", choices=tuple(PRESETS),
                        doc="size preset (changes only defaulted values): small, large, or scan (beam-energy scans: "
                            "3 replicas of 6000 steps)")
    steps: int = param(2500, min=1, doc="optimizer steps")
    batch_size: int = param(1024, min=8, doc="events per step")
    lr: float = param(3e-3, min=0.0, exclusive_min=True, doc="Adam learning rate (peak)")
    lr_schedule: str = param("cosine", choices=("cosine", "constant"), doc="learning-rate schedule")
    weight_decay: float = param(0.0, min=0.0, doc="AdamW weight decay")
    transforms: int = param(4, min=1, doc="flow transformations")
    passes: int = param(0, min=0, doc="0: autoregressive transforms (sampling inverts one feature group at a time); "
                                      "2: coupling transforms (two groups: sampling many features is much faster)")
    hidden: list[int] = param([64, 64], min=1, doc="hidden layer widths of each transformation's network")
    bins: int = param(8, min=2, doc="spline bins (nsf)")
    validate_every: int = param(250, min=0, doc="validate every this many steps (0: never)")
    validation_events: int = param(20_000, min=100, doc="validation events used for the metric")
    metric: str = param("nll", choices=("nll", "chi2"),
                        doc="validation metric for the best state: negative log-likelihood or mean 1D chi2/ndf")
    preprocess: str = param("auto", choices=("auto", "asinh", "quantile", "none"),
                            doc="asinh before standardizing (auto: on the map's heavy-tailed features, e.g. the DIS "
                                "lepton momentum components, and for nsf on any feature whose standardized training values reach "
                                "beyond ±4.5: the splines act on [-5, 5] only, so a flow cannot generate a tail "
                                "beyond it, e.g. ln Q² above ~300 GeV² at HERA; asinh: on every feature); quantile: "
                                "every feature's training quantiles mapped to N(0, 1) (4096 knots, piecewise linear: "
                                "the flow learns the dependence only; nothing is generated beyond the training range)")
    y_transform: str = param("logit", choices=("logit", "log"),
                             doc="how a map's logit features (nu_scaled's ln y) are learned: logit (ln(y / (1 - y)): ln y where y << 1, "
                                 "the kinematic limit y -> 1 moved to infinity, so the steep fall of the spectrum "
                                 "below it is spread out and no event reaches y >= 1) or log (ln y itself)")
    edges: str = param("auto", choices=("auto", "none"),
                       doc="auto: a learned feature with a hard edge in the training sample (>= 1 % of the events "
                           "within 0.05 standard deviations of its minimum or maximum, e.g. ln Q2 at a Q2 > Q2_min "
                           "generation cut) is learned as ln of its distance to a bound just past the training "
                           "extreme, so the flow need not draw a step and generates nothing beyond it (not for "
                           "conditional flows on maps whose edges move with the conditions); "
                           "none: off")
    replicas: int = param(1, min=1, doc="bootstrap ensemble size (1: one flow on the full sample)")
    noise: float = param(0.0, min=0.0, doc="Gaussian noise (standardized feature units) added to every training "
                                           "batch: the flow learns the density smoothed by a kernel of this width "
                                           "(0: none)")
    reject: str = param("physical", choices=("physical", "training_range", "none"),
                        doc="redraw events beyond the map's physical limits (and the training range of its range "
                            "fields: DIS Q2, W2, y)")
    checkpoint_every: int = param(500, min=0, doc="periodic training checkpoints in the run folder (0: none)")
    device: str = param("cpu", choices=("cpu", "cuda", "auto"),
                        doc="where training runs: cpu, cuda (this rank's GPU; the trained flows are moved back to "
                            "the CPU for sampling and saving) or auto (cuda when available). GPU training is not "
                            "bitwise reproducible")
    sampler: str = param("auto", choices=("auto", "fast", "zuko", "distilled"),
                         doc="how events are drawn: auto (the feature map's hint: distilled for the DIS lepton maps, "
                             "where its quality was measured on HERA and 50x50 GeV Pythia; fast otherwise), "
                             "fast (the exact autoregressive inverse, pruned to the outputs "
                             "each step needs: ~3.5x fewer FLOPs than zuko's, same weights and events up to float "
                             "rounding), zuko (flow.transform.inv, the reference) or distilled (a ReLU MLP regressed "
                             "on the exact inverse at the end of training: one matmul-dominated pass, no spline "
                             "work; an approximation of the flow, see distill_*)")
    distill_hidden: list[int] = param([96, 96, 96], min=1, doc="hidden widths of the distilled sampler's MLP")
    distill_steps: int = param(0, min=0, doc="Adam steps of the distillation (sampler = 'distilled'); 0: 2.4 x "
                                             "steps, at most 6000 (6000 for the default 2500 steps)")
    distill_batch: int = param(4096, min=16, doc="noise/feature pairs per distillation step")
    distill_lr: float = param(5e-3, min=0.0, exclusive_min=True, doc="peak learning rate of the distillation")
    distill_widen: float = param(1.25, min=1.0,
                                 doc="the distillation noise is this times N(0, I), so the sampled tails are covered")


_DEFAULTS = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
             for f in dataclasses.fields(FlowParams)}


def _resolve(params: FlowParams, registry: Any) -> FlowParams:
    """The preset's values for defaulted parameters, the feature map, conditions, sampler and distillation length."""
    changes = {k: v for k, v in PRESETS[params.preset].items() if getattr(params, k) == _DEFAULTS[k]}
    params = dataclasses.replace(params, **changes)
    conditions = list(params.conditions) or ([BEAM_ENERGY] if params.conditional else [])
    scan = conditions == [BEAM_ENERGY]
    feature_map = params.feature_map if params.feature_map != "auto" else \
        ("collection" if params.features else _DEFAULT_SCAN_MAP if scan else _DEFAULT_MAP)
    log_conditions = scan if params.log_conditions is None else params.log_conditions
    hint = registry.feature_maps.get(feature_map).sampler_hint if feature_map in registry.feature_maps else "fast"
    sampler = params.sampler if params.sampler != "auto" else hint
    steps = params.distill_steps or min(_DISTILL_STEPS_MAX, math.ceil(_DISTILL_STEPS_PER_STEP * params.steps))
    return dataclasses.replace(params, feature_map=feature_map, conditions=conditions, sampler=sampler,
                               distill_steps=steps, log_conditions=log_conditions)


class FlowGenerator(Generator):
    """Normalizing flow (zuko NSF/MAF) on any feature map, optionally conditional on event-level fields.

    Example:
        >>> import numpy as np
        >>> from mlegpipe.events import EventBatch
        >>> rng = np.random.default_rng(0)
        >>> train = EventBatch.from_columns({"a": rng.normal(size=2000), "b": rng.gamma(2.0, size=2000)})
        >>> gen = FlowGenerator(FlowParams(features=["a", "b"], steps=30, validate_every=0), StageContext("g"))
        >>> _ = gen.fit(train, train)
        >>> len(gen.sample(100, np.random.SeedSequence(7))), gen.features
        (100, ['a', 'b'])
    """

    plugin_name: ClassVar[str] = "flow"

    Params = FlowParams

    def __init__(self, params: FlowParams, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        registry = ctx.lookup()
        if params.feature_map not in ("auto", "columns", "collection") and params.feature_map not in \
                registry.feature_maps:
            raise ConfigError("unknown feature map; known: auto, " + ", ".join(registry.feature_maps.names()),
                              path=f"{ctx.name}.feature_map", value=params.feature_map)
        self.p = _resolve(params, registry)
        if self.p.feature_map in ("columns", "collection") and not self.p.features:
            raise ConfigError(f"feature_map = {self.p.feature_map!r} needs the list of event fields (and "
                              "collections) to learn", path=f"{ctx.name}.features", value=[])
        self.conditions = list(self.p.conditions)
        self.space = self._new_space(self.p.azimuth)
        self.features = self._feature_names()
        self.flows: list[zuko.flows.Flow] = []
        self._samplers: list[torch.nn.Module] | None = None
        self.distilled: list[DistilledSampler] = []
        self.distill_report: list[dict[str, Any]] = []
        self.context_range: tuple[list[float], list[float]] | None = None
        self._drawn = 0
        self._rejected = 0
        self._train_seconds = 0.0
        self._sample_seconds = 0.0
        self._sampled = 0

    # -- construction ------------------------------------------------------------------
    def _new_space(self, azimuth: str) -> FlowSpace:
        return FlowSpace(self.p.feature_map, self.p.features, self.conditions, preprocess=self.p.preprocess,
                         y_transform=self.p.y_transform, edges=self.p.edges, azimuth=azimuth,
                         splines=self.p.flow == "nsf", log_conditions=self.p.log_conditions,
                         registry=self.ctx.registry, where=self.ctx.name)

    def _feature_names(self) -> list[str]:
        """What the checkpoint records as the features: a fixed map's feature names, else the requested fields."""
        if self.p.feature_map in ("columns", "collection"):
            return list(self.p.features)
        return self.space.names

    @property
    def azimuth(self) -> str:
        """``uniform`` or ``learned``: how the map's uniform features are treated."""
        return self.space.azimuth

    @property
    def learned(self) -> list[str]:
        """The features the flow models."""
        return self.space.learned

    @property
    def noise_dim(self) -> int:
        """Dimensions of the flow's base noise: the learned features."""
        return self.space.noise_dim

    @property
    def beams(self) -> Any:
        """The beams of the training events."""
        return self.space.beams

    @property
    def fmap(self) -> Any:
        """The fitted feature map."""
        return self.space.fmap

    def _build_flow(self) -> zuko.flows.Flow:
        n_feat, n_ctx = len(self.learned), len(self.space.model_conditions)
        hidden = tuple(self.p.hidden)
        extra = {"passes": self.p.passes} if self.p.passes else {}  # zuko's default: autoregressive
        if self.p.flow == "nsf":
            return zuko.flows.NSF(n_feat, n_ctx, bins=self.p.bins, transforms=self.p.transforms,
                                  hidden_features=hidden, **extra)
        return zuko.flows.MAF(n_feat, n_ctx, transforms=self.p.transforms, hidden_features=hidden, **extra)

    def _context(self, events: EventBatch) -> torch.Tensor | None:
        return self.space.condition_tensor(self.space.condition_values(events, self.ctx.observables))

    def interpretation_inputs(self, events: EventBatch) -> NetworkInputs:
        """What the flows see for ``events``: standardized features, standardized conditions (context)."""
        if not self.flows:
            raise ConfigError(f"generator {self.plugin_name or 'flow'!r} is used before it was trained or loaded",
                              path=self.ctx.name)
        z = self.space.encode(events, self.ctx.torch_generator("absent"))
        return NetworkInputs(z, self._context(events), np.asarray(self.space.context_of(events), dtype=np.float64))

    def network_probe(self) -> NetworkProbe:
        """The first replica's zuko flow (:class:`~mlegpipe.stages.NetworkProbe`).

        Its hidden layers are those of the transformations' hyper-networks,
        which see ``[features, standardized conditions]``; the activations are
        those of the density pass over the flow's own samples of the noise.
        The inputs are ``[noise]`` or ``[noise, standardized conditions]``; a
        variable multiplicity the user does not fix is drawn from the training
        distribution. Decoding reads the conditions back from the standardized
        ones (multiplicities rounded to whole numbers) and draws the map's
        uniform features (an azimuth) from the seed. The landscape loss ``nll``
        is the negative log-likelihood of the events (the training loss).
        """
        if not self.flows:
            raise ConfigError(f"generator {self.plugin_name or 'flow'!r} has no network yet: train it or load its "
                              "checkpoint first", path=self.ctx.name)
        flow, space = self.flows[0], self.space
        multiplicity = space.multiplicity_field()

        def inputs(n: int, values: Mapping[str, float] | None, gen: torch.Generator) -> list[torch.Tensor]:
            noise = torch.randn(n, self.noise_dim, generator=gen)
            if not space.model_conditions:
                if values:
                    space.conditions_for(n, values, None, self.ctx.name)  # raises: no such condition
                return [noise]
            drawn = multiplicity is not None and multiplicity not in (values or {})
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen))) if drawn else None
            given, _ = space.conditions_for(n, values, rng, self.ctx.name)
            return [noise, space.condition_tensor(np.stack([given[c] for c in space.model_conditions], axis=1))]

        def forward(noise: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
            dist = flow(c)
            x = dist.transform.inv(noise)
            return dist.transform(x)  # the density pass: hooks keep this last call

        def decode(tensors: Sequence[torch.Tensor], seed: np.random.SeedSequence) -> EventBatch:
            noise, c = tensors[0], (tensors[1] if len(tensors) > 1 else None)
            with torch.no_grad():
                learned = space.unprocess(flow(c).transform.inv(noise))
            n = len(learned)
            values: dict[str, np.ndarray] = {}
            if c is not None:
                raw = space.cond_scaler.inverse(c.double()).numpy()
                values = {name: raw[:, j] for j, name in enumerate(space.model_conditions)}
                if multiplicity is not None:
                    values[multiplicity] = np.rint(values[multiplicity])
            gen = torch.Generator().manual_seed(int(seed.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
            context = space.fmap.context_from(values, n, space.beams) if space.fmap.needs_context else np.zeros(n)
            cols, _ = space.decode(space.full(learned, space.draw_uniform(n, gen)), context)
            return EventBatch.from_columns(space.fmap.assemble(cols, context), space.beams, {"generator": "flow"})

        def nll(events: EventBatch, seed: int) -> tuple[Callable[[], torch.Tensor], str]:
            inputs = self.interpretation_inputs(events)
            z, c = inputs.features, inputs.condition
            return (lambda: -flow(c).log_prob(z).mean()), "negative log-likelihood"

        return NetworkProbe(flow, "flows[0]", inputs, forward, decode, list(self.conditions), nll, "nll")

    # -- training -------------------------------------------------------------------------
    def fit(self, train: EventBatch, valid: EventBatch, discriminator: Discriminator | None = None) -> dict[str, Any]:
        """Maximum-likelihood training; returns the history (per replica) and the best validation."""
        start = time.perf_counter()
        space = self.space = self._new_space(self.p.azimuth)
        space.fit(train, range_cut=self.p.reject == "training_range")
        self.features = self._feature_names()
        absent = self.ctx.torch_generator("absent")
        z_train, z_valid = space.encode(train, absent), space.encode(valid, absent)
        x_sum = float(space.features(train).sum())
        space.fit_conditions(space.condition_values(train, self.ctx.observables), self.ctx.log)
        c_train, c_valid = self._context(train), self._context(valid)
        device = ddp.training_device(self.p.device, f"{self.ctx.name}.device")
        z_train, z_valid = z_train.to(device), z_valid.to(device)
        c_train, c_valid = (None if c is None else c.to(device) for c in (c_train, c_valid))
        w_train = torch.from_numpy(train.weights) if train.has("weight") else None
        nv = min(len(valid), self.p.validation_events)
        valid_idx = self.ctx.rng("validation").choice(len(valid), nv, replace=False) if nv < len(valid) \
            else np.arange(len(valid))
        valid_idx_t = torch.from_numpy(valid_idx)
        z_v = z_valid[valid_idx_t]
        c_v = None if c_valid is None else c_valid[valid_idx_t]

        boot = bootstrap_indices(len(train), self.p.replicas, self.ctx.seed_sequence("bootstrap")) \
            if self.p.replicas > 1 else [np.arange(len(train))]
        self.flows, histories, summaries = [], [], []
        self._samplers = None
        self.distilled, self.distill_report = [], []
        self.context_range = None if c_train is None else \
            (c_train.min(0).values.cpu().tolist(), c_train.max(0).values.cpu().tolist())
        for r, idx in enumerate(boot):
            ctx = self.ctx if self.p.replicas == 1 else self.ctx.child(f"replica{r}")
            with torch.random.fork_rng():
                torch.manual_seed(ctx.torch_seed("init"))
                flow = self._build_flow()
            flow = flow.to(device)
            idx_t = torch.from_numpy(np.asarray(idx))  # CPU indices also index CUDA tensors
            tensors = [z_train[idx_t]] + ([] if c_train is None else [c_train[idx_t]])
            fingerprint = hashlib.sha256(json.dumps([dataclasses.asdict(self.p), self.ctx.seed, len(train), r,
                                                     x_sum]).encode()).hexdigest()[:16]
            history, best = self._train_one(ctx, flow, tensors, None if w_train is None else w_train[idx_t], z_v, c_v,
                                            fingerprint)
            self.flows.append(flow.cpu().eval())
            histories.append(history)
            summaries.append(best)
        if self.p.sampler == "distilled":
            self._distill_all()
        self._train_seconds = time.perf_counter() - start
        return {"steps": histories[0], "replicas": summaries, "train_seconds": self._train_seconds,
                "replica_steps": histories[1:], "distill": list(self.distill_report)}

    def _distill_all(self) -> None:
        """Regress one :class:`DistilledSampler` per replica on its flow's exact inverse (``sampler = "distilled"``)."""
        self.distilled, self.distill_report = [], []
        box = None
        n_context = len(self.space.model_conditions)
        if n_context:
            low, high = (torch.tensor(v, dtype=torch.float32) for v in self.context_range)
            margin = _CONTEXT_MARGIN * (high - low)
            box = (low - margin, high + margin)
        for r, flow in enumerate(self.flows):
            teacher = self._sampler_of(flow, "fast")
            ctx = self.ctx if len(self.flows) == 1 else self.ctx.child(f"replica{r}")
            gen = torch.Generator().manual_seed(ctx.torch_seed("distill"))
            net, report = distill(lambda u, c, t=teacher: t(u, c, workers=1) if isinstance(t, FastFlowSampler)
                                  else t(u, c), self.noise_dim, n_context,
                                  self.p.distill_hidden, steps=self.p.distill_steps, batch_size=self.p.distill_batch,
                                  lr=self.p.distill_lr, widen=self.p.distill_widen,
                                  pool=min(_DISTILL_POOL, self.p.distill_steps * self.p.distill_batch),
                                  context_range=box, generator=gen)
            self.ctx.log.info("distilled sampler %d: rms deviation %.4f from the flow (%d steps, %.1f s)", r,
                              report["rmse"], report["steps"], report["seconds"])
            self.distilled.append(net)
            self.distill_report.append(report)
        self._samplers = None

    def _nll(self, flow: zuko.flows.Flow, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        return -flow(c).log_prob(z).mean()
    def _train_one(self, ctx: StageContext, flow: zuko.flows.Flow, tensors: list[torch.Tensor],
                   weights: torch.Tensor | None, z_v: torch.Tensor, c_v: torch.Tensor | None, fingerprint: str = ""
                   ) -> tuple[list[dict[str, float]], dict[str, Any]]:
        batches = ctx.torch_generator("batches")
        sampler = MinibatchSampler(*tensors, batch_size=self.p.batch_size, generator=batches, weights=weights)
        augment = ctx.torch_generator("augment") if self.p.noise > 0 else None
        opt = torch.optim.AdamW(flow.parameters(), lr=self.p.lr, weight_decay=self.p.weight_decay)
        schedule = cosine_schedule(self.p.steps, warmup=min(100, self.p.steps // 10), final=0.02) \
            if self.p.lr_schedule == "cosine" else warmup_schedule(min(100, self.p.steps // 10))
        graphed = GraphedLoss.maybe(lambda z, c: self._nll(flow, z, c), list(flow.parameters()), z_v.device,
                                    log=self.ctx.log)  # None on the CPU

        def step(i: int) -> dict[str, float]:
            batch = ddp.shard_minibatch(sampler())  # this rank's share (all of it in one process)
            z, c = batch[0], (batch[1] if len(batch) > 1 else None)
            if augment is not None:
                z = z + self.p.noise * torch.randn(z.shape, generator=augment, dtype=z.dtype).to(z.device)
            if graphed is not None:  # device = "cuda": forward and backward replayed as one CUDA graph
                loss = graphed(z, c)
            else:
                opt.zero_grad(set_to_none=True)
                loss = self._nll(flow, z, c)
                loss.backward()
            ddp.sync_gradients(flow.parameters(), len(z))
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            opt.step()
            return {"nll": ddp.all_reduce_mean(loss.item(), len(z))}

        def validate(i: int) -> dict[str, float]:
            with torch.no_grad():
                nll = self._nll(flow, z_v, c_v).item()
                out = {"val_nll": nll}
                if self.p.metric == "chi2":
                    gen = torch.Generator().manual_seed(ctx.torch_seed("validate"))
                    fake = flow(c_v).transform.inv(torch.randn(z_v.shape, generator=gen).to(z_v.device))
                    out["chi2"] = _mean_chi2(fake.cpu().numpy(), z_v.cpu().numpy())
            out["metric"] = out["chi2"] if self.p.metric == "chi2" else nll
            return out

        validate_fn = validate if self.p.validate_every else None
        loop = TrainLoop(ctx, step, self.p.steps, modules={"flow": flow}, optimizers={"opt": opt},
                         validate_fn=validate_fn, validate_every=self.p.validate_every, lr_schedule=schedule,
                         checkpoint_every=self.p.checkpoint_every if ctx.run_dir is not None else 0,
                         generators={"batches": batches, **({} if augment is None else {"augment": augment})},
                         desc=f"{ctx.name} (flow)", fingerprint=fingerprint)
        history = loop.run(resume=True if ctx.run_dir is not None and self.p.checkpoint_every else None)
        return history, {"best_step": loop.best_step, "best_metric": loop.best_metric}

    # -- sampling -------------------------------------------------------------------------
    def samplers(self) -> list[torch.nn.Module]:
        """One module per replica mapping ``(noise, context)`` to model-space features (built on first use).

        With ``sampler = "fast"`` a :class:`FastFlowSampler` (falls back to zuko's inverse, with a
        warning, for a flow it cannot reproduce); with ``"zuko"`` zuko's own ``transform.inv``; with
        ``"distilled"`` the :class:`DistilledSampler` trained at the end of :meth:`fit` (or, for a
        loaded state without one, distilled now from the flows: reproducible from the seed).
        """
        if self._samplers is None:
            if self.p.sampler == "distilled":
                if len(self.distilled) != len(self.flows):
                    if self.space.model_conditions and self.context_range is None:
                        self.ctx.log.warning("the state holds no distilled sampler and no trained context range "
                                             "to distil at; sampling with the exact inverse")
                        self._samplers = [self._sampler_of(flow, "fast") for flow in self.flows]
                        return self._samplers
                    self.ctx.log.info("the state holds no distilled sampler: distilling the flow now")
                    self._distill_all()
                self._samplers = list(self.distilled)
            else:
                self._samplers = [self._sampler_of(flow, self.p.sampler) for flow in self.flows]
        return self._samplers

    def _sampler_of(self, flow: zuko.flows.Flow, kind: str) -> torch.nn.Module:
        if kind == "fast":
            try:
                return FastFlowSampler(flow).eval()
            except NotImplementedError as err:
                self.ctx.log.warning("fast sampler unavailable (%s); sampling with zuko's inverse", err)
        return _ZukoSampler(flow)

    def _draw_events(self, sampler: torch.nn.Module, condition: np.ndarray | None, context: np.ndarray, n: int,
                     gen: torch.Generator, workers: int = 1) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Columns and physical mask of ``n`` events of one replica.

        The noise and the uniform features are drawn block by block, in order, from ``gen``; each block then
        runs through the network, the preprocessing's inverse and the decoding in fixed cache-sized chunks on
        ``workers`` data-parallel threads, all three on one thread per chunk (so the result does not depend on
        the thread count, and a chunk's arrays stay in cache between the steps).
        """
        space = self.space
        chunked = isinstance(sampler, _CHUNKED)
        # the columns (names, dtypes) of the map's decoding, allocated once and filled by the chunks in place
        template, _ = space.decode(np.empty((0, len(space.names))), context[:0])
        cols = {k: np.empty((n, *v.shape[1:]), dtype=v.dtype) for k, v in template.items()}
        ok = np.empty(n, dtype=bool)
        for lo in range(0, n, _SAMPLE_BLOCK):
            hi = min(lo + _SAMPLE_BLOCK, n)
            noise = torch.randn((hi - lo, len(self.learned)), generator=gen)
            uniform = space.draw_uniform(hi - lo, gen)
            c = None if condition is None else space.condition_tensor(condition[lo:hi])

            def chunk(a: int, b: int, lo: int = lo, noise: torch.Tensor = noise, uniform: np.ndarray | None = uniform,
                      c: torch.Tensor | None = c) -> None:
                cc = None if c is None else c[a:b]
                z = sampler(noise[a:b], cc, workers=1) if chunked else sampler(noise[a:b], cc)
                features = space.full(space.unprocess(z), None if uniform is None else uniform[a:b])
                part, ok[lo + a:lo + b] = space.decode(features, context[lo + a:lo + b])
                if part.keys() != cols.keys():
                    raise RuntimeError(f"the {space.fmap.name} map decodes the columns {sorted(part)} for events "
                                       f"but {sorted(cols)} for none")
                for k, v in part.items():
                    cols[k][lo + a:lo + b] = v

            map_spans(chunk, hi - lo, _DECODE_CHUNK, workers)
        return cols, ok

    def sample(self, n: int, seed: np.random.SeedSequence,
               conditions: Mapping[str, np.ndarray | float] | None = None) -> EventBatch:
        """``n`` physical events, reproducibly from ``seed`` (rejected events are redrawn and counted).

        ``conditions`` gives a value (or one per event) for each of :attr:`conditions`; the multiplicity of
        a variable-multiplicity collection is drawn from the training distribution unless given.
        """
        if not self.flows:
            raise DataError("the flow is sampled before it was trained or loaded", path=self.ctx.name)
        if n < 0:
            raise ConfigError("the number of events must be >= 0", path=f"{self.ctx.name}.sample", value=n)
        start = time.perf_counter()
        space = self.space
        drawn_multiplicity = space.multiplicity_field() is not None and space.multiplicity_field() not in \
            (conditions or {})
        seeds = seed.spawn(3 if drawn_multiplicity else 2)
        values, context = space.conditions_for(n, conditions, np.random.default_rng(seeds[2])
                                               if drawn_multiplicity else None, self.ctx.name)
        condition = np.stack([values[c] for c in space.model_conditions], axis=1) if space.model_conditions \
            else None
        gen = torch.Generator().manual_seed(int(seeds[0].generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
        replica_rng = np.random.default_rng(seeds[1])
        check = self.p.reject != "none"
        samplers = self.samplers()
        # the fast path runs data-parallel Python threads with single-threaded kernels (see FastFlowSampler)
        workers = torch.get_num_threads() if all(isinstance(s, _CHUNKED) for s in samplers) else 1

        def draw(slots: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
            cond = None if condition is None else condition[slots]
            if len(samplers) == 1 or not len(slots):
                cols, ok = self._draw_events(samplers[0], cond, context[slots], len(slots), gen, workers)
            else:
                which = replica_rng.integers(0, len(self.flows), len(slots))
                cols, ok = {}, np.zeros(len(slots), dtype=bool)
                for r, sampler in enumerate(samplers):
                    sel = which == r
                    if sel.any():
                        part, ok[sel] = self._draw_events(sampler, None if cond is None else cond[sel],
                                                          context[slots][sel], int(sel.sum()), gen, workers)
                        for k, v in part.items():
                            cols.setdefault(k, np.empty((len(slots), *v.shape[1:]), dtype=v.dtype))[sel] = v
            return cols, ok if check else np.ones(len(slots), dtype=bool)

        with single_threaded_kernels() if workers > 1 else contextlib.nullcontext():
            cols, drawn, rejected = sample_with_rejection(draw, n)
        self._drawn += drawn
        self._rejected += rejected
        self._sampled += n
        self._sample_seconds += time.perf_counter() - start
        meta = {"generator": "flow", "flow": self.p.flow, "feature_map": self.p.feature_map, "azimuth": self.azimuth,
                "rejected_fraction": rejected / drawn if drawn else 0.0}
        return EventBatch.from_columns(space.fmap.assemble(cols, context), space.beams, meta)

    def info(self) -> dict[str, Any]:
        """Rejected fraction, events sampled, training and generation speed."""
        space = self.space
        return {
            "rejected_fraction": self._rejected / self._drawn if self._drawn else 0.0,
            "events_drawn": self._drawn,
            "events_rejected": self._rejected,
            "events_sampled": self._sampled,
            "train_seconds": self._train_seconds,
            "events_per_second": self._sampled / self._sample_seconds if self._sample_seconds else None,
            "parameters": sum(p.numel() for f in self.flows for p in f.parameters()),
            "replicas": len(self.flows),
            "edges": dict(zip(self.learned, space.edge.edged(), strict=True)) if space.edge.lo is not None else {},
            "y_transform": space.y_transform if space.fmap is not None and any(
                f in self.learned for f in space.fmap.logit_features) else None,
            "sampler": type(self.samplers()[0]).__name__ if self.flows else None,
            "distill": list(self.distill_report),
        }

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Flows' weights and the model space (feature map, preprocessing, scalers, beams)."""
        if not self.flows:
            raise DataError("the flow has no state before it is trained", path=self.ctx.name)
        return {
            "features": list(self.features),
            "conditions": list(self.conditions),
            **self.space.state_dict(),
            "flows": [f.state_dict() for f in self.flows],
            "context_range": [list(v) for v in self.context_range] if self.context_range is not None else None,
            "distilled": [net.state() for net in self.distilled],
            "distill_report": list(self.distill_report),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (states of earlier versions migrated); refuses another feature set or
        conditioning."""
        state = migrate_state(state)
        if list(state.get("features", [])) != self.features or list(state.get("conditions", [])) != self.conditions:
            raise CheckpointError(f"the state holds features {state.get('features')} conditional on "
                                  f"{state.get('conditions')}, but this flow is configured for features "
                                  f"{self.features} conditional on {self.conditions}", path=self.ctx.name)
        azimuth = str(state.get("azimuth"))
        if azimuth not in ("uniform", "learned"):
            raise CheckpointError("unknown azimuth treatment in the checkpoint", path=self.ctx.name, value=azimuth)
        if azimuth != self.p.azimuth:
            self.ctx.log.info("the checkpoint's flow has azimuth = %r (configured: %r); using the checkpoint's",
                              azimuth, self.p.azimuth)
        self.space = self._new_space(azimuth)
        self.space.load_state_dict(state, self.ctx.name)
        self.flows = []
        self._samplers = None
        for flow_state in state["flows"]:
            flow = self._build_flow()
            try:
                flow.load_state_dict(flow_state)
            except RuntimeError as err:
                raise CheckpointError(f"flow weights do not fit the configured architecture: "
                                      f"{str(err).splitlines()[0]}", path=self.ctx.name) from None
            self.flows.append(flow.eval())
        # states written before the distilled sampler have neither; samplers() distils on first use if needed
        context_range = state.get("context_range")
        self.context_range = None if context_range is None else \
            ([float(v) for v in context_range[0]], [float(v) for v in context_range[1]])
        self.distilled = [DistilledSampler.from_state(s, self.ctx.name) for s in state.get("distilled") or []]
        self.distill_report = [dict(r) for r in state.get("distill_report") or []]
        if self.distilled and len(self.distilled) != len(self.flows):
            raise CheckpointError(f"the state holds {len(self.distilled)} distilled samplers for {len(self.flows)} "
                                  "flows", path=f"{self.ctx.name}.distilled")
        n_context = len(self.space.model_conditions)
        for net in self.distilled:
            if (net.n_features, net.n_context) != (self.noise_dim, n_context):
                raise CheckpointError(f"a distilled sampler maps {net.n_features} noise + {net.n_context} context "
                                      f"dimensions, the flow {self.noise_dim} + {n_context}",
                                      path=f"{self.ctx.name}.distilled")


class _ZukoSampler(torch.nn.Module):
    """zuko's own sampling direction, ``flow(context).transform.inv(noise)``, as a sampler module."""

    def __init__(self, flow: zuko.flows.Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, noise: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Model-space features of ``noise``."""
        return self.flow(context).transform.inv(noise)


def _mean_chi2(fake: np.ndarray, real: np.ndarray, bins: int = 40) -> float:
    """Mean over features of the 1D χ²/ndf of two samples (:func:`~mlegpipe.metrics.sample_chi2_ndf`: quantile
    bins of ``real``).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> 0.5 < _mean_chi2(rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2))) < 2.0
        True
    """
    values = [sample_chi2_ndf(fake[:, j], real[:, j], bins) for j in range(real.shape[1])]
    return float(np.mean(values)) if values else math.nan


@hookimpl
def mlegpipe_register_stages(registry) -> None:  # noqa: ANN001 - pluggy passes the registry
    """Register the ``flow`` generator."""
    registry.add(FlowGenerator)
