"""The ``flow`` generator: a normalizing flow (zuko NSF or MAF) trained by maximum likelihood.

The flow learns the features of a :mod:`feature map <mlegpipe.features.maps>`,
standardized, optionally conditional on the standardized lepton beam energy.
The default is the thesis ch. 7 map shifted by the beam energy,
``(nu1 + ln 2E_b, nu2 - ln 2E_b, phi)`` with ``nu1 = ln(E' - p_par)``,
``nu2 = ln(2E_b - E' - p_par)``: ``(ln Q², ln y, phi)`` at a collider
(``feature_map = "nu_scaled"``; for one beam energy the same model as
``"nu"``). On the HERA Pythia sample it matched at least as well as FAT-GAN's
``(p_x, p_y, T(p_z))`` (``"lepton_t"``, ``p_par < E_b`` by construction):
after 2500 steps χ²/ndf of Q² 1.14 vs 1.13, x 1.27 vs 1.35, classifier AUC
0.499 vs 0.516; after 1500 steps Q² 1.15 vs 2.25. Conditional on E_b
(trained at 10-50 GeV) it keeps the Q² cut and y ≤ 1 at fixed places, and
at 15 GeV reached Q² χ²/ndf 0.92 where ``"nu"`` gave 7.99
(benchmarks/bench_generators.py). Generated events are decoded to the lepton
four-momentum plus x, Q², y, W², ν; events outside the kinematic limits (and,
with ``reject = "training_range"``, outside the training sample's Q², W², y
range) are redrawn and counted: :meth:`FlowGenerator.info` reports the fraction.
Two bounds are mapped to infinity before the flow sees the features
(:mod:`~mlegpipe_builtins.generators._flow_edges`): ln y is learned as
ln(y / (1 - y)) (``y_transform = "logit"``: ln y where y << 1, the kinematic
limit y -> 1 at infinity), and a feature with a hard edge in the training
sample, a generation cut such as Q² > 1 GeV², is learned as ln of its distance
to a bound just past the training extreme (``edges = "auto"``): a flow cannot
draw a step, and rounding it off put events past the cut and too few at it.
Sampling uses the exact autoregressive inverse pruned to what each step needs
(``sampler = "fast"``, :mod:`~mlegpipe_builtins.generators._flow_fast`: 3.5x
fewer FLOPs than zuko's ``transform.inv`` for three features, same events up
to float rounding); ``sampler = "zuko"`` keeps zuko's own inverse.
``sampler = "distilled"`` (:mod:`~mlegpipe_builtins.generators._flow_distill`)
regresses a ReLU MLP (``distill_hidden``) on the exact inverse at the end of
``fit`` (``distill_steps``; saved with the flow, and distilled on first use for
a state written without one) and samples with it: one matmul-dominated pass
without spline work, an approximation of the flow judged on held-out truth
like any generator (README, benchmarks/bench_generators.py ``--samplers``).

Example (TOML):
    [generator]
    plugin = "flow"
    steps = 2500
    conditional = false
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zuko

from mlegpipe import distributed as ddp
from mlegpipe import hookimpl
from mlegpipe.beams import Beams
from mlegpipe.events import BEAM_ENERGY, EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.features import (
    FEATURE_MAPS,
    AsinhScale,
    FeatureMap,
    Standardize,
    beam_energy_of,
    decode_events,
    dis_labels,
    make_feature_map,
    sample_with_rejection,
)
from mlegpipe.generation import single_threaded_kernels
from mlegpipe.schema import param
from mlegpipe.stages import Discriminator, Generator, NetworkInputs, StageContext
from mlegpipe.training import MinibatchSampler, TrainLoop, bootstrap_indices, cosine_schedule, warmup_schedule
from mlegpipe.training.cuda_graph import GraphedLoss
from mlegpipe_builtins.generators._flow_distill import DistilledSampler, distill
from mlegpipe_builtins.generators._flow_edges import EdgeLog, ln_y_from_logit, logit_y_from_ln
from mlegpipe_builtins.generators._flow_fast import FastFlowSampler

__all__ = ["PRESETS", "FlowGenerator", "mlegpipe_register_stages"]

#: Size presets; a preset only changes parameters left at their defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "small": {"steps": 400, "transforms": 3, "hidden": [32, 32], "batch_size": 512, "validate_every": 100},
    "large": {"steps": 8000, "transforms": 6, "hidden": [128, 128], "bins": 12, "batch_size": 2048},
}
_RANGE_FIELDS = ("Q2", "W2", "y")
_PHI = "lepton_phi"
_SAMPLE_BLOCK = 262_144
_DISTILL_POOL = 1 << 20  # (noise, features) pairs the distilled sampler is regressed on
_DISTILL_STEPS_PER_STEP, _DISTILL_STEPS_MAX = 2.4, 6000  # distill_steps = 0: measured at 6000 for 2500 steps
_CONTEXT_MARGIN = 0.5  # distil conditional flows this fraction of the trained context span beyond it
_CHUNKED = (FastFlowSampler, DistilledSampler)  # samplers that run their chunks on data-parallel threads
_DECODE_MIN = 8192  # events per decoding thread, at least
_SPLINE_REACH = 4.5  # standardized reach beyond which preprocess = "auto" compresses a feature (splines: [-5, 5])


@dataclass
class FlowParams:
    """Parameters of the ``flow`` generator."""

    feature_map: str = param("nu_scaled", choices=tuple(FEATURE_MAPS),
                             doc="how events become features: nu_scaled (ln Q2, ln y, phi at a collider; best "
                                 "measured), nu (ln(E'-p_par), ln(2E_b-E'-p_par), phi), lepton_t (p_x, p_y, "
                                 "ln(E_b - p_par)), lepton_cartesian, or columns (the fields in `features`)")
    features: list[str] = param([], doc="event fields to learn with feature_map = 'columns'")
    conditional: bool = param(False, doc="condition on the (standardized) lepton beam energy")
    azimuth: str = param("uniform", choices=("uniform", "learned"),
                         doc="the lepton azimuth lepton_phi, where it is a feature: drawn uniformly in [-pi, pi) "
                             "(exact for unpolarized beams; the flow then models one dimension fewer) or learned")
    flow: str = param("nsf", choices=("nsf", "maf"), doc="neural spline flow or masked affine flow")
    preset: str = param("default", choices=tuple(PRESETS), doc="size preset (changes only defaulted values)")
    steps: int = param(2500, min=1, doc="optimizer steps")
    batch_size: int = param(1024, min=8, doc="events per step")
    lr: float = param(3e-3, min=0.0, exclusive_min=True, doc="Adam learning rate (peak)")
    lr_schedule: str = param("cosine", choices=("cosine", "constant"), doc="learning-rate schedule")
    weight_decay: float = param(0.0, min=0.0, doc="AdamW weight decay")
    transforms: int = param(4, min=1, doc="flow transformations")
    hidden: list[int] = param([64, 64], min=1, doc="hidden layer widths of each transformation's network")
    bins: int = param(8, min=2, doc="spline bins (nsf)")
    validate_every: int = param(250, min=0, doc="validate every this many steps (0: never)")
    validation_events: int = param(20_000, min=100, doc="validation events used for the metric")
    metric: str = param("nll", choices=("nll", "chi2"),
                        doc="validation metric for the best state: negative log-likelihood or mean 1D chi2/ndf")
    preprocess: str = param("auto", choices=("auto", "asinh", "none"),
                            doc="asinh on momentum components before standardizing (auto: on lepton_px/py/pz "
                                "features, and for nsf on any feature whose standardized training values reach "
                                "beyond ±4.5: the splines act on [-5, 5] only, so a flow cannot generate a tail "
                                "beyond it, e.g. ln Q² above ~300 GeV² at HERA; asinh: on every feature)")
    y_transform: str = param("logit", choices=("logit", "log"),
                             doc="how the nu_scaled map's ln y is learned: logit (ln(y / (1 - y)): ln y where y << 1, "
                                 "the kinematic limit y -> 1 moved to infinity, so the steep fall of the spectrum "
                                 "below it is spread out and no event reaches y >= 1) or log (ln y itself)")
    edges: str = param("auto", choices=("auto", "none"),
                       doc="auto: a learned feature with a hard edge in the training sample (>= 1 % of the events "
                           "within 0.05 standard deviations of its minimum or maximum, e.g. ln Q2 at a Q2 > Q2_min "
                           "generation cut) is learned as ln of its distance to a bound just past the training "
                           "extreme, so the flow need not draw a step and generates nothing beyond it (not for "
                           "conditional flows on maps other than nu_scaled, whose edges move with the beam energy); "
                           "none: off")
    replicas: int = param(1, min=1, doc="bootstrap ensemble size (1: one flow on the full sample)")
    noise: float = param(0.0, min=0.0, doc="Gaussian noise (standardized feature units) added to every training "
                                           "batch: the flow learns the density smoothed by a kernel of this width "
                                           "(0: none)")
    reject: str = param("physical", choices=("physical", "training_range", "none"),
                        doc="redraw events beyond the kinematic limits (and the training Q2/W2/y range)")
    checkpoint_every: int = param(500, min=0, doc="periodic training checkpoints in the run folder (0: none)")
    device: str = param("cpu", choices=("cpu", "cuda", "auto"),
                        doc="where training runs: cpu, cuda (this rank's GPU; the trained flows are moved back to "
                            "the CPU for sampling and saving) or auto (cuda when available). GPU training is not "
                            "bitwise reproducible")
    sampler: str = param("auto", choices=("auto", "fast", "zuko", "distilled"),
                         doc="how events are drawn: auto (distilled for the lepton feature maps, where its quality "
                             "was measured on HERA and 50x50 GeV Pythia; fast for feature_map = 'columns'), "
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


def _resolve_preset(params: FlowParams) -> FlowParams:
    """The preset's values for defaulted parameters, then the ``auto`` sampler and distillation length."""
    changes = {k: v for k, v in PRESETS[params.preset].items() if getattr(params, k) == _DEFAULTS[k]}
    params = dataclasses.replace(params, **changes)
    sampler = params.sampler if params.sampler != "auto" else \
        ("fast" if params.feature_map == "columns" else "distilled")
    steps = params.distill_steps or min(_DISTILL_STEPS_MAX, math.ceil(_DISTILL_STEPS_PER_STEP * params.steps))
    return dataclasses.replace(params, sampler=sampler, distill_steps=steps)


