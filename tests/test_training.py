"""The training loop: exact resume, NaN guard, best-state selection, progress, sampling, bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlegpipe.checkpoint import load_checkpoint
from mlegpipe.context import StageContext
from mlegpipe.exceptions import CheckpointError, ConfigError, TrainingError
from mlegpipe.training import MinibatchSampler, TrainLoop, bootstrap_indices, cosine_schedule, train_ensemble


class _Stop(Exception):
    """Simulates a killed job."""


def _setup(seed: int, run_dir=None, name: str = "generator", stop_at: int | None = None,  # noqa: ANN001
           nan_at: int | None = None, progress: bool = False):  # noqa: ANN202
    """A small regression with dropout (global RNG), minibatches (own generator) and Adam."""
    torch.manual_seed(seed)  # a different init per call: resume must overwrite it
    data_gen = torch.Generator().manual_seed(11)
    x = torch.randn(512, 2, generator=data_gen)
    y = (x[:, :1] * 2 - x[:, 1:] ** 2)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    batches = torch.Generator().manual_seed(12)
    sampler = MinibatchSampler(x, y, batch_size=64, generator=batches)
    noise = np.random.default_rng(13)

    def step(i: int) -> dict[str, float]:
        if stop_at is not None and i == stop_at:
            raise _Stop
        xb, yb = sampler()
        jitter = torch.from_numpy(noise.normal(0, 0.01, size=(len(xb), 1))).float()
        opt.zero_grad()
        loss = ((net(xb) - yb - jitter) ** 2).mean()
        loss.backward()
        opt.step()
        return {"mse": float("nan") if i == nan_at else loss.item()}

    def validate(i: int) -> float:
        net.eval()
        with torch.no_grad():
            v = ((net(x) - y) ** 2).mean().item()
        net.train()
        return v

    ctx = StageContext(name, seed=1, run_dir=run_dir, progress=progress)
    loop = TrainLoop(ctx, step, 60, modules={"net": net}, optimizers={"opt": opt}, validate_fn=validate,
                     validate_every=15, lr_schedule=cosine_schedule(60, warmup=5), checkpoint_every=20,
                     generators={"batches": batches}, rngs={"noise": noise})
    return loop, net


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path) -> None:  # noqa: ANN001
    full, net_full = _setup(0, tmp_path / "a")
    history_full = full.run()
    broken, _ = _setup(0, tmp_path / "b", stop_at=47)
    with pytest.raises(_Stop):
        broken.run()
    assert load_checkpoint(broken.last_path).metadata["step"] == 40
    resumed, net_resumed = _setup(99, tmp_path / "b")  # another init: everything must come from the checkpoint
    history_resumed = resumed.run(resume=True)
    for a, b in zip(net_full.state_dict().values(), net_resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert history_resumed == history_full
    assert resumed.best_step == full.best_step and resumed.best_metric == full.best_metric


def test_nan_raises_naming_stage_and_step_and_keeps_last_good_checkpoint(tmp_path) -> None:  # noqa: ANN001
    loop, net = _setup(0, tmp_path, name="flow-gen", nan_at=33)
    with pytest.raises(TrainingError) as err:
        loop.run()
    message = str(err.value)
    assert "flow-gen" in message and "step 34 of 60" in message and "'mse'" in message
    assert "step 20" in message and str(loop.last_path) in message
    ckpt = load_checkpoint(loop.last_path)
    assert ckpt.metadata["step"] == 20
    for name, value in net.state_dict().items():  # the last good weights are back in the model
        assert torch.equal(value, ckpt.state["modules"]["net"][name])


def test_nonfinite_metric_is_caught() -> None:
    net = torch.nn.Linear(1, 1)
    loop = TrainLoop(StageContext("unf"), lambda i: {"loss": 1.0}, 10, modules={"net": net},
                     validate_fn=lambda i: math.inf, validate_every=5)
    with pytest.raises(TrainingError, match="unf.*metric.*inf at step 5"):
        loop.run()


def test_best_state_is_selected_and_restored() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    metrics = iter([5.0, 2.0, 3.0, 4.0])
    seen: dict[int, float] = {}

    def step(i: int) -> dict[str, float]:
        opt.zero_grad()
        loss = (net.weight - 10.0).pow(2).sum()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    def validate(i: int) -> dict[str, float]:
        seen[i + 1] = net.weight.item()
        return {"metric": next(metrics), "other": 1.0}

    loop = TrainLoop(StageContext("g"), step, 40, modules={"net": net}, optimizers={"opt": opt},
                     validate_fn=validate, validate_every=10)
    history = loop.run()
    assert (loop.best_step, loop.best_metric) == (20, 2.0)
    assert net.weight.item() == seen[20] != seen[40]
    assert [h["metric"] for h in history if "metric" in h] == [5.0, 2.0, 3.0, 4.0]
    assert history[19]["other"] == 1.0 and "metric" not in history[18]


def test_lr_schedule_is_applied() -> None:
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    sched = cosine_schedule(20, warmup=4, final=0.1)
    history = TrainLoop(StageContext("g"), lambda i: {"loss": 0.0}, 20, modules={"net": net},
                        optimizers={"opt": opt}, lr_schedule=sched).run()
    assert [h["lr"] for h in history] == pytest.approx([0.5 * sched(i) for i in range(20)])
    assert history[0]["lr"] == pytest.approx(0.125) and history[-1]["lr"] == pytest.approx(0.05)


def test_progress_bar_only_when_asked(capsys) -> None:  # noqa: ANN001
    net = torch.nn.Linear(1, 1)
    TrainLoop(StageContext("quiet"), lambda i: {"loss": 1.0}, 30, modules={"net": net}).run()
    assert capsys.readouterr().err == ""
    TrainLoop(StageContext("loud", progress=True), lambda i: {"loss": 1.0}, 30, modules={"net": net},
              validate_fn=lambda i: 0.5, validate_every=10).run()
    err = capsys.readouterr().err
    assert "loud" in err and "/30" in err


def test_resume_refuses_another_stages_checkpoint(tmp_path) -> None:  # noqa: ANN001
    loop, _ = _setup(0, tmp_path, name="first")
    loop.run()
    other, _ = _setup(0, tmp_path, name="second")
    with pytest.raises(CheckpointError, match="'first'.*'second'"):
        other.run(resume=loop.last_path)


def test_bad_settings_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="gen.steps"):
        TrainLoop(StageContext("gen"), lambda i: {}, -1, modules={})


# -- minibatches and bootstrap --------------------------------------------------------------------------
def test_minibatch_sampler_is_reproducible_and_aligned() -> None:
    x = torch.arange(1000.0)
    draws = [MinibatchSampler(x, 2 * x, batch_size=50, generator=torch.Generator().manual_seed(3))()
             for _ in range(2)]
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], 2 * draws[0][0])
    small = MinibatchSampler(x[:10], batch_size=8, generator=torch.Generator().manual_seed(0))()[0]
    assert len(set(small.tolist())) == 8  # a batch close to the sample size has no repeats


def test_weighted_sampling_follows_the_weights() -> None:
    w = torch.tensor([1.0, 3.0])
    sampler = MinibatchSampler(torch.tensor([0.0, 1.0]), batch_size=2, weights=w,
                               generator=torch.Generator().manual_seed(0))
    mean = torch.cat([sampler()[0] for _ in range(5000)]).mean().item()
    assert mean == pytest.approx(0.75, abs=0.01)  # 5 sigma ~ 0.01 for 10^4 draws


def test_bootstrap_indices_statistics_and_stability() -> None:
    idx = bootstrap_indices(20_000, 4, seed=5)
    assert idx.shape == (4, 20_000)
    unique = [len(np.unique(r)) / 20_000 for r in idx]
    assert unique == pytest.approx([1 - math.exp(-1)] * 4, abs=0.01)  # a resample holds ~63.2% distinct events
    assert not np.array_equal(idx[0], idx[1])
    np.testing.assert_array_equal(idx, bootstrap_indices(20_000, 4, seed=5))
    np.testing.assert_array_equal(idx[:2], bootstrap_indices(20_000, 2, seed=5))
    sizes = train_ensemble(lambda r, i: (r, len(i)), 7, 3, seed=0)
    assert sizes == [(0, 7), (1, 7), (2, 7)]


def test_resume_skips_or_refuses_a_checkpoint_of_another_configuration(tmp_path) -> None:  # noqa: ANN001
    net = torch.nn.Linear(1, 1)
    ctx = StageContext("gen", run_dir=tmp_path)
    first = TrainLoop(ctx, lambda i: {"loss": 1.0}, 10, modules={"net": net}, checkpoint_every=5, fingerprint="a")
    first.run()
    calls: list[int] = []
    other = TrainLoop(ctx, lambda i: calls.append(i) or {"loss": 1.0}, 10, modules={"net": net}, checkpoint_every=5,
                      fingerprint="b")
    other.run(resume=True)  # another configuration: starts from scratch instead of resuming
    assert calls == list(range(10))
    with pytest.raises(CheckpointError, match="another configuration"):
        TrainLoop(ctx, lambda i: {"loss": 1.0}, 10, modules={"net": net}, fingerprint="c").run(resume=first.last_path)
