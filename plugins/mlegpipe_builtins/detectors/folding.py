"""Learned detector surrogates: conditional folding GAN, direct folding baseline, conditional flow.

Three plugins of kind ``detector`` learn the detector response from
index-aligned (vertex, detector) event pairs, e.g. truth events and their
``smear`` output (thesis ch. 6 and 7.3):

- ``cfold``: the thesis's conditional folding GAN. A generator maps
  standardized vertex features plus noise to detector features; its critic sees
  (detector, vertex) pairs (LSGAN as in the thesis, or WGAN-GP). Because the
  generator is conditioned on the event it folds, it folds vertex samples
  unlike its training sample correctly. Unlike the thesis (10⁵ GPU epochs), the
  generator loss adds an MMD² of joint (detector, vertex) pairs
  (``mmd_weight``, as FAT-GAN does for its marginals): with a few thousand CPU
  steps the pure GAN learned an average width instead of the vertex-dependent
  one (toy χ²/ndf 10-30 × floor; 0.7 × floor with the MMD term). On HERA DIS
  the response width varies ~10× between detector zones and the GAN+MMD
  learned the majority width only (ν₁ 1.6-2 × floor), so by default the
  generator is also heteroscedastic (``affine``: shift(v) + exp(log_scale(v)) × G)
  and its loss adds the energy score of each training pair (``energy_weight``),
  a proper scoring rule of p(detector | vertex) for every vertex, however rare.
  Optionally (``head_weight``) the affine head's shift and width are also fitted by
  the Dawid-Sebastiani score (Gaussian likelihood), whose pull on a width does not
  shrink with the width.
- ``dfold``: the direct folding baseline: a deterministic regression
  vertex → detector without noise. It cannot produce the smearing and fails on
  vertex samples unlike the training one (kept to show that failure).
- ``flowfold``: a conditional neural spline flow (zuko) of detector | vertex,
  trained by maximum likelihood; reparametrized sampling makes it differentiable.
  A conditional affine transform precedes the splines (``affine``): without it
  the flow could not follow a width that shrinks to 0 (toy, 1.6 × floor) or
  changes 5× between detector zones (HERA).

With beams and ``smear``'s lepton flags the pass flag is modelled
kinematically (``pass_model``, see ``_fold_pass``): the response is learned on
every measured lepton and y, x, Q² > 0 is cut on the folded lepton, as ``smear``
does; learning the response truncated at y = 0 left log x at 1.6-4.7 × floor.

The surrogate network's learning rate decays by a cosine to 5 % over the steps
(``lr_schedule``, default since issue 5's second round; "constant" before): on HERA DIS
it took flowfold's ν₁ from 1.4 to 1.0 × floor and cfold's from 1.9 to 1.3 (one seed set).

All three learn the acceptance p(pass | vertex) when the detector sample has a
pass flag (``measured``), and offer ``fold_tensor(vertex_std, noise_generator)``:
the differentiable folding in standardized units used by the unfolding stage to
train a vertex-level generator through the frozen surrogate. The scalers
``vertex_scaler`` and ``detector_scaler`` (``transform``/``inverse`` on torch
tensors, ``transform_numpy``/``inverse_numpy`` on arrays) map between
physical and standardized units.

Under torchrun all three train data-parallel (:mod:`mlegpipe.data_parallel`): every rank fits
the same pairs with the same seed and takes its rows of each global
minibatch. dfold's squared error and flowfold's negative log-likelihood are
means over events: the gradients are averaged weighted by events. cfold draws
its generator noise, its critic's dropout masks and the WGAN-GP interpolation
weights for the global batch as one process does and keeps its rows; its MMD²
term compares the first 256 pairs of the global batch, gathered on every rank
(that term's cost is not split), so the generator's gradients are summed over
ranks. 2 gloo ranks reproduce one process's weights to float32 reduction
order (max |Δw| 3e-8 after 8 steps, ``tests/test_ddp_detectors_unfolding.py``;
2e-3 with the critic's dropout masks drawn per rank instead).

In TOML (HERA lepton through ``smear``: the angles are not smeared by Matrix
0.2, so the surrogate learns E' and P' given the vertex lepton; η rather than θ
as the direction, since the detector zones are bounded in η)::

    [detector]
    plugin = "flowfold"
    vertex_features = ["lepton_E", "lepton_P", "lepton_eta", "lepton_phi"]
    detector_features = ["lepton_E", "lepton_P"]

Example:
    >>> from mlegpipe.context import StageContext
    >>> det = ConditionalFolding(ConditionalFolding.Params(vertex_features=["a"], steps=5),
    ...                          StageContext("detector"))
    >>> det.detector_features
    ['a']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from mlegpipe import hookimpl
from mlegpipe.data_parallel import DataParallel
from mlegpipe.losses import mmd2
from mlegpipe.metrics import sample_chi2_ndf as chi2_ndf
from mlegpipe.schema import param
from mlegpipe.training import MinibatchSampler
from mlegpipe_builtins.detectors._fold_base import FoldingParams, LearnedFolding
from mlegpipe_builtins.detectors._fold_nets import (
    DirectFolder,
    FlowFolder,
    LSGANLoss,
    NoisyFolder,
    PairCritic,
    WGANGPLoss,
    energy_score,
)

__all__ = ["ConditionalFolding", "DirectFolding", "FlowFolding", "mlegpipe_register_stages"]

_VALID_SEED = 20260      # fixed noise for validation: the metric must not consume training randomness
_VALID_EVENTS = 20000
_MMD_EVENTS = 256        # MMD² cost grows as the square of the events it compares
_MMD_WIDTHS = (0.2, 0.5, 1.0, 2.0)  # Gaussian kernel widths of the MMD² on (detector, vertex) pairs (standardized)


def _distribution_metric(surrogate: LearnedFolding, v_valid: torch.Tensor, d_valid: torch.Tensor) -> dict[str, float]:
    """Mean χ²/ndf (20 bins) of folded vs true validation pairs: detector features and scaled targets.

    The scaled target (the shift detector - vertex for shared features) tests the
    response event by event, the detector features the folded distribution.
    """
    v, d = v_valid[:_VALID_EVENTS], d_valid[:_VALID_EVENTS]
    with torch.no_grad():
        fake = surrogate._sample(v, torch.Generator().manual_seed(_VALID_SEED))
        fake_t, real_t = surrogate.model.to_target(v, fake).numpy(), surrogate.model.to_target(v, d).numpy()
    fake, real = fake.numpy(), d.numpy()
    chi_det = [chi2_ndf(fake[:, j], real[:, j], 20) for j in range(real.shape[1])]
    chi_res = [chi2_ndf(fake_t[:, j], real_t[:, j], 20) for j in range(real.shape[1])]
    return {"metric": float(np.mean(chi_det + chi_res)), "chi2_detector": float(np.mean(chi_det))}


class ConditionalFolding(LearnedFolding):
    """Conditional folding GAN (thesis ch. 6.5): G(vertex, noise) → detector, critic on (detector, vertex) pairs.

    Parameters beyond the shared ones: ``loss`` (lsgan | wgan-gp), ``noise_dim``,
    ``critic_steps`` per generator step, ``dropout`` of the critic, ``gp_lambda``
    and ``preset = "published"`` (5 × 512 layers, 100 noise dimensions, Adam
    1e-4, 5 critic steps: the thesis set-up, far slower on a CPU).

    Example:
        >>> from mlegpipe.context import StageContext
        >>> ConditionalFolding(ConditionalFolding.Params(), StageContext("detector")).params.loss
        'lsgan'
    """

    plugin_name: ClassVar[str] = "cfold"

    @dataclass
    class Params(FoldingParams):
        """Parameters of ``cfold``."""

        loss: str = param("lsgan", choices=("lsgan", "wgan-gp"), doc="adversarial loss")
        noise_dim: int = param(4, min=1, doc="noise dimensions of the generator (thesis: 100)")
        critic_steps: int = param(1, min=1, doc="critic updates per generator update")
        dropout: float = param(0.1, min=0.0, max=0.9, doc="critic dropout")
        gp_lambda: float = param(10.0, min=0.0, doc="gradient-penalty weight (wgan-gp)")
        mmd_weight: float = param(10.0, min=0.0, doc="weight of the MMD² of joint (detector, vertex) pairs added "
                                  "to the generator loss (0: pure GAN as in the thesis)")
        energy_weight: float = param(2.0, min=0.0, doc="weight of the energy score of the generator's response "
                                     "per training pair (a proper scoring rule of p(detector | vertex), see "
                                     "_fold_nets.energy_score) added to the generator loss")
        head_weight: float = param(0.0, min=0.0, doc="weight of the Dawid-Sebastiani score (Gaussian likelihood) "
                                   "of the affine head's shift(v), exp(log_scale(v)) against each training pair, "
                                   "added to the generator loss: the head learns the conditional mean and width by "
                                   "likelihood, G the standardized shape (needs affine)")
        affine: bool = param(True, doc="generator output shift(v) + exp(log_scale(v)) × G(v, noise): response "
                             "widths that vary strongly with the vertex (false: G(v, noise) alone, as the thesis)")
        preset: str = param("default", choices=("default", "published"),
                            doc="'published': the thesis sizes (overrides hidden, layers, noise_dim, lr, critic_steps)")

    def __init__(self, params: Any, ctx: Any) -> None:
        if params.preset == "published":
            params = dataclasses.replace(params, hidden=512, layers=5, noise_dim=100, lr=1e-4, critic_steps=5)
        super().__init__(params, ctx)

    def _build(self, n_vertex: int, n_detector: int) -> NoisyFolder:
        p = self.params
        return NoisyFolder(n_vertex, n_detector, p.noise_dim, p.hidden, p.layers, self.residual_index, p.affine)

    @property
    def noise_dim(self) -> int:
        """The generator's noise dimensions (``noise_dim``)."""
        return self.params.noise_dim

    def _fold(self, vertex_std: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        assert noise is not None
        return self.model(vertex_std, noise.to(vertex_std.dtype))

    def _train(self, v_train: torch.Tensor, d_train: torch.Tensor, v_valid: torch.Tensor,
               d_valid: torch.Tensor) -> list[dict[str, float]]:
        p, g = self.params, self.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.torch_seed("critic-init"))
            critic = PairCritic(d_train.shape[1], v_train.shape[1], p.hidden, p.layers, p.dropout)
        # the critic sees (scaled target, vertex): an invertible function of the (detector, vertex) pair
        opt_g = torch.optim.Adam(g.parameters(), lr=p.lr, betas=(0.5, 0.9))
        opt_c = torch.optim.Adam(critic.parameters(), lr=p.lr, betas=(0.5, 0.9))
        gens = {n: self.ctx.torch_generator(n) for n in ("batches", "noise", "penalty")}
        batches = MinibatchSampler(v_train, d_train, batch_size=p.batch_size, generator=gens["batches"])
        loss = LSGANLoss() if p.loss == "lsgan" else WGANGPLoss(p.gp_lambda, gens["penalty"])
        dp = DataParallel()
        dp.prepare(critic)  # its dropout masks: the global batch's, cut to this rank's rows

        def step(_: int) -> dict[str, float]:
            g.train()
            critic.train()
            for _k in range(p.critic_steps):
                v_all, d_all = batches()  # the global batch and its noise, drawn as one process draws them
                rows = dp.rows(len(v_all))
                vb, db = dp.take(v_all, d_all)
                with torch.no_grad():
                    fake = g.target(vb, self.fold_noise(len(v_all), gens["noise"])[rows])
                with dp.dropout_rows(critic, len(v_all)):
                    loss_c = loss.critic_loss(critic, g.to_target(vb, db), fake, vb,
                                              (len(v_all), rows) if dp.enabled else None)
                opt_c.zero_grad()
                loss_c.backward()
                dp.sync(critic.parameters(), len(vb))
                opt_c.step()
            v_all, d_all = batches()
            rows = dp.rows(len(v_all))
            vb, db = dp.take(v_all, d_all)
            fake = g.target(vb, self.fold_noise(len(v_all), gens["noise"])[rows])
            with dp.dropout_rows(critic, len(v_all)):
                loss_g = loss.generator_loss(critic, fake, vb)
            if p.energy_weight > 0:
                fake2 = g.target(vb, self.fold_noise(len(v_all), gens["noise"])[rows])
                loss_g = loss_g + p.energy_weight * energy_score(fake, fake2, g.to_target(vb, db))
            if p.head_weight > 0 and g.affine is not None:
                loss_g = loss_g + p.head_weight * g.head_score(vb, g.to_target(vb, db))
            mmd = None
            if p.mmd_weight > 0:  # a statistic of the global batch's first m pairs: gathered, gradients summed
                m = min(_MMD_EVENTS, len(v_all))
                counts = dp.prefix_counts(len(v_all), m)
                fake_m = dp.gather(fake[:counts[dp.rank]], counts)
                mmd = mmd2(torch.cat([fake_m, v_all[:m]], 1),
                           torch.cat([g.to_target(v_all[:m], d_all[:m]), v_all[:m]], 1), _MMD_WIDTHS)
            total = dp.step_loss(loss_g, len(vb), len(v_all), mmd, p.mmd_weight)
            opt_g.zero_grad()
            dp.backward(total, g.parameters())
            opt_g.step()
            return {"critic": dp.mean(loss_c.item(), len(vb)), "generator": total.value}

        def validate(_: int) -> dict[str, float]:
            g.eval()
            return _distribution_metric(self, v_valid, d_valid)

        return self.loop("model", step, p.steps, {"generator": g, "critic": critic},
                         {"generator": opt_g, "critic": opt_c}, gens, validate).run(resume=self.ctx.resume or None)


