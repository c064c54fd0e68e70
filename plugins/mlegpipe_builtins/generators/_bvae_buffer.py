"""The B-VAE's density information buffer: p(z) = (1/n) Σᵢ N(μᵢ, σᵢ) of the encoded training events.

:class:`LatentBuffer` holds the posterior means and log-variances of the
training events and draws latent points from them (smeared by α, and with
``neighbours`` a step λ·g·(μⱼ - μᵢ) toward a random one of the nearest buffer
means). For a conditional VAE (the multiplicity of a variable collection) the
buffer keeps each event's multiplicity (its *group*): a latent point for an
event of multiplicity k comes from a training event of multiplicity k, whose
latent the encoder produced under that same condition, and its neighbours are
searched among events of the same multiplicity. So p(z | k) is the mean of the
Gaussians of the training events with k, which is what the decoder conditioned
on k has learned to decode.

Example:
    >>> import numpy as np, torch
    >>> buf = LatentBuffer(torch.zeros(4, 2), torch.zeros(4, 2), groups=np.array([3, 4, 4, 5]))
    >>> rng = np.random.default_rng(0)
    >>> which = buf.draw_in(np.array([4, 4, 5, 3]), rng)
    >>> buf.groups[which.numpy()].tolist()
    [4, 4, 5, 3]
    >>> z, _ = buf.latent(4, rng, 1.0, 0.0, which)
    >>> tuple(z.shape)
    (4, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from mlegpipe.exceptions import DataError

__all__ = ["LatentBuffer", "SlotDraws", "neighbour_table", "stratified_indices"]

_BLOCK = 65_536


def neighbour_table(mu: np.ndarray, k: int, groups: np.ndarray | None = None) -> np.ndarray:
    """``(n, k)`` indices of each point's ``k`` nearest other points (within its group when grouped).

    A group of fewer than ``k + 1`` points repeats its neighbours (a lone point is its own neighbour).

    Example:
        >>> import numpy as np
        >>> neighbour_table(np.array([[0.0], [1.0], [5.0], [0.1]]), 1).tolist()
        [[3], [3], [1], [0]]
        >>> neighbour_table(np.array([[0.0], [1.0], [5.0], [0.1]]), 1, np.array([1, 2, 2, 3])).tolist()
        [[0], [2], [1], [3]]
    """
    from scipy.spatial import cKDTree

    if groups is None:
        _, idx = cKDTree(mu).query(mu, k=k + 1)
        return np.asarray(idx, dtype=np.int64).reshape(len(mu), -1)[:, 1:]
    out = np.empty((len(mu), k), dtype=np.int64)
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        if len(members) == 1:
            out[members] = members[0]
            continue
        kg = min(k, len(members) - 1)
        _, idx = cKDTree(mu[members]).query(mu[members], k=kg + 1)
        near = members[np.asarray(idx, dtype=np.int64).reshape(len(members), -1)[:, 1:]]
        out[members] = near[:, np.arange(k) % kg]
    return out


def stratified_indices(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices into ``range(size)`` drawn without replacement in passes: each index ⌊n/size⌋ or
    ⌈n/size⌉ times, in random order (each index equally likely to be any entry).

    Example:
        >>> import numpy as np
        >>> idx = stratified_indices(10, 4, np.random.default_rng(0))
        >>> sorted(np.bincount(idx, minlength=4).tolist())
        [2, 2, 3, 3]
    """
    full, rest = divmod(n, size)
    picked = np.concatenate([np.tile(np.arange(size), full), rng.permutation(size)[:rest]])
    return rng.permutation(picked).astype(np.int64)


