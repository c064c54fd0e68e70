"""The How-to-GAN loss term: MMD² on declared observables of the decoded events (arXiv:1907.03764).

A GAN's generated features say nothing directly about a narrow resonance: the
W and top masses of tt̄ → 6 quarks are functions of several particles, and an
adversary alone leaves their peaks smeared. :class:`ObservableMMD` adds to the
generator loss

    w · Σ_o MMD²_o(o(generated), o(training)),  kernel k(d) = 1 / (1 + 4 d²/Γ_o²)

one 1D MMD² (the V-statistic of :func:`mlegpipe.losses.mmd2`, :func:`columnwise_mmd2`) per observable
``o`` with a Breit–Wigner kernel of full width Γ_o, on the observables a
pipeline declares (``mmd_observables = ["m_W1", "m_t1", ...]``): the generated
ones are computed differentiably on the decoded events
(:meth:`mlegpipe.observables.Observable.tensor`), the training ones once per
training event (:meth:`ObservableMMD.real_values`) and drawn in the same
minibatch. Γ_o defaults to the observable's declared
:class:`~mlegpipe.observables.Peak` width. Events where an observable is
undefined (NaN) are left out of its MMD².

Example:
    >>> import torch
    >>> from mlegpipe.observables import Observable, Peak
    >>> m = Observable("m", lambda b: b.column("m"), ("m",), peak=Peak(80.0, 2.0))
    >>> term = ObservableMMD([m], [2.0], weight=1.0)
    >>> real = torch.tensor([[80.0]], dtype=torch.float64)
    >>> out = {}
    >>> float(term({"m": torch.tensor([81.0], dtype=torch.float64)}, real, out)), out["mmd2_m"]   # 2 - 2 k(1)
    (1.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mlegpipe.data_parallel import MinibatchShard
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError, DataError
from mlegpipe.losses import Kernel, breit_wigner_kernel
from mlegpipe.observables import Observable, ObservableSet
from mlegpipe.schema import suggest

__all__ = ["ObservableMMD", "columnwise_mmd2", "resolve_observables"]


def resolve_observables(names: Sequence[str], *, observables: ObservableSet | None, registry: Any,
                        events: EventBatch, where: str) -> list[Observable]:
    """The observables ``names``: declared by the pipeline, registered by a plugin, automatic for a collection,
    or a field of ``events``.

    Raises:
        ConfigError: a name is none of these (path ``<where>``, with the closest known names).

    Example:
        >>> from mlegpipe.registry import load_plugins
        >>> [o.name for o in resolve_observables(["m_W1"], observables=None, registry=load_plugins(),
        ...                                      events=EventBatch.from_columns({"a": [1.0]}), where="generator")]
        ['m_W1']
    """
    known = observables if observables is not None else ObservableSet(registry=registry)
    out = []
    for name in names:
        found = known.get(name)  # declared, registered, automatic, else a plain field of that name
        plain_field = found.requires == (name,) and name not in known.declared and name not in registry.observables
        if plain_field and not events.has(name):
            names_known = [*known.declared, *(n for n, o in registry.observables.items().items()
                                              if isinstance(o, Observable)), *events.fields]
            raise ConfigError("unknown observable: neither declared in [observables], registered by a plugin, a "
                              "collection's automatic observable nor a field of the training events", path=where,
                              value=name, hint=suggest(name, names_known))
        out.append(found)
    return out


class ObservableMMD:
    """w · Σ_o MMD²_o with Breit–Wigner kernels on declared observables (see the module docstring).

    Arguments:
        observables: the observables, each computable on tensors (:meth:`Observable.tensor`).
        widths: the kernel's full width Γ_o per observable (in the observable's unit).
        weight: w, the term's weight in the generator loss.
        events: generated and training events of each minibatch the MMD² compares (None: all; the cost grows
            as the square).
        scales: the kernel is the sum of Breit–Wigner kernels of widths Γ_o · c for c in ``scales``
            (``[1]``: the paper's; wider ones reach a generated peak still far from the training one).
        where: the TOML path of the generator, for errors.
    """

    def __init__(self, observables: Sequence[Observable], widths: Sequence[float], *, weight: float = 1.0,
                 events: int | None = None, scales: Sequence[float] = (1.0,), where: str = "generator") -> None:
        if len(widths) != len(observables):
            raise ConfigError(f"give one kernel width per observable ({len(observables)}: "
                              + ", ".join(o.name for o in observables) + ")", path=f"{where}.mmd_observable_widths",
                              value=list(widths))
        if any(not (np.isfinite(w) and w > 0) for w in widths):
            raise ConfigError("kernel widths must be positive numbers", path=f"{where}.mmd_observable_widths",
                              value=list(widths))
        self.observables = list(observables)
        self.widths = [float(w) for w in widths]
        self.weight = float(weight)
        self.events = events
        self.scales = [float(c) for c in scales]
        self.where = where

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], *, events: EventBatch, observables: ObservableSet | None,
                      registry: Any, where: str) -> ObservableMMD | None:
        """The term GAN settings ask for (``mmd_observables``, ``mmd_observable_widths``,
        ``mmd_observable_weight``); None without observables or with weight 0 (after checking them).

        Raises:
            ConfigError: an unknown observable; no width for an observable without a declared peak.

        Example:
            >>> from mlegpipe.registry import load_plugins
            >>> term = ObservableMMD.from_settings({"mmd_observables": ["m_W1", "m_t1"]}, observables=None,
            ...                                    registry=load_plugins(), events=EventBatch.from_columns({"a": [1.0]}),
            ...                                    where="generator")
            >>> term.names, term.widths, term.weight
            (['m_W1', 'm_t1'], [2.092, 1.343], 1.0)
        """
        names = list(settings.get("mmd_observables") or [])
        if not names:
            return None
        found = resolve_observables(names, observables=observables, registry=registry, events=events,
                                    where=f"{where}.mmd_observables")
        widths = settings.get("mmd_observable_widths")
        if widths is None:
            missing = [o.name for o in found if o.peak is None]
            if missing:
                raise ConfigError(f"observable {missing[0]!r} declares no resonance peak, so its Breit–Wigner kernel "
                                  "has no default width: give mmd_observable_widths, one full width per observable "
                                  f"({', '.join(names)})", path=f"{where}.mmd_observable_widths", value=None)
            widths = [o.peak.width for o in found]
        weight = settings.get("mmd_observable_weight")
        term = cls(found, list(widths), weight=1.0 if weight is None else float(weight),
                   events=settings.get("mmd_observable_events"),
                   scales=settings.get("mmd_observable_scales") or (1.0,), where=where)
        return term if term.weight > 0 else None  # the ablation: checked, then left out of the loss

    @property
    def names(self) -> list[str]:
        """The observables' names."""
        return [o.name for o in self.observables]

    def real_values(self, events: EventBatch) -> torch.Tensor:
        """The observables of the training events, ``(n, len(observables))`` float64 (NaN where undefined).

        Raises:
            DataError: an observable cannot be computed for these events (a collection they lack, a particle
                index beyond every event's multiplicity), or is undefined for all of them.
        """
        columns = []
        for obs in self.observables:
            try:
                with np.errstate(invalid="ignore", divide="ignore"):
                    values = obs(events)
            except (DataError, ConfigError) as err:
                raise DataError(f"observable {obs.name!r} cannot be computed for the training events: {err.message}",
                                path=f"{self.where}.mmd_observables", value=obs.name, hint=err.hint) from None
            if len(values) and not np.isfinite(values).any():
                raise DataError(f"observable {obs.name!r} is undefined (NaN) for every training event",
                                path=f"{self.where}.mmd_observables", value=obs.name)
            columns.append(np.asarray(values, dtype=np.float64))
        return torch.from_numpy(np.stack(columns, axis=1))

    def generated_values(self, columns: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """Each observable of events given as tensors by field name (differentiable).

        Raises:
            ConfigError: an observable is a NumPy function that cannot run on tensors (path ``<where>.mmd_observables``).
            DataError: the decoded events lack what an observable needs.
        """
        out = []
        for obs in self.observables:
            try:
                out.append(obs.tensor(columns))
            except ConfigError as err:
                raise ConfigError(f"{err.message}; the MMD² term needs observables computed on tensors",
                                  path=f"{self.where}.mmd_observables", value=obs.name, hint=err.hint) from None
            except DataError as err:
                raise DataError(f"observable {obs.name!r} cannot be computed on the generated events: {err.message}",
                                path=f"{self.where}.mmd_observables", value=obs.name, hint=err.hint) from None
        return out

    def __call__(self, columns: Mapping[str, torch.Tensor], real: torch.Tensor,
                 out: dict[str, float] | None = None, shard: MinibatchShard | None = None) -> torch.Tensor:
        """w · Σ_o MMD²_o between the observables of the generated ``columns`` and the ``real`` values
        ``(m, len(observables))`` of a training minibatch; records each MMD² as ``out["mmd2_<name>"]``.

        The first :attr:`events` of each side enter, in units of each kernel's width and centred on the
        training values' mean (the kernel sees differences only: single precision suffices). Generated fields
        that are NaN for every event (a diverged generator) give a NaN term.

        Data-parallel training passes this rank's ``shard``: ``columns`` are then the shard's generated events and
        ``real`` the global batch's values; the generated observables are gathered into the global batch (with
        gradients through this rank's events) and the MMD² is the one-process value, on every rank.
        """
        cut = slice(0, self.events)
        finite = [bool(torch.isfinite(v).any()) for v in columns.values()]
        if shard is not None and shard.distributed:  # NaN for every event of the global batch
            finite = shard.any(torch.tensor(finite, dtype=torch.bool)).tolist()
        if not all(finite):
            return torch.tensor(float("nan"))  # a diverged generator: the training loop reports it as such
        fake = torch.stack(self.generated_values(columns), dim=1)
        fake = (fake if shard is None else shard.gather(fake))[cut]
        real = real[cut]
        with torch.no_grad():
            centre = torch.nan_to_num(real.nanmean(dim=0))
        widths = torch.tensor(self.widths, dtype=real.dtype)
        terms = columnwise_mmd2(((fake - centre) / widths).float(), ((real - centre) / widths).float(),
                                breit_wigner_kernel(self.scales))
        if out is not None:
            out.update({f"mmd2_{name}": float(t) for name, t in zip(self.names, terms.detach(), strict=True)})
        return self.weight * terms.sum()


def columnwise_mmd2(x: torch.Tensor, y: torch.Tensor, kernel: Kernel) -> torch.Tensor:
    """The MMD² of each column of ``x`` ``(n, k)`` against the same column of ``y`` ``(m, k)``: ``(k,)``.

    The biased V-statistic of :func:`mlegpipe.losses.mmd2` with the same ``kernel``
    (a function of squared distances), for k one-dimensional samples at once: the
    three blocks k(x, x'), k(x, y), k(y, y') are built directly, the last without a
    gradient (the training values have none), which is several times faster than
    the joint matrix. NaN entries (an observable undefined for an event) are left out
    of their column; a column empty on either side gives 0.

    Example:
        >>> from mlegpipe.losses import mmd2
        >>> x = torch.tensor([[0.0, 1.0], [1.0, float("nan")]])
        >>> y = torch.tensor([[0.5, 1.0], [2.0, 3.0]])
        >>> k = breit_wigner_kernel([2.0])
        >>> got = columnwise_mmd2(x, y, k)
        >>> bool(torch.allclose(got, torch.stack([mmd2(x[:, :1], y[:, :1], kernel=k),
        ...                                       mmd2(x[:1, 1:], y[:, 1:], kernel=k)])))
        True
    """
    wx, wy = torch.isfinite(x).to(x.dtype), torch.isfinite(y).to(y.dtype)
    x, y = torch.where(wx > 0, x, torch.zeros_like(x)), torch.where(wy > 0, y, torch.zeros_like(y))

    def block(a: torch.Tensor, wa: torch.Tensor, b: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        a, b, wa, wb = a.T, b.T, wa.T, wb.T  # (k, n)
        k = kernel((a[:, :, None] - b[:, None, :]) ** 2)
        pairs = wa.sum(dim=1) * wb.sum(dim=1)
        total = torch.einsum("kn,knm,km->k", wa, k, wb)
        return torch.where(pairs > 0, total / pairs.clamp_min(1.0), torch.zeros_like(total))

    with torch.no_grad():
        kyy = block(y, wy, y, wy)
    out = block(x, wx, x, wx) + kyy - 2.0 * block(x, wx, y, wy)
    empty = (wx.sum(dim=0) == 0) | (wy.sum(dim=0) == 0)
    return torch.where(empty, torch.zeros_like(out), out)
