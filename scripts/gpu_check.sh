#!/usr/bin/env bash
# GPU check of mlegpipe: install on a CUDA machine, run the CUDA tests, train the flow generator on the GPU
# and on the CPU (same seed), load the GPU-trained checkpoint on a CUDA-less process, and time training steps.
#
# Usage (from the repository root, on a machine with an NVIDIA GPU and a CUDA torch):
#     OUT=/tmp/gpu_out bash scripts/gpu_check.sh
# A machine without our dependencies gets them as wheels in .whl/ (fetched elsewhere, e.g. for Python 3.12:
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#         awkward==2.14.0 awkward_cpp==57 boost-histogram==1.8.1 cramjam==2.14.0 hist==2.12.1 histoprint==2.7.1 \
#         matplotlib==3.11.2 mplhep==1.3.3 mplhep_data==0.1.0 tomli_w==1.2.0 uhi==1.2.1 uproot==5.7.7 \
#         vector==1.9.0 zuko==1.6.0
# ); they and a non-editable install of mlegpipe (for its plugin entry points) go to $SITE.
# Environment:
#     OUT        folder for the logs and JSON results (default /tmp/gpu_check)
#     SITE       pip --target folder for the wheels in .whl/ and mlegpipe itself (default /tmp/site;
#                nothing is installed when .whl/ is absent: mlegpipe and its dependencies must then import)
#     SECTIONS   which parts run (default: "install info tests fulltests bench graphs qs gen ddp")
#     QS_DEVICES devices of the quickstart runs (default "cuda cpu"; cuda is skipped without a GPU)
#     QS_ARGS    extra `mlegpipe run` options for the quickstart runs (e.g. "--set generator.steps=2500")
#     BENCH_SCALE  multiplies the timed step counts of the benchmark (default 1)
# Results: $OUT/log.txt (everything), $OUT/bench.json (steps/s), $OUT/qs_{cuda,cpu}_metrics.json,
# $OUT/checks.json (checkpoint and generation checks).
set -u -o pipefail
OUT=${OUT:-/tmp/gpu_check}
SITE=${SITE:-/tmp/site}
SECTIONS=${SECTIONS:-"install info tests fulltests bench graphs qs gen ddp"}
QS_DEVICES=${QS_DEVICES:-"cuda cpu"}
QS_ARGS=${QS_ARGS:-}
BENCH_SCALE=${BENCH_SCALE:-1}
ROOT=$(pwd)
mkdir -p "$OUT"
LOG=$OUT/log.txt
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
has() { [[ " $SECTIONS " == *" $1 "* ]]; }
say() { echo "=== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }

if has install && [ -d .whl ]; then
    say "install: wheels and mlegpipe into $SITE"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        2>&1 | tee -a "$LOG" || exit 1
    # a real (non-editable) install: its dist-info carries the entry points that register the built-in plugins
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade --target "$SITE" . \
        2>&1 | grep -v -i -E "setuptools|license|\*\*\*|^ *$|!!|corresp|See https|Please|deprecat" | tee -a "$LOG"
fi
# the repository's sources first, then the installed metadata (entry points) and the carried wheels
export PYTHONPATH=$ROOT:$ROOT/plugins:$SITE${PYTHONPATH:+:$PYTHONPATH}
export PATH=$SITE/bin:$PATH
MLEG="python3 -m mlegpipe"

if has info; then
    say "info"
    { nvidia-smi -L; nproc; python3 -c "import sys, torch, numpy, zuko, awkward, uproot
print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available',
      torch.cuda.is_available(), 'threads', torch.get_num_threads(), 'zuko', zuko.__version__,
      'numpy', numpy.__version__, 'awkward', awkward.__version__, 'uproot', uproot.__version__)
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
      $MLEG plugins | head -30; } 2>&1 | tee -a "$LOG"
fi

if has tests; then
    say "tests: every test that mentions cuda/gpu/device"
    grep -rl -i "cuda" tests/ | tee -a "$LOG"
    timeout 120 python3 -m pytest -q -p no:cacheprovider -rs tests/test_flow.py tests/test_distributed.py \
        tests/test_cuda_graph.py -k "cuda or gpu or device or nccl or backend or graph or eager or environment" \
        2>&1 | tee -a "$LOG"
fi
if has fulltests; then
    say "fulltests: test_flow.py, test_distributed.py, test_training.py in full (8 workers)"
    timeout 150 python3 -m pytest -q -p no:cacheprovider -n 8 tests/test_flow.py tests/test_distributed.py tests/test_training.py \
        2>&1 | tail -15 | tee -a "$LOG"
