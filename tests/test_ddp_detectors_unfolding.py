"""Data-parallel training of the learned surrogates and of gan-unfold: 2 gloo ranks reproduce one process.

Every rank runs the same stage with the same seed; the trainers draw each global batch and its
noise as one process does, keep their rows and combine the gradients over ranks before every
optimizer step (``mlegpipe.data_parallel``). The trainers run a few steps with
tiny networks and odd global batches (uneven shares), through the registry's public stage API,
once on 2 ranks (one ``mp.spawn``) and once here; the weights must agree to float32 reduction
order. The surrogate gan-unfold trains through is trained once here and loaded by every process,
so that the unfolding comparison does not inherit the surrogate's own rounding differences.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ranks import free_port, join

from mlegpipe import distributed as ddp
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.registry import Registry, load_plugins
from mlegpipe.stages import RunRecord, UnfoldingInputs

STEPS = 8
SURROGATE_BATCH = 101  # odd: the ranks hold 51 and 50 pairs
UNFOLD_BATCH = 65      # odd, and thinned by the surrogate's acceptance: uneven numbers of fakes per rank
#: (plugin, extra parameters): dropout 0.1 in the cfold critic, MMD², energy score, head score, WGAN-GP penalty
SURROGATES: dict[str, tuple[str, dict[str, Any]]] = {
    "cfold": ("cfold", {"head_weight": 1.0}),
    "cfold-wgan-gp": ("cfold", {"loss": "wgan-gp", "critic_steps": 2}),
    "dfold": ("dfold", {}),
    "flowfold": ("flowfold", {"transforms": 1}),
}
#: gan-unfold's G_v kinds: a flow (maximum-likelihood pretraining, MMD² match term) and an MLP (sliced
#: Wasserstein pretraining and match term)
GENERATORS: dict[str, dict[str, Any]] = {
    "flow": {"generator": "flow", "flow_transforms": 1},
    "mlp": {"generator": "mlp", "layers": 2, "pretrain_loss": "sliced", "match_loss": "sliced"},
}
# float32 sums in another order: measured max |Δw| 3e-8 (surrogates) to 1.5e-7 (flow G_v) after these steps,
# against 2e-3 without the global dropout masks, 6e-3 without the global pass draws, and 5e-5 when a batch
# term's gradients are averaged instead of summed over the ranks (Adam hides most of that factor 2)
RTOL, ATOL = 1e-5, 1e-6


def _registry() -> Registry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_plugins()


def _pairs() -> tuple[EventBatch, EventBatch]:
    """Simulated (vertex, detector) pairs with a pass flag (the acceptance classifiers train too)."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=3000)
    b = 0.5 * a + rng.normal(size=3000)
    vertex = EventBatch.from_columns({"a": a, "b": b})
    detector = EventBatch.from_columns({"a": a + 0.3 * rng.normal(size=3000), "b": b + 0.3 * rng.normal(size=3000),
                                        "measured": np.abs(a) < 1.6})
    return vertex, detector


def _surrogate_params(extra: dict[str, Any]) -> dict[str, Any]:
    return {"vertex_features": ["a", "b"], "steps": STEPS, "batch_size": SURROGATE_BATCH, "validate_every": 4,
            "hidden": 16, "layers": 2, "acceptance_steps": 5, **extra}


def _fit_surrogates(reg: Registry) -> dict[str, dict[str, torch.Tensor]]:
    """Each surrogate's network and acceptance classifier after a few steps of ``fit``."""
    vertex, detector = _pairs()
    out = {}
    for name, (plugin, extra) in SURROGATES.items():
        cls = reg.get("detector", plugin).cls
        det = cls(cls.Params(**_surrogate_params(extra)), StageContext("detector", seed=4))
        det.fit(vertex, detector)
        out[name] = {f"model.{k}": v.clone() for k, v in det.model.state_dict().items()}
        out[name].update({f"acceptance.{k}": v.clone() for k, v in det.acceptance_net.state_dict().items()})
    return out


def _load_surrogate(reg: Registry, state: dict[str, Any]) -> Any:
    cls = reg.get("detector", "cfold").cls
    det = cls(cls.Params(**_surrogate_params({})), StageContext("surrogate", seed=1))
    det.load_state_dict(state)
    return det


@contextmanager
def _captured_generators() -> Iterator[list[dict[str, torch.Tensor]]]:
    """The trained G_v of every replica, as gan-unfold's replicas return them."""
    from mlegpipe_builtins.unfolding._adversarial import AdversarialTraining

    nets: list[dict[str, torch.Tensor]] = []
    original: Callable[..., Any] = AdversarialTraining.train

    def spy(self: AdversarialTraining, *args: Any, **kwargs: Any) -> Any:
        trained = original(self, *args, **kwargs)
        nets.append({k: v.detach().clone() for k, v in trained.net.state_dict().items()})
        return trained

    AdversarialTraining.train = spy  # type: ignore[method-assign]
    try:
        yield nets
    finally:
        AdversarialTraining.train = original  # type: ignore[method-assign]


