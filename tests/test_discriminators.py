"""Tests of the adversaries (wgan-gp, lsgan, deepsets) and the network builder."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mlegpipe.context import StageContext
from mlegpipe.exceptions import ConfigError
from mlegpipe.nets import ResidualLayer, count_parameters, mlp
from mlegpipe.registry import load_plugins
from mlegpipe.schema import build_params
from mlegpipe_builtins.discriminators.critics import (
    LSGAN,
    WGANGP,
    DeepSetsDiscriminator,
    SetStatisticsNet,
    gradient_penalty,
    roth_penalty,
)

# losses keep their graph (penalties are trained through); reading them with float() is fine here
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad:UserWarning")


class Constant(nn.Module):
    """A 'discriminator' giving every event the same score."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.tensor(value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(len(x), 1) + 0.0 * x[:, :1]


def linear_critic(weight: list[float], bias: float = 0.0) -> nn.Linear:
    lin = nn.Linear(len(weight), 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([weight]))
        lin.bias.fill_(bias)
    return lin


def make(cls, **raw):
    return cls(build_params(cls.Params, raw, "discriminator"), StageContext("discriminator", seed=3))


# -- nets ------------------------------------------------------------------------------------------------
def test_mlp_shapes_and_parameter_count():
    net = mlp(3, 2, [5, 5])
    # 3*5+5 + 5*5+5 + 5*2+2
    assert count_parameters(net) == 20 + 30 + 12
    assert net(torch.zeros(7, 3)).shape == (7, 2)


def test_mlp_residual_layers_are_identity_when_weights_vanish():
    net = mlp(2, 2, [4, 4, 4], activation="relu", residual=True)
    blocks = [m for m in net if isinstance(m, ResidualLayer)]
    assert len(blocks) == 2  # the first layer changes the width, the next two are residual
    for block in blocks:
        with torch.no_grad():
            block.linear.weight.zero_()
            block.linear.bias.zero_()
    x = torch.randn(6, 2)
    first = nn.Sequential(*list(net)[:2])  # linear + activation
    expected = list(net)[-1](first(x))
    assert torch.allclose(net(x), expected, atol=1e-6)


def test_mlp_spectral_norm_bounds_the_lipschitz_constant():
    torch.manual_seed(0)
    net = mlp(4, 1, [64, 64], activation="relu", norm="spectral")
    net.train()
    x = torch.randn(256, 4)
    for _ in range(30):  # let the power iteration converge
        net(x)
    net.eval()
    x = torch.randn(512, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x).sum(), x)
    assert grad.norm(dim=1).max() <= 1.0 + 1e-3


def test_mlp_rejects_bad_settings():
    with pytest.raises(ConfigError, match="activation"):
        mlp(2, 1, [4], activation="relux")
    with pytest.raises(ConfigError, match="dropout"):
        mlp(2, 1, [4], dropout=1.5)


# -- WGAN-GP ---------------------------------------------------------------------------------------------
def test_gradient_penalty_vanishes_for_unit_norm_linear_critic():
    critic = linear_critic([0.6, 0.0, 0.8])
    gp = gradient_penalty(critic, torch.randn(64, 3), torch.randn(64, 3) + 2)
    assert float(gp.detach()) == pytest.approx(0.0, abs=1e-12)


def test_gradient_penalty_of_scaled_linear_critic():
    # |∇D| = |w| = 3 everywhere: penalty (3 - 1)² = 4; |∇D| = 0.5: (0.5 - 1)² two-sided, 0 one-sided
    real, fake = torch.randn(16, 2), torch.randn(16, 2)
    assert float(gradient_penalty(linear_critic([3.0, 0.0]), real, fake)) == pytest.approx(4.0, rel=1e-6)
    assert float(gradient_penalty(linear_critic([3.0, 0.0]), real, fake, one_sided=True)) == pytest.approx(4.0, rel=1e-6)
    assert float(gradient_penalty(linear_critic([0.3, 0.4]), real, fake)) == pytest.approx(0.25, rel=1e-6)
    assert float(gradient_penalty(linear_critic([0.3, 0.4]), real, fake, one_sided=True)) == 0.0


def test_gradient_penalty_ignores_the_conditions():
    # critic depends on the condition with weight 5, on the features with unit norm
    critic = linear_critic([1.0, 0.0, 5.0])
    cond = torch.randn(10, 1)
    assert float(gradient_penalty(critic, torch.randn(10, 2), torch.randn(10, 2), cond)) == pytest.approx(0, abs=1e-12)


