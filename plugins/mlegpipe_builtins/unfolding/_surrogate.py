"""The frozen detector surrogate an unfolding trains through: its contract, freezing, pass probabilities.

``gan-unfold`` needs a trained, differentiable surrogate: one that meets
:class:`mlegpipe.stages.DifferentiableSurrogate` (feature names and scalers,
``fold_tensor``, ``pass_tensor``, ``has_pass_model``, ...). :func:`require_surrogate`
checks that once; :func:`frozen` keeps its weights fixed while generators train
through it and fails if they moved; :func:`pass_probability` is its full pass model
p(pass | vertex, folded), and :func:`efficiency` ε(v) averaged over foldings.

Example:
    >>> from mlegpipe.exceptions import PluginError
    >>> try:
    ...     require_surrogate(object(), "detector", "unfolding")
    ... except PluginError as err:
    ...     print(err.path)
    unfolding.surrogate
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from mlegpipe.exceptions import ConfigError, PluginError
from mlegpipe.stages import DifferentiableSurrogate, Stage

__all__ = ["PassFunction", "efficiency", "freeze", "frozen", "pass_probability", "require_surrogate", "unfreeze"]

#: p(pass | standardized vertex, standardized folded detector features), shape ``(n,)``.
PassFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: What :func:`freeze` saved of each network: the module, its training flag, its parameters' requires_grad.
_Saved = list[tuple[nn.Module, bool, list[bool]]]


def require_surrogate(surrogate: Any, name: str, section: str) -> DifferentiableSurrogate:
    """``surrogate`` when it is a trained :class:`~mlegpipe.stages.DifferentiableSurrogate`.

    Raises:
        ConfigError: the pipeline gave no surrogate.
        PluginError: it is not differentiable (e.g. a parametric detector such as ``smear``) or not trained.
    """
    if surrogate is None:
        raise ConfigError("this unfolding trains through a learned detector surrogate: declare one (cfold, "
                          "flowfold) before it", path=f"{section}.surrogate")
    if not isinstance(surrogate, DifferentiableSurrogate):
        plugin = surrogate.plugin_name if isinstance(surrogate, Stage) else type(surrogate).__name__
        raise PluginError(f"the surrogate must be a differentiable learned detector (cfold, flowfold: "
                          f"mlegpipe.stages.DifferentiableSurrogate); {name!r} is {plugin!r}, which is not",
                          path=f"{section}.surrogate", value=name,
                          hint="name a learned detector section in surrogate = \"...\"")
    if surrogate.vertex_scaler is None or surrogate.detector_scaler is None:
        raise PluginError("the surrogate is not trained (fit or load it before unfolding)",
                          path=f"{section}.surrogate", value=name)
    return surrogate


def freeze(stage: Any) -> _Saved:
    """Put every network of ``stage`` in eval mode with ``requires_grad = False``; return how to undo it.

    Example:
        >>> class S:
        ...     net = nn.Linear(1, 1)
        >>> saved = freeze(S())
        >>> S.net.weight.requires_grad, S.net.training
        (False, False)
    """
    modules = [m for m in {**vars(type(stage)), **vars(stage)}.values() if isinstance(m, nn.Module)]
    saved = [(m, m.training, [p.requires_grad for p in m.parameters()]) for m in modules]
    for m in modules:
        m.eval()
        m.requires_grad_(False)
    return saved


def unfreeze(saved: _Saved) -> None:
    """Undo :func:`freeze`."""
    for module, training, flags in saved:
        module.train(training)
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _fingerprint(saved: _Saved) -> list[torch.Tensor]:
    return [t.detach().clone() for m, _, _ in saved for t in m.state_dict().values()]


@contextmanager
def frozen(surrogate: Any, section: str, name: str) -> Iterator[None]:
    """Keep ``surrogate`` frozen inside the block; restore its flags afterwards.

    Raises:
        PluginError: its weights changed inside the block.

    Example:
        >>> class S:
        ...     net = nn.Linear(1, 1)
        >>> with frozen(S(), "unfolding", "surrogate"):
        ...     S.net.weight.requires_grad
        False
        >>> S.net.weight.requires_grad
        True
    """
    saved = freeze(surrogate)
    before = _fingerprint(saved)
    try:
        yield
    finally:
        after = _fingerprint(saved)
        unfreeze(saved)
    if any(not torch.equal(a, b) for a, b in zip(before, after, strict=True)):
        raise PluginError("the surrogate's weights changed during unfolding (it must stay frozen)",
                          path=f"{section}.surrogate", value=name)


def pass_probability(surrogate: DifferentiableSurrogate) -> PassFunction | None:
    """p(pass | vertex, folded) of the surrogate's pass model, or None when every event passes."""
    return surrogate.pass_tensor if surrogate.has_pass_model else None


def efficiency(surrogate: DifferentiableSurrogate, v_std: torch.Tensor, generator: torch.Generator,
               draws: int = 4) -> np.ndarray:
    """ε(v): the surrogate's pass probability, averaged over ``draws`` foldings (its cut acts on folded values)."""
    fn = pass_probability(surrogate)
    if fn is None:
        return np.ones(len(v_std))
    with torch.no_grad():
        total = sum(fn(v_std, surrogate.fold_tensor(v_std, generator)).double() for _ in range(draws))
    out = (total / draws).numpy()
    return np.where(np.isfinite(out), out, 0.0)
