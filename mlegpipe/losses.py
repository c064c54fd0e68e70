"""Differentiable losses shared by models and analysis tools (torch).

Example:
    >>> import torch
    >>> round(float(mmd2(torch.zeros(1, 1), torch.ones(1, 1))), 4)
    0.7869
"""

from __future__ import annotations

import torch

__all__ = ["mmd2"]


def mmd2(x: torch.Tensor, y: torch.Tensor, sigmas: list[float] | tuple[float, ...] = (1.0,)) -> torch.Tensor:
    """Differentiable squared MMD (biased V-statistic, ≥ 0) with a sum of Gaussian kernels.

    MMD² = ⟨k(x, x')⟩ + ⟨k(y, y')⟩ - 2⟨k(x, y)⟩, k = Σ_σ exp(-|u - v|²/2σ²)
    (thesis eq. 15, with several widths σ in standardized units).

    Example:
        >>> round(float(mmd2(torch.zeros(1, 1), torch.ones(1, 1))), 4)   # 2 - 2 e^{-1/2}
        0.7869
    """
    xy = torch.cat([x, y])
    sq = (xy * xy).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * xy @ xy.T).clamp_min(0.0)
    k = sum(torch.exp(-d2 / (2.0 * s * s)) for s in sigmas)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2.0 * k[:n, n:].mean()