class DirectFolding(LearnedFolding):
    """Direct folding baseline (thesis ch. 6.4): a deterministic regression vertex → detector, no noise.

    It learns the mean response only, so it cannot smear: kept to show why the
    conditional, noisy surrogates are needed.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> DirectFolding(DirectFolding.Params(), StageContext("detector")).params.residual
        False
    """

    plugin_name: ClassVar[str] = "dfold"

    @dataclass
    class Params(FoldingParams):
        """Parameters of ``dfold``."""

        residual: bool = param(False, doc="learn shared features as shifts detector - vertex")

    def _build(self, n_vertex: int, n_detector: int) -> DirectFolder:
        return DirectFolder(n_vertex, n_detector, self.params.hidden, self.params.layers, self.residual_index)

    @property
    def noise_dim(self) -> int:
        """0: the regression draws no noise."""
        return 0

    def _fold(self, vertex_std: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self.model(vertex_std)

    def _train(self, v_train: torch.Tensor, d_train: torch.Tensor, v_valid: torch.Tensor,
               d_valid: torch.Tensor) -> list[dict[str, float]]:
        net = self.model

        def validate(_: int) -> float:
            with torch.no_grad():
                return net.loss(v_valid, d_valid).item()

        return _minimize(self, "regressor", "mse", net.loss, v_train, d_train, validate)


class FlowFolding(LearnedFolding):
    """Conditional normalizing flow of detector | vertex (zuko NSF), trained by maximum likelihood.

    ``fold_tensor`` maps Gaussian noise through the inverse flow
    (reparametrized), so gradients reach the vertex features.

    Example:
        >>> from mlegpipe.context import StageContext
        >>> FlowFolding(FlowFolding.Params(), StageContext("detector")).params.transforms
        3
    """

    plugin_name: ClassVar[str] = "flowfold"

    @dataclass
    class Params(FoldingParams):
        """Parameters of ``flowfold``."""

        transforms: int = param(3, min=1, doc="autoregressive spline transforms")
        bins: int = param(8, min=2, doc="spline bins")
        affine: bool = param(True, doc="a conditional affine transform before the splines (response widths "
                             "that vary strongly with the vertex, e.g. by detector zone); false: the plain NSF")
        context_bins: int = param(16, min=0, max=256, doc="piecewise-linear encoding of each standardized vertex "
                                  "feature on this many intervals over ±4σ, beside the raw features, as the flow's "
                                  "condition: a resolution step at a zone edge is learned sharp instead of as a ramp "
                                  "(Matrix 0.2 at η = −2, bench_folding: E' width over smear's 1.08 / 0.87 in the "
                                  "η bins either side, 1.24 / 0.72 with 0); 0: the raw features only")

    def _build(self, n_vertex: int, n_detector: int) -> FlowFolder:
        p = self.params
        return FlowFolder(n_vertex, n_detector, p.transforms, p.hidden, p.bins, self.residual_index, p.affine,
                          p.context_bins)

    @property
    def noise_dim(self) -> int:
        """One base dimension per detector feature."""
        return len(self.detector_features)

    def _fold(self, vertex_std: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        assert noise is not None
        return self.model.sample(vertex_std, noise.to(vertex_std.dtype))

    def _train(self, v_train: torch.Tensor, d_train: torch.Tensor, v_valid: torch.Tensor,
               d_valid: torch.Tensor) -> list[dict[str, float]]:
        flow = self.model

        def validate(_: int) -> dict[str, float]:
            with torch.no_grad():
                nll = -flow.log_prob(d_valid, v_valid).mean().item()
            return {"metric": nll, **{k: v for k, v in _distribution_metric(self, v_valid, d_valid).items()
                                      if k != "metric"}}

        return _minimize(self, "flow", "nll", lambda vb, db: -flow.log_prob(db, vb).mean(), v_train, d_train,
                         validate)


def _minimize(
    stage: LearnedFolding,
    module_name: str,
    loss_name: str,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    v_train: torch.Tensor,
    d_train: torch.Tensor,
    validate: Callable[[int], Any],
) -> list[dict[str, float]]:
    """Adam on minibatches of (vertex, detector) pairs for a loss of ``(vertex, detector)``, in the TrainLoop."""
    p, net = stage.params, stage.model
    opt = torch.optim.Adam(net.parameters(), lr=p.lr)
    gens = {"batches": stage.ctx.torch_generator("batches")}
    batches = MinibatchSampler(v_train, d_train, batch_size=p.batch_size, generator=gens["batches"])
    dp = DataParallel()

    def step(_: int) -> dict[str, float]:
        vb, db = dp.take(*batches())  # this rank's rows of the global batch
        loss = loss_fn(vb, db)
        opt.zero_grad()
        loss.backward()
        dp.sync(net.parameters(), len(vb))  # the loss is a mean over events: event-weighted average
        opt.step()
        return {loss_name: dp.mean(loss.item(), len(vb))}

    return stage.loop("model", step, p.steps, {module_name: net}, {"adam": opt}, gens,
                      validate).run(resume=stage.ctx.resume or None)


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register ``cfold``, ``dfold`` and ``flowfold``."""
    registry.add(ConditionalFolding)
    registry.add(DirectFolding)
    registry.add(FlowFolding)