class LatentBuffer:
    """Encoded training events ``(μᵢ, log σᵢ²)``, optionally grouped by multiplicity (see the module docstring).

    Arguments:
        mu, log_var: float32 ``(n, latent)`` posterior means and log-variances.
        groups: the multiplicity of each buffer event (None: one group).
        neighbours: ``(n, k)`` nearest-mean table of ``buffer_smearing = "neighbours"`` (None: none).
    """

    def __init__(self, mu: torch.Tensor, log_var: torch.Tensor, groups: np.ndarray | None = None,
                 neighbours: torch.Tensor | None = None) -> None:
        self.mu = mu
        self.log_var = log_var
        self.groups = None if groups is None else np.asarray(groups, dtype=np.int64)
        self.neighbours = neighbours
        if self.groups is not None:
            self._order = np.argsort(self.groups, kind="stable")
            self._values, self._starts, self._counts = np.unique(self.groups[self._order], return_index=True,
                                                                 return_counts=True)

    def __len__(self) -> int:
        return len(self.mu)

    @classmethod
    def encode(cls, encoder: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]],
               x: torch.Tensor, *, limit: int, permutation: Callable[[], torch.Generator],
               condition: torch.Tensor | None = None, groups: np.ndarray | None = None,
               neighbours: int | None = None) -> LatentBuffer:
        """Encode (up to ``limit``) events: ``encoder(x, condition) -> (μ, log σ²)``.

        Above ``limit`` a random subset is kept (``permutation()`` gives the torch generator), plus one event of
        every multiplicity the subset would miss; ``neighbours`` builds the nearest-mean table of that many.
        """
        n = min(len(x), limit)
        if n < len(x):
            idx = torch.randperm(len(x), generator=permutation())[:n]
            if groups is not None:
                missing = np.setdiff1d(np.unique(groups), groups[idx.numpy()])
                extra = [int(np.flatnonzero(groups == g)[0]) for g in missing]
                idx = torch.cat([idx, torch.tensor(extra, dtype=idx.dtype)]) if extra else idx
            x = x[idx]
            condition = None if condition is None else condition[idx]
            groups = None if groups is None else groups[idx.numpy()]
        mus, log_vars = [], []
        with torch.no_grad():
            for lo in range(0, len(x), _BLOCK):
                mu, log_var = encoder(x[lo:lo + _BLOCK], None if condition is None else condition[lo:lo + _BLOCK])
                mus.append(mu)
                log_vars.append(log_var)
        mu, log_var = torch.cat(mus), torch.cat(log_vars)
        table = None
        if neighbours is not None:
            k = min(neighbours, len(mu) - 1)
            table = torch.from_numpy(neighbour_table(mu.double().numpy(), k, groups))
        return cls(mu, log_var, groups, table)

    # -- drawing -------------------------------------------------------------------------------------
    def draw(self, n: int, rng: np.random.Generator, stratified: bool = False) -> torch.Tensor:
        """``n`` buffer events drawn uniformly (``stratified``: without replacement, in passes over the buffer)."""
        if stratified:
            return torch.from_numpy(stratified_indices(n, len(self.mu), rng))
        return torch.from_numpy(rng.integers(0, len(self.mu), n))

    def draw_in(self, groups: np.ndarray, rng: np.random.Generator, stratified: bool = False) -> torch.Tensor:
        """One buffer event per entry of ``groups``, drawn uniformly among the buffer events of that multiplicity
        (``stratified``: without replacement, in passes over the buffer events of each multiplicity).

        Raises:
            DataError: the buffer has no event of a requested multiplicity.
        """
        if self.groups is None:
            raise DataError("this buffer is not grouped by multiplicity", path="buffer")
        wanted = np.asarray(groups, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._values, wanted), 0, len(self._values) - 1)
        bad = self._values[pos] != wanted
        if bad.any():
            raise DataError(f"the buffer holds no event of multiplicity {int(wanted[bad][0])}", path="buffer",
                            value=int(wanted[bad][0]))
        if not stratified:
            offset = rng.integers(0, self._counts[pos]) if len(wanted) else np.zeros(0, dtype=np.int64)
            return torch.from_numpy(self._order[self._starts[pos] + offset])
        offset = np.empty(len(wanted), dtype=np.int64)
        for p in np.unique(pos):
            where = np.flatnonzero(pos == p)
            offset[where] = stratified_indices(len(where), int(self._counts[p]), rng)
        return torch.from_numpy(self._order[self._starts[pos] + offset])

    def latent(self, n: int, rng: np.random.Generator, alpha: float, lam: float,
               which: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, i)``: z = μᵢ + α σᵢ ε (+ λ g (μⱼ - μᵢ), j a random neighbour of i, when the table exists).

        The buffer events i are drawn uniformly unless given (``which``).
        """
        eps = torch.from_numpy(rng.standard_normal((n, self.mu.shape[1]), dtype=np.float32))
        if which is None:
            which = self.draw(n, rng)
        z = self.mu[which] + torch.exp(0.5 * self.log_var[which]) * alpha * eps
        if self.neighbours is not None and lam > 0:
            k = self.neighbours.shape[1]
            j = self.neighbours[which, torch.from_numpy(rng.integers(0, k, n))]
            g = torch.from_numpy(rng.standard_normal(n, dtype=np.float32))[:, None]
            z = z + lam * g * (self.mu[j] - self.mu[which])
        return z, which

    # -- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Tensors of the buffer (the keys earlier checkpoints used)."""
        out: dict[str, Any] = {"buffer_mu": self.mu.clone(), "buffer_log_var": self.log_var.clone()}
        if self.neighbours is not None:
            out["buffer_neighbours"] = self.neighbours.clone()
        if self.groups is not None:
            out["buffer_multiplicity"] = torch.from_numpy(self.groups.copy())
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> LatentBuffer:
        """Rebuild from :meth:`state_dict` (entries of a generator's state).

        Raises:
            KeyError: the state has no buffer (the generator reports it as a :class:`CheckpointError`).
        """
        mu = torch.as_tensor(state["buffer_mu"]).float()
        log_var = torch.as_tensor(state["buffer_log_var"]).float()
        nbrs = state.get("buffer_neighbours")
        groups = state.get("buffer_multiplicity")
        return cls(mu, log_var, None if groups is None else torch.as_tensor(groups).long().numpy(),
                   None if nbrs is None else torch.as_tensor(nbrs).long())


