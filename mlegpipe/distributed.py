"""Data-parallel training across processes: torchrun set-up, per-rank data and seeds, gradient averaging.

Launch with ``torchrun --nproc-per-node N -m mlegpipe run pipeline.toml`` (or
``mlegpipe run --nproc N pipeline.toml``, which re-launches itself through
``torch.distributed.run``). Every rank runs the same pipeline with the same
seed, so all ranks hold the same truth sample and draw the same *global*
minibatch indices; :func:`shard_minibatch` keeps this rank's share,
:func:`sync_gradients` averages the gradients weighted by events, and every
rank's optimizer then takes the same step. N processes reproduce the
one-process training with the same global batch (to floating-point
reduction order) while each computes 1/N of the batch. Only rank 0 writes
outputs (:func:`is_main_process`, :func:`rank_zero_only`).

Backends: gloo by default (the built-in plugins train on CPU tensors, also on
a GPU node); NCCL for models that train on CUDA tensors, one GPU per local
rank (``init_distributed("nccl")`` or ``MLEGPIPE_DIST_BACKEND=nccl``).

Example:
    >>> env = env_from_environ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
    ...                         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    >>> env.rank, env.world_size, env.is_main
    (1, 2, False)
    >>> shard_slice(10, rank=1, world_size=2)
    slice(5, 10, None)
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from mlegpipe.exceptions import ConfigError

__all__ = [
    "DistEnv",
    "training_device",
    "all_reduce_mean",
    "barrier",
    "broadcast_module",
    "default_backend",
    "env_from_environ",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "launch_command",
    "parse_master",
    "rank",
    "rank_seed_sequence",
    "rank_zero_only",
    "reduce_gradients",
    "relaunch",
    "run_ranked",
    "running_under_torchrun",
    "shard_minibatch",
    "shard_slice",
    "shutdown",
    "strip_option",
    "sync_gradients",
    "world_size",
    "wrap_ddp",
]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class DistEnv:
    """A process's place in a torchrun job (from its environment variables)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes outputs."""
        return self.rank == 0


def _int_env(environ: Mapping[str, str], key: str, default: int) -> int:
    text = environ.get(key)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError("expected an integer in this environment variable", path=f"${key}", value=text) from None


