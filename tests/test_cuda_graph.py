"""CUDA-graph replay of a training step's forward and backward (GPU tests skip without a GPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import zuko

from mlegpipe.training.cuda_graph import GraphedLoss

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _eager_grads(loss_fn, params, *inputs):  # noqa: ANN001, ANN002, ANN202
    for p in params:
        p.grad = None
    loss = loss_fn(*inputs)
    loss.backward()
    return loss.detach().clone(), [p.grad.detach().clone() for p in params]


def test_only_on_cuda_and_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    net = torch.nn.Linear(3, 1)
    params = list(net.parameters())
    assert GraphedLoss.maybe(lambda x: net(x).sum(), params, "cpu") is None
    monkeypatch.setenv("MLEGPIPE_CUDA_GRAPHS", "0")
    assert GraphedLoss.maybe(lambda x: net(x).sum(), params, "cuda") is None
    monkeypatch.setenv("MLEGPIPE_CUDA_GRAPHS", "1")
    assert isinstance(GraphedLoss.maybe(lambda x: net(x).sum(), params, torch.device("cuda", 0)), GraphedLoss)


def test_cpu_inputs_run_eagerly_and_replace_the_gradients() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    params = list(net.parameters())
    loss_fn = lambda x: net(x).square().mean()  # noqa: E731
    graphed = GraphedLoss(loss_fn, params)
    x1, x2 = torch.randn(16, 3), torch.randn(16, 3)
    graphed(x1)
    loss = graphed(x2)  # the gradients of x2's loss alone: nothing accumulates from x1
    want_loss, want = _eager_grads(loss_fn, params, x2)
    assert graphed.captures == 0 and graphed.failed is None
    assert torch.equal(loss.detach(), want_loss)
    for p, g in zip(params, want, strict=True):
        assert torch.equal(p.grad, g)


@needs_gpu
def test_replayed_flow_gradients_match_the_eager_ones() -> None:
    torch.manual_seed(1)
    flow = zuko.flows.NSF(2, 1, bins=8, transforms=3, hidden_features=(32, 32)).cuda()
    params = list(flow.parameters())
    loss_fn = lambda z, c: -flow(c).log_prob(z).mean()  # noqa: E731
    graphed = GraphedLoss(loss_fn, params)
    opt = torch.optim.AdamW(params, lr=1e-2)
    for step in range(4):  # new batches and parameters updated between replays
        z, c = torch.randn(256, 2, device="cuda"), torch.rand(256, 1, device="cuda")
        loss = graphed(z, c).item()
        eager = loss_fn(z, c)
        want = torch.autograd.grad(eager, params)  # leaves .grad alone
        assert loss == pytest.approx(eager.item(), rel=1e-5, abs=1e-6), step
        for p, w in zip(params, want, strict=True):
            torch.testing.assert_close(p.grad, w, rtol=1e-4, atol=1e-6)
        opt.step()
        if step == 1:
            opt.zero_grad(set_to_none=True)  # the next replay points .grad back at its gradients
        del eager, want  # no autograd graph of the parameters may outlive the step into a (re)capture
    assert graphed.captures == 1 and graphed.failed is None
    graphed(torch.randn(100, 2, device="cuda"), torch.rand(100, 1, device="cuda"))  # another batch size
    assert graphed.captures == 2


_FALLBACK = """
import logging, torch
from mlegpipe.training.cuda_graph import GraphedLoss
logging.basicConfig(level=logging.WARNING)
net = torch.nn.Linear(3, 1).cuda()
params = list(net.parameters())
def host_sync(x):
    out = net(x).square().mean()
    return out * 1.0 if out.item() >= 0 else out  # .item() synchronises: not capturable
graphed = GraphedLoss(host_sync, params)
x = torch.arange(24.0, device="cuda").reshape(8, 3) / 10
loss = graphed(x).item()
got = [p.grad.clone() for p in params]
want = torch.autograd.grad(host_sync(x), params)
print("FAILED" if graphed.failed else "CAPTURED", round(loss, 6), round(host_sync(x).item(), 6),
      all(torch.allclose(g, w) for g, w in zip(got, want)))
"""


@needs_gpu
def test_a_loss_that_cannot_be_captured_falls_back_to_eager() -> None:
    # in a subprocess: torch does not unwind a failed capture (its CUDA random generator stays in capture mode)
    out = subprocess.run([sys.executable, "-c", _FALLBACK], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, out.stderr[-2000:]
    status, loss, want, grads_match = out.stdout.split()
    assert status == "FAILED" and "capture failed" in out.stderr
    assert float(loss) == pytest.approx(float(want)) and grads_match == "True"
