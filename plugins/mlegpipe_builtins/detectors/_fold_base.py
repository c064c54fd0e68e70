"""Shared machinery of the learned detector surrogates: data, acceptance, fold, state.

:class:`LearnedFolding` implements everything a learned surrogate does except
the model itself: it extracts and standardizes the (vertex, detector) feature
pairs, learns the acceptance p(pass | vertex) when the detector sample carries
a pass flag, folds events reproducibly in fixed blocks, exposes the
differentiable :meth:`~LearnedFolding.fold_tensor`, and saves its state as
tensors and JSON-able values. Subclasses provide ``_build``, ``_train``,
``noise_dim`` and ``_fold``.

Data-parallel training (torchrun): every rank fits the same pairs with the
same seed; each training step draws the global minibatch (and its noise) as
one process does, computes the loss on this rank's rows and averages the
gradients over ranks before every optimizer step (:mod:`mlegpipe.data_parallel`), so N ranks
reproduce one process's surrogate with the same ``batch_size`` up to
floating-point reduction order (the tests compare 2 gloo ranks with one
process: see ``tests/test_ddp_detectors_unfolding.py``). The acceptance
classifiers' binary cross entropy is a mean over events: sharded exactly.

Units: networks work in standardized units. ``vertex_scaler`` maps the
physical vertex features (``vertex_features``) to standardized ones,
``detector_scaler`` the detector features (``detector_features``). With
``residual = true`` a detector feature that is also a vertex feature is
learned as a shift from its vertex value and shares the vertex scaling; when
the two lists share no names but have equal length (paired truth/reco
branches of one ROOT file, e.g. ``["nu1_true"] → ["nu1_reco"]``: pass the same
batch as vertex and detector sample) they are paired by position.

Example:
    >>> FoldingParams().acceptance
    'flag'
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlegpipe.beams import Beams
from mlegpipe.data_parallel import DataParallel
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import CheckpointError, ConfigError, DataError
from mlegpipe.nets import mlp
from mlegpipe.schema import param
from mlegpipe.stages import Detector
from mlegpipe.training import MinibatchSampler, TrainLoop, cosine_schedule
from mlegpipe_builtins.detectors._fold_features import FeatureScaler, feature_matrix
from mlegpipe_builtins.detectors._fold_pass import electron_labels, resolve_pass_model
from mlegpipe_builtins.dis import DIS_LABELS, LEPTON_FIELDS

__all__ = ["ACCEPTANCE_FIELDS", "BLOCK_EVENTS", "FoldingParams", "LearnedFolding"]

#: Events folded per random block: the noise of block k comes from spawn key (k,) of the fold seed,
#: so the folded events do not depend on how the caller chunks its work beyond these blocks.
BLOCK_EVENTS = 65536
#: Pass flags looked for in detector samples when ``acceptance_field = "auto"`` (first found wins).
ACCEPTANCE_FIELDS: tuple[str, ...] = ("measured", "measured_electron", "lepton_measured", "accepted", "pass")
#: Spherical lepton quantities a surrogate may fold; the Cartesian lepton is rebuilt from them.
_SPHERICAL = ("lepton_P", "lepton_theta", "lepton_phi")
#: Quantities a detector cannot measure negative: folded values below 0 are set to 0 (as eic-smear does).
_NONNEGATIVE = frozenset({"lepton_E", "lepton_P", "lepton_pt"})


@dataclass
class FoldingParams:
    """Parameters shared by every learned surrogate."""

    vertex_features: list[str] = param(list(LEPTON_FIELDS), doc="vertex-level input features (fields or "
                                       "nu1, nu2, lepton_P, lepton_pt, lepton_theta, lepton_eta, lepton_phi)")
    detector_features: list[str] = param([], doc="detector-level output features (empty: same as vertex_features)")
    residual: bool = param(True, doc="learn detector features that are also vertex features (or paired by "
                           "position) as shifts detector - vertex; extrapolates to vertex samples unlike the training one")
    steps: int = param(2000, min=1, doc="optimizer steps")
    batch_size: int = param(512, min=2, doc="events per step")
    lr: float = param(1e-3, min=0.0, exclusive_min=True, doc="Adam learning rate")
    lr_schedule: str = param("cosine", choices=("constant", "cosine"),
                             doc="learning rate of the surrogate network: constant, or a cosine decay to 5 % of lr "
                             "over the steps (less optimizer noise in the final weights)")
    hidden: int = param(64, min=1, doc="hidden units per layer")
    layers: int = param(3, min=1, doc="hidden layers")
    validate_every: int = param(200, min=1, doc="steps between validation (best checkpoint kept)")
    valid_fraction: float = param(0.1, min=0.01, max=0.5, doc="fraction of pairs held out for validation")
    acceptance: str = param("flag", choices=("flag", "drop", "off"),
                            doc="fold(): add a sampled 'measured' flag, drop unmeasured events, or ignore acceptance")
    acceptance_field: str = param("auto", doc="pass flag of the detector sample ('auto': "
                                  + ", ".join(ACCEPTANCE_FIELDS) + ")")
    pass_model: str = param("auto", choices=("auto", "learned", "kinematic"),
                            doc="which folded events pass (see _fold_pass): 'kinematic' learns the response of every "
                            "event with a measured lepton and cuts y, x, Q2 > 0 on the folded lepton as smear does; "
                            "'learned' draws p(pass | vertex) independently; 'auto': kinematic where the sample allows")
    acceptance_steps: int = param(3000, min=1, doc="optimizer steps of the acceptance classifier (sharp "
                                  "acceptance edges need many: 600 steps left the HERA log Q² χ² at 2.3 × floor)")


class LearnedFolding(Detector):
    """Base of the learned surrogates (see the module docstring for units and state).

    Every learned surrogate meets :class:`mlegpipe.stages.DifferentiableSurrogate` (feature names, scalers,
    :attr:`has_pass_model`, :meth:`fold`, :meth:`fold_tensor`, :meth:`pass_tensor`, :meth:`acceptance_tensor`).
    """

    trainable = True

    def __init__(self, params: Any, ctx: Any) -> None:
        super().__init__(params, ctx)
        self.model: nn.Module | None = None
        self.acceptance_net: nn.Module | None = None
        self.lepton_net: nn.Module | None = None   # p(lepton measured | vertex) of the kinematic pass model
        self.lepton_flag: str | None = None        # the lepton flag it learned from (None: learned pass model)
        self.beams: Beams | None = None             # beams of the training sample (kinematic pass model)
        self.vertex_scaler: FeatureScaler | None = None
        self.detector_scaler: FeatureScaler | None = None
        self.history: dict[str, Any] = {}
        self.flag_name = "measured"
        self._figures: dict[str, Any] = {}
        v, d = self.vertex_features, self.detector_features
        if params.residual and not set(v) & set(d) and len(v) != len(d):
            raise ConfigError("residual = true needs detector features that are also vertex features, or "
                              f"paired lists of equal length (have {v} and {d})",
                              path=f"{ctx.name}.residual", value=True, hint="set residual = false")

    # -- feature bookkeeping -------------------------------------------------
    @property
    def vertex_features(self) -> list[str]:
        """Names of the vertex-level input features."""
        return list(self.params.vertex_features)

    @property
    def detector_features(self) -> list[str]:
        """Names of the detector-level output features."""
        return list(self.params.detector_features) or list(self.params.vertex_features)

    @property
    def residual_index(self) -> list[int]:
        """For each detector feature, the index of the vertex feature it is a shift of (-1: none)."""
        v, d = self.vertex_features, self.detector_features
        if not self.params.residual:
            return [-1] * len(d)
        if not set(v) & set(d):  # paired branches such as nu1_true → nu1_reco: by position
            return list(range(len(d)))
        return [v.index(n) if n in v else -1 for n in d]

    @property
    def has_pass_model(self) -> bool:
        """Whether folded events can fail to pass: an acceptance classifier or the kinematic pass model was learned.

        Without one :meth:`pass_tensor` is 1 for every event (:class:`~mlegpipe.stages.DifferentiableSurrogate`).

        Example:
            >>> from mlegpipe.context import StageContext
            >>> LearnedFolding(FoldingParams(vertex_features=["a"]), StageContext("detector")).has_pass_model
            False
        """
        return self.acceptance_net is not None or self.lepton_flag is not None

    @property
    def fitted(self) -> bool:
        """True once trained or loaded."""
        return self.model is not None

    def _require_fitted(self, what: str) -> None:
        if not self.fitted:
            raise DataError(f"the {self.plugin_name or type(self).__name__} surrogate must be trained "
                            f"(fit) or loaded before {what}", path=self.ctx.name)

    def _pass_mask(self, detector: EventBatch) -> np.ndarray | None:
        """The per-event pass flag of the detector sample, or None when there is none."""
        name = self.params.acceptance_field
        if name == "auto":
            name = next((f for f in ACCEPTANCE_FIELDS if detector.has(f)), "")
            if not name:
                return None
        elif not detector.has(name):
            raise DataError("the detector sample has no such pass flag; have: " + ", ".join(detector.fields),
                            path=f"{self.ctx.name}.acceptance_field", value=name)
        self.flag_name = name
        return detector.column(name) > 0.5

    # -- training --------------------------------------------------------------
    def fit(self, vertex: EventBatch, detector: EventBatch) -> dict[str, Any]:
        """Learn the folding from index-aligned (vertex, detector) pairs.

        Events whose pass flag is false train only the acceptance classifier.

        Example:
            >>> # see tests/test_folding.py: surrogate.fit(vertex_events, smeared_events)
        """
        start = time.process_time()
        if len(vertex) != len(detector):
            raise DataError(f"vertex and detector samples must be index-aligned pairs, got {len(vertex)} "
                            f"and {len(detector)} events", path=self.ctx.name)
        passed = self._pass_mask(detector)
        self.lepton_flag = resolve_pass_model(self.params.pass_model, detector,
                                              self.flag_name if passed is not None else None,
                                              self.detector_features, self.ctx.name)
        self.beams = detector.beams if self.lepton_flag is not None else None
        v_all = feature_matrix(vertex, self.vertex_features, f"{self.ctx.name}: vertex sample")
        keep = np.ones(len(vertex), bool) if passed is None else passed
        if self.lepton_flag is not None:  # kinematic pass: learn the untruncated response of measured leptons
            keep = detector.column(self.lepton_flag) > 0.5
        if keep.sum() < 10:
            raise DataError(f"only {int(keep.sum())} measured events to learn the folding from", path=self.ctx.name)
        d = feature_matrix(detector.take(keep), self.detector_features, f"{self.ctx.name}: detector sample")
        v = v_all[keep]
        self.vertex_scaler = FeatureScaler.fit_named(self.vertex_features, v)
        self.detector_scaler = FeatureScaler.fit_named(self.detector_features, d)
        for j, i in enumerate(self.residual_index):  # shifted features share the vertex units
            if i >= 0:
                self.detector_scaler.mean[j] = self.vertex_scaler.mean[i]
                self.detector_scaler.std[j] = self.vertex_scaler.std[i]
        vs = torch.as_tensor(self.vertex_scaler.transform_numpy(v), dtype=torch.float32)
        ds = torch.as_tensor(self.detector_scaler.transform_numpy(d), dtype=torch.float32)
        order = torch.as_tensor(self.ctx.rng("split").permutation(len(vs)))
        n_valid = max(1, int(round(self.params.valid_fraction * len(vs))))
        valid, train = order[:n_valid], order[n_valid:]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed("init"))
            self.model = self._build(vs.shape[1], ds.shape[1])
        self.model.set_target_scale(vs[train], ds[train])
        # the global torch stream (dropout) is seeded from ctx too, and left as it was afterwards
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed("global"))
            self.history = {"model": self._train(vs[train], ds[train], vs[valid], ds[valid])}
            if passed is not None and not passed.all():
                self.acceptance_net, self.history["acceptance"] = self._fit_acceptance(v_all, passed, "acceptance")
            if self.lepton_flag is not None and not keep.all():
                self.lepton_net, self.history["lepton"] = self._fit_acceptance(v_all, keep, "lepton")
        self._figures = {"train_pairs": int(len(train)), "valid_pairs": int(len(valid)),
                         "measured_fraction": float(keep.mean()),
                         "train_cpu_s": time.process_time() - start}
        self._freeze()
        return self.history

    def _freeze(self) -> None:
        """Evaluation mode, weights frozen: gradients still flow to the inputs of :meth:`fold_tensor`."""
        for net in (self.model, self.acceptance_net, self.lepton_net):
            if net is not None:
                net.eval()
                net.requires_grad_(False)

    def info(self) -> dict[str, Any]:
        """Features, training figures (best validation metric and step, CPU time, measured fraction)."""
        out: dict[str, Any] = {"vertex_features": self.vertex_features, "detector_features": self.detector_features,
                               "acceptance_learned": self.acceptance_net is not None,
                               "pass_model": "learned" if self.lepton_flag is None else "kinematic", **self._figures}
        validated = [h for h in self.history.get("model", []) if "metric" in h]
        if validated:
            best = min(validated, key=lambda h: h["metric"])
            out.update(best_step=int(best["step"]), best_metric=float(best["metric"]))
        return out

    def _fit_acceptance(self, vertex: np.ndarray, passed: np.ndarray,
                        part: str) -> tuple[nn.Module, list[dict[str, float]]]:
        """Train a classifier p(flag | vertex) by binary cross entropy (``part``: acceptance | lepton)."""
        x = torch.as_tensor(self.vertex_scaler.transform_numpy(vertex), dtype=torch.float32)
        y = torch.as_tensor(passed, dtype=torch.float32)[:, None]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed(f"{part}-init"))
            net = mlp(x.shape[1], 1, [self.params.hidden] * 2)
        opt = torch.optim.Adam(net.parameters(), lr=self.params.lr)
        gen = self.ctx.torch_generator(part)
        batches = MinibatchSampler(x, y, batch_size=2 * self.params.batch_size, generator=gen)
        lossf = nn.BCEWithLogitsLoss()
        dp = DataParallel()

        def step(_: int) -> dict[str, float]:
            xb, yb = dp.take(*batches())  # this rank's rows of the global batch
            loss = lossf(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            dp.sync(net.parameters(), len(xb))
            opt.step()
            return {"bce": dp.mean(loss.item(), len(xb))}

        history = self.loop(part, step, self.params.acceptance_steps, {part: net}, {"adam": opt},
                            {"batches": gen}).run(resume=self.ctx.resume or None)
        return net.eval(), history

    def loop(self, part: str, step_fn: Any, steps: int, modules: Mapping[str, nn.Module],
             optimizers: Mapping[str, torch.optim.Optimizer], generators: Mapping[str, torch.Generator],
             validate_fn: Any = None) -> TrainLoop:
        """The shared :class:`~mlegpipe.training.TrainLoop` for one part (``model``, ``acceptance``) of the surrogate.

        The ``model`` part follows ``lr_schedule``; the acceptance classifiers keep a constant rate.
        """
        checkpoint = self.params.validate_every if self.ctx.run_dir is not None else 0
        schedule = cosine_schedule(steps, final=0.05) if part == "model" and self.params.lr_schedule == "cosine" \
            else None
        return TrainLoop(self.ctx, step_fn, steps, modules=modules, optimizers=optimizers, lr_schedule=schedule,
                         validate_fn=validate_fn, validate_every=self.params.validate_every if validate_fn else 0,
                         checkpoint_every=checkpoint, generators=generators,
                         checkpoint_name=f"{self.ctx.name}-{part}", desc=f"{self.ctx.name} {part}")

    # -- subclass hooks --------------------------------------------------------------
    def _build(self, n_vertex: int, n_detector: int) -> nn.Module:
        raise NotImplementedError

    def _train(self, v_train: torch.Tensor, d_train: torch.Tensor, v_valid: torch.Tensor,
               d_valid: torch.Tensor) -> list[dict[str, float]]:
        raise NotImplementedError

    @property
    def noise_dim(self) -> int:
        """Standard-normal noise dimensions per folded event (0: a deterministic surrogate)."""
        raise NotImplementedError

    def _fold(self, vertex_std: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Standardized detector features for standardized vertex features and their noise (differentiable)."""
        raise NotImplementedError

    def fold_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The standard-normal noise :meth:`fold_tensor` draws for ``n`` events from ``generator`` (None: none).

        Data-parallel training draws it for the global batch and passes each rank's rows to
        :meth:`fold_tensor` (``noise``), so the noise stream stays the one of one process.

        Example:
            >>> from mlegpipe.context import StageContext
            >>> from mlegpipe_builtins.detectors.folding import ConditionalFolding
            >>> det = ConditionalFolding(ConditionalFolding.Params(vertex_features=["a"], noise_dim=3),
            ...                          StageContext("detector"))
            >>> det.fold_noise(5, torch.Generator().manual_seed(0)).shape
            torch.Size([5, 3])
        """
        dim = self.noise_dim
        return torch.randn(n, dim, generator=generator) if dim else None

    def _sample(self, vertex_std: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Standardized detector features for standardized vertex features (differentiable)."""
        return self._fold(vertex_std, self.fold_noise(len(vertex_std), generator))

    # -- folding -------------------------------------------------------------------------
    def fold_tensor(self, vertex: torch.Tensor, noise_generator: torch.Generator | None = None,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable folding in standardized units (gradients flow to ``vertex``).

        Arguments:
            vertex: ``(n, len(vertex_features))`` vertex features standardized with
                ``self.vertex_scaler.transform``.
            noise_generator: torch generator for the detector noise (None: torch's global one).
            noise: the noise itself instead (``(n, noise_dim)`` rows of :meth:`fold_noise`; ignored by a
                deterministic surrogate), ``noise_generator`` then unused.

        Returns:
            ``(n, len(detector_features))`` detector features in the units of
            ``self.detector_scaler`` (``self.detector_scaler.inverse`` gives physical values).
            The acceptance is not applied; :meth:`acceptance_tensor` gives p(pass).
            With the kinematic pass model (``self.lepton_flag`` set) this is the
            response of measured leptons, not truncated at y = 0: an exact
            detector pass is :meth:`lepton_acceptance_tensor` times the cut
            Q², y, x > 0 on the folded lepton (``_fold_pass.electron_labels``).
        """
        self._require_fitted("fold_tensor")
        if noise is not None:
            return self._fold(vertex, noise)
        return self._sample(vertex, noise_generator)

    def acceptance_tensor(self, vertex: torch.Tensor) -> torch.Tensor:
        """p(pass | vertex) for standardized vertex features, shape ``(n,)`` (ones without acceptance)."""
        if self.acceptance_net is None:
            return torch.ones(len(vertex), dtype=vertex.dtype)
        return torch.sigmoid(self.acceptance_net(vertex))[:, 0]

    def lepton_acceptance_tensor(self, vertex: torch.Tensor) -> torch.Tensor:
        """p(lepton measured | vertex) of the kinematic pass model, shape ``(n,)``.

        Without the kinematic pass model it is :meth:`acceptance_tensor`; ones where every lepton was measured.
        """
        if self.lepton_flag is None:
            return self.acceptance_tensor(vertex)
        if self.lepton_net is None:
            return torch.ones(len(vertex), dtype=vertex.dtype)
        return torch.sigmoid(self.lepton_net(vertex))[:, 0]

    def pass_tensor(self, vertex: torch.Tensor, detector: torch.Tensor) -> torch.Tensor:
        """p(pass | vertex, folded detector features), standardized units, shape ``(n,)``, not differentiable.

        With the learned pass model it is :meth:`acceptance_tensor` (independent of
        ``detector``); with the kinematic one :meth:`lepton_acceptance_tensor` where
        the folded lepton gives Q², y, x > 0 and 0 elsewhere, the pass of :meth:`fold`.
        Use it to thin events folded by :meth:`fold_tensor`:
        ``keep = torch.bernoulli(det.pass_tensor(v, d), generator=g) > 0``.
        """
        if self.lepton_flag is None:
            return self.acceptance_tensor(vertex).detach()
        with torch.no_grad():
            v = self.vertex_scaler.inverse(vertex.detach().double()).numpy()
            d = self.detector_scaler.inverse(detector.detach().double()).numpy()
        columns = {name: v[:, j] for j, name in enumerate(self.vertex_features)}
        for j, name in enumerate(self.detector_features):
            columns[name] = np.maximum(d[:, j], 0.0) if name in _NONNEGATIVE else d[:, j]
        events = self._rebuild_lepton(EventBatch.from_columns(columns, beams=self.beams))
        missing = [n for n in LEPTON_FIELDS[1:] if not events.has(n)]
        if missing:
            raise DataError("the kinematic pass needs the folded lepton momentum; these features do not give "
                            + ", ".join(missing), path=f"{self.ctx.name}.pass_model", value="kinematic",
                            hint="fold lepton_P (with lepton_theta, lepton_phi as vertex features) or the lepton fields")
        ok = torch.as_tensor(electron_labels(events)[1], dtype=vertex.dtype)
        return self.lepton_acceptance_tensor(vertex).detach() * ok

    def fold(self, events: EventBatch, seed: np.random.SeedSequence) -> EventBatch:
        """Detector-level events: the detector features replaced by folded values.

        The noise of block k (of :data:`BLOCK_EVENTS` events) comes from the
        spawn key ``(k, 0)`` of ``seed``, the acceptance draw from ``(k, 1)``.
        With a learned acceptance a boolean ``measured`` field is added
        (``acceptance = "flag"``) or unmeasured events are dropped (``"drop"``).
        When the detector features are the lepton fields and the events carry
        DIS labels and beams, the labels are recomputed from the folded lepton.
        With the kinematic pass model (see ``_fold_pass``) an event passes when
        its lepton is drawn measured and its folded lepton gives Q², y, x > 0.
        """
        self._require_fitted("fold")
        kinematic = self.lepton_flag is not None
        if kinematic and events.beams is None:
            raise DataError("this surrogate cuts on the electron method of the folded lepton (pass_model "
                            "'kinematic'), but the events carry no beams", path=self.ctx.name)
        v = self.vertex_scaler.transform_numpy(feature_matrix(events, self.vertex_features, f"{self.ctx.name}: fold"))
        out = np.empty((len(v), len(self.detector_features)))
        measured = np.ones(len(v), bool)
        pass_net = self.lepton_net if kinematic else self.acceptance_net
        use_acceptance = (pass_net is not None or kinematic) and self.params.acceptance != "off"
        with torch.inference_mode():
            for k, start in enumerate(range(0, len(v), BLOCK_EVENTS)):
                block = torch.as_tensor(v[start:start + BLOCK_EVENTS], dtype=torch.float32)
                noise_seed = np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, k, 0))
                gen = torch.Generator().manual_seed(int(noise_seed.generate_state(1, np.uint64)[0] >> np.uint64(1)))
                out[start:start + len(block)] = self._sample(block, gen).double().numpy()
                if use_acceptance and pass_net is not None:
                    rng = np.random.default_rng(np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, k, 1)))
                    prob = self.lepton_acceptance_tensor(block).double().numpy()
                    measured[start:start + len(block)] = rng.random(len(block)) < prob
        physical = self.detector_scaler.inverse_numpy(out)
        for j, name in enumerate(self.detector_features):
            if name in _NONNEGATIVE:
                physical[:, j] = np.maximum(physical[:, j], 0.0)
        folded = events.with_columns(**{name: physical[:, j] for j, name in enumerate(self.detector_features)})
        folded, kinematic_ok = self._relabel(self._rebuild_lepton(folded), kinematic)
        if use_acceptance:
            if kinematic_ok is not None:
                measured &= kinematic_ok
            folded = folded.with_columns(**{self.flag_name: measured})
            if self.params.acceptance == "drop":
                folded = folded.take(measured)
        folded.meta["detector"] = self.plugin_name
        return folded

    def _rebuild_lepton(self, events: EventBatch) -> EventBatch:
        """When spherical lepton quantities were folded, recompute the Cartesian lepton momentum from them."""
        folded = set(self.detector_features)
        if not folded & set(_SPHERICAL) or folded & set(LEPTON_FIELDS[1:]):
            return events
        p, theta, phi = (feature_matrix(events, [n], self.ctx.name)[:, 0] for n in _SPHERICAL)
        return events.with_columns(lepton_px=p * np.sin(theta) * np.cos(phi), lepton_py=p * np.sin(theta) * np.sin(phi),
                                   lepton_pz=p * np.cos(theta))

    def _relabel(self, events: EventBatch, kinematic: bool = False) -> tuple[EventBatch, np.ndarray | None]:
        """Recompute DIS labels from the folded lepton by the electron method (track momentum, as ``smear``).

        Returns the events and, when ``kinematic``, the mask of events whose
        folded lepton gives finite Q², y, x > 0 (None otherwise). Labels of
        events failing that are 0, as in ``smear`` output.
        """
        labels = [n for n in DIS_LABELS if events.has(n) and n not in self.detector_features]
        lepton_folded = bool(set(self.detector_features) & {*LEPTON_FIELDS, *_SPHERICAL})
        if not (labels or kinematic) or events.beams is None or not lepton_folded:
            return events, None
        dis, ok = electron_labels(events)
        return events.with_columns(**{n: dis[n] for n in labels}), (ok if kinematic else None)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Weights, scalers and settings: tensors and JSON-able values only."""
        self._require_fitted("saving")
        state: dict[str, Any] = {
            "plugin": self.plugin_name,
            "lepton_flag": self.lepton_flag or "",
            "beams": self.beams.to_dict() if self.beams is not None else {},
            "params": asdict(self.params),
            "flag_name": self.flag_name,
            "vertex_scaler": self.vertex_scaler.named_state(),
            "detector_scaler": self.detector_scaler.named_state(),
            "model": dict(self.model.state_dict()),
        }
        if self.acceptance_net is not None:
            state["acceptance"] = dict(self.acceptance_net.state_dict())
        if self.lepton_net is not None:
            state["lepton_acceptance"] = dict(self.lepton_net.state_dict())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the features must match this stage's)."""
        try:
            vertex = FeatureScaler.from_named_state(state["vertex_scaler"])
            detector = FeatureScaler.from_named_state(state["detector_scaler"])
        except KeyError as err:
            raise CheckpointError(f"not a {self.plugin_name} surrogate state: missing {err}", path=self.ctx.name) from None
        if vertex.names != self.vertex_features or detector.names != self.detector_features:
            raise CheckpointError(f"the saved surrogate folds {vertex.names} → {detector.names}, this stage "
                                  f"{self.vertex_features} → {self.detector_features}", path=self.ctx.name)
        self.vertex_scaler, self.detector_scaler = vertex, detector
        self.flag_name = str(state.get("flag_name", "measured"))
        self.lepton_flag = str(state.get("lepton_flag", "")) or None
        self.beams = Beams.from_dict(dict(state["beams"])) if state.get("beams") else None
        self.model = self._build(len(vertex.names), len(detector.names))
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as err:
            raise CheckpointError("the saved surrogate weights do not fit this stage's network (were it saved "
                                  f"with other hidden, layers, transforms, affine or context_bins settings?): {err}",
                                  path=self.ctx.name) from None
        self.acceptance_net = self.lepton_net = None
        if "acceptance" in state:
            self.acceptance_net = mlp(len(vertex.names), 1, [self.params.hidden] * 2)
            self.acceptance_net.load_state_dict(state["acceptance"])
        if "lepton_acceptance" in state:
            self.lepton_net = mlp(len(vertex.names), 1, [self.params.hidden] * 2)
            self.lepton_net.load_state_dict(state["lepton_acceptance"])
        self._freeze()