def env_from_environ(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` (torchrun sets them).

    Missing variables give a single process (rank 0 of 1).

    Raises:
        ConfigError: a variable is not an integer, or the rank is outside ``[0, WORLD_SIZE)``.
    """
    environ = os.environ if environ is None else environ
    world = _int_env(environ, "WORLD_SIZE", 1)
    rank_ = _int_env(environ, "RANK", 0)
    if world < 1:
        raise ConfigError("WORLD_SIZE must be at least 1", path="$WORLD_SIZE", value=world)
    if not 0 <= rank_ < world:
        raise ConfigError(f"RANK must lie in [0, WORLD_SIZE={world})", path="$RANK", value=rank_)
    return DistEnv(rank_, world, _int_env(environ, "LOCAL_RANK", rank_), environ.get("MASTER_ADDR", "127.0.0.1"),
                   _int_env(environ, "MASTER_PORT", 29500))


def default_backend(environ: Mapping[str, str] | None = None) -> str:
    """The process-group backend: ``$MLEGPIPE_DIST_BACKEND`` if set, else ``gloo``.

    The built-in plugins train on CPU tensors, which only gloo can reduce, so
    gloo is the default even on a GPU node (NCCL would fail on the first
    all-reduce of a CPU tensor). Models that train on CUDA tensors ask for
    ``init_distributed("nccl")`` or set ``MLEGPIPE_DIST_BACKEND=nccl``.

    Example:
        >>> default_backend({}), default_backend({"MLEGPIPE_DIST_BACKEND": "nccl"})
        ('gloo', 'nccl')
    """
    environ = os.environ if environ is None else environ
    backend = environ.get("MLEGPIPE_DIST_BACKEND", "").strip().lower() or "gloo"
    if backend not in ("gloo", "nccl"):
        raise ConfigError("unknown torch.distributed backend (expected gloo or nccl)",
                          path="$MLEGPIPE_DIST_BACKEND", value=backend)
    return backend


def training_device(choice: str, where: str) -> torch.device:
    """The torch device a stage trains on: ``cpu``, ``cuda`` or ``auto`` (cuda when available).

    Under torchrun, ``cuda`` means this rank's GPU (``LOCAL_RANK`` modulo the GPUs
    of the node, so several ranks may share one GPU with gloo).

    Raises:
        ConfigError: ``cuda`` was asked for but this torch has no usable GPU.

    Example:
        >>> training_device("cpu", "generator.device")
        device(type='cpu')
    """
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device = 'cuda' but this torch build sees no GPU (torch.cuda.is_available() is False)",
                          path=where, value=choice, hint="use device = 'cpu' or 'auto'")
    return torch.device("cuda", env_from_environ().local_rank % torch.cuda.device_count())


def _check_nccl(env: DistEnv) -> None:
    """NCCL needs CUDA and one GPU per local rank: say so instead of a CUDA error."""
    if not (torch.cuda.is_available() and dist.is_nccl_available()):
        raise ConfigError("the nccl backend needs CUDA and a torch build with NCCL; use gloo on CPU",
                          path="$MLEGPIPE_DIST_BACKEND", value="nccl")
    if env.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"nccl needs one GPU per local rank, but this node has {torch.cuda.device_count()}",
                          path="$LOCAL_RANK", value=env.local_rank)


def init_distributed(backend: str | None = None, environ: Mapping[str, str] | None = None,
                     timeout_s: float = 600.0) -> DistEnv:
    """Join the process group described by the environment (a no-op for a single process).

    Arguments:
        backend: ``gloo``, ``nccl`` or None (:func:`default_backend`: gloo unless
            ``$MLEGPIPE_DIST_BACKEND`` says otherwise).
        environ: the variables to read (default ``os.environ``).
        timeout_s: how long collectives wait for the other ranks.

    Returns:
        This process's :class:`DistEnv`. With NCCL the CUDA device is set to ``LOCAL_RANK``.
    """
    env = env_from_environ(environ)
    if env.world_size == 1 or (dist.is_available() and dist.is_initialized()):
        return env
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed", path="--nproc", value=env.world_size)
    backend = backend or default_backend(environ)
    if backend == "nccl":
        _check_nccl(env)
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend, init_method=f"tcp://{env.master_addr}:{env.master_port}", rank=env.rank,
                            world_size=env.world_size, timeout=timedelta(seconds=timeout_s))
    return env


def shutdown() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _group_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _group_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return _group_rank()


def world_size() -> int:
    """The number of ranks (1 outside a process group)."""
    return _group_size()


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one that writes outputs."""
    return rank() == 0


def rank_zero_only(fn: Callable[..., T]) -> Callable[..., T | None]:
    """Decorator: run ``fn`` on rank 0 only; other ranks get None.

    Example:
        >>> @rank_zero_only
        ... def write(): return "written"
        >>> write()
        'written'
    """
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T | None:
        return fn(*args, **kwargs) if is_main_process() else None

    return wrapper


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def rank_seed_sequence(seed: np.random.SeedSequence, rank_: int | None = None) -> np.random.SeedSequence:
    """An independent stream for one rank, derived without mutating ``seed`` (unlike ``seed.spawn``).

    Equal to the ``rank``-th child of ``seed.spawn(world)`` on a fresh ``seed``.

    Example:
        >>> s = np.random.SeedSequence(7)
        >>> a = rank_seed_sequence(s, 1).generate_state(1)
        >>> bool((a == np.random.SeedSequence(7).spawn(2)[1].generate_state(1)).all())
        True
    """
    r = _group_rank() if rank_ is None else int(rank_)
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, r), pool_size=seed.pool_size)


def shard_slice(n: int, rank: int | None = None, world_size: int | None = None) -> slice:
    """This rank's contiguous share of ``n`` items (sizes differ by at most one).

    Example:
        >>> [shard_slice(5, r, 2) for r in range(2)]
        [slice(0, 3, None), slice(3, 5, None)]
    """
    r = _group_rank() if rank is None else int(rank)
    w = _group_size() if world_size is None else int(world_size)
    base, extra = divmod(int(n), w)
    start = r * base + min(r, extra)
    return slice(start, start + base + (1 if r < extra else 0))


def shard_minibatch(batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """This rank's share of a global minibatch (all tensors cut alike; unchanged in one process)."""
    if not is_distributed():
        return tuple(batch)
    part = shard_slice(len(batch[0]))
    return tuple(t[part] for t in batch)


def sync_gradients(parameters: Iterable[torch.nn.Parameter], local_events: int) -> None:
    """Replace each gradient by the event-weighted average over ranks.

    Call after ``loss.backward()`` on a loss that is a *mean* over this rank's
    ``local_events`` events: the result is the gradient of the mean over the
    global batch, whatever the split. A no-op in a single process.
    """
    reduce_gradients(parameters, local_events)


def reduce_gradients(parameters: Iterable[torch.nn.Parameter], weight: float | None) -> None:
    """Replace each gradient by its ``weight``-weighted average over ranks, or by its sum when ``weight`` is None.

    Missing gradients count as zeros; one all-reduce of a flat buffer per call.
    A no-op in a single process.
    """
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    pieces = [g.reshape(-1) for g in grads]
    if weight is not None:  # the weights travel in the buffer: one all-reduce gives the sum and the total weight
        pieces.append(torch.ones(1, dtype=grads[0].dtype, device=grads[0].device))
    flat = torch.cat(pieces)
    if weight is not None:
        flat.mul_(float(weight))
    dist.all_reduce(flat)
    if weight is not None:
        flat.div_(flat[-1].clone())
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        view = flat[offset:offset + n].view_as(g)
        if p.grad is None:
            p.grad = view.clone()
        else:
            p.grad.copy_(view)
        offset += n


def all_reduce_mean(value: float, weight: float = 1.0) -> float:
    """The ``weight``-weighted mean of a number over ranks (the number itself in one process).

    Example:
        >>> all_reduce_mean(2.5)
        2.5
    """
    if not is_distributed():
        return float(value)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    buf = torch.tensor([float(value) * weight, float(weight)], dtype=torch.float64, device=device)
    dist.all_reduce(buf)
    return float(buf[0] / buf[1])


def broadcast_module(module: torch.nn.Module, src: int = 0) -> torch.nn.Module:
    """Copy ``src``'s parameters and buffers to every rank (identical starting weights)."""
    if is_distributed():
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src)
    return module


def wrap_ddp(module: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
    """Wrap a module in ``DistributedDataParallel`` (on this rank's GPU with NCCL); unchanged in one process.

    DDP averages gradients during ``backward`` for modules whose ``forward``
    returns tensors; for models called through other objects (zuko flows
    return distributions) use :func:`sync_gradients` instead.
    """
    if not is_distributed():
        return module
    from torch.nn.parallel import DistributedDataParallel

    if dist.get_backend() == "nccl":
        device = torch.cuda.current_device()
        return DistributedDataParallel(module.to(device), device_ids=[device], **kwargs)
    return DistributedDataParallel(module, **kwargs)


def launch_command(argv: Sequence[str], nproc: int, python: str | None = None, nnodes: int = 1, node_rank: int = 0,
                   master: str | None = None) -> list[str]:
    """The command that runs ``mlegpipe <argv>`` on ``nproc`` ranks per node through ``torch.distributed.run``.

    One node uses torchrun's standalone rendezvous; several nodes a static
    one at ``master`` (``HOST:PORT`` of node 0, which every node must reach).

    Example:
        >>> launch_command(["run", "p.toml"], 2, python="python")[1:6]
        ['-m', 'torch.distributed.run', '--standalone', '--nnodes', '1']
        >>> launch_command(["run", "p.toml"], 1, "python", 2, 1, "127.0.0.1:29511")[3:11]
        ['--nnodes', '2', '--node-rank', '1', '--master-addr', '127.0.0.1', '--master-port', '29511']
    """
    if nproc < 1:
        raise ConfigError("the number of processes must be at least 1", path="--nproc", value=nproc)
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise ConfigError(f"--node-rank must lie in [0, --nnodes={nnodes})", path="--node-rank", value=node_rank)
    head = [python or sys.executable, "-m", "torch.distributed.run"]
    if nnodes == 1:
        rendezvous = ["--standalone", "--nnodes", "1"]
    else:
        host, port = parse_master(master)
        rendezvous = ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--master-addr", host,
                      "--master-port", str(port)]
    return [*head, *rendezvous, "--nproc-per-node", str(int(nproc)), "-m", "mlegpipe", *argv]


def parse_master(master: str | None) -> tuple[str, int]:
    """``HOST:PORT`` of node 0 for a multi-node launch.

    Example:
        >>> parse_master("10.0.0.1:29500")
        ('10.0.0.1', 29500)
    """
    host, _, port = (master or "").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("a multi-node launch needs --master HOST:PORT, the address of node 0 (e.g. "
                          "10.0.0.1:29500; 127.0.0.1:PORT for nodes on this machine)", path="--master", value=master)
    return host, int(port)


def running_under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """True when the torchrun variables describe more than one process."""
    environ = os.environ if environ is None else environ
    return all(k in environ for k in ("RANK", "WORLD_SIZE")) and _int_env(environ, "WORLD_SIZE", 1) > 1


def strip_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` without ``option`` and its value (``--nproc 2`` or ``--nproc=2``).

    Example:
        >>> strip_option(["run", "--nproc", "2", "p.toml", "--nproc=3"], "--nproc")
        ['run', 'p.toml']
    """
    out: list[str] = []
    skip = False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(option + "="):
            out.append(item)
    return out


_TORCHRUN_NOISE = ("torch.distributed.elastic", "torch/distributed/elastic", "ChildFailedError", "OMP_NUM_THREADS",
                   "*****")


def relaunch(argv: Sequence[str], nproc: int, nnodes: int = 1, node_rank: int = 0, master: str | None = None) -> int:
    """Run ``mlegpipe <argv>`` (launch options removed) on ``nproc`` ranks per node through torchrun.

    The ranks' own messages pass through; torchrun's failure report (a
    Python traceback and a table) is condensed to one line naming the failed
    rank and its exit code, which becomes this command's exit code (2 for a
    bad input found by a rank, as without torchrun).
    """
    import re
    import subprocess

    for option in ("--nproc", "--nnodes", "--node-rank", "--master"):
        argv = strip_option(argv, option)
    command = launch_command(argv, nproc, nnodes=nnodes, node_rank=node_rank, master=master)
    report: list[str] = []
    in_report = False
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            in_report = in_report or line.startswith(("Traceback", "==="))
            if in_report or any(mark in line for mark in _TORCHRUN_NOISE):
                report.append(line)
                continue
            sys.stderr.write(line)
        code = proc.wait()
    if code == 0:
        return 0
    text = "".join(report)
    # torchrun's table lists the first failure under "Root Cause"; the ranks it stopped after that have
    # negative exit codes (signals): name the first rank that failed by itself
    failures = [(int(r), int(c)) for r, c in re.findall(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", text, re.S)]
    root = text.split("Root Cause", 1)[-1] if "Root Cause" in text else ""
    first = re.search(r"rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", root, re.S)
    chosen = [(int(first.group(1)), int(first.group(2)))] if first else []
    chosen += [f for f in failures if f[1] > 0] + failures
    if not chosen:
        sys.stderr.write(text)
        return code
    rank_, child = chosen[0]
    print(f"mlegpipe: rank {rank_} stopped with exit code {child} (its message is above); the other ranks were "
          "stopped", file=sys.stderr)
    return child if child > 0 else code


def run_ranked(run: Callable[[str | None, bool, bool | None], R], output: str | None, force: bool,
               progress: bool | None) -> R | None:
    """Join the torchrun job, run ``run(output, force, progress)`` on every rank, keep rank 0's result.

    Every rank runs the pipeline with the same seed (the training steps are
    shared through :func:`sync_gradients`); ranks other than 0 work in a
    scratch folder that is deleted afterwards and write neither samples nor
    reports, so only rank 0's run folder remains. Only rank 0 logs to the
    console; the other ranks' log records are gathered into rank 0's
    ``run.log``, each line prefixed ``[rank R]``.
    """
    import logging
    import shutil
    import tempfile
    from pathlib import Path

    env = init_distributed()
    logger = logging.getLogger("mlegpipe")
    quiet: list[tuple[logging.Handler, int]] = []
    try:
        if env.is_main:
            result: R | None = run(output, force, progress)
            log_text = ""
        else:
            for handler in logger.handlers:  # errors still reach the console; the rest goes to rank 0's run.log
                quiet.append((handler, handler.level))
                handler.setLevel(logging.ERROR)
            scratch = tempfile.mkdtemp(prefix=f"mlegpipe-rank{env.rank}-")
            try:
                run(str(Path(scratch) / "run"), True, False)
                log_file = Path(scratch) / "run" / "run.log"
                log_text = log_file.read_text(encoding="utf-8") if log_file.is_file() else ""
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            result = None
        logs: list[Any] = [None] * env.world_size
        dist.all_gather_object(logs, (env.rank, log_text))
        if env.is_main and isinstance(result, Path) and (result / "run.log").is_file():
            with (result / "run.log").open("a", encoding="utf-8") as out:
                for r, text in sorted(item for item in logs if item[0] != 0):
                    out.writelines(f"[rank {r}] {line}\n" for line in text.splitlines())
        barrier()
    finally:
        for handler, level in quiet:
            handler.setLevel(level)
        shutdown()
    return result
