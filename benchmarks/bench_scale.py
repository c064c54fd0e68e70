"""Performance at scale: generation beside Pythia 8 and the roofline, smearing, ROOT writing, training, memory.

    python benchmarks/bench_scale.py [--quick] [--generation-only] [--seed 1]

Every figure is a ratio of two measurements taken side by side in this run:

- generation (events/s) of each default generator (``flow``; ``fatgan`` when
  installed; ``flow-small``, the smallest flow preset; the flow with its other
  sampler, ``flow-fast`` or ``flow-distilled``, whichever is not the default) beside Pythia 8
  full-event DIS (HERA, Q² > 1 GeV², pythia8mc) and beside the roofline of the
  same network: FLOPs per event counted from its linear layers as executed
  (:mod:`mlegpipe.roofline`; for the flow, the sampler ``sample()`` uses: the
  pruned exact inverse or the distilled MLP, with zuko's own inverse beside it;
  the distillation runs 300 steps here, enough for the speed, which does not
  depend on the weights) over the GFLOP/s of a
  square matmul and of a layer-shaped matmul measured in the same run and
  thread setting, at 1 thread and at all cores. Element-wise work (spline
  search and evaluation, activations) is not counted in the FLOPs;
- smearing (``smear`` detector, default preset) beside Pythia 8 on the same events;
- ROOT writing: :class:`mlegpipe.rootio.RootWriter` beside a bare uproot
  ``mktree``/``extend`` of the same arrays in the same chunks (events/s, MB/s);
- training: samples/s per optimizer step of each default generator (the
  difference of a K-step and a 2K-step fit, so set-up costs cancel);
- memory: peak RSS of streaming generation of 10⁷ events to ROOT beside 10⁶
  (each in a fresh subprocess; ``--quick``: 10⁶ beside 10⁵).

Prints one table and writes ``benchmarks/results/bench_scale.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from benchmarks import Figure, format_table, machine_info, write_json
from mlegpipe.context import StageContext
from mlegpipe.events import EventBatch
from mlegpipe.generation import single_threaded_kernels
from mlegpipe.roofline import count_flops, matmul_gflops, roofline
from mlegpipe.schema import build_params

__all__ = ["main", "measure"]

GROUP = "bench_scale"


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _registry() -> Any:
    from mlegpipe.registry import load_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_plugins()


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """Best wall time of ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def dis_truth(events: int, seed: int) -> EventBatch:
    """Inclusive DIS events (HERA, Q² > 1 GeV²) from the ``dis`` truth source."""
    cls = _registry().get("truth", "dis").cls
    return cls(build_params(cls.Params, {"events": events, "beams": "hera"}, "truth"),
               StageContext("truth", seed=seed)).read()


def make_generator(name: str, params: dict[str, Any], seed: int) -> Any:
    """A generator plugin instance with ``params`` over its defaults."""
    cls = _registry().get("generator", name).cls
    return cls(build_params(cls.Params, params, "generator"), StageContext("generator", seed=seed))


# -- the measurements ----------------------------------------------------------------------------


def pythia_rate(events: int, seed: int) -> tuple[EventBatch, float]:
    """Pythia 8 full-event DIS at HERA (Q² > 1): the events and events/s (init included)."""
    cls = _registry().get("truth", "pythia8").cls
    params = build_params(cls.Params, {"events": events, "beams": "hera", "q2_min": 1.0, "level": "full",
                                       "particles": True}, "truth")
    start = time.perf_counter()
    batch = cls(params, StageContext("truth", seed=seed)).read()
    return batch, len(batch) / (time.perf_counter() - start)