@pytest.mark.parametrize(("mode", "flat_penalty"), [("two-sided", 10.0), ("one-sided", 0.0)])
def test_wgan_loss_of_identical_scores_is_only_the_penalty(mode, flat_penalty):
    d = make(WGANGP, gp_weight=10.0, gp_mode=mode)
    x = torch.randn(32, 2)
    # identical samples: the Wasserstein term is exactly 0; a unit-norm critic has no penalty
    assert float(d.discriminator_loss(linear_critic([0.0, 1.0]), x, x.clone())) == pytest.approx(0, abs=1e-6)
    # a constant critic: Wasserstein term 0; two-sided penalty (0 - 1)² = 1 times λ, one-sided none
    assert float(d.discriminator_loss(Constant(0.3), x, torch.randn(32, 2))) == pytest.approx(flat_penalty, abs=1e-6)
    # a steep critic (|∇D| = 3) pays (3 - 1)² = 4 times λ either way
    assert float(d.discriminator_loss(linear_critic([3.0, 0.0]), x, x.clone())) == pytest.approx(40.0, rel=1e-5)


def test_wgan_loss_is_the_mean_score_difference():
    d = make(WGANGP, gp_weight=0.0)
    critic = linear_critic([1.0])
    real, fake = torch.full((5, 1), 2.0), torch.full((5, 1), -1.0)
    assert float(d.discriminator_loss(critic, real, fake)) == pytest.approx(-3.0)
    assert float(d.generator_loss(critic, fake)) == pytest.approx(1.0)


def test_wgan_critic_learns_to_separate_shifted_gaussians():
    # 2D on purpose: in 1D a critic that starts with the wrong slope sign must cross |∇D| = 0, a barrier of
    # height λ, and can stay at slope -1; in 2D the gradient rotates at constant norm.
    d = make(WGANGP, layers=2, width=32, lr=1e-3)
    net = d.build(2)
    opt = d.make_optimizer(net.parameters())
    gen = torch.Generator().manual_seed(0)
    shift = torch.tensor([[1.0, 0.0]])
    for _ in range(300):
        real = torch.randn(128, 2, generator=gen) + shift
        fake = torch.randn(128, 2, generator=gen) - shift
        opt.zero_grad()
        d.discriminator_loss(net, real, fake).backward()
        opt.step()
    with torch.no_grad():
        real = torch.randn(4000, 2, generator=gen) + shift
        fake = torch.randn(4000, 2, generator=gen) - shift
        w_estimate = float(d.score(net, real).mean() - d.score(net, fake).mean())
    # W1 between N((1,0), 1) and N((-1,0), 1) is 2; the soft penalty lets the estimate overshoot slightly
    assert 1.7 < w_estimate < 2.4


# -- LSGAN -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("score", "a", "b", "c"), [(0.0, -1.0, 1.0, 0.0), (0.5, -1.0, 1.0, 0.0), (2.0, 0.0, 2.0, 1.0)])
def test_lsgan_losses_for_known_scores(score, a, b, c):
    d = make(LSGAN, a=a, b=b, c=c)
    x = torch.randn(8, 2)
    expected_d = 0.5 * (score - b) ** 2 + 0.5 * (score - a) ** 2
    expected_g = 0.5 * (score - c) ** 2
    assert float(d.discriminator_loss(Constant(score), x, x)) == pytest.approx(expected_d)
    assert float(d.generator_loss(Constant(score), x)) == pytest.approx(expected_g)


def test_lsgan_optimal_discriminator_matches_theory():
    # LSGAN optimum: D*(x) = (b p_r + a p_g) / (p_r + p_g); for disjoint supports: b on real, a on fake
    d = make(LSGAN, layers=2, width=32, lr=3e-3)
    net = d.build(1)
    opt = d.make_optimizer(net.parameters())
    real, fake = torch.full((64, 1), 1.0), torch.full((64, 1), -1.0)
    for _ in range(500):
        opt.zero_grad()
        d.discriminator_loss(net, real, fake).backward()
        opt.step()
    with torch.no_grad():
        assert float(d.score(net, real[:1])) == pytest.approx(1.0, abs=0.05)
        assert float(d.score(net, fake[:1])) == pytest.approx(-1.0, abs=0.05)


def test_lsgan_rejects_equal_targets():
    with pytest.raises(ConfigError, match="must differ"):
        build_params(LSGAN.Params, {"a": 1.0, "b": 1.0}, "discriminator")


