"""Augmented features: differentiable functions of decoded event fields, shown to discriminators.

A GAN's critic judges, beside the generated features, quantities computed
from them (FAT-GAN's E, p_T, p_z/p_T of the scattered lepton). An
:class:`Augmentation` names the decoded fields it reads and maps them to one
value per event; domains register theirs through the
``mlegpipe_register_augmentations`` hook, and :func:`augment` stacks the named
ones, keeping the gradient to the generator.

Example:
    >>> import torch
    >>> double = Augmentation("double_a", ("a",), lambda t: 2 * t[:, 0])
    >>> augment(torch.tensor([[1.0, 5.0]]), ("a", "b"), ["double_a"], augmentations={"double_a": double}).tolist()
    [[2.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mlegpipe.exceptions import ConfigError

__all__ = ["Augmentation", "augment"]


@dataclass(frozen=True)
class Augmentation:
    """One augmented feature.

    Arguments:
        name: what GANs list in ``augment = [...]``.
        fields: the decoded event fields it reads, in the order its function expects them.
        fn: ``fn(t)`` with ``t`` of shape ``(n, len(fields))`` -> ``(n,)`` (differentiable).
        doc: one line for the documentation.
    """

    name: str
    fields: tuple[str, ...]
    fn: Callable[[torch.Tensor], torch.Tensor]
    doc: str = ""


def augment(
    decoded: torch.Tensor,
    fields: Sequence[str],
    names: Sequence[str],
    path: str = "augment",
    *,
    augmentations: Mapping[str, Augmentation] | None = None,
    registry: Any = None,
) -> torch.Tensor:
    """Stack the named augmented features of ``decoded`` ``(n, len(fields))`` into ``(n, len(names))``.

    Arguments:
        decoded: decoded event fields, columns in the order of ``fields``.
        fields: the field names of ``decoded``'s columns.
        names: augmented features to compute.
        path: TOML path for error messages.
        augmentations: the augmentations by name (default: the registered ones).

    Raises:
        ConfigError: an unknown name (the error lists the known ones), or one that reads a field ``decoded`` lacks.
    """
    if augmentations is None:
        if registry is None:
            from mlegpipe.registry import default_registry

            registry = default_registry()
        augmentations = registry.augmentations.items()
    fields = list(fields)
    if decoded.ndim != 2 or decoded.shape[1] != len(fields):
        raise ConfigError(f"expected a (n, {len(fields)}) tensor of {fields}, got shape {tuple(decoded.shape)}",
                          path=path)
    cols = []
    for name in names:
        if name not in augmentations:
            from mlegpipe.schema import suggest

            raise ConfigError("unknown augmented feature; known: " + ", ".join(augmentations), path=path,
                              value=name, hint=suggest(name, augmentations))
        aug = augmentations[name]
        missing = [f for f in aug.fields if f not in fields]
        if missing:
            raise ConfigError(f"augmented feature {name!r} reads {list(aug.fields)}, but the model decodes "
                              f"{fields}", path=path, value=name)
        index = [fields.index(f) for f in aug.fields]
        cols.append(aug.fn(decoded if index == list(range(len(fields))) else decoded[:, index]))
    if not cols:
        return decoded.new_zeros((len(decoded), 0))
    return torch.stack(cols, dim=1)