fi

if has bench || has graphs; then
    say "bench / graphs: flow training steps/s, cuda vs cpu; CUDA-graph replay vs eager"
    timeout 600 python3 - "$OUT/bench.json" "$OUT/graphs.json" "$BENCH_SCALE" "$(has bench && echo bench) $(has graphs && echo graphs)" <<'EOF' 2>&1 | tee -a "$LOG"
import dataclasses, json, os, sys, time
import numpy as np
import torch
sys.path.insert(0, "tests")
from test_flow import dis_like  # DIS-like HERA leptons (ln Q2, ln y learned; phi uniform)
from mlegpipe.context import StageContext
from mlegpipe.registry import load_plugins

out, graphs_out, scale, parts = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4].split()
cls = load_plugins().get("generator", "flow").cls
train, valid = dis_like(60_000, 1), dis_like(20_000, 2)
cpu_threads = torch.get_num_threads()

def fit(preset, device, steps, threads=cpu_threads, graphs=None, **kw):
    """Train a flow for ``steps`` steps; ``graphs`` True / False forces CUDA-graph replay on / off (None: default)."""
    torch.set_num_threads(threads)
    if graphs is not None:
        os.environ["MLEGPIPE_CUDA_GRAPHS"] = "1" if graphs else "0"
    p = dataclasses.replace(cls.Params(), preset=preset, steps=steps, device=device, validate_every=0,
                            checkpoint_every=0, sampler="fast", **kw)
    gen = cls(p, StageContext("generator", seed=3))
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    hist = gen.fit(train, valid)
    dt = time.perf_counter() - t
    return gen, hist, dt

