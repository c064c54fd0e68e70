"""Data-parallel training: a 2-process gloo run reproduces the 1-process run with the same global batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import zuko
from ranks import free_port, join

from mlegpipe import distributed as ddp
from mlegpipe.context import StageContext
from mlegpipe.exceptions import ConfigError
from mlegpipe.training import MinibatchSampler, TrainLoop

STEPS = 6
GLOBAL_BATCH = 257  # odd: the ranks hold 129 and 128 events, so the event-weighted average matters


def _data() -> torch.Tensor:
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2000, 2, generator=gen)
    return torch.stack([x[:, 0], 0.5 * x[:, 0] ** 2 + 0.3 * x[:, 1]], dim=1)


def _train_flow() -> dict[str, torch.Tensor]:
    """A tiny MAF trained through TrainLoop + MinibatchSampler, the way the generators train."""
    ctx = StageContext("generator", seed=5)
    torch.manual_seed(ctx.torch_seed("init"))
    flow = zuko.flows.MAF(2, transforms=2, hidden_features=(16,))
    batches = ctx.torch_generator("batches")
    sampler = MinibatchSampler(_data(), batch_size=GLOBAL_BATCH, generator=batches)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2)

    def step(i: int) -> dict[str, float]:
        (z,) = ddp.shard_minibatch(sampler())
        opt.zero_grad(set_to_none=True)
        loss = -flow().log_prob(z).mean()
        loss.backward()
        ddp.sync_gradients(flow.parameters(), len(z))
        opt.step()
        return {"nll": ddp.all_reduce_mean(loss.item(), len(z))}

    TrainLoop(ctx, step, STEPS, modules={"flow": flow}, optimizers={"opt": opt}, generators={"batches": batches}).run()
    return {k: v.detach().clone() for k, v in flow.state_dict().items()}


def _train_ddp_mlp() -> dict[str, torch.Tensor]:
    """A plain MLP regression wrapped in DistributedDataParallel (plain module in one process)."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(1, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    model = ddp.wrap_ddp(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = _data()
    for i in range(STEPS):
        x, y = ddp.shard_minibatch((data[i * 256:(i + 1) * 256, :1], data[i * 256:(i + 1) * 256, 1:]))
        opt.zero_grad()
        ((model(x) - y) ** 2).mean().backward()  # DDP averages over ranks: equal shards (128 + 128)
        opt.step()
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _train_flow_generator() -> dict[str, torch.Tensor]:
    """The ``flow`` generator plugin itself, a few steps on DIS events (its fit shards and syncs when distributed)."""
    import warnings

    from mlegpipe.registry import load_plugins
    from mlegpipe.schema import build_params

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = load_plugins()
    dis = reg.get("truth", "dis").cls
    truth = dis(build_params(dis.Params, {"events": 2500, "beams": "hera"}, "truth"), StageContext("truth", seed=1)).read()
    cls = reg.get("generator", "flow").cls
    params = build_params(cls.Params, {"flow": "maf", "transforms": 1, "hidden": [16], "steps": STEPS,
                                       "batch_size": GLOBAL_BATCH, "validate_every": 0, "checkpoint_every": 0},
                          "generator")
    gen = cls(params, StageContext("generator", seed=8))
    gen.fit(truth.take(slice(0, 2000)), truth.take(slice(2000, None)))
    return {k: v.detach().clone() for k, v in gen.flows[0].state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    env = join(rank, world, port, timeout_s=60)
    try:
        assert ddp.is_distributed() and ddp.rank() == env.rank and ddp.world_size() == world
        result = {"flow": _train_flow(), "mlp": _train_ddp_mlp(), "generator": _train_flow_generator(),
                  "rank": ddp.rank()}
        ddp.rank_zero_only(torch.save)(result, out)  # only rank 0 writes
        ddp.barrier()
    finally:
        ddp.shutdown()


@pytest.fixture(scope="module")
def two_process_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ddp") / "rank0.pt"
    mp.spawn(_worker, args=(2, free_port(), str(out)), nprocs=2, join=True)
    return torch.load(out, weights_only=True)


def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(two_process_result: dict) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _train_flow()
    finally:
        torch.set_num_threads(before)
    assert two_process_result["rank"] == 0  # the file came from rank 0 only
    for name, value in single.items():
        # float32 sums in another order: agreement to ~1e-6 relative after 6 Adam steps
        torch.testing.assert_close(two_process_result["flow"][name], value, rtol=1e-4, atol=2e-5, msg=name)
    # and training did move the weights (the comparison is not between two untouched initializations)
    torch.manual_seed(StageContext("generator", seed=5).torch_seed("init"))
    untouched = zuko.flows.MAF(2, transforms=2, hidden_features=(16,)).state_dict()
    moved = max(float((single[k] - untouched[k]).abs().max()) for k in single if single[k].is_floating_point())
    assert moved > 1e-3


def test_ddp_wrapped_module_matches_one_process(two_process_result: dict) -> None:
    single = _train_ddp_mlp()
    for name, value in single.items():
        torch.testing.assert_close(two_process_result["mlp"][name], value, rtol=1e-4, atol=1e-6, msg=name)


def test_flow_generator_plugin_trains_data_parallel(two_process_result: dict) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _train_flow_generator()
    finally:
        torch.set_num_threads(before)
    for name, value in single.items():
        torch.testing.assert_close(two_process_result["generator"][name], value, rtol=1e-4, atol=2e-5, msg=name)


def test_single_process_helpers_are_no_ops() -> None:
    assert not ddp.is_distributed() and ddp.rank() == 0 and ddp.world_size() == 1 and ddp.is_main_process()
    t = torch.arange(5.0)
    assert ddp.shard_minibatch((t,))[0] is t
    assert ddp.all_reduce_mean(3.5, 2.0) == 3.5
    assert ddp.init_distributed(environ={}).world_size == 1


def test_environment_is_read_and_checked() -> None:
    env = ddp.env_from_environ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node7",
                                "MASTER_PORT": "1234"})
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port) == (3, 4, 1, "node7", 1234)
    assert ddp.env_from_environ({}) == ddp.DistEnv()
    with pytest.raises(ConfigError, match=r"\$RANK.*4"):
        ddp.env_from_environ({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(ConfigError, match=r"\$WORLD_SIZE.*two"):
        ddp.env_from_environ({"WORLD_SIZE": "two"})
    assert ddp.running_under_torchrun({"RANK": "0", "WORLD_SIZE": "2"})
    assert not ddp.running_under_torchrun({"RANK": "0", "WORLD_SIZE": "1"})


def test_backend_is_gloo_for_cpu_training_even_on_gpu_nodes() -> None:
    # the built-in plugins reduce CPU tensors: NCCL (picked merely because CUDA exists) crashed on GPU nodes
    assert ddp.default_backend({}) == "gloo"
    assert ddp.default_backend({"MLEGPIPE_DIST_BACKEND": " NCCL "}) == "nccl"
    with pytest.raises(ConfigError, match=r"MLEGPIPE_DIST_BACKEND.*mpi"):
        ddp.default_backend({"MLEGPIPE_DIST_BACKEND": "mpi"})


def test_nccl_without_a_gpu_for_this_rank_is_a_clear_error() -> None:
    # without CUDA (CI) or with fewer GPUs than local ranks (a GPU node): a ConfigError, not a CUDA error
    local = torch.cuda.device_count()
    environ = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": str(local), "MASTER_PORT": "29999"}
    with pytest.raises(ConfigError, match="nccl|LOCAL_RANK"):
        ddp.init_distributed("nccl", environ=environ)
    assert not ddp.is_distributed()


@pytest.mark.parametrize(("n", "world"), [(10, 2), (257, 2), (5, 3), (2, 4)])
def test_shards_cover_every_event_once(n: int, world: int) -> None:
    parts = [np.arange(n)[ddp.shard_slice(n, r, world)] for r in range(world)]
    assert np.array_equal(np.concatenate(parts), np.arange(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_rank_streams_are_independent_and_reproducible() -> None:
    seed = np.random.SeedSequence(42, spawn_key=(7,))
    a0, a1 = (np.random.default_rng(ddp.rank_seed_sequence(seed, r)).normal(size=1000) for r in (0, 1))
    assert np.array_equal(a0, np.random.default_rng(ddp.rank_seed_sequence(seed, 0)).normal(size=1000))
    assert abs(np.corrcoef(a0, a1)[0, 1]) < 0.15  # independent streams: |r| ~ 0.03
    assert seed.n_children_spawned == 0  # the parent sequence is not consumed


def test_launch_command_relaunches_mlegpipe_through_torchrun() -> None:
    cmd = ddp.launch_command(["run", "p.toml", "--force"], 4, python="py")
    assert cmd == ["py", "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "4",
                   "-m", "mlegpipe", "run", "p.toml", "--force"]
    with pytest.raises(ConfigError, match="--nproc"):
        ddp.launch_command(["run"], 0)


def test_rank_zero_only_writes_on_rank_zero(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    assert ddp.rank_zero_only(path.write_text)("ok") == 2
    assert path.read_text() == "ok"


PIPELINE = """
[pipeline]
name = "ddp"
seed = 4
split = [0.6, 0.2, 0.2]

[truth]
plugin = "dis"
beams = "hera"
events = 3000

[generator]
plugin = "flow"
flow = "maf"
transforms = 1
hidden = [8]
steps = 4
batch_size = 256
validate_every = 0
"""


@pytest.mark.slow
def test_mlegpipe_run_nproc_2_relaunches_through_torchrun_and_keeps_one_run_folder(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    toml = tmp_path / "ddp.toml"
    toml.write_text(PIPELINE)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(scratch)}
    proc = subprocess.run([sys.executable, "-m", "mlegpipe", "-q", "run", "--nproc", "2", str(toml), "-o",
                           str(tmp_path / "run"), "--no-progress"], capture_output=True, text=True, env=env,
                          timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "generated.root").exists() and (tmp_path / "run" / "config.toml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.toml", "run", "tmp"]  # no second run folder
    assert not any(p.name.startswith("mlegpipe-rank") for p in scratch.iterdir())  # rank 1's scratch was removed