@contextlib.contextmanager
def optimizer_steps() -> Iterator[dict[int, list[float]]]:
    """Record the time of every optimizer step (any optimizer), by optimizer."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    times: dict[int, list[float]] = {}
    handle = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: times.setdefault(id(opt), []).append(time.perf_counter()))
    try:
        yield times
    finally:
        handle.remove()


def training_rate(name: str, params: dict[str, Any], train: EventBatch, valid: EventBatch, steps: int,
                  seed: int) -> tuple[Any, float]:
    """Samples/s per generator update: batch size / median time between two updates of the generator's optimizer.

    The generator's optimizer is the one stepped least often (a GAN steps its
    critic ``critic_steps`` times per generator update, and those are included);
    the median ignores set-up, validation and checkpoint pauses.
    """
    gen = make_generator(name, {**params, "steps": steps}, seed)
    with optimizer_steps() as times:
        gen.fit(train, valid)
    stamps = min(times.values(), key=len)
    per_step = float(np.median(np.diff(stamps)))
    batch = int(gen.p.batch_size if hasattr(gen, "p") else gen.settings["batch_size"])
    return gen, batch / per_step


def network_workload(gen: Any, n: int, reference: bool = False) -> tuple[torch.nn.Module, Callable[[], Any], int]:
    """The bare network pass of a generator (no decoding, no rejection): module, workload, rows per matmul.

    For the flow this is the sampler ``sample()`` uses (the pruned exact inverse,
    :class:`~mlegpipe_builtins.generators._flow_fast.FastFlowSampler`); ``reference = True`` gives zuko's
    own ``flow().transform.inv`` instead.
    """
    gen_t = torch.Generator().manual_seed(0)
    if hasattr(gen, "flows"):
        noise = torch.randn(n, gen.noise_dim, generator=gen_t)
        if reference:
            flow = gen.flows[0]
            return flow, lambda: flow().transform.inv(noise), n
        sampler = gen.samplers()[0]
        return sampler, lambda: sampler(noise), min(n, getattr(sampler, "chunk", n))
    from mlegpipe_builtins.generators._gan_sampler import SAMPLE_CHUNK

    noise = gen.noise(n, gen_t)
    cond = gen.condition_tensor(np.full(n, gen.beams.lepton_energy)) if gen.conditions else None
    spans = [(lo, min(lo + SAMPLE_CHUNK, n)) for lo in range(0, n, SAMPLE_CHUNK)]

    def chunk(span: tuple[int, int]) -> torch.Tensor:
        with torch.inference_mode():
            return gen.generate_tensor(noise[span[0]:span[1]], None if cond is None else cond[span[0]:span[1]])

    def run() -> list[torch.Tensor]:  # as sample() runs it: chunks on data-parallel threads
        workers = torch.get_num_threads()
        if workers <= 1:
            return [chunk(span) for span in spans]
        with single_threaded_kernels(), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(chunk, spans))

    return gen.network, run, min(n, SAMPLE_CHUNK)


def best_matmul(size: int, rows: int | None, t: int) -> tuple[float, str]:
    """The best matmul GFLOP/s at ``t`` threads: intra-op threads or ``t`` data-parallel products."""
    rates = {"intra-op": matmul_gflops(size, rows=rows, repeats=3)}
    if t > 1:
        rates["data-parallel"] = matmul_gflops(size, rows=rows, repeats=3, workers=t)
    mode = max(rates, key=rates.get)
    return rates[mode], mode


def _hidden_width(module: torch.nn.Module) -> int:
    widths = [m.out_features for m in module.modules() if isinstance(m, torch.nn.Linear)]
    return max(widths[:-1] or widths or [64])


def generation_figures(name: str, gen: Any, n: int, pythia: float, cores: int, repeat: int,
                       details: dict[str, Any]) -> list[Figure]:
    """Events/s of ``gen.sample`` and of its bare network at 1 thread and all cores, beside Pythia and roofline.

    The roofline is the network's FLOPs per event (linear layers, as executed) over the GFLOP/s of a
    square 1024 matmul and of a matmul of the network's own layer shape (rows per pass x hidden width),
    both measured right after the workload in the same thread setting.
    """
    figures = []
    n_net = 262_144  # the block the flow's sample() hands its sampler (the GANs' chunks are smaller)
    net_repeat = max(repeat, 7)  # a network pass takes milliseconds: best of more calls, as for the matmul
    module, workload, rows = network_workload(gen, n_net)
    flops = count_flops(network_workload(gen, 4096)[1], module, 4096).flops_per_event
    width = _hidden_width(module)
    info: dict[str, Any] = {"flops_per_event": flops, "layer_matmul": [rows, width]}
    if hasattr(gen, "flows"):  # zuko's own inverse beside the sampler sample() uses, 1 thread
        ref_module, ref_workload, _ = network_workload(gen, n_net, reference=True)
        info["zuko_flops_per_event"] = count_flops(network_workload(gen, 4096, reference=True)[1], ref_module,
                                                   4096).flops_per_event
        with threads(1), torch.inference_mode():
            ref_workload()
            t_ref = best_time(ref_workload, repeat)
            workload()
            t_fast = best_time(workload, net_repeat)
        figures.append(Figure(f"{name} network, {type(module).__name__} [1 thread]", n_net / t_fast, "events/s",
                              "zuko flow().transform.inv", n_net / t_ref, group=GROUP,
                              note=f"{flops:,.0f} vs {info['zuko_flops_per_event']:,.0f} FLOP/event, same weights"))
    for t in sorted({1, cores}):
        tag = f"{t} thread{'s' if t > 1 else ''}"
        with threads(t):
            gen.sample(4096, np.random.SeedSequence(0))  # warm-up
            t_sample = best_time(lambda: gen.sample(n, np.random.SeedSequence(1)), repeat)
            with torch.inference_mode():
                workload()
                t_net = best_time(workload, net_repeat)
            gflops, mode = best_matmul(1024, None, t)
            gflops_layer, mode_layer = best_matmul(width, rows, t)
        rate, net_rate = n / t_sample, n_net / t_net
        roof = roofline(flops, gflops, net_rate)
        roof_layer = roofline(flops, gflops_layer, net_rate)
        info[tag] = {"sample_events_per_s": rate, "network_events_per_s": net_rate, "matmul_gflops": gflops,
                     "matmul_mode": mode, "layer_matmul_gflops": gflops_layer, "layer_matmul_mode": mode_layer,
                     "roofline_square": roof.to_dict(), "roofline_layer": roof_layer.to_dict(),
                     "sample_fraction_of_square_roofline": rate / roof.roofline_events_per_s}
        figures += [
            Figure(f"{name} sample() [{tag}]", rate, "events/s", "pythia8 full DIS, HERA Q2>1", pythia,
                   group=GROUP, note=f"n={n}, decode + rejection included"),
            Figure(f"{name} sample() [{tag}]", rate, "events/s", "1,000,000 events/s target", 1e6, target=">= 1",
                   group=GROUP),
            Figure(f"{name} sample() [{tag}]", rate, "events/s", "roofline (square matmul)",
                   roof.roofline_events_per_s, target=">= 0.5", group=GROUP, note="decode + rejection included"),
            Figure(f"{name} network [{tag}]", net_rate, "events/s", "roofline (square matmul)",
                   roof.roofline_events_per_s, target=">= 0.5", group=GROUP,
                   note=f"{flops:,.0f} FLOP/event, matmul {gflops:.1f} GFLOP/s ({mode})"),
            Figure(f"{name} network [{tag}]", net_rate, "events/s", f"roofline ({rows}x{width} layer matmul)",
                   roof_layer.roofline_events_per_s, target=">= 0.5", group=GROUP,
                   note=f"layer-shaped matmul {gflops_layer:.1f} GFLOP/s ({mode_layer})"),
            Figure(f"{name} sample() / network [{tag}]", rate, "events/s", "bare network pass", net_rate,
                   group=GROUP, note="share kept by decoding and rejection"),
        ]
    details.setdefault("generation", {})[name] = info
    return figures


def stream_figures(gen: Any, n: int, cores: int, tmp: Path) -> list[Figure]:
    """``generate_to_file`` (writing on a background thread) beside generating and writing in turn."""
    from mlegpipe.generation import generate_blocks, generate_to_file
    from mlegpipe.rootio import RootWriter

    def in_turn() -> None:
        with RootWriter(tmp / "serial.root", overwrite=True) as writer:
            for batch in generate_blocks(gen, n, 1):
                writer.write(batch)

    figures = []
    for t in sorted({1, cores}):
        with threads(t):
            t_serial = t_stream = float("inf")
            for _ in range(2):  # interleaved, so a change of machine load hits both alike
                t_serial = min(t_serial, best_time(in_turn, 1))
                t_stream = min(t_stream, best_time(lambda: generate_to_file(gen, n, tmp / "stream.root", 1,
                                                                           overwrite=True), 1))
        figures.append(Figure(f"flow generate_to_file [{t} thread{'s' if t > 1 else ''}]", n / t_stream, "events/s",
                              "generate, then write, in turn", n / t_serial, group=GROUP,
                              note=f"{n} events; ROOT writing on a background thread"))
    return figures


def smear_figures(truth: EventBatch, pythia: float, repeat: int) -> list[Figure]:
    """Smearing events/s (default preset) beside Pythia 8 on the same events."""
    cls = _registry().get("detector", "smear").cls
    det = cls(build_params(cls.Params, {}, "detector"), StageContext("detector", seed=1))
    t = best_time(lambda: det.fold(truth, np.random.SeedSequence(2)), repeat)
    rate = len(truth) / t
    return [Figure("smear fold (default preset)", rate, "events/s", "pythia8 full DIS, HERA Q2>1", pythia,
                   target="> 10", group=GROUP, note=f"{len(truth)} Pythia events; > 10: smearing < 10% of the chain")]


def root_write_figures(events: EventBatch, tmp: Path, repeat: int, chunk: int = 100_000,
                       batch: int = 65_536) -> list[Figure]:
    """RootWriter beside a bare uproot mktree/extend of the same arrays in the same chunks."""
    import uproot

    from mlegpipe.rootio import RootWriter

    columns = {f: events.column(f) for f in events.fields}
    n = len(events)

    def with_writer() -> None:
        with RootWriter(tmp / "writer.root", chunk_events=chunk, overwrite=True) as w:
            for lo in range(0, n, batch):
                w.write(events.take(slice(lo, lo + batch)))

    def bare() -> None:
        with uproot.recreate(tmp / "bare.root") as f:
            tree = f.mktree("events", {k: v.dtype for k, v in columns.items()})
            for lo in range(0, n, chunk):
                tree.extend({k: v[lo:lo + chunk] for k, v in columns.items()})

    t_bare = t_writer = float("inf")
    for _ in range(repeat):  # interleaved, so a change of machine load hits both alike
        t_bare = min(t_bare, best_time(bare, 1))
        t_writer = min(t_writer, best_time(with_writer, 1))
    size_bare, size_writer = (tmp / "bare.root").stat().st_size / 1e6, (tmp / "writer.root").stat().st_size / 1e6
    return [
        Figure("RootWriter write", t_writer, "s", "bare uproot mktree/extend", t_bare, target="<= 1.10",
               group=GROUP, note=f"{n} events x {len(columns)} branches; ratio = time ratio"),
        Figure("RootWriter write", n / t_writer, "events/s", "bare uproot mktree/extend", n / t_bare, group=GROUP),
        Figure("RootWriter write", size_writer / t_writer, "MB/s", "bare uproot mktree/extend", size_bare / t_bare,
               group=GROUP, note=f"file {size_writer:.1f} MB vs {size_bare:.1f} MB"),
    ]


_MEMORY_CHILD = """
import json, sys, threading, time, warnings
warnings.simplefilter("ignore")
import numpy as np, psutil, torch
torch.set_num_threads(1)
from mlegpipe.checkpoint import load_generator
from mlegpipe.generation import generate_to_file
from mlegpipe.registry import load_plugins
gen = load_generator(sys.argv[1], load_plugins())
gen.sample(1000, np.random.SeedSequence(0))
proc, stop, peak = psutil.Process(), threading.Event(), [0]
def watch():
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        stop.wait(0.02)
base = proc.memory_info().rss
watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
start = time.perf_counter()
generate_to_file(gen, int(sys.argv[2]), sys.argv[3], seed=1, overwrite=True)
seconds = time.perf_counter() - start
stop.set()
watcher.join()
print(json.dumps({"base_mb": base / 2**20, "peak_mb": max(peak[0], base) / 2**20, "seconds": seconds}))
"""


def memory_figures(checkpoint: Path, small: int, large: int, tmp: Path) -> list[Figure]:
    """Peak RSS while streaming ``large`` vs ``small`` events to ROOT, each in a fresh process.

    RSS is sampled every 20 ms in the generating process (``ru_maxrss`` would
    carry the high-water mark of the benchmark process across ``exec``).
    """
    out = {}
    for n in (small, large):
        proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(checkpoint), str(n), str(tmp / f"m{n}.root")],
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"memory child failed: {proc.stderr[-2000:]}")
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
        (tmp / f"m{n}.root").unlink(missing_ok=True)
    grow_small = out[small]["peak_mb"] - out[small]["base_mb"]
    grow_large = out[large]["peak_mb"] - out[large]["base_mb"]
    return [
        Figure(f"peak RSS, stream {large:.0e} events to ROOT", out[large]["peak_mb"], "MB",
               f"same for {small:.0e} events", out[small]["peak_mb"], target="<= 1.10", group=GROUP,
               note=f"1-transform MAF flow; {large / out[large]['seconds']:,.0f} events/s end to end"),
        Figure(f"RSS growth while streaming {large:.0e}", grow_large, "MB", f"growth for {small:.0e}", grow_small,
               group=GROUP, note=f"above the loaded model: {out[large]['base_mb']:.0f} MB"),
    ]


def measure(quick: bool = False, seed: int = 1, generation_only: bool = False) -> dict[str, Any]:
    """Run every measurement; return the figures and details (JSON-able)."""
    cores = os.cpu_count() or 1
    repeat = 2
    reg = _registry()
    figures: list[Figure] = []
    details: dict[str, Any] = {"quick": quick, "cores": cores, "loadavg_start": _loadavg()}
    truth = dis_truth(12_000 if quick else 30_000, seed)
    train, valid = truth.take(slice(0, len(truth) - 2000)), truth.take(slice(len(truth) - 2000, None))

    pythia_events, pythia = pythia_rate(1000 if quick else 3000, seed)
    details["pythia_events_per_s"] = pythia

    off = {"validate_every": 0, "checkpoint_every": 0}
    flow_off = {**off, "distill_steps": 300}  # a short distillation: the speed does not depend on the weights
    generators: dict[str, tuple[str, dict[str, Any]]] = {"flow": ("flow", flow_off)}
    if _has(reg, "fatgan"):
        generators["fatgan"] = ("fatgan", off)
    generators["flow-small"] = ("flow", {**flow_off, "preset": "small"})  # the smallest preset (quality: README)
    other = "fast" if _default_sampler(reg) == "distilled" else "distilled"
    generators[f"flow-{other}"] = ("flow", {**flow_off, "sampler": other})
    steps = 16 if quick else 40
    n_sample = 32_768 if quick else 131_072
    for name, (plugin, params) in generators.items():
        with threads(1):
            gen, train_rate = training_rate(plugin, params, train, valid, steps, seed)
        with threads(cores):
            _, train_rate_all = training_rate(plugin, params, train, valid, max(6, steps // 2), seed)
        figures.append(Figure(f"{name} training [{cores} threads]", train_rate_all, "samples/s",
                              f"{name} training [1 thread]", train_rate, group=GROUP,
                              note=f"samples/s per optimizer step, default {name} settings"))
        figures += generation_figures(name, gen, n_sample, pythia, cores, repeat, details)
        if name == "flow":
            flow_gen = gen

    with tempfile.TemporaryDirectory(prefix="mlegpipe-bench-") as tmp_name:
        figures += stream_figures(flow_gen, 4 * 65_536 if quick else 8 * 65_536, cores, Path(tmp_name))
    details["loadavg_after_generation"] = _loadavg()
    if generation_only:
        return _result(figures, details)
    figures += smear_figures(pythia_events, pythia, repeat)
    with tempfile.TemporaryDirectory(prefix="mlegpipe-bench-") as tmp_name:
        tmp = Path(tmp_name)
        writes = dis_truth(250_000 if quick else 1_000_000, seed + 1)
        figures += root_write_figures(writes, tmp, repeat)
        from mlegpipe.checkpoint import save_stage

        with threads(1):
            tiny = make_generator("flow", {"flow": "maf", "transforms": 1, "hidden": [8], "steps": 5,
                                           "validate_every": 0, "checkpoint_every": 0, "sampler": "fast"}, seed)
            tiny.fit(train, valid)
        ckpt = save_stage(tmp / "tiny.pt", tiny)
        small, large = (100_000, 1_000_000) if quick else (1_000_000, 10_000_000)
        figures += memory_figures(ckpt, small, large, tmp)
    details["loadavg_end"] = _loadavg()
    return _result(figures, details)


def _result(figures: list[Figure], details: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": GROUP, "figures": [f.to_dict() for f in figures], "details": details,
            "machine": machine_info(), "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _loadavg() -> list[float] | None:
    """1, 5 and 15-minute load averages (timings on a loaded machine are inflated)."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _default_sampler(reg: Any) -> str:
    """The sampler the ``flow`` generator uses with default settings (``auto`` resolved)."""
    cls = reg.get("generator", "flow").cls
    return str(cls(cls.Params(), StageContext("generator", seed=0)).p.sampler)


def _has(reg: Any, name: str) -> bool:
    try:
        reg.get("generator", name)
    except Exception:  # noqa: BLE001 - the registry raises PluginError for an unknown plugin
        return False
    return True


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command line: measure, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller samples (about 3 minutes on an idle 2-core machine)")
    parser.add_argument("--generation-only", action="store_true",
                        help="only generation beside Pythia and the roofline (and training rates)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = measure(args.quick, args.seed, args.generation_only)
    print(format_table([Figure(**f) for f in result["figures"]]))
    print(f"load average (1, 5, 15 min) at start {result['details']['loadavg_start']}, "
          f"after generation {result['details']['loadavg_after_generation']}")
    path = write_json(GROUP + ("_generation" if args.generation_only else ""), result)
    print(f"\nwrote {path}")
    return result


if __name__ == "__main__":
    main()
