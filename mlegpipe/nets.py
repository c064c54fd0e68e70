"""Multilayer perceptrons for generators, discriminators and autoencoders.

One builder, :func:`mlp`, makes every dense network of mlegpipe: a stack of
hidden layers of given widths with a chosen activation, optional dropout,
optional residual (skip) connections between hidden layers of equal width
(thesis ch. 8, Figs. 46-48: residual blocks smooth the GAN loss landscape) and
optional spectral normalization of the weights (a Lipschitz bound for critics).

Example:
    >>> import torch
    >>> net = mlp(3, 1, [16, 16], activation="leaky_relu", residual=True)
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5, 1])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from mlegpipe.exceptions import ConfigError

__all__ = ["ACTIVATIONS", "NORMS", "ResidualLayer", "activation", "count_parameters", "mlp"]

#: Activation names accepted by :func:`mlp` (``leaky_relu`` uses ``leaky_slope``).
ACTIVATIONS: tuple[str, ...] = ("leaky_relu", "relu", "elu", "selu", "silu", "gelu", "tanh", "softplus")
#: Weight normalizations accepted by :func:`mlp`.
NORMS: tuple[str, ...] = ("none", "spectral")

_FACTORIES: dict[str, Callable[[float], nn.Module]] = {
    "leaky_relu": lambda slope: nn.LeakyReLU(slope),
    "relu": lambda slope: nn.ReLU(),
    "elu": lambda slope: nn.ELU(),
    "selu": lambda slope: nn.SELU(),
    "silu": lambda slope: nn.SiLU(),
    "gelu": lambda slope: nn.GELU(),
    "tanh": lambda slope: nn.Tanh(),
    "softplus": lambda slope: nn.Softplus(),
}


def activation(name: str, leaky_slope: float = 0.2) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`).

    Raises:
        ConfigError: unknown name (the message lists the known ones).

    Example:
        >>> activation("elu")
        ELU(alpha=1.0)
    """
    if name not in _FACTORIES:
        from mlegpipe.schema import suggest

        raise ConfigError("unknown activation; known: " + ", ".join(ACTIVATIONS), path="activation", value=name,
                          hint=suggest(name, ACTIVATIONS))
    return _FACTORIES[name](leaky_slope)


class ResidualLayer(nn.Module):
    """A hidden layer with a skip connection: ``x + dropout(act(W x + b))``.

    Example:
        >>> layer = ResidualLayer(nn.Linear(4, 4), nn.ReLU())
        >>> layer(torch.zeros(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self, linear: nn.Module, act: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = linear
        self.act = act
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.act(self.linear(x)))


_make_act = activation  # ``mlp`` has a parameter called ``activation``


def _linear(n_in: int, n_out: int, norm: str) -> nn.Module:
    layer = nn.Linear(n_in, n_out)
    if norm == "spectral":
        layer = nn.utils.parametrizations.spectral_norm(layer)
    return layer


def mlp(
    n_in: int,
    n_out: int,
    widths: Sequence[int],
    activation: str = "leaky_relu",  # noqa: A002 - the natural name
    dropout: float = 0.0,
    residual: bool = False,
    norm: str = "none",
    leaky_slope: float = 0.2,
    output_activation: str | None = None,
) -> nn.Sequential:
    """A dense network ``n_in → widths[0] → … → widths[-1] → n_out``.

    Arguments:
        n_in, n_out: input and output sizes.
        widths: hidden-layer widths (empty: a single linear map).
        activation: hidden activation, one of :data:`ACTIVATIONS`.
        dropout: dropout probability after each hidden activation.
        residual: hidden layers whose width equals the previous one become
            :class:`ResidualLayer` (``x + act(W x)``); the first hidden layer
            (which changes the width) is a plain layer.
        norm: ``"none"`` or ``"spectral"`` (spectral normalization of every
            linear map, output included).
        leaky_slope: negative slope of ``leaky_relu``.
        output_activation: optional activation on the output (None: linear).

    Returns:
        An ``nn.Sequential``; hidden layers are float32 and initialized by
        PyTorch's defaults (seed ``torch.manual_seed`` or build inside
        ``torch.random.fork_rng`` for reproducible weights).

    Example:
        >>> mlp(2, 3, [8]).__class__.__name__
        'Sequential'
    """
    if norm not in NORMS:
        raise ConfigError("unknown weight normalization; known: " + ", ".join(NORMS), path="norm", value=norm)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError("dropout must lie in [0, 1)", path="dropout", value=dropout)
    if n_in < 1 or n_out < 1 or any(w < 1 for w in widths):
        raise ConfigError("network sizes must be positive", path="widths", value=[n_in, *widths, n_out])
    layers: list[nn.Module] = []
    previous = n_in
    for width in widths:
        linear = _linear(previous, width, norm)
        act = _make_act(activation, leaky_slope)
        if residual and width == previous:
            layers.append(ResidualLayer(linear, act, dropout))
        else:
            layers += [linear, act]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        previous = width
    layers.append(_linear(previous, n_out, norm))
    if output_activation is not None:
        layers.append(_make_act(output_activation, leaky_slope))
    return nn.Sequential(*layers)



def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``.

    Example:
        >>> count_parameters(mlp(2, 1, [4]))
        17
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
