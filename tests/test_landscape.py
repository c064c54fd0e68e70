"""Tests of loss landscapes with filter normalization (mlegpipe.interpret.landscape) and their figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mlegpipe.exceptions import ConfigError
from mlegpipe.interpret.landscape import (
    Landscape,
    filter_normalized_direction,
    loss_landscape,
    loss_slice,
)
from mlegpipe.interpret.plots import plot_landscapes
from mlegpipe.nets import mlp
from mlegpipe.plots import png_bytes


def _regression(seed: int = 0, residual: bool = False) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    net = mlp(3, 1, [16, 16, 16], residual=residual)
    x = torch.randn(256, 3)
    y = (x ** 2).sum(dim=1, keepdim=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return net, x, y


def test_filter_normalized_directions_have_the_weights_per_filter_norms():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 5, 3), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 4 * 4, 7))
    d = filter_normalized_direction(net, torch.Generator().manual_seed(0))
    params = list(net.parameters())
    assert [t.shape for t in d] == [p.shape for p in params]
    for w, t in zip(params, d, strict=True):
        if w.dim() > 1:  # every filter (output channel / neuron) has the norm of the same filter in the weights
            torch.testing.assert_close(t.reshape(len(t), -1).norm(dim=1), w.detach().reshape(len(w), -1).norm(dim=1),
                                       rtol=1e-5, atol=1e-7)
            assert not torch.allclose(t, w.detach())  # a random direction, not the weights
        else:  # biases are not perturbed (Li et al.'s default)
            assert float(t.abs().sum()) == 0.0


def test_layer_normalization_and_element_wise_1d_parameters():
    torch.manual_seed(0)
    net = mlp(4, 2, [8])
    d = filter_normalized_direction(net, torch.Generator().manual_seed(1), "layer", ignore_1d=False)
    for w, t in zip(net.parameters(), d, strict=True):
        if w.dim() > 1:
            assert float(t.norm()) == pytest.approx(float(w.detach().norm()), rel=1e-5)
        else:
            torch.testing.assert_close(t.abs(), w.detach().abs())
    with pytest.raises(ConfigError, match="unknown normalization"):
        filter_normalized_direction(net, normalization="per-neuron")


def test_directions_are_reproducible_from_the_seed():
    net = mlp(3, 1, [8, 8])
    a = filter_normalized_direction(net, torch.Generator().manual_seed(5))
    b = filter_normalized_direction(net, torch.Generator().manual_seed(5))
    c = filter_normalized_direction(net, torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_landscape_at_the_origin_is_the_model_loss_and_weights_are_restored():
    net, x, y = _regression()
    net.train()
    before = [p.detach().clone() for p in net.parameters()]

    def loss() -> torch.Tensor:
        return nn.functional.mse_loss(net(x), y)

    expected = float(loss().detach())
    land = loss_landscape(net, loss, steps=7, span=0.5, seed=2)
    assert land.values.shape == (7, 7)
    assert land.center == pytest.approx(expected, rel=1e-6)
    assert land.values[3, 3] == pytest.approx(expected, rel=1e-6)  # α = β = 0 is the middle grid point
    assert land.alphas[3] == 0.0 and land.betas[3] == 0.0
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    assert net.training  # mode restored
    # a trained model sits in a valley: moving away along the filter-normalized directions costs loss
    assert land.values[3, 3] < land.values[0, 0] and land.values[3, 3] < land.values[-1, -1]


def test_landscape_of_a_quadratic_matches_the_analytic_surface():
    lin = nn.Linear(4, 3, bias=False)
    target = lin.weight.detach().clone()

    def loss() -> torch.Tensor:  # L(W) = |W - W*|², minimum at the trained weights
        return ((lin.weight - target) ** 2).sum()

    gen = torch.Generator().manual_seed(0)
    gamma = filter_normalized_direction(lin, gen)
    nu = filter_normalized_direction(lin, gen)
    land = loss_landscape(lin, loss, steps=5, span=2.0, directions=(gamma, nu))
    g, n = gamma[0], nu[0]
    for j, b in enumerate(land.betas):
        for i, a in enumerate(land.alphas):
            exact = float(((a * g + b * n) ** 2).sum())
            assert land.values[j, i] == pytest.approx(exact, rel=1e-5, abs=1e-6)
    assert land.center == 0.0
    curve = loss_slice(lin, loss, gamma, [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(curve, [float((g ** 2).sum()), 0.0, float((g ** 2).sum())], rtol=1e-5)


def test_weights_are_restored_when_the_loss_fails():
    net = mlp(2, 1, [4])
    before = [p.detach().clone() for p in net.parameters()]
    calls = {"n": 0}

    def loss() -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom")
        return net(torch.ones(1, 2)).sum()

    with pytest.raises(RuntimeError, match="boom"):
        loss_landscape(net, loss, steps=3)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))


def test_bad_grid_and_mismatched_directions_are_config_errors():
    net = mlp(2, 1, [4])
    with pytest.raises(ConfigError, match="at least 2 grid points"):
        loss_landscape(net, lambda: torch.zeros(()), steps=1)
    with pytest.raises(ConfigError, match="directions"):
        loss_landscape(net, lambda: torch.zeros(()), steps=3, directions=([torch.zeros(1)], [torch.zeros(1)]))


def test_roughness_is_zero_for_smooth_bowls_and_grows_with_wiggles():
    a = np.linspace(-1, 1, 11)
    plane = Landscape(a, a, 2.0 + a[None, :] + 0.5 * a[:, None], 2.0)
    bowl = Landscape(a, a, 1.0 + 3 * a[None, :] ** 2 + a[:, None] ** 2 + 0.5 * a[None, :] * a[:, None], 1.0)
    wiggly = Landscape(a, a, bowl.values + 1.0 * np.sin(9 * a)[None, :] * np.cos(7 * a)[:, None], 1.0)
    assert plane.roughness() == pytest.approx(0.0, abs=1e-12)
    assert bowl.roughness() == pytest.approx(0.0, abs=1e-12)
    assert wiggly.roughness() > 0.05  # measured 0.09
    np.testing.assert_allclose(plane.slice_alpha, 2.0 + a)
    # sharpness: mean relative rise on the 8 neighbours of the centre; a narrow well is sharper than a wide one
    g = np.linspace(-1, 1, 5)
    wide = Landscape(g, g, 1.0 + g[None, :] ** 2 + g[:, None] ** 2, 1.0)
    assert wide.sharpness() == pytest.approx(0.375)  # neighbours at (±0.5, 0), (0, ±0.5): 1.25; corners: 1.5
    narrow = Landscape(g, g, 1.0 + 10 * (g[None, :] ** 2 + g[:, None] ** 2), 1.0)
    assert narrow.sharpness() == pytest.approx(3.75)
    assert plane.to_dict()["center"] == 2.0


def test_residual_networks_get_the_same_treatment_and_a_side_by_side_figure():
    landscapes = {}
    for residual in (False, True):
        net, x, y = _regression(seed=1, residual=residual)
        land = loss_landscape(net, lambda net=net, x=x, y=y: nn.functional.mse_loss(net(x), y), steps=5, seed=0,
                              label="MSE")
        assert np.isfinite(land.values).all()
        landscapes["residual" if residual else "feed-forward"] = land
    fig = plot_landscapes(landscapes, title="toy regression")
    assert png_bytes(fig)[:4] == b"\x89PNG"
    assert len(fig.axes) >= 4  # two contour maps, two slices (+ colour bar)


# -- run folders through the command line: feed-forward vs residual generators ------------------------------------
@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):  # noqa: ANN201
    from test_interpret import make_run

    base = tmp_path_factory.mktemp("landscape")
    return make_run(base / "a", "feedforward", steps=30), make_run(base / "b", "residual", steps=30,
                                                                   extra="residual = true")


def test_landscape_command_compares_two_runs(two_runs, capsys):
    import json

    from mlegpipe.cli import main

    ff, res = two_runs
    assert main(["-q", "landscape", str(ff), "--compare", str(res), "--steps", "5", "--events", "256",
                 "--loss", "mmd"]) == 0
    out = capsys.readouterr().out
    assert "feedforward (cfatgan)" in out and "residual (cfatgan)" in out
    png = ff / "plots" / "landscape_vs_residual.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    data = json.loads((ff / "plots" / "landscape_vs_residual.json").read_text())
    for land in data.values():
        values = np.array(land["values"])
        assert values.shape == (5, 5)
        assert values[2, 2] == pytest.approx(land["center"], rel=1e-6)  # α = β = 0 is the trained model
    # --loss takes any name a generator declares; one that does not apply is an error (exit 2) listing those that do
    assert main(["landscape", str(ff), "--loss", "vae", "--steps", "3"]) == 2
    assert "its losses: auto, " in capsys.readouterr().err


def test_gan_landscapes_are_deterministic_and_centred_on_the_model_loss(two_runs):
    from mlegpipe.interpret.probes import discriminator_loss_fn, generator_loss_fn, stage_landscape
    from mlegpipe.interpret.runs import open_run

    models = open_run(two_runs[1])
    truth = models.sample("truth_test")
    net = models.discriminator_net()
    _, g_loss, label = generator_loss_fn(models.generator, truth, 256, seed=1, discriminator=models.discriminator,
                                         discriminator_net=net)
    assert label == "generator loss"
    assert float(g_loss().detach()) == float(g_loss().detach())  # fixed noise and data
    _, d_loss, _ = discriminator_loss_fn(models.generator, models.discriminator, net, truth, 256, seed=1)
    first = float(d_loss().detach())  # includes the gradient penalty (autograd on)
    assert first == float(d_loss().detach())
    land = stage_landscape(models.generator, truth, "discriminator", models.discriminator, net, steps=3,
                           events=256, seed=1)
    assert land.center == pytest.approx(first, rel=1e-6) and land.values[1, 1] == pytest.approx(first, rel=1e-6)
    assert land.info["loss"] == "discriminator" and land.info["parameters"] == sum(p.numel() for p in
                                                                                   net.parameters())
    with pytest.raises(ConfigError, match="'nll' loss does not apply to generator 'cfatgan'; its losses: auto, "
                                          "mmd, generator, discriminator"):
        stage_landscape(models.generator, truth, "nll")
    with pytest.raises(ConfigError, match="needs the trained discriminator"):
        stage_landscape(models.generator, truth, "generator")
