"""FLOP counting of networks and flows, the measured matmul rate, and the roofline arithmetic."""

from __future__ import annotations

import pytest
import torch
import zuko

from mlegpipe.roofline import count_flops, flow_sampling_flops, matmul_gflops, roofline


def test_mlp_flops_are_two_per_multiply_add_plus_bias() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32, bias=False),
                              torch.nn.ReLU(), torch.nn.Linear(32, 2))
    count = count_flops(lambda: net(torch.zeros(100, 4)), net, events=100)
    expected = (2 * 4 * 32 + 32) + 2 * 32 * 32 + (2 * 32 * 2 + 2)
    assert count.flops_per_event == expected and count.calls == 3
    assert count.by_layer == {"Linear": 100.0 * expected}


def test_layers_called_twice_count_twice_and_hooks_are_removed() -> None:
    lin = torch.nn.Linear(8, 8, bias=False)
    count = count_flops(lambda: lin(lin(torch.zeros(10, 8))), lin, events=10)
    assert count.flops == 2 * 10 * 2 * 8 * 8 and count.calls == 2
    assert not lin._forward_hooks  # noqa: SLF001 - the hooks must not outlive the count


def test_conv_flops() -> None:
    conv = torch.nn.Conv1d(2, 4, kernel_size=3)
    count = count_flops(lambda: conv(torch.zeros(5, 2, 10)), conv, events=5)
    assert count.flops_per_event == 2 * 2 * 3 * (4 * 8)  # 4 channels x 8 positions, 2x3 multiply-adds each


@pytest.mark.parametrize("features", [2, 3])
def test_autoregressive_inverse_calls_the_network_once_per_feature(features: int) -> None:
    hidden = 16
    maf = zuko.flows.MAF(features, transforms=2, hidden_features=(hidden,))
    count = flow_sampling_flops(maf, features, events=64)
    # each MaskedMLP: features -> hidden -> 2*features (affine shift and scale), run `features` times per transform
    per_pass = (2 * features * hidden + hidden) + (2 * hidden * 2 * features + 2 * features)
    assert count.calls == 2 * 2 * features
    assert count.flops_per_event == pytest.approx(2 * features * per_pass)
    forward = count_flops(lambda: maf().log_prob(torch.zeros(64, features)), maf, events=64)
    assert forward.flops_per_event == pytest.approx(2 * per_pass)  # density evaluation: one pass per transform


def test_matmul_rate_is_measured_and_bigger_products_are_not_slower_per_flop() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: a shared, oversubscribed CI machine makes OpenMP teams stall
    try:
        small = matmul_gflops(16, repeats=3, min_seconds=0.01)
        big = matmul_gflops(256, repeats=3, min_seconds=0.02)
    finally:
        torch.set_num_threads(before)
    assert small > 0 and big > 0.3  # any CPU of the last 15 years does > 1 GFLOP/s on a 256^3 product
    assert big > small  # 16x16 products are dominated by call overhead


def test_roofline_arithmetic() -> None:
    r = roofline(2e5, 50.0, events_per_s=1e5)
    assert r.roofline_events_per_s == pytest.approx(2.5e5) and r.fraction == pytest.approx(0.4)
    assert roofline(2e5, 50.0).fraction is None
    assert set(r.to_dict()) == {"flops_per_event", "gflops", "roofline_events_per_s", "events_per_s", "fraction"}


def test_fast_flow_sampler_executes_a_third_of_zukos_flops() -> None:
    """3 features, autoregressive: zuko runs the full MADE 3 times per transform; the pruned inverse runs
    the first feature's (constant) outputs never, the second's on the units that see feature 1 only, the
    third's once on all units, and only those features' output rows."""
    from mlegpipe_builtins.generators._flow_fast import FastFlowSampler

    torch.manual_seed(0)
    flow = zuko.flows.NSF(3, transforms=2, bins=8, hidden_features=(64, 64))
    noise = torch.zeros(256, 3)
    zuko_count = flow_sampling_flops(flow, 3, events=256)
    fast = FastFlowSampler(flow)
    fast_count = count_flops(lambda: fast(noise), fast, events=256)
    per_pass = 2 * (3 * 64 + 64 * 64 + 64 * 69) + 64 + 64 + 69  # 3 -> 64 -> 64 -> 3 x 23 spline parameters
    assert zuko_count.flops_per_event == 2 * 3 * per_pass
    # MADE hidden units alternate between seeing {x1} and {x1, x2}: 32 + 32 units, 23 output rows per feature
    second = 2 * (1 * 32 + 32 * 32 + 32 * 23) + 32 + 32 + 23
    third = 2 * (2 * 64 + 64 * 64 + 64 * 23) + 64 + 64 + 23
    assert fast_count.flops_per_event == 2 * (second + third)
    assert zuko_count.flops_per_event / fast_count.flops_per_event > 3


def test_distilled_flow_sampler_is_one_mlp_pass_per_event() -> None:
    """The distilled sampler: 2 -> 96 -> 96 -> 96 -> 2, counted once per event whatever the chunking."""
    from mlegpipe_builtins.generators._flow_distill import DistilledSampler

    net = DistilledSampler(2, 0, [96, 96, 96], chunk=1000)
    count = count_flops(lambda: net(torch.zeros(4096, 2), workers=1), net, events=4096)
    per_event = 2 * (2 * 96 + 96 * 96 + 96 * 96 + 96 * 2) + 3 * 96 + 2
    assert count.flops_per_event == per_event and count.calls == 4 * 5  # 5 chunks of at most 1000 events
    assert per_event < 45_660  # fewer FLOPs than the exact pruned inverse of the default flow
