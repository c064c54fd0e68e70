"""Differentiable sample distances of ``mlegpipe.losses``: known values and properties."""

from __future__ import annotations

import math

import pytest
import torch

from mlegpipe.losses import sliced_wasserstein2


def test_sliced_wasserstein_of_a_shift_is_the_mean_squared_projected_shift() -> None:
    # a shift c moves every projection <x, u> by <c, u>: SW2 = mean over directions of <c, u>^2
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    c = torch.tensor([0.5, -1.0, 2.0])
    axes_only = sliced_wasserstein2(x, x + c, projections=0)
    assert float(axes_only) == pytest.approx(float((c**2).mean()), rel=1e-5)
    # random unit directions in 3D: E<c, u>^2 = |c|^2 / 3, the same as the axes' mean
    many = sliced_wasserstein2(x, x + c, projections=4000, generator=torch.Generator().manual_seed(1))
    assert float(many) == pytest.approx(float((c**2).sum()) / 3, rel=0.05)


def test_sliced_wasserstein_is_zero_for_a_permutation_and_matches_1d_transport() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(256, 2, generator=gen)
    assert float(sliced_wasserstein2(x, x[torch.randperm(256, generator=gen)], 16, gen)) == pytest.approx(0.0, abs=1e-12)
    # 1D: W2^2 between N(0, 1) and N(0, 4) samples (same quantiles scaled by 2) = (2 - 1)^2 E[z^2] ~ 1
    z = torch.sort(torch.randn(20000, 1, generator=gen), dim=0).values
    assert float(sliced_wasserstein2(z, 2 * z, projections=0)) == pytest.approx(float((z**2).mean()), rel=1e-5)


def test_sliced_wasserstein_gradient_moves_the_sample_toward_the_target() -> None:
    gen = torch.Generator().manual_seed(3)
    target = torch.randn(400, 2, generator=gen) * torch.tensor([1.0, 0.3]) + torch.tensor([2.0, -1.0])
    x = torch.randn(400, 2, generator=gen).requires_grad_(True)
    opt = torch.optim.SGD([x], lr=20.0)
    for _ in range(200):
        loss = sliced_wasserstein2(x, target, 32, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert x.detach().mean(0).tolist() == pytest.approx(target.mean(0).tolist(), abs=0.03)
    assert x.detach().std(0).tolist() == pytest.approx(target.std(0).tolist(), rel=0.1)
    assert math.isfinite(loss.item())


def test_sliced_wasserstein_rejects_unequal_samples() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        sliced_wasserstein2(torch.zeros(3, 2), torch.zeros(4, 2))
