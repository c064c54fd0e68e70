"""Truth sources for the toy densities: camel, ring, shell5d, vertex-gauss, vertex-uniform.

Each source samples its :mod:`mlegpipe.toys` density in fixed blocks of
:data:`BLOCK_EVENTS` events, block ``i`` drawn from ``ctx.rng("sample", i)``,
so the events depend only on the pipeline seed, and asking for more events
only appends to the sample. Its
:meth:`exact_density` hands the toy (exact pdf and quantile cells) to the
metrics.

Example:
    >>> from mlegpipe.context import StageContext
    >>> src = CamelSource(CamelSource.Params(events=5), StageContext("truth", seed=1))
    >>> src.read().fields, len(src.read())
    (['x'], 5)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from tqdm import tqdm

from mlegpipe import hookimpl
from mlegpipe.events import EventBatch
from mlegpipe.exceptions import ConfigError
from mlegpipe.schema import param
from mlegpipe.stages import TruthSource
from mlegpipe.toys import CamelBack, GaussianShell, ToyDensity, VertexGaussian, VertexUniform

__all__ = [
    "BLOCK_EVENTS",
    "CamelSource",
    "RingSource",
    "Shell5DSource",
    "ToySource",
    "VertexGaussSource",
    "VertexUniformSource",
]

#: Events per random-stream block (fixed, so results never depend on chunking).
BLOCK_EVENTS = 50_000


class ToySource(TruthSource):
    """Common sampling loop of the toy sources; subclasses build the density in :meth:`make_toy`."""


    def __init__(self, params: Any, ctx: Any) -> None:
        super().__init__(params, ctx)
        try:
            self.toy = self.make_toy()
        except ValueError as err:
            raise ConfigError(str(err), path=ctx.name) from None

    def make_toy(self) -> ToyDensity:
        """The density configured by ``self.params``."""
        raise NotImplementedError

    def iter_batches(self) -> Iterator[EventBatch]:
        n_total = self.params.events
        meta = {"generator": f"mlegpipe toys/{self.plugin_name}", "seed": self.ctx.seed, **self.toy.describe(),
                "params": asdict(self.params)}
        n_blocks = -(-n_total // BLOCK_EVENTS)
        for block in tqdm(range(n_blocks), desc=f"{self.ctx.name}: {self.plugin_name}", unit="block",
                          disable=not self.ctx.progress):
            n = min(BLOCK_EVENTS, n_total - block * BLOCK_EVENTS)
            # a whole block is always drawn, so a larger event count only appends events
            points = self.toy.sample(BLOCK_EVENTS, self.ctx.rng("sample", block))[:n]
            yield EventBatch.from_matrix(points, self.toy.features, meta=meta)

    def exact_density(self) -> ToyDensity:
        """The toy density (exact ``pdf``, ``quantile_edges``, ``quantile_index``)."""
        return self.toy

    def info(self) -> dict[str, Any]:
        return self.toy.describe()


class CamelSource(ToySource):
    """1D camel back (seed 002 eq. 1): (N(-mu, sigma) + N(mu, sigma)) / 2, feature ``x``."""

    plugin_name: ClassVar[str] = "camel"

    @dataclass
    class Params:
        events: int = param(100_000, min=1, doc="number of events")
        mu: float = param(4.0, doc="the two peaks sit at -mu and +mu")
        sigma: float = param(1.0, min=0.0, exclusive_min=True, doc="width of each peak")

    def make_toy(self) -> ToyDensity:
        return CamelBack(self.params.mu, self.params.sigma)


@dataclass
class _ShellParams:
    events: int = param(100_000, min=1, doc="number of events")
    mu: float = param(4.0, doc="radius of the shell: P(r) = N(r; mu, sigma) + N(r; -mu, sigma)")
    sigma: float = param(1.0, min=0.0, exclusive_min=True, doc="radial width")


class RingSource(ToySource):
    """2D Gaussian ring (seed 002 eq. 3): Gaussian radial profile, uniform angle, features ``x, y``."""

    plugin_name: ClassVar[str] = "ring"
    Params = _ShellParams

    def make_toy(self) -> ToyDensity:
        return GaussianShell(2, self.params.mu, self.params.sigma)


class Shell5DSource(ToySource):
    """5D Gaussian spherical shell (seed 002 eq. 4), isotropic, features ``x1 … x5``."""

    plugin_name: ClassVar[str] = "shell5d"
    Params = _ShellParams

    def make_toy(self) -> ToyDensity:
        return GaussianShell(5, self.params.mu, self.params.sigma)


class VertexGaussSource(ToySource):
    """Thesis ch. 6.3 toy1: Gaussian vertex-level features ``v1 … vD`` (folding training sample), independent or
    pairwise correlated (``correlation``; e.g. two correlated observables to unfold in ``pipelines/unfold_toy.toml``).

    Example:
        >>> from mlegpipe.context import StageContext
        >>> src = VertexGaussSource(VertexGaussSource.Params(events=4, correlation=0.5), StageContext("truth", seed=1))
        >>> src.read().fields, src.info()["correlation"]
        (['v1', 'v2'], 0.5)
    """

    plugin_name: ClassVar[str] = "vertex-gauss"

    @dataclass
    class Params:
        events: int = param(100_000, min=1, doc="number of events")
        dim: int = param(2, min=1, max=64, doc="number of features v1 ... vD")
        mean: float = param(0.0, doc="mean of every feature")
        sigma: float = param(1.0, min=0.0, exclusive_min=True, doc="standard deviation of every feature")
        correlation: float = param(0.0, doc="correlation coefficient ρ of every pair of features, "
                                   "-1/(dim-1) < ρ < 1 (0: independent features, the very events drawn without it)")

    def make_toy(self) -> ToyDensity:
        """The Gaussian toy.

        Raises:
            ConfigError: ``correlation`` outside (−1/(dim − 1), 1), naming ``<section>.correlation``.
        """
        p = self.params
        try:
            return VertexGaussian(p.dim, p.mean, p.sigma, p.correlation)
        except ValueError as err:
            raise ConfigError(str(err), path=f"{self.ctx.name}.correlation", value=p.correlation) from None


class VertexUniformSource(ToySource):
    """Thesis ch. 6.3 toy2: uniform vertex-level features ``v1 … vD`` in [low, high] (folding test sample)."""

    plugin_name: ClassVar[str] = "vertex-uniform"

    @dataclass
    class Params:
        events: int = param(100_000, min=1, doc="number of events")
        dim: int = param(2, min=1, max=64, doc="number of features v1 ... vD")
        low: float = param(-2.0, doc="lower edge of every feature")
        high: float = param(2.0, doc="upper edge of every feature (> low)")

        def __post_init__(self) -> None:
            if not self.high > self.low:
                raise ValueError(f"high = {self.high} must be above low = {self.low}")

    def make_toy(self) -> ToyDensity:
        return VertexUniform(self.params.dim, self.params.low, self.params.high)


@hookimpl
def mlegpipe_register_stages(registry: Any) -> None:
    """Register the five toy truth sources."""
    for cls in (CamelSource, RingSource, Shell5DSource, VertexGaussSource, VertexUniformSource):
        registry.add(cls)
