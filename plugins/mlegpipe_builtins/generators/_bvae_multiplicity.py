"""The multiplicity of a variable-multiplicity collection as a condition of the B-VAE (``n_jets``).

A :class:`~mlegpipe.features.CollectionMap` fitted to jets above a threshold
has as many slots as the largest training multiplicity; the features of the
slots an event does not fill are NaN. The B-VAE learns such events with the
multiplicity as a condition of both encoder and decoder
(:class:`MultiplicityCondition`: one-hot over the training multiplicities, or
the standardized count): absent slots are standardized to 0 before encoding
and left out of the reconstruction error (:func:`present_scaler`,
:func:`model_matrix`), and the map drops them after decoding. At sampling the
multiplicity is the user's (``conditions = ["n_jets"]``, a value per event) or
drawn from the training frequencies, and the latent point comes from the buffer
events of that multiplicity (:class:`~mlegpipe_builtins.generators._bvae_buffer.LatentBuffer`).

Example:
    >>> import numpy as np
    >>> cond = MultiplicityCondition("n_jets").fit(np.array([2, 3, 3, 5]))
    >>> cond.values, cond.width
    ([2, 3, 5], 3)
    >>> cond.tensor(np.array([3, 5])).tolist()
    [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> cond.draw(4, np.random.default_rng(0)).tolist()
    [3, 3, 2, 2]
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mlegpipe.exceptions import CheckpointError, ConfigError
from mlegpipe.features import Standardize

__all__ = ["ENCODINGS", "MultiplicityCondition", "model_matrix", "present_scaler"]

#: How the multiplicity enters the networks.
ENCODINGS = ("onehot", "standardized")


class MultiplicityCondition:
    """The multiplicity ``n_c`` as the VAE's condition: its training values, frequencies and encoding.

    Arguments:
        field: the multiplicity's name (``n_jets``: what users fix in ``conditions``).
        encoding: ``onehot`` (one input per training multiplicity) or ``standardized``
            (one input, (n - mean) / std of the training multiplicities).

    Example:
        >>> import numpy as np
        >>> cond = MultiplicityCondition("n_jets", "standardized").fit(np.array([4, 6]))
        >>> cond.width, cond.tensor(np.array([4, 5, 6])).flatten().tolist()
        (1, [-1.0, 0.0, 1.0])
    """

    def __init__(self, field: str, encoding: str = "onehot") -> None:
        if encoding not in ENCODINGS:
            raise ConfigError("unknown multiplicity encoding; use " + " or ".join(ENCODINGS),
                              path="generator.multiplicity_encoding", value=encoding)
        self.field = field
        self.encoding = encoding
        self.values: list[int] = []
        self.probs: list[float] = []
        self.mean = 0.0
        self.std = 1.0

    @property
    def width(self) -> int:
        """Condition inputs of the networks: the number of training multiplicities (one-hot) or 1."""
        return len(self.values) if self.encoding == "onehot" else 1

    def fit(self, multiplicity: np.ndarray) -> MultiplicityCondition:
        """The training multiplicities, their frequencies (per event, unweighted) and mean and spread."""
        mult = np.asarray(multiplicity, dtype=np.int64)
        values, counts = np.unique(mult, return_counts=True)
        self.values = [int(v) for v in values]
        self.probs = (counts / counts.sum()).tolist()
        self.mean = float(mult.mean())
        self.std = float(mult.std()) if mult.std() > 0 else 1.0
        return self

    def tensor(self, multiplicity: np.ndarray) -> torch.Tensor:
        """``(n, width)`` float32 network input for the multiplicities (values seen in training)."""
        mult = np.asarray(multiplicity, dtype=np.int64)
        if self.encoding == "standardized":
            return torch.from_numpy(((mult - self.mean) / self.std).astype(np.float32))[:, None]
        out = torch.zeros((len(mult), len(self.values)), dtype=torch.float32)
        out[torch.arange(len(mult)), torch.from_numpy(np.searchsorted(self.values, mult))] = 1.0
        return out

    def from_tensor(self, condition: torch.Tensor) -> np.ndarray:
        """The multiplicities a :meth:`tensor` encodes (nearest training value for the standardized encoding)."""
        c = condition.detach().double().numpy()
        if self.encoding == "onehot":
            return np.asarray(self.values, dtype=np.int64)[np.argmax(c, axis=1)]
        raw = c[:, 0] * self.std + self.mean
        values = np.asarray(self.values, dtype=np.int64)
        return values[np.argmin(np.abs(raw[:, None] - values[None, :]), axis=1)]

    def draw(self, n: int, rng: np.random.Generator, stratified: bool = False) -> np.ndarray:
        """``n`` multiplicities drawn from the training frequencies.

        ``stratified``: systematic sampling instead of independent draws: the count of each
        multiplicity is its expected number n·p rounded up or down at random (unbiased, so each event
        still has multiplicity k with probability p_k), in random order; the sample's multiplicity
        histogram then carries no multinomial noise of its own.

        Example:
            >>> import numpy as np
            >>> cond = MultiplicityCondition("n_jets").fit(np.array([1] * 50 + [2] * 30 + [3] * 20))
            >>> np.bincount(cond.draw(1000, np.random.default_rng(1), stratified=True)).tolist()
            [0, 500, 300, 200]
        """
        values = np.asarray(self.values, dtype=np.int64)
        if not stratified:
            return rng.choice(values, size=n, p=np.asarray(self.probs))
        edges = np.cumsum(self.probs)
        positions = (rng.random() + np.arange(n)) / max(n, 1)
        picked = values[np.minimum(np.searchsorted(edges, positions, side="right"), len(values) - 1)]
        return rng.permutation(picked)

    def check(self, given: Any, n: int, path: str) -> np.ndarray:
        """The user's multiplicities (one value, or one per event) as ``(n,)`` integers.

        Raises:
            ConfigError: a value that is not a whole number, or one no training event has (the
                buffer holds no latent point of that multiplicity), naming ``path``.

        Example:
            >>> import numpy as np
            >>> cond = MultiplicityCondition("n_jets").fit(np.array([1, 2, 3]))
            >>> cond.check(2, 3, "generator.conditions").tolist()
            [2, 2, 2]
            >>> cond.check(7, 3, "generator.conditions")
            Traceback (most recent call last):
            ...
            mlegpipe.exceptions.ConfigError: generator.conditions.n_jets = 7: no training event has n_jets = 7 ...
        """
        try:
            raw = np.broadcast_to(np.asarray(given, dtype=np.float64), (n,))
        except (TypeError, ValueError):
            raise ConfigError(f"{self.field} must be one number or one per event ({n})", path=f"{path}.{self.field}",
                              value=str(given)[:40]) from None
        whole = np.isfinite(raw) & (raw == np.round(raw))
        if not whole.all():
            raise ConfigError(f"{self.field} is a count: whole numbers only", path=f"{path}.{self.field}",
                              value=float(raw[~whole][0]))
        mult = raw.astype(np.int64)
        unseen = ~np.isin(mult, self.values)
        if unseen.any():
            raise ConfigError(f"no training event has {self.field} = {int(mult[unseen][0])} (the buffer holds "
                              f"latent points of {self.field} = {_ranges(self.values)} only)",
                              path=f"{path}.{self.field}", value=int(mult[unseen][0]),
                              hint=f"fix {self.field} to a multiplicity seen in training, or leave it out to draw it "
                                   "from the training frequencies")
        return mult.copy()

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"field": self.field, "encoding": self.encoding, "values": list(self.values),
                "probs": list(self.probs), "mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], where: str) -> MultiplicityCondition:
        """Rebuild from :meth:`state_dict`."""
        try:
            out = cls(str(state["field"]), str(state["encoding"]))
            out.values = [int(v) for v in state["values"]]
            out.probs = [float(p) for p in state["probs"]]
            out.mean, out.std = float(state["mean"]), float(state["std"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"no multiplicity condition in the state: {err}", path=f"{where}.multiplicity") \
                from None
        return out


def _ranges(values: list[int]) -> str:
    """``1-5, 7`` for [1, 2, 3, 4, 5, 7]."""
    out, start = [], values[0]
    for a, b in zip(values, [*values[1:], None], strict=True):
        if b != a + 1:
            out.append(str(a) if a == start else f"{start}-{a}")
            start = b
    return ", ".join(out)


def model_matrix(raw: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """``raw`` with the features of absent particles set to the column median of the present ones.

    Absent features then lie inside the training range of every preprocessing step;
    the standardized values are overwritten with 0 afterwards (:func:`present_scaler`).

    Example:
        >>> import numpy as np
        >>> raw = np.array([[1.0, 5.0], [2.0, np.nan], [3.0, 7.0]])
        >>> model_matrix(raw, np.isnan(raw)).tolist()
        [[1.0, 5.0], [2.0, 6.0], [3.0, 7.0]]
    """
    present = np.where(absent, np.nan, raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a slot no training event fills: an all-NaN column
        median = np.nan_to_num(np.nanmedian(present, axis=0))
    return np.where(absent, median[None, :], raw)


def present_scaler(learned: np.ndarray, absent: np.ndarray, weights: np.ndarray | None = None) -> Standardize:
    """A :class:`~mlegpipe.features.Standardize` fitted on the present values of each column only.

    (Filled absent values would pull every slot's spread towards its median.)

    Example:
        >>> import numpy as np
        >>> x = np.array([[1.0, 0.0], [3.0, 10.0], [5.0, 0.0]])
        >>> s = present_scaler(x, np.array([[False, True], [False, False], [False, True]]))
        >>> s.mean.tolist(), s.std.tolist()
        ([3.0, 10.0], [1.632993161855452, 1e-12])
    """
    x = torch.as_tensor(learned, dtype=torch.float64)
    w = torch.ones(len(x), dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    w = w[:, None] * torch.from_numpy(~np.asarray(absent)).double()
    w = w / w.sum(0).clamp_min(1e-300)
    scaler = Standardize()
    scaler.mean = (w * x).sum(0)
    scaler.std = torch.sqrt((w * (x - scaler.mean) ** 2).sum(0)).clamp_min(scaler.eps)
    return scaler