# -- DeepSets --------------------------------------------------------------------------------------------
def test_set_statistics_net_is_permutation_equivariant():
    torch.manual_seed(1)
    net = SetStatisticsNet(3, [8, 8, 4], mlp(3 + 4, 1, [16]))
    x = torch.randn(20, 3)
    perm = torch.randperm(20)
    assert torch.allclose(net(x)[perm], net(x[perm]), atol=1e-5)


def test_set_statistics_net_sees_the_batch_spread():
    # the same event scores differently in a narrow and in a wide batch
    torch.manual_seed(2)
    net = SetStatisticsNet(1, [8, 4], mlp(1 + 4, 1, [8]))
    narrow = torch.cat([torch.zeros(1, 1), 0.01 * torch.randn(15, 1)])
    wide = torch.cat([torch.zeros(1, 1), 5.0 * torch.randn(15, 1)])
    assert abs(float(net(narrow)[0] - net(wide)[0])) > 1e-4


def test_set_statistics_net_splits_large_batches():
    torch.manual_seed(3)
    net = SetStatisticsNet(2, [4], mlp(2 + 4, 1, [4]), max_set=8)
    x = torch.randn(20, 2)
    expected = torch.cat([net(x[:8]), net(x[8:16]), net(x[16:])])
    assert torch.allclose(net(x), expected)


def test_roth_penalty_of_linear_logit():
    # l(x) = w·x + b0 has |∇l|² = |w|²; Ω = |w|² (E_real[(1-σ)²] + E_fake[σ²])
    w = [0.3, -0.4]
    critic = linear_critic(w, bias=0.2)
    real, fake = torch.randn(50, 2), torch.randn(50, 2)
    sig_r = torch.sigmoid(critic(real).reshape(-1))
    sig_f = torch.sigmoid(critic(fake).reshape(-1))
    expected = 0.25 * float(((1 - sig_r) ** 2).mean() + (sig_f**2).mean())
    assert float(roth_penalty(critic, real, fake)) == pytest.approx(expected, rel=1e-5)


def test_deepsets_losses_for_a_constant_logit():
    d = make(DeepSetsDiscriminator, gp_weight=0.0)
    x = torch.randn(8, 2)
    # logit 0: σ = 1/2, BCE real + BCE fake = 2 ln 2; generator: ln 2
    assert float(d.discriminator_loss(Constant(0.0), x, x)) == pytest.approx(2 * math.log(2))
    assert float(d.generator_loss(Constant(0.0), x)) == pytest.approx(math.log(2))


def test_deepsets_input_noise_is_reproducible():
    a = make(DeepSetsDiscriminator, input_noise=0.1)
    b = make(DeepSetsDiscriminator, input_noise=0.1)
    x = torch.zeros(4, 2)
    na, nb = a._noisy(x), b._noisy(x)
    assert torch.equal(na, nb)
    assert 0 < float(na.abs().max()) <= 0.1


# -- plugin contract -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["wgan-gp", "lsgan", "deepsets"])
def test_registered_and_buildable(name):
    info = load_plugins().get("discriminator", name)
    d = info.cls(build_params(info.cls.Params, {}, "discriminator"), StageContext("discriminator", seed=1))
    net = d.build(3, 1)
    real, fake, cond = torch.randn(16, 3), torch.randn(16, 3), torch.randn(16, 1)
    loss_d = d.discriminator_loss(net, real, fake, cond)
    loss_g = d.generator_loss(net, fake.requires_grad_(True), cond)
    assert loss_d.ndim == 0 and math.isfinite(float(loss_d))
    assert loss_g.ndim == 0 and math.isfinite(float(loss_g))
    loss_g.backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()
    # same seed → same initial weights
    d2 = info.cls(build_params(info.cls.Params, {}, "discriminator"), StageContext("discriminator", seed=1))
    net2 = d2.build(3, 1)
    assert all(torch.equal(p, q) for p, q in zip(net.state_dict().values(), net2.state_dict().values(), strict=True))


@pytest.mark.parametrize("cls", [WGANGP, LSGAN, DeepSetsDiscriminator])
def test_published_preset_and_overrides(cls):
    d = make(cls, preset="published", width=64)
    assert d.settings["width"] == 64  # explicit value wins over the preset
    assert d.settings["layers"] == cls.PRESETS["published"]["layers"]
    with pytest.raises(ConfigError, match="discriminator.preset"):
        build_params(cls.Params, {"preset": "publshed"}, "discriminator")