def _beyond_spline_reach(x: torch.Tensor) -> list[bool]:
    """Columns whose standardized values reach beyond ±:data:`_SPLINE_REACH` (zuko's splines act on [-5, 5]).

    Example:
        >>> x = torch.tensor([[0.0, 0.0]] * 99 + [[1.0, 100.0]], dtype=torch.float64)
        >>> _beyond_spline_reach(x)
        [True, True]
        >>> _beyond_spline_reach(torch.randn(1000, 2, generator=torch.Generator().manual_seed(0)))
        [False, False]
    """
    z = (x - x.mean(dim=0)) / x.std(dim=0).clamp_min(1e-12)
    return [bool(v > _SPLINE_REACH) for v in z.abs().max(dim=0).values]


class FlowGenerator(Generator):
    """Normalizing flow (zuko NSF/MAF) on physical lepton features, optionally conditional on E_b.

    Example:
        >>> # gen = FlowGenerator(FlowParams(steps=2500), StageContext("generator", seed=1))
        >>> # history = gen.fit(train, valid)           # train/valid: EventBatch with the lepton and beams
        >>> # events = gen.sample(100_000, np.random.SeedSequence(7))
        >>> # gen.info()["rejected_fraction"]
    """

    Params = FlowParams

    def __init__(self, params: FlowParams, ctx: StageContext) -> None:
        super().__init__(params, ctx)
        self.p = _resolve_preset(params)
        if self.p.feature_map == "columns" and not self.p.features:
            raise ConfigError("feature_map = 'columns' needs the list of event fields to learn",
                              path=f"{ctx.name}.features", value=[])
        self.conditions = [BEAM_ENERGY] if self.p.conditional else []
        self.fmap: FeatureMap | None = None
        self.beams: Beams | None = None
        self.features = self._feature_names()
        self._set_azimuth(self.p.azimuth)
        self.y_transform = self.p.y_transform
        self.edge = EdgeLog(self._edges_enabled())
        self.pre = AsinhScale(self._asinh_columns())
        self.scaler = Standardize()
        self.cond_scaler = Standardize()
        self.flows: list[zuko.flows.Flow] = []
        self._samplers: list[torch.nn.Module] | None = None
        self.distilled: list[DistilledSampler] = []
        self.distill_report: list[dict[str, Any]] = []
        self.context_range: tuple[list[float], list[float]] | None = None
        self.ranges: dict[str, tuple[float, float]] = {}
        self.hadron_follows = False
        self._drawn = 0
        self._rejected = 0
        self._train_seconds = 0.0
        self._sample_seconds = 0.0
        self._sampled = 0

    # -- construction ------------------------------------------------------------------
    def _feature_names(self) -> list[str]:
        if self.p.feature_map == "columns":
            return list(self.p.features)
        return list(FEATURE_MAPS[self.p.feature_map].names)

    def _set_azimuth(self, azimuth: str) -> None:
        """Which features the flow models: all of them, or all but a uniformly drawn ``lepton_phi``."""
        self.azimuth = azimuth
        uniform = azimuth == "uniform" and _PHI in self.features
        self._phi_col = self.features.index(_PHI) if uniform else None
        self.learned = [f for f in self.features if not (uniform and f == _PHI)]

    @property
    def noise_dim(self) -> int:
        """Dimensions of the flow's base noise: the learned features (``lepton_phi`` excluded when uniform)."""
        return len(self.learned)

    def _lny_column(self) -> int | None:
        """The learned column holding ln y when it is learned as ln(y / (1 - y)) (``y_transform = "logit"``)."""
        return self.learned.index("lny") if self.y_transform == "logit" and "lny" in self.learned else None

    def _edges_enabled(self) -> bool:
        """Edge maps where the edges stay put: unconditional flows, or (ln Q², ln y) at any beam energy."""
        return self.p.edges == "auto" and (not self.p.conditional or self.p.feature_map == "nu_scaled")

    def _asinh_columns(self) -> list[bool]:
        if self.p.preprocess == "none":
            return [False] * len(self.learned)
        if self.p.preprocess == "asinh":
            return [True] * len(self.learned)
        return [f in ("lepton_px", "lepton_py", "lepton_pz") for f in self.learned]

    def _build_flow(self) -> zuko.flows.Flow:
        n_feat, n_ctx = len(self.learned), len(self.conditions)
        hidden = tuple(self.p.hidden)
        if self.p.flow == "nsf":
            return zuko.flows.NSF(n_feat, n_ctx, bins=self.p.bins, transforms=self.p.transforms,
                                  hidden_features=hidden)
        return zuko.flows.MAF(n_feat, n_ctx, transforms=self.p.transforms, hidden_features=hidden)

    def _make_map(self, beams: Beams | None) -> FeatureMap:
        if self.p.feature_map != "columns" and beams is None:
            raise DataError(f"feature map {self.p.feature_map!r} needs the beam set-up, but the training events "
                            "carry none", path=f"{self.ctx.name}.feature_map")
        return make_feature_map(self.p.feature_map, beams, features=self.p.features,
                                path=f"{self.ctx.name}.feature_map")

    # -- tensors ----------------------------------------------------------------------
    def _features_of(self, events: EventBatch) -> torch.Tensor:
        """Model-space features: the map's learned features after the asinh preprocessing."""
        x = self.fmap.encode(events)
        if self._phi_col is not None:
            x = np.delete(x, self._phi_col, axis=1)
        x = torch.from_numpy(np.ascontiguousarray(x))
        if (j := self._lny_column()) is not None:
            x[:, j] = logit_y_from_ln(x[:, j])
        if self.edge.lo is None:
            self.edge.fit(x)
        x = self.edge.transform(x)
        if self.pre.mask is None:
            if self.p.preprocess == "auto" and self.p.flow == "nsf":
                self.pre.columns = [a or b for a, b in zip(self.pre.columns or [False] * x.shape[1],
                                                            _beyond_spline_reach(x), strict=True)]
            self.pre.fit(x)
        return self.pre.transform(x)

    def _energies_of(self, events: EventBatch) -> np.ndarray:
        if self.fmap is not None and self.fmap.needs_beam_energy or self.conditions:
            return beam_energy_of(events)
        return np.zeros(len(events))

    def _context(self, energies: np.ndarray) -> torch.Tensor | None:
        if not self.conditions:
            return None
        return self.cond_scaler.transform(torch.from_numpy(np.asarray(energies, dtype=np.float64))[:, None]).float()

    def interpretation_inputs(self, events: EventBatch) -> NetworkInputs:
        """What the flows see for ``events``: standardized features, standardized beam energy (context)."""
        if not self.flows:
            raise ConfigError(f"generator {self.plugin_name or 'flow'!r} is used before it was trained or loaded",
                              path=self.ctx.name)
        energies = self._energies_of(events)
        z = self.scaler.transform(self._features_of(events)).float()
        return NetworkInputs(z, self._context(energies), np.asarray(energies, dtype=np.float64))

    # -- training -------------------------------------------------------------------------
    def fit(self, train: EventBatch, valid: EventBatch, discriminator: Discriminator | None = None) -> dict[str, Any]:
        """Maximum-likelihood training; returns the history (per replica) and the best validation."""
        start = time.perf_counter()
        self.beams = train.beams
        self.hadron_follows = dict(train.meta.get("beam_setup") or {}).get("hadron_energy") == BEAM_ENERGY
        self.fmap = self._make_map(self.beams)
        self.y_transform = self.p.y_transform
        self.edge = EdgeLog(self._edges_enabled())
        self.pre = AsinhScale(self._asinh_columns())
        x_train = self._features_of(train)
        x_valid = self._features_of(valid)
        e_train, e_valid = self._energies_of(train), self._energies_of(valid)
        self.scaler.fit(x_train, train.weights)
        if self.conditions:
            self.cond_scaler.fit(e_train[:, None])
            if float(self.cond_scaler.std[0]) < 1e-9:
                self.ctx.log.warning("conditional flow trained at a single beam energy %.4g GeV", e_train[0])
                self.cond_scaler.std = torch.ones(1, dtype=torch.float64)
        else:
            self.cond_scaler = Standardize()
        self.ranges = self._training_ranges(train)
        z_train = self.scaler.transform(x_train).float()
        z_valid = self.scaler.transform(x_valid).float()
        c_train, c_valid = self._context(e_train), self._context(e_valid)
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
                                                     float(x_train.sum())]).encode()).hexdigest()[:16]
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
        if self.conditions:
            low, high = (torch.tensor(v, dtype=torch.float32) for v in self.context_range)
            margin = _CONTEXT_MARGIN * (high - low)
            box = (low - margin, high + margin)
        for r, flow in enumerate(self.flows):
            teacher = self._sampler_of(flow, "fast")
            ctx = self.ctx if len(self.flows) == 1 else self.ctx.child(f"replica{r}")
            gen = torch.Generator().manual_seed(ctx.torch_seed("distill"))
            net, report = distill(lambda u, c, t=teacher: t(u, c, workers=1) if isinstance(t, FastFlowSampler)
                                  else t(u, c), self.noise_dim, len(self.conditions),
                                  self.p.distill_hidden, steps=self.p.distill_steps, batch_size=self.p.distill_batch,
                                  lr=self.p.distill_lr, widen=self.p.distill_widen,
                                  pool=min(_DISTILL_POOL, self.p.distill_steps * self.p.distill_batch),
                                  context_range=box, generator=gen)
            self.ctx.log.info("distilled sampler %d: rms deviation %.4f from the flow (%d steps, %.1f s)", r,
                              report["rmse"], report["steps"], report["seconds"])
            self.distilled.append(net)
            self.distill_report.append(report)
        self._samplers = None

    def _training_ranges(self, train: EventBatch) -> dict[str, tuple[float, float]]:
        if self.p.reject != "training_range":
            return {}
        labels = {}
        if self.beams is not None and self.p.feature_map != "columns":
            cols = self.fmap.decode(self.fmap.encode(train), self._energies_of(train))
            labels = dis_labels(cols, self._energies_of(train), self.beams, self.hadron_follows)
        return {k: (float(np.min(v)), float(np.max(v))) for k, v in labels.items() if k in _RANGE_FIELDS}

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

    # -- sampling ---------------------------------------------------------------------------
    def _energies_for(self, n: int, conditions: Mapping[str, np.ndarray | float] | None) -> np.ndarray:
        conditions = dict(conditions or {})
        unknown = [k for k in conditions if k not in self.conditions]
        if unknown:
            raise ConfigError("this generator takes no such condition; it takes: "
                              + (", ".join(self.conditions) or "none"), path=f"{self.ctx.name}.conditions",
                              value=unknown[0])
        if self.conditions:
            if BEAM_ENERGY not in conditions:
                raise ConfigError("this conditional flow needs a beam_energy for sampling",
                                  path=f"{self.ctx.name}.conditions", value=None)
            energies = np.broadcast_to(np.asarray(conditions[BEAM_ENERGY], dtype=np.float64), (n,)).copy()
            if not (np.isfinite(energies).all() and (energies > 0).all()):
                raise ConfigError("beam energies must be positive numbers of GeV", path=f"{self.ctx.name}.conditions",
                                  value=float(energies[~(np.isfinite(energies) & (energies > 0))][0]))
            return energies
        if self.beams is not None:
            return np.full(n, self.beams.lepton_energy)
        return np.zeros(n)

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
                    if self.conditions and self.context_range is None:
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

    def _draw_features(self, sampler: torch.nn.Module, energies: np.ndarray, gen: torch.Generator,
                       workers: int = 1) -> np.ndarray:
        out = np.empty((len(energies), len(self.features)))
        learned = [j for j in range(len(self.features)) if j != self._phi_col]
        with torch.inference_mode():
            for lo in range(0, len(energies), _SAMPLE_BLOCK):
                hi = min(lo + _SAMPLE_BLOCK, len(energies))
                noise = torch.randn((hi - lo, len(self.learned)), generator=gen)
                c = self._context(energies[lo:hi])
                z = sampler(noise, c, workers=workers) if isinstance(sampler, _CHUNKED) else sampler(noise, c)
                x = self.edge.inverse(self.pre.inverse(self.scaler.inverse(z.double())))
                if (j := self._lny_column()) is not None:
                    x[:, j] = ln_y_from_logit(x[:, j])
                out[lo:hi, learned] = x.numpy()
                if self._phi_col is not None:
                    u = torch.rand(hi - lo, generator=gen, dtype=torch.float64).numpy()
                    out[lo:hi, self._phi_col] = (2.0 * u - 1.0) * math.pi
        return out

    def sample(self, n: int, seed: np.random.SeedSequence,
               conditions: Mapping[str, np.ndarray | float] | None = None) -> EventBatch:
        """``n`` physical events, reproducibly from ``seed`` (rejected events are redrawn and counted)."""
        if not self.flows:
            raise DataError("the flow is sampled before it was trained or loaded", path=self.ctx.name)
        if n < 0:
            raise ConfigError("the number of events must be >= 0", path=f"{self.ctx.name}.sample", value=n)
        start = time.perf_counter()
        energies = self._energies_for(n, conditions)
        seeds = seed.spawn(2)
        gen = torch.Generator().manual_seed(int(seeds[0].generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
        replica_rng = np.random.default_rng(seeds[1])
        check = self.p.reject != "none"
        samplers = self.samplers()
        # the fast path runs data-parallel Python threads with single-threaded kernels (see FastFlowSampler)
        workers = torch.get_num_threads() if all(isinstance(s, _CHUNKED) for s in samplers) else 1

        def draw(slots: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
            eb = energies[slots]
            if len(samplers) == 1:
                z = self._draw_features(samplers[0], eb, gen, workers)
            else:
                z = np.empty((len(slots), len(self.features)))
                which = replica_rng.integers(0, len(self.flows), len(slots))
                for r, sampler in enumerate(samplers):
                    sel = which == r
                    if sel.any():
                        z[sel] = self._draw_features(sampler, eb[sel], gen, workers)
            cols, ok = self._decode(z, eb, workers)
            return cols, ok if check else np.ones(len(slots), dtype=bool)

        with single_threaded_kernels() if workers > 1 else contextlib.nullcontext():
            cols, drawn, rejected = sample_with_rejection(draw, n)
        self._drawn += drawn
        self._rejected += rejected
        self._sampled += n
        self._sample_seconds += time.perf_counter() - start
        meta = {"generator": "flow", "flow": self.p.flow, "feature_map": self.p.feature_map, "azimuth": self.azimuth,
                "rejected_fraction": rejected / drawn if drawn else 0.0}
        return EventBatch.from_columns(cols, self.beams, meta)

    def _decode(self, z: np.ndarray, eb: np.ndarray, workers: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """:func:`decode_events`, split over ``workers`` threads for large draws (same result)."""
        if workers <= 1 or len(z) < 2 * _DECODE_MIN:
            return decode_events(self.fmap, z, eb, self.beams, self.ranges, self.hadron_follows)
        edges = np.linspace(0, len(z), workers + 1).astype(int)
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(lambda lo_hi: decode_events(
                self.fmap, z[lo_hi[0]:lo_hi[1]], eb[lo_hi[0]:lo_hi[1]], self.beams, self.ranges,
                self.hadron_follows), zip(edges[:-1], edges[1:], strict=True)))
        cols = {k: np.concatenate([c[k] for c, _ in parts]) for k in parts[0][0]}
        return cols, np.concatenate([ok for _, ok in parts])

    def info(self) -> dict[str, Any]:
        """Rejected fraction, events sampled, training and generation speed."""
        return {
            "rejected_fraction": self._rejected / self._drawn if self._drawn else 0.0,
            "events_drawn": self._drawn,
            "events_rejected": self._rejected,
            "events_sampled": self._sampled,
            "train_seconds": self._train_seconds,
            "events_per_second": self._sampled / self._sample_seconds if self._sample_seconds else None,
            "parameters": sum(p.numel() for f in self.flows for p in f.parameters()),
            "replicas": len(self.flows),
            "edges": dict(zip(self.learned, self.edge.edged(), strict=True)) if self.edge.lo is not None else {},
            "y_transform": self.y_transform if "lny" in self.learned else None,
            "sampler": type(self.samplers()[0]).__name__ if self.flows else None,
            "distill": list(self.distill_report),
        }

    # -- state ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Flows' weights, scalers, feature map and beams."""
        if not self.flows:
            raise DataError("the flow has no state before it is trained", path=self.ctx.name)
        return {
            "features": list(self.features),
            "azimuth": self.azimuth,
            "conditions": list(self.conditions),
            "feature_map": self.fmap.config(),
            "beams": self.beams.to_dict() if self.beams is not None else {},
            "edges": self.edge.state_dict(),
            "y_transform": self.y_transform,
            "preprocess": self.pre.state_dict(),
            "scaler": self.scaler.state_dict(),
            "cond_scaler": self.cond_scaler.state_dict() if self.conditions else {},
            "ranges": {k: [lo, hi] for k, (lo, hi) in self.ranges.items()},
            "hadron_follows": self.hadron_follows,
            "flows": [f.state_dict() for f in self.flows],
            "context_range": [list(v) for v in self.context_range] if self.context_range is not None else None,
            "distilled": [net.state() for net in self.distilled],
            "distill_report": list(self.distill_report),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`; refuses a state of another feature set or conditioning."""
        if list(state.get("features", [])) != self.features or list(state.get("conditions", [])) != self.conditions:
            raise CheckpointError(f"the state holds features {state.get('features')} conditional on "
                                  f"{state.get('conditions')}, but this flow is configured for features "
                                  f"{self.features} conditional on {self.conditions}", path=self.ctx.name)
        azimuth = str(state.get("azimuth", "learned"))  # checkpoints before the option learned the azimuth
        if azimuth not in ("uniform", "learned"):
            raise CheckpointError("unknown azimuth treatment in the checkpoint", path=self.ctx.name, value=azimuth)
        if azimuth != self.azimuth:
            self.ctx.log.info("the checkpoint's flow has azimuth = %r (configured: %r); using the checkpoint's",
                              azimuth, self.azimuth)
        self._set_azimuth(azimuth)
        self.beams = Beams.from_dict(dict(state["beams"])) if state.get("beams") else None
        self.fmap = make_feature_map(dict(state["feature_map"]))
        try:
            self.edge = EdgeLog().load_state_dict(state.get("edges"), len(self.learned))  # None: before edges
        except DataError as err:
            raise CheckpointError(str(err), path=f"{self.ctx.name}.edges") from None
        self.y_transform = str(state.get("y_transform", "log"))  # states before the option learned ln y
        if self.y_transform not in ("logit", "log"):
            raise CheckpointError("unknown y_transform in the checkpoint", path=f"{self.ctx.name}.y_transform",
                                  value=self.y_transform)
        self.pre = AsinhScale().load_state_dict(state["preprocess"])
        self.scaler = Standardize().load_state_dict(state["scaler"])
        if self.conditions:
            self.cond_scaler = Standardize().load_state_dict(state["cond_scaler"])
        self.ranges = {k: (float(v[0]), float(v[1])) for k, v in dict(state.get("ranges", {})).items()}
        self.hadron_follows = bool(state.get("hadron_follows", False))
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
        for net in self.distilled:
            if (net.n_features, net.n_context) != (self.noise_dim, len(self.conditions)):
                raise CheckpointError(f"a distilled sampler maps {net.n_features} noise + {net.n_context} context "
                                      f"dimensions, the flow {self.noise_dim} + {len(self.conditions)}",
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
    """Mean over features of the 1D chi2/ndf between two equal-size samples (quantile bins of ``real``)."""
    values = []
    for j in range(real.shape[1]):
        edges = np.unique(np.quantile(real[:, j], np.linspace(0, 1, bins + 1)))
        g, _ = np.histogram(fake[:, j], edges)
        t, _ = np.histogram(real[:, j], edges)
        used = (g + t) > 0
        values.append(float(np.sum((g[used] - t[used]) ** 2 / (g[used] + t[used])) / max(1, used.sum())))
    return float(np.mean(values)) if values else math.nan


@hookimpl
def mlegpipe_register_stages(registry) -> None:  # noqa: ANN001 - pluggy passes the registry
    """Register the ``flow`` generator."""
    registry.add(FlowGenerator, "flow")
