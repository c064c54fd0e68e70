"""The variational autoencoder of the B-VAE and its KL term.

Example:
    >>> vae = VAE(4, 2, [8])
    >>> recon, mu, log_var = vae(torch.zeros(3, 4), torch.zeros(3, 2))
    >>> recon.shape, float(gaussian_kl(torch.zeros(1, 2), torch.zeros(1, 2))[0])
    (torch.Size([3, 4]), 0.0)
"""

from __future__ import annotations

import torch
from torch import nn

from mlegpipe.nets import mlp

__all__ = ["VAE", "gaussian_kl"]


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per event, summed over latent dimensions.

    Example:
        >>> float(gaussian_kl(torch.zeros(1, 3), torch.zeros(1, 3))[0])
        0.0
        >>> round(float(gaussian_kl(torch.ones(1, 1), torch.zeros(1, 1))[0]), 6)   # μ = 1: μ²/2
        0.5
    """
    return 0.5 * (mu.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1)


class VAE(nn.Module):
    """Encoder (x, c) → (μ, log σ²) and decoder (z, c) → x̂, both :func:`~mlegpipe.nets.mlp`.

    ``conditions`` inputs c (the encoded multiplicity of a variable collection) are appended
    to the inputs of both networks; without them (0) the VAE is unconditional.

    Example:
        >>> vae = VAE(3, 2, [16, 16])
        >>> mu, log_var = vae.encode(torch.zeros(5, 3))
        >>> vae.decode(mu).shape
        torch.Size([5, 3])
        >>> cvae = VAE(3, 2, [16], conditions=4)
        >>> cvae.decode(torch.zeros(5, 2), torch.zeros(5, 4)).shape
        torch.Size([5, 3])
    """

    def __init__(self, n_features: int, latent: int, widths: list[int], activation: str = "elu",
                 conditions: int = 0) -> None:
        super().__init__()
        self.latent = latent
        self.conditions = conditions
        self.encoder = mlp(n_features + conditions, 2 * latent, widths, activation)
        self.decoder = mlp(latent + conditions, n_features, widths, activation)

    def encode(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance ``(n, latent)`` each."""
        out = self.encoder(x if c is None else torch.cat([x, c], dim=1))
        return out[:, : self.latent], out[:, self.latent:].clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstructed (standardized) features."""
        return self.decoder(z if c is None else torch.cat([z, c], dim=1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor,
                c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x̂, μ, log σ²)`` with the reparametrized latent z = μ + σ · noise."""
        mu, log_var = self.encode(x, c)
        z = mu + torch.exp(0.5 * log_var) * noise
        return self.decode(z, c), mu, log_var
