"""Helpers of the data-parallel tests: a free loopback port, and joining a gloo group as one rank of a spawn."""

from __future__ import annotations

import socket

import torch

from mlegpipe import distributed as ddp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank: int, world: int, port: int, timeout_s: float = 120) -> ddp.DistEnv:
    """Join the loopback gloo group of ``world`` ranks as ``rank``, on one torch thread (``mp.spawn`` workers)."""
    torch.set_num_threads(1)
    return ddp.init_distributed(environ={"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                                         "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}, timeout_s=timeout_s)