def _gan_unfold(reg: Registry, surrogate_state: dict[str, Any], kind: str, distribute: str) -> dict[str, Any]:
    """gan-unfold's G_v per replica and its unfolded events (2 replicas, a few steps)."""
    surrogate = _load_surrogate(reg, surrogate_state)
    vertex, detector = _pairs()
    truth, data = vertex.take(slice(0, 1500)), detector.take(slice(0, 1500))
    cls = reg.get("unfolding", "gan-unfold").cls
    params = cls.Params(steps=STEPS, replicas=2, batch_size=UNFOLD_BATCH, validate_every=4, observables=["a", "b"],
                        bins=10, baselines=[], events=300, plots=False, pretrain_steps=4, hidden=16,
                        surrogate_uncertainty=False, distribute=distribute, **GENERATORS[kind])
    stage = cls(params, StageContext("unfolding", seed=2))
    record = RunRecord(config={}, samples={"sim": vertex, "sim_det": detector, "truth": truth, "data": data},
                       stages={"surrogate": surrogate, "unfolding": stage}, metrics={}, histories={}, timings={})
    inputs = UnfoldingInputs(data, "data", surrogate, "surrogate", truth, "truth", (vertex, detector),
                             ["sim", "sim_det"])
    with _captured_generators() as nets:
        out = stage.unfold(inputs, record)
    return {"nets": nets, "events": {name: torch.as_tensor(out[name].column("a")) for name in out}}


def _omnifold_weights() -> torch.Tensor:
    """OmniFold's reweighting classifier (odd batch: the ranks hold 51 and 50 events of each minibatch)."""
    from mlegpipe.unfold.omnifold import classifier_weights

    rng = np.random.default_rng(5)
    target, source = rng.normal(0.3, 1.0, (1500, 2)), rng.normal(0.0, 1.0, (1500, 2))
    return torch.as_tensor(classifier_weights(target, source, generator=torch.Generator().manual_seed(2), epochs=2,
                                              batch_size=101))


def _everything(surrogate_state: dict[str, Any], distributes: tuple[str, ...]) -> dict[str, Any]:
    reg = _registry()
    result: dict[str, Any] = {"surrogates": _fit_surrogates(reg), "omnifold": _omnifold_weights()}
    for kind in GENERATORS:
        for distribute in distributes:
            result[f"{kind}-{distribute}"] = _gan_unfold(reg, surrogate_state, kind, distribute)
    return result


def _worker(rank: int, world: int, port: int, surrogate_file: str, out: str) -> None:
    join(rank, world, port, timeout_s=120)
    try:
        state = torch.load(surrogate_file, weights_only=False)
        result = _everything(state, ("batches", "replicas"))
        result["rank"] = ddp.rank()
        ddp.rank_zero_only(torch.save)(result, out)
        ddp.barrier()
    finally:
        ddp.shutdown()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """``{"two": 2-rank results (rank 0's), "one": this process's, "initial": untrained G_v weights}``."""
    folder = tmp_path_factory.mktemp("ddp-fold")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reg = _registry()
        vertex, detector = _pairs()
        cls = reg.get("detector", "cfold").cls
        surrogate = cls(cls.Params(**_surrogate_params({"steps": 30})), StageContext("surrogate", seed=1))
        surrogate.fit(vertex, detector)
        state = surrogate.state_dict()
        torch.save(state, folder / "surrogate.pt")
        mp.spawn(_worker, args=(2, free_port(), str(folder / "surrogate.pt"), str(folder / "rank0.pt")), nprocs=2,
                 join=True)
        one = _everything(state, ("batches",))
    finally:
        torch.set_num_threads(before)
    return {"two": torch.load(Path(folder / "rank0.pt"), weights_only=False), "one": one}


def _max_relative(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float(((a[k] - b[k]).abs() / (b[k].abs() + 1e-3)).max()) for k in b if b[k].is_floating_point())


@pytest.mark.parametrize("name", list(SURROGATES))
def test_surrogates_train_data_parallel_like_one_process(results: dict[str, dict[str, Any]], name: str) -> None:
    two, one = results["two"]["surrogates"][name], results["one"]["surrogates"][name]
    assert results["two"]["rank"] == 0
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=RTOL, atol=ATOL, msg=f"{name}: {key}")
    # training moved the weights (the comparison is not between untouched initializations)
    cls = _registry().get("detector", SURROGATES[name][0]).cls
    fresh = cls(cls.Params(**_surrogate_params(SURROGATES[name][1])), StageContext("detector", seed=4))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(fresh.ctx.torch_seed("init"))
        untouched = {k: v.detach() for k, v in fresh._build(2, 2).named_parameters()}
    moved = max(float((one[f"model.{k}"] - v).abs().max()) for k, v in untouched.items())
    assert moved > 1e-3


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_gan_unfold_generators_train_data_parallel_like_one_process(results: dict[str, dict[str, Any]],
                                                                    kind: str) -> None:
    two, one = results["two"][f"{kind}-batches"], results["one"][f"{kind}-batches"]
    assert len(two["nets"]) == len(one["nets"]) == 2  # both replicas, trained by both ranks
    for r, (net2, net1) in enumerate(zip(two["nets"], one["nets"], strict=True)):
        for key, value in net1.items():
            torch.testing.assert_close(net2[key], value, rtol=RTOL, atol=ATOL, msg=f"{kind} replica {r}: {key}")
    first, second = one["nets"]  # the replicas differ: each net is compared with its own replica's
    assert any(not torch.equal(first[k], second[k]) for k in first if first[k].is_floating_point())


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_replicas_split_over_ranks_give_one_process_events_exactly(results: dict[str, dict[str, Any]],
                                                                  kind: str) -> None:
    two, one = results["two"][f"{kind}-replicas"], results["one"][f"{kind}-batches"]
    assert len(two["nets"]) == 1  # rank 0 trained replica 0 alone; rank 1 replica 1
    for key, value in one["nets"][0].items():
        assert torch.equal(two["nets"][0][key], value), key
    for sample, values in one["events"].items():
        assert torch.equal(two["events"][sample], values), sample


def test_omnifold_classifier_weights_reproduce_one_process(results: dict[str, dict[str, Any]]) -> None:
    two, one = results["two"]["omnifold"], results["one"]["omnifold"]
    assert float(((two - one).abs() / one.abs()).max()) < 1e-5
    assert float(one.std()) > 0.01  # a trained reweighting, not a constant
