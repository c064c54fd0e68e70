"""Differentiable augmented features of the scattered lepton, shown to GAN discriminators (DIS domain).

FAT-GAN's discriminator sees, beside the generated ``(p_x, p_y, p_z)``, the
energy ``E``, ``p_T`` and ``p_z / p_T``; cFAT-GAN adds the products
``p_x p_y``, ``p_x p_z`` and ``p_y p_z`` (thesis ch. 4-5). Every function here
takes the lepton four-momentum as a ``(n, 4)`` tensor ``(E, p_x, p_y, p_z)``
and returns ``(n,)``, so gradients flow back to the generator.

Example:
    >>> import torch
    >>> from mlegpipe.features.augment import augment
    >>> lep = torch.tensor([[5.0, 3.0, 0.0, 4.0]])
    >>> augment(lep, LEPTON_FIELDS, ["E", "pT", "pz_over_pT"]).tolist()
    [[5.0, 3.0, 1.3333333730697632]]
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mlegpipe.features.augment import Augmentation
from mlegpipe_builtins.dis import LEPTON_FIELDS

__all__ = ["AUGMENTATIONS", "CFATGAN_AUGMENT", "FATGAN_AUGMENT", "LEPTON_AUGMENTATIONS"]

_PT_FLOOR = 1e-6  # GeV: keeps p_z / p_T finite for a lepton exactly along the beam


def _pt(p: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(p[:, 1] ** 2 + p[:, 2] ** 2 + _PT_FLOOR**2)


AUGMENTATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "E": lambda p: p[:, 0],
    "px": lambda p: p[:, 1],
    "py": lambda p: p[:, 2],
    "pz": lambda p: p[:, 3],
    "pT": _pt,
    "pz_over_pT": lambda p: p[:, 3] / _pt(p),
    "px_py": lambda p: p[:, 1] * p[:, 2],
    "px_pz": lambda p: p[:, 1] * p[:, 3],
    "py_pz": lambda p: p[:, 2] * p[:, 3],
    "theta": lambda p: torch.atan2(_pt(p), p[:, 3]),
    "phi": lambda p: torch.atan2(p[:, 2], p[:, 1]),
    "log_E": lambda p: torch.log(p[:, 0]),
}
"""Augmented features by name: functions of the ``(n, 4)`` lepton tensor ``(E, px, py, pz)``."""

_DOCS = {"E": "lepton energy E'", "px": "lepton p_x", "py": "lepton p_y", "pz": "lepton p_z",
         "pT": "lepton p_T", "pz_over_pT": "p_z / p_T of the lepton", "px_py": "p_x p_y", "px_pz": "p_x p_z",
         "py_pz": "p_y p_z", "theta": "lepton polar angle", "phi": "lepton azimuth", "log_E": "ln E'"}
#: The lepton augmentations as registered :class:`~mlegpipe.features.augment.Augmentation` s.
LEPTON_AUGMENTATIONS: tuple[Augmentation, ...] = tuple(Augmentation(name, LEPTON_FIELDS, fn, _DOCS[name])
                                                       for name, fn in AUGMENTATIONS.items())

#: What the FAT-GAN discriminator sees besides the generated features.
FATGAN_AUGMENT: tuple[str, ...] = ("E", "pT", "pz_over_pT")
#: What the cFAT-GAN discriminator sees besides the generated features.
CFATGAN_AUGMENT: tuple[str, ...] = ("E", "pT", "pz_over_pT", "px_py", "px_pz", "py_pz")
