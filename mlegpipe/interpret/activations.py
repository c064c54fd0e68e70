"""Record the outputs of chosen hidden layers of a torch network with forward hooks.

A *hidden layer* is the output of one hidden block of a dense network: the
activation after a linear map, or a whole :class:`~mlegpipe.nets.ResidualLayer`
(``x + act(W x)``). Layers are chosen by 1-based hidden-layer number (``2``:
the second hidden layer, ``-1``: the last one) or by module name as
``named_modules()`` spells it (``"4"``, ``"transform.transforms.0.hyper.1"``).

Example:
    >>> import torch
    >>> from mlegpipe.nets import mlp
    >>> net = mlp(3, 1, [8, 8, 8])
    >>> hidden_layer_names(net)
    ['1', '3', '5']
    >>> acts = record_activations(net, torch.zeros(10, 3), resolve_layers(net, [1, -1]))
    >>> {k: v.shape for k, v in acts.items()}
    {'1': (10, 8), '5': (10, 8)}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from mlegpipe.exceptions import ConfigError
from mlegpipe.nets import ResidualLayer

__all__ = ["ACTIVATION_TYPES", "hidden_layer_names", "record_activations", "resolve_layers"]

#: Module types whose output is a hidden representation.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.LeakyReLU, nn.ReLU, nn.ELU, nn.SELU, nn.SiLU, nn.GELU, nn.Tanh, nn.Softplus, nn.Sigmoid, nn.PReLU,
)
_LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.Linear,)


def _is_linear(module: nn.Module) -> bool:
    # spectral-normalized layers are still nn.Linear; zuko's MaskedLinear subclasses nn.Linear
    return isinstance(module, _LINEAR_TYPES)


def _sequential_hidden(seq: nn.Sequential, prefix: str) -> list[str]:
    """Hidden outputs of a Sequential: activations/residual blocks before its last linear map."""
    children = list(seq.named_children())
    last_linear = max((i for i, (_, m) in enumerate(children) if _is_linear(m)), default=-1)
    names = []
    for name, child in children[:last_linear]:
        if isinstance(child, (ResidualLayer, *ACTIVATION_TYPES)):
            names.append(f"{prefix}{name}")
        elif isinstance(child, nn.Sequential):
            names += _sequential_hidden(child, f"{prefix}{name}.")
    return names


def hidden_layer_names(net: nn.Module) -> list[str]:
    """Names (as in ``net.named_modules()``) of the hidden-layer outputs of ``net``, input to output.

    For an ``nn.Sequential`` (every :func:`mlegpipe.nets.mlp`): each activation
    or residual block before the output layer. For other modules (zuko flows,
    set networks): every activation module not inside a residual block, and
    every residual block, in definition order.

    Example:
        >>> from mlegpipe.nets import mlp
        >>> hidden_layer_names(mlp(2, 2, [4, 4], residual=True))
        ['1', '2']
    """
    if isinstance(net, nn.Sequential):
        names = _sequential_hidden(net, "")
        if names:
            return names
    names = []
    inside_residual: list[str] = []
    for name, module in net.named_modules():
        if not name or any(name.startswith(p + ".") for p in inside_residual):
            continue
        if isinstance(module, ResidualLayer):
            inside_residual.append(name)
            names.append(name)
        elif isinstance(module, ACTIVATION_TYPES):
            names.append(name)
    return names


def resolve_layers(net: nn.Module, layers: Sequence[int | str], path: str = "layers") -> list[str]:
    """Module names for hidden-layer numbers (1-based, negative from the end) or names.

    Strings that look like integers (``"2"``, ``"-1"``) are taken as numbers.

    Raises:
        ConfigError: no such hidden layer or module (the message lists the hidden layers).

    Example:
        >>> from mlegpipe.nets import mlp
        >>> resolve_layers(mlp(2, 1, [4, 4, 4]), [2, "-1"])
        ['3', '5']
    """
    hidden = hidden_layer_names(net)
    modules = dict(net.named_modules())
    out = []
    for item in layers:
        key: int | str = item
        if isinstance(item, str) and item.lstrip("-").isdigit():
            key = int(item)
        if isinstance(key, int) and not isinstance(key, bool):
            if key == 0 or not -len(hidden) <= key <= len(hidden):
                raise ConfigError(f"the network has {len(hidden)} hidden layers (numbered 1..{len(hidden)}, or "
                                  f"-1 for the last); its hidden-layer modules are {hidden}", path=path, value=item)
            out.append(hidden[key - 1 if key > 0 else key])
        elif key in modules and key:
            out.append(str(key))
        else:
            raise ConfigError(f"no hidden layer or module of that name; hidden layers: {hidden}", path=path,
                              value=item)
    return out


def record_activations(
    net: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    layers: Sequence[str],
    forward: Callable[..., object] | None = None,
    batch_size: int = 16384,
) -> dict[str, np.ndarray]:
    """Run ``inputs`` through the network and return the outputs of ``layers`` (``(n, width)`` float32 arrays).

    Arguments:
        net: the module owning ``layers`` (hooks are attached to its sub-modules).
        inputs: one tensor, or several tensors with the same first dimension,
            split into batches of ``batch_size`` rows.
        layers: module names (see :func:`resolve_layers`).
        forward: what to call with each batch (default: ``net``); e.g. a flow's
            density evaluation. When a hooked module runs more than once per
            batch, its last call is kept.
        batch_size: rows per forward pass.

    The network runs in eval mode without gradients; its mode is restored and
    the hooks removed afterwards, also on errors.
    """
    tensors = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
    n = len(tensors[0])
    modules = dict(net.named_modules())
    missing = [name for name in layers if name not in modules]
    if missing:
        raise ConfigError(f"no module of that name; hidden layers: {hidden_layer_names(net)}", path="layers",
                          value=missing[0])
    current: dict[str, torch.Tensor] = {}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in layers}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: object, output: torch.Tensor) -> None:
            current[name] = output.detach()
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name)) for name in dict.fromkeys(layers)]
    call = forward or net
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for lo in range(0, n, batch_size):
                current.clear()
                call(*(t[lo:lo + batch_size] for t in tensors))
                for name in layers:
                    if name not in current:
                        raise ConfigError("the layer did not run in the forward pass", path="layers", value=name)
                    chunks[name].append(current[name].reshape(len(current[name]), -1).float().cpu().numpy())
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    return {name: np.concatenate(parts) if parts else np.zeros((0, 0), np.float32) for name, parts in chunks.items()}