rows, manual_rows = [], []
if "bench" in parts:
    fit("default", "cpu", 10)  # imports, first-call overheads
    if torch.cuda.is_available():
        fit("default", "cuda", 30)  # CUDA context, kernels, caching allocator
    configs = [("default", {}, 400), ("default", {"batch_size": 8192}, 200), ("large", {}, 300), ("large", {"batch_size": 8192}, 120),
               ("large", {"batch_size": 32768}, 50)]
    for preset, kw, n in configs:
        n = max(20, int(n * scale))
        runs = [("cuda", cpu_threads)] if torch.cuda.is_available() else []
        runs += [("cpu", cpu_threads), ("cpu", 1)]
        for device, threads in runs:
            if device == "cpu" and threads == 1 and kw.get("batch_size", 0) >= 8192:
                continue
            gen, hist, dt = fit(preset, device, n, threads, **kw)
            last = float(np.mean([h["nll"] for h in hist["steps"][-20:]]))
            row = {"preset": preset, **kw, "batch_size": gen.p.batch_size, "transforms": gen.p.transforms,
                   "hidden": gen.p.hidden, "device": device, "threads": threads, "steps": n, "seconds": round(dt, 3),
                   "steps_per_s": round(n / dt, 2), "ms_per_step": round(1000 * dt / n, 3), "nll_last20": round(last, 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    torch.set_num_threads(cpu_threads)

    # where the time goes: the same optimizer step outside the TrainLoop, with on-device batch indices and a
    # host-device synchronisation (loss.item()) every step or never
    import copy

    def sync(device):
        if device == "cuda":
            torch.cuda.synchronize()

    def manual(preset, device, steps, sync_each, **kw):
        gen, _, _ = fit(preset, "cpu", 2, **kw)
        flow = copy.deepcopy(gen.flows[0]).to(device).train()
        z = torch.randn(60_000, gen.noise_dim, device=device)
        g = torch.Generator(device=device).manual_seed(0)
        opt = torch.optim.AdamW(flow.parameters(), lr=1e-3)
        bs = gen.p.batch_size
        def one():
            idx = torch.randint(0, len(z), (bs,), generator=g, device=device)
            loss = -flow(None).log_prob(z[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            opt.step()
            return loss
        for _ in range(5):
            one().item()
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            loss = one()
            if sync_each:
                loss.item()
        sync(device)
        dt = time.perf_counter() - t
        return one, 1000 * dt / steps

    for preset, kw in (("default", {}), ("large", {})):
        for device in (["cuda"] if torch.cuda.is_available() else []) + ["cpu"]:
            for sync_each in (True, False):
                if device == "cpu" and not sync_each:
                    continue
                one, ms = manual(preset, device, max(20, int(200 * scale)), sync_each, **kw)
                row = {"preset": preset, **kw, "device": device, "sync_each_step": sync_each, "ms_per_step": round(ms, 3)}
                manual_rows.append(row)
                print("manual", json.dumps(row), flush=True)
                if device == "cuda" and sync_each:
                  try:
                    from torch.profiler import ProfilerActivity, profile
                    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                        for _ in range(5):
                            one().item()
                    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
                    gpu_us = sum(e.device_time for e in kernels) / 5 if kernels else float("nan")
                    print(f"profile {preset}: {len(kernels) / 5:.0f} CUDA kernels per step, {gpu_us / 1000:.2f} ms of "
                          "GPU kernel time per step", flush=True)
                    manual_rows[-1].update(kernels_per_step=len(kernels) / 5, gpu_kernel_ms_per_step=gpu_us / 1000)
                    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), flush=True)
                  except Exception as err:  # noqa: BLE001
                    print("profile failed:", repr(err), flush=True)
    json.dump({"rows": rows, "manual": manual_rows, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "torch": torch.__version__, "cpu_threads": cpu_threads}, open(out, "w"), indent=1)
if "graphs" in parts:  # CUDA-graph replay vs eager (MLEGPIPE_CUDA_GRAPHS=0), through fit() on cuda
    graph_rows = []
    if torch.cuda.is_available():
        fit("default", "cuda", 30, graphs=True)
        fit("default", "cuda", 30, graphs=False)
        for preset, kw, n in (("default", {}, 400), ("default", {"batch_size": 8192}, 200), ("large", {}, 300),
                              ("large", {"batch_size": 32768}, 60)):
            n = max(20, int(n * scale))
            for graphs in (True, False):
                gen, hist, dt = fit(preset, "cuda", n, graphs=graphs, **kw)
                nll = [h["nll"] for h in hist["steps"]]
                row = {"preset": preset, "batch_size": gen.p.batch_size, "graphs": graphs, "steps": n,
                       "ms_per_step": round(1000 * dt / n, 3), "nll_first": round(nll[0], 5),
                       "nll_last20": round(float(np.mean(nll[-20:])), 5)}
                graph_rows.append(row)
                print("graphs", json.dumps(row), flush=True)
    os.environ.pop("MLEGPIPE_CUDA_GRAPHS", None)
    json.dump({"rows": graph_rows}, open(graphs_out, "w"), indent=1)
EOF
fi

run_qs() {  # $1: device
    say "quickstart on $1: mlegpipe run pipelines/quickstart.toml --set generator.device=\"$1\" $QS_ARGS"
    local t0=$(date +%s%N)
    # shellcheck disable=SC2086
    timeout ${QS_TIMEOUT:-240} $MLEG run pipelines/quickstart.toml --set "generator.device=\"$1\"" $QS_ARGS -o "/tmp/qs_$1" \
        --force --no-progress > "$OUT/qs_$1_run.log" 2>&1
    local rc=$?
    echo "rc=$rc wall_s=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN{printf "%.1f", (b-a)/1e9}')" | tee -a "$LOG"
    tail -5 "$OUT/qs_$1_run.log" | tee -a "$LOG"
    [ -f "/tmp/qs_$1/metrics.json" ] && cp "/tmp/qs_$1/metrics.json" "$OUT/qs_$1_metrics.json"
}
if has qs; then
    for dev in $QS_DEVICES; do
        if [ "$dev" = cuda ] && ! python3 -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
            continue
        fi
        run_qs "$dev"
    done
    python3 - /tmp/qs_cuda /tmp/qs_cpu <<'EOF' 2>&1 | tee -a "$LOG"
import json, sys
from pathlib import Path
runs = {Path(p).name: json.loads((Path(p) / "metrics.json").read_text())
        for p in sys.argv[1:] if (Path(p) / "metrics.json").exists()}
rows = {}
for name, m in runs.items():
    g, rep = m["stages"]["generator"], m["stages"]["report"]
    r = {f"time {k} s": v for k, v in m.get("timings_s", {}).items()}
    r.update({"train_seconds": g.get("train_seconds"), "distill_seconds": sum(d["seconds"] for d in g.get("distill", [])),
              "distill_rmse": (g.get("distill") or [{}])[0].get("rmse"), "rejected_fraction": g.get("rejected_fraction"),
              "events_per_second": g.get("events_per_second"), "targets passed": rep["summary"]["passed"],
              "targets failed": rep["summary"]["failed"], "mmd2": rep["comparisons"]["generated"].get("mmd2")})
    for t in rep["targets"]["generated"]:
        r[f"{t['metric']} [{t['target']}]"] = f"{t['value']:.4g}{'' if t['passed'] else ' MISS'}"
    rows[name] = r
keys = list(dict.fromkeys(k for r in rows.values() for k in r))
print(f"{'metric':58s}" + "".join(f"{n:>16s}" for n in rows))
for k in keys:
    cells = [rows[n].get(k) for n in rows]
    print(f"{k[:58]:58s}" + "".join(f"{c:>16.5g}" if isinstance(c, float) else f"{str(c):>16s}" for c in cells))
EOF
fi

if has gen; then
    say "gen: the cuda-trained checkpoints on a CUDA-less process (CUDA_VISIBLE_DEVICES='')"
    ls -la /tmp/qs_cuda/checkpoints 2>&1 | tee -a "$LOG"
    CUDA_VISIBLE_DEVICES="" python3 - /tmp/qs_cuda /tmp/qs_cpu "$OUT/checks.json" <<'EOF' 2>&1 | tee -a "$LOG"
import json, subprocess, sys
from pathlib import Path
import numpy as np
import torch
import uproot
assert not torch.cuda.is_available()
run, cpu_run, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
checks = {}
# every .pt the cuda run wrote must load with plain torch.load(weights_only=True) on a machine without CUDA
for pt in sorted(run.rglob("*.pt")):
    try:
        state = torch.load(pt, weights_only=True)
        devs = set()
        def walk(x):
            if isinstance(x, torch.Tensor):
                devs.add(x.device.type)
            elif isinstance(x, dict):
                for v in x.values():
                    walk(v)
            elif isinstance(x, list | tuple):
                for v in x:
                    walk(v)
        walk(state)
        checks[str(pt.relative_to(run))] = {"loads_without_cuda": True, "tensor_devices": sorted(devs)}
    except Exception as err:  # noqa: BLE001
        checks[str(pt.relative_to(run))] = {"loads_without_cuda": False, "error": repr(err)[:300]}
print(json.dumps(checks, indent=1))
res = {"checkpoints": checks}
for name, r in (("cuda", run), ("cpu", cpu_run)):
    cands = [r / "checkpoints" / "generator.pt"]
    if not cands[0].exists():
        continue
    rootfile = f"/tmp/gen_{name}.root"
    p = subprocess.run([sys.executable, "-m", "mlegpipe", "generate", str(cands[0]), "-n", "200000", "-o", rootfile,
                        "--seed", "11", "--force", "--no-progress"], capture_output=True, text=True)
    print(name, "generate rc", p.returncode, p.stderr[-800:])
    if p.returncode == 0:
        with uproot.open(rootfile) as f:
            tree = f[f.keys()[0]]
            arr = tree.arrays(library="np")
        stats = {k: [float(np.mean(v)), float(np.std(v))] for k, v in arr.items()
                 if k in ("Q2", "x", "y", "lepton_E", "lepton_pz") and v.dtype.kind == "f"}
        if "Q2" in arr:
            stats["lnQ2"] = [float(np.mean(np.log(arr["Q2"]))), float(np.std(np.log(arr["Q2"])))]
        res[f"generate_{name}"] = {"checkpoint": cands[0].name, "events": int(len(next(iter(arr.values())))),
                                   "branches": sorted(arr)[:20], "mean_std": stats}
        print(name, json.dumps(res[f"generate_{name}"]))
json.dump(res, open(out, "w"), indent=1)
EOF
fi

if has ddp; then
    say "ddp: 2 ranks (torchrun, gloo) sharing the one GPU, device = cuda"
    timeout 240 $MLEG run pipelines/quickstart.toml --nproc 2 --set 'generator.device="cuda"' \
        --set generator.steps=300 --set truth.events=20000 -o /tmp/qs_ddp --force --no-progress > "$OUT/ddp.log" 2>&1
    echo "ddp rc=$?" | tee -a "$LOG"
    tail -8 "$OUT/ddp.log" | tee -a "$LOG"
    say "ddp: nccl with 2 ranks on 1 GPU must be a clear ConfigError"
    MLEGPIPE_DIST_BACKEND=nccl timeout 120 $MLEG run pipelines/quickstart.toml --nproc 2 \
        --set 'generator.device="cuda"' --set generator.steps=50 --set truth.events=5000 -o /tmp/qs_nccl --force \
        --no-progress > /tmp/nccl.log 2>&1
    echo "nccl rc=$?" | tee -a "$LOG"
    grep -i -E "error|nccl" /tmp/nccl.log | head -6 | tee -a "$LOG"
fi
say "done"