class SlotDraws:
    """Which buffer event each generated event (a *slot*) decodes, through the redraws of rejected events.

    Arguments:
        buffer: the latent buffer.
        n: events to generate.
        rng: the sampling generator.
        groups: each slot's multiplicity (None: the buffer is not grouped).
        stratified: draw the buffer events without replacement (:func:`stratified_indices`), per multiplicity.
        keep: rejected decodings of one buffer event before a slot gets a new one (``redraw = "smearing"``:
            a few, so every training event keeps its weight next to the limits; ``"event"``: 1), or None
            for independent draws in every round without a slot table (the events of an ungrouped buffer
            are then drawn together with their smearing: :meth:`LatentBuffer.latent`).
        first: the slots' buffer events when already drawn (their multiplicities then came from them).

    Example:
        >>> import numpy as np, torch
        >>> buf = LatentBuffer(torch.zeros(3, 1), torch.zeros(3, 1), groups=np.array([1, 2, 2]))
        >>> draws = SlotDraws(buf, 4, np.random.default_rng(0), groups=np.array([2, 2, 1, 2]), stratified=True, keep=1)
        >>> buf.groups[draws(np.arange(4)).numpy()].tolist()
        [2, 2, 1, 2]
    """

    def __init__(self, buffer: LatentBuffer, n: int, rng: np.random.Generator, *, groups: np.ndarray | None,
                 stratified: bool, keep: int | None, first: torch.Tensor | None = None) -> None:
        self.buffer, self.rng, self.groups, self.keep = buffer, rng, groups, keep
        self.which: torch.Tensor | None = first
        if self.which is None and keep is not None:
            self.which = buffer.draw(n, rng, stratified) if groups is None else buffer.draw_in(groups, rng, stratified)
        self.tries = np.zeros(n, dtype=np.int64)

    def _fresh(self, slots: np.ndarray) -> torch.Tensor:
        return self.buffer.draw(len(slots), self.rng) if self.groups is None else \
            self.buffer.draw_in(self.groups[slots], self.rng)

    def __call__(self, slots: np.ndarray) -> torch.Tensor | None:
        """The buffer events of ``slots`` for this round (None: drawn with the smearing, see ``keep``)."""
        if self.which is None:
            return None if self.groups is None else self._fresh(slots)
        self.tries[slots] += 1
        stuck = slots[self.tries[slots] > (self.keep or 1)]
        if len(stuck):
            self.tries[stuck] = 1
            self.which[torch.from_numpy(stuck)] = self._fresh(stuck)
        return self.which[torch.from_numpy(slots)]
