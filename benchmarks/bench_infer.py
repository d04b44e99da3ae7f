"""Prediction and training on the CPU against the machine's roofline (docs/performance.md,
section "CPU").

One run prints:

* the machine: the CPU model, the flags that decide the kernels (avx2, avx512f,
  avx512_bf16, amx), torch's version and thread count, ONNX Runtime's version;
* the roofline: the best rate of a 2048 x 2048 fp32 matmul on torch's threads;
* each preset's FLOPs per slice (forward) and per training patch (forward and backward),
  counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs);
* for ``small`` and ``paper`` at 800 x 800: seconds per slice, GFLOPS and the share of
  the roofline of each backend, with the largest difference from eager fp32 in units of
  the intensity window (a window from percentiles of a simulated slice) -- eager fp32 in
  the default memory format (NCHW, what :func:`napari_dfct.infer.predict` ran on a CPU
  before), eager channels-last (the package's eager backend), ``torch.compile``
  (inductor; its compile time apart), ONNX Runtime (the package's ``onnx`` backend; its
  export time apart), bf16 autocast where the CPU has native bf16, and batches of 2 and 4
  slices for ``small``;
* ONNX Runtime's session options on one slice of each preset: the package's session
  against other graph optimisation levels, spinning threads, no memory arena, denormals
  as zero (and one thread fewer, on more than one);
* :func:`napari_dfct.infer.predict` of one 800 x 800 slice (the default backend against
  the NCHW path of before: nothing cached, the export in the disk cache only, a session in
  memory) and of 8 slices;
* ``dfct predict`` of one slice as a command, a fresh process each time: eager fp32 NCHW
  (before), ``--backend eager``, ``auto`` with a cold and with a warm disk cache of exports
  (with a warm one: loading the model with torch, as before, and without torch), the whole
  command and the command after its imports, and whether torch was imported;
* training ``small`` (the ``quick`` recipe's patch and batch): steps per second in NCHW and
  channels-last from the same seed, and whether their losses are bit-identical.

Backends are interleaved and each figure is the best of ``--repeats`` (other jobs on a
shared machine only ever add time, so the minimum is the robust figure, and every time is
an upper bound). Run it at normal priority::

    nice -n 0 python benchmarks/bench_infer.py            # about 15 minutes on 2 cores
    nice -n 0 python benchmarks/bench_infer.py --quick    # small only, no compile
    python benchmarks/bench_infer.py --only cli ort --presets paper   # some parts

Exports go to a temporary cache folder of the run, never the user's.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from napari_dfct import infer
from napari_dfct.data import window_from_percentiles
from napari_dfct.model import PRESETS, build_model

CPU = torch.device("cpu")
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
#: The largest difference from eager fp32 a backend may have to be eligible (window units).
TOLERANCE = 1e-4


def machine() -> dict:
    info = {"model": "unknown", "flags": set()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["model"] == "unknown":
            info["model"] = value.strip()
        if key.strip() == "flags":
            info["flags"] = set(value.split())
    return info


def print_machine(info: dict) -> None:
    flags = ", ".join(f"{f} {'yes' if f in info['flags'] else 'no'}" for f in FLAGS)
    print(f"machine: {info['model']}, {os.cpu_count()} CPUs ({os.uname().machine})")
    print(f"  flags: {flags}")
    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "not installed"
    print(
        f"  torch {torch.__version__}, {torch.get_num_threads()} threads, kernels "
        f"{torch.backends.cpu.get_cpu_capability()}; onnxruntime {ort}; load average "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )


def roofline(repeats: int) -> dict[str, float]:
    """Best GFLOPS of a 2048^2 fp32 matmul on torch's threads: torch.mm (its BLAS) and
    numpy's matmul (its BLAS, OpenBLAS in the wheels, on as many threads as there are
    cores): a BLAS may not pick its fastest kernels on every CPU, so the better of the two
    is the roofline."""
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    an, bn = a.numpy(), b.numpy()
    out = {}
    for name, fn in (("torch.mm", lambda: torch.mm(a, b)), ("numpy", lambda: an @ bn)):
        fn()
        out[name] = 2 * n**3 / min(_timed(fn) for _ in range(repeats)) / 1e9
    return out


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def count_flops(preset: str, size: int, patch: int) -> tuple[float, float]:
    """(forward FLOPs of one size x size slice, forward + backward FLOPs of one patch)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = build_model(preset, zero_init=False)
        x = torch.zeros(1, 1, size, size)
        p = torch.zeros(1, 1, patch, patch)
    net.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x)
    fwd = fc.get_total_flops()
    net.train()
    with FlopCounterMode(display=False) as fc:
        net(p).square().mean().backward()
    return float(fwd), float(fc.get_total_flops())


def simulated_slice(size: int):
    """A simulated size x size input slice, its window, and the normalised slice and
    target."""
    from napari_dfct.simulate import simulate_dfct

    sim = simulate_dfct(n_slices=1, size=size, n_views=size, rotations=2, seed=0)
    window = window_from_percentiles(sim.input, sim.target)
    norm = [window.normalize(a[0]).astype(np.float32) for a in (sim.input, sim.target)]
    return sim.input[0], window, norm[0], norm[1]


def calibrated(preset: str, xn: np.ndarray) -> torch.nn.Module:
    """The preset with seeded random weights and BatchNorm statistics of a crop of the
    slice (activations at the scale of a trained network), in eval mode."""
    torch.manual_seed(0)
    net = build_model(preset, zero_init=False)
    for mod in net.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None
    net.train()
    c = min(256, xn.shape[0])
    with torch.no_grad():
        net(torch.from_numpy(np.ascontiguousarray(xn[:c, :c]))[None, None])
    return net.eval()


def backends(net: torch.nn.Module, want_compile: bool, bf16: bool) -> tuple[dict, dict]:
    """The forward callables (normalised (B, 1, H, W) in, out) and their one-off costs."""
    from napari_dfct import _onnx

    base = copy.deepcopy(net).eval()

    @torch.inference_mode()
    def nchw(x):
        return base(x)

    eager = infer._Runner(copy.deepcopy(net).eval(), CPU, False, "eager")
    out = {"eager fp32 NCHW (before)": nchw, "eager channels-last (eager)": eager}
    setup: dict[str, float] = {}
    if _onnx.missing() is None:
        onnx_net = copy.deepcopy(net).eval()
        t = time.perf_counter()
        _onnx.session(onnx_net, 1, infer._multiple(onnx_net))
        setup["onnx"] = time.perf_counter() - t
        out["ONNX Runtime (onnx)"] = infer._Runner(onnx_net, CPU, False, "onnx")
    if want_compile:
        cl = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)
        compiled = torch.compile(cl, dynamic=False)

        @torch.inference_mode()
        def comp(x):
            return compiled(x.contiguous(memory_format=torch.channels_last))

        out["torch.compile (inductor)"] = comp
    if bf16:
        cl16 = copy.deepcopy(net).eval().to(memory_format=torch.channels_last)

        @torch.inference_mode()
        def half(x):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return cl16(x.contiguous(memory_format=torch.channels_last)).float()

        out["bf16 autocast, channels-last"] = half
    return out, setup


def run_backends(cases: dict, repeats: int, setup: dict) -> dict:
    """``cases``: name -> (forward, input, slices in it). All interleaved in each repeat;
    returns name -> (best seconds per slice, max |diff| against the first case's output for
    the same slice)."""
    ref = None
    diffs, times = {}, {name: [] for name in cases}
    for name, (fn, x, _) in cases.items():  # first calls: compile, warm-up, reference
        t = time.perf_counter()
        y = fn(x)
        if "compile" in name:
            setup["compile"] = time.perf_counter() - t
        ref = y[:1] if ref is None else ref
        diffs[name] = float((y - ref).abs().max())
    for _ in range(repeats):
        for name, (fn, x, _) in cases.items():
            times[name].append(_timed(lambda fn=fn, x=x: fn(x)))
    return {name: (min(times[name]) / cases[name][2], diffs[name]) for name in cases}


def print_rows(rows: list, flops: float, roof: float, base: float) -> None:
    print(
        f"  {'backend':42s} {'s/slice':>8s} {'GFLOPS':>7s} {'roofline':>8s} "
        f"{'vs NCHW':>7s} {'max|diff|/window':>16s}"
    )
    for name, sec, diff in rows:
        ok = "" if diff <= TOLERANCE else "  (over 1e-4)"
        print(
            f"  {name:42s} {sec:8.3f} {flops / sec / 1e9:7.1f} {flops / sec / 1e9 / roof:8.1%} "
            f"{sec / base:7.2f} {diff:16.1e}{ok}"
        )


def bench_preset(preset, xn, args, info) -> tuple[dict, dict, bool]:
    """Time every backend (and batch, for small); (results, one-off costs, bf16 run)."""
    net = calibrated(preset, xn)
    bf16 = "avx512_bf16" in info["flags"] or "amx_bf16" in info["flags"]
    fns, setup = backends(net, args.compile and preset in args.compile_presets, bf16)
    x1 = torch.from_numpy(xn)[None, None]
    repeats = args.repeats if preset == "small" else max(3, args.repeats - 2)
    cases = {name: (fn, x1, 1) for name, fn in fns.items()}
    if preset == "small":  # batches of slices, per slice
        for b in (2, 4):
            xb = x1.expand(b, -1, -1, -1).contiguous()
            for name, fn in fns.items():
                if "NCHW" in name or "(eager)" in name or "(onnx)" in name:
                    cases[f"{name}, batch {b}"] = (fn, xb, b)
    return run_backends(cases, repeats, setup), setup, bf16


def print_preset(preset, size, res, setup, bf16, flops, roof) -> None:
    base = res["eager fp32 NCHW (before)"][0]
    rows = [(name, sec, diff) for name, (sec, diff) in res.items()]
    print(f"\n{preset} at {size}x{size}: {flops / 1e9:.0f} GFLOP per slice")
    print_rows(rows, flops, roof, base)
    for what, sec in setup.items():
        print(f"  one-off {what}: {sec:.1f} s")
    if not bf16:
        print("  bf16: skipped, the CPU has neither AVX512-BF16 nor AMX (no native bf16)")
    best = min((r for r in rows if r[2] <= TOLERANCE), key=lambda r: r[1])
    print(f"  fastest within tolerance: {best[0]}, {best[1]:.3f} s/slice ({base / best[1]:.2f}x)")
    parts = []
    for name, (sec, diff) in res.items():  # batch 1, with the one-off cost of the backend
        one_off = next((v for k, v in setup.items() if k in name.lower()), 0.0)
        if diff <= TOLERANCE and "batch" not in name:
            parts.append(f"{name.split(' (')[0]} {(300 * sec + one_off) / 60:.1f} min")
    print("  a 300-slice volume: " + "; ".join(parts))


def bench_predict(net, image, window, repeats: int) -> None:
    """predict() of one slice and of 8: the default against the NCHW path of before; one
    slice also with the export in the disk cache but no session in memory (a new process's
    first slice, the load and the check included) and with the session in memory."""
    from napari_dfct import _onnx

    old = infer._channels_last

    def before(img):
        infer._channels_last = lambda dev: dev.type == "cuda"
        try:
            return infer.predict(net, img, window=window, device="cpu", backend="eager")
        finally:
            infer._channels_last = old

    def now(img):
        return infer.predict(net, img, window=window, device="cpu")

    def from_disk(img):
        _onnx._CACHE.clear()  # as in a new process: only the disk cache holds the export
        _onnx._DIGESTS.clear()
        return now(img)

    arms = {"1 slice, nothing cached (eager channels-last)": (now, image, "cold")}
    if _onnx.missing() is None:
        arms["1 slice, export on disk, no session in memory"] = (from_disk, image, "warm")
        arms["1 slice, session in memory"] = (now, image, "warm")
    arms["8 slices (ONNX Runtime when installed; the export in the first call)"] = (
        now,
        np.stack([image] * 8),
        "cold",
    )
    for label, (fn, img, cache) in arms.items():
        with _cache_folder(cache == "cold"):
            _onnx._DIGESTS.clear()
            if cache == "warm":
                _onnx.warm(net)
            ref, new = before(img), fn(img)  # warm-up (and the export, for 8 slices)
            diff = float(np.abs(ref - new).max()) / window.width
            tb, tn = [], []
            for _ in range(repeats if img.ndim == 2 else 1):
                tb.append(_timed(lambda img=img: before(img)))
                tn.append(_timed(lambda fn=fn, img=img: fn(img)))
        b, n = min(tb), min(tn)
        print(
            f"  predict(), {label}: before {b:.2f} s, now {n:.2f} s: {n / b:.2f}x "
            f"(max |diff| {diff:.1e} of the window)"
        )


class _cache_folder:
    """A temporary package cache folder (``NAPARI_DFCT_CACHE_DIR``) for a block, emptied
    first when ``fresh``; the benchmark never reads or fills the user's cache."""

    def __init__(self, fresh: bool):
        self.fresh = fresh

    def __enter__(self):
        from napari_dfct import _onnx

        self.old = os.environ.get("NAPARI_DFCT_CACHE_DIR")
        self.tmp = tempfile.TemporaryDirectory(prefix="dfct-bench-cache-")
        os.environ["NAPARI_DFCT_CACHE_DIR"] = self.tmp.name if self.fresh else _SHARED_CACHE
        _onnx._CACHE.clear()
        return os.environ["NAPARI_DFCT_CACHE_DIR"]

    def __exit__(self, *exc):
        if self.old is None:
            os.environ.pop("NAPARI_DFCT_CACHE_DIR", None)
        else:
            os.environ["NAPARI_DFCT_CACHE_DIR"] = self.old
        self.tmp.cleanup()


#: The cache folder of the "warm" cases (a temporary folder of the run, set in main()).
_SHARED_CACHE = ""

#: ``dfct predict`` in a fresh interpreter, timed inside: the imports apart from the command
#: itself (torch among the imports for every path that uses it, as before the command
#: could run without it); ``NCHW=1`` runs the eager path in the default memory format, as
#: before channels-last on the CPU; ``TORCH_PATH=1`` loads the model with torch even where
#: the command would not (napari_dfct._fast_predict), as before that path existed.
_CLI = """\
import json, os, sys, time
t0 = time.perf_counter()
from napari_dfct.cli import main
if os.environ.get("TORCH_PATH") == "1":
    import torch
    from napari_dfct import _fast_predict
    _fast_predict.load = lambda *args: None
if os.environ.get("NCHW") == "1":
    from napari_dfct import infer
    infer._channels_last = lambda dev: dev.type == "cuda"
t1 = time.perf_counter()
rc = main(sys.argv[1:])
t2 = time.perf_counter()
report = {"imports": t1 - t0, "command": t2 - t1, "torch": "torch" in sys.modules}
print(json.dumps(report), file=sys.stderr)
sys.exit(rc)
"""


def bench_cli(net, image, window, repeats: int) -> None:
    """``dfct predict`` of one slice as a command (a fresh process each time, interleaved
    repeats): eager fp32 NCHW (before), ``--backend eager`` (channels-last), ``auto`` with
    a cold and with a warm disk cache of exports (with torch, as before, and without it);
    wall time of the whole command (process start and imports included) and of the command
    after its imports (torch's among them where the command uses torch)."""
    from napari_dfct import _onnx
    from napari_dfct.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_checkpoint(Path(tmp) / "m", net, {"window": window.to_dict(), "name": "b"})
        src = Path(tmp) / "slice.npy"
        np.save(src, image)
        warm, cold = Path(tmp) / "warm", Path(tmp) / "cold"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        torch_path = {"TORCH_PATH": "1"}
        arms = {
            "eager fp32 NCHW (before)": ("eager", {"NCHW": "1", **torch_path}, cold),
            "--backend eager (channels-last)": ("eager", torch_path, cold),
            "auto, cold cache": ("auto", torch_path, cold),
        }
        if _onnx.missing() is None:
            arms["auto, warm cache, with torch"] = ("auto", torch_path, warm)
            arms["auto, warm cache (no torch)"] = ("auto", {}, warm)

        def run(name: str) -> tuple[float, dict, np.ndarray]:
            backend, extra, cache = arms[name]
            if cache == cold:
                shutil.rmtree(cold, ignore_errors=True)
            out = Path(tmp) / "p.npy"
            cmd = [sys.executable, "-c", _CLI, "predict", "--model", str(folder)]
            cmd += ["--input", str(src), "--out", str(out), "--overwrite", "--no-progress"]
            cmd += ["--backend", backend]
            e = {**env, **extra, "NAPARI_DFCT_CACHE_DIR": str(cache)}
            t = time.perf_counter()
            res = subprocess.run(cmd, check=True, env=e, capture_output=True, text=True)
            wall = time.perf_counter() - t
            inner = json.loads(res.stderr.strip().splitlines()[-1])
            return wall, inner, np.load(out)

        first = {}
        if "auto, warm cache (no torch)" in arms:  # the export, once: what `dfct train` leaves
            t = time.perf_counter()
            e = {**env, "NAPARI_DFCT_CACHE_DIR": str(warm)}
            code = (
                "import sys; from napari_dfct import _onnx; "
                "from napari_dfct.checkpoint import load_model; "
                "sys.exit(0 if _onnx.warm(load_model(sys.argv[1]).model) else 1)"
            )
            subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=e)
            print(
                f"  the export into the disk cache (a process of its own): "
                f"{time.perf_counter() - t:.1f} s"
            )
        times: dict[str, list] = {name: [] for name in arms}
        for _ in range(repeats):
            for name in arms:
                wall, inner, out = run(name)
                times[name].append((wall, inner["command"], inner["imports"], inner["torch"]))
                first.setdefault(name, out)
        ref = first["eager fp32 NCHW (before)"]
        base = min(t[0] for t in times["eager fp32 NCHW (before)"])
        base_cmd = min(t[1] for t in times["eager fp32 NCHW (before)"])
        print(
            f"  dfct predict, 1 slice, best of {repeats} interleaved (whole command; after "
            "the imports):"
        )
        for name, ts in times.items():
            wall, cmd_s = min(t[0] for t in ts), min(t[1] for t in ts)
            imports = min(t[2] for t in ts)
            diff = float(np.abs(first[name] - ref).max()) / window.width
            used = (
                "torch"
                if all(t[3] for t in ts)
                else "no torch"
                if not any(t[3] for t in ts)
                else "?"
            )
            print(
                f"    {name:34s} {wall:6.2f} s ({wall / base:.2f}x); {cmd_s:5.2f} s "
                f"({cmd_s / base_cmd:.2f}x); imports {imports:.2f} s; max |diff| {diff:.1e}; "
                f"{used}"
            )


def bench_ort_options(net, xn: np.ndarray, repeats: int) -> dict:
    """ONNX Runtime session options on one slice, interleaved, best of ``repeats``: the
    package's session against variants; returns name -> (s/slice, max |diff| against the
    package's)."""
    import io

    import onnxruntime as ort

    from napari_dfct import _onnx

    buf = io.BytesIO()
    with torch.no_grad():
        _onnx._export(net, 1, infer._multiple(net), buf)
    data = buf.getvalue()
    threads = torch.get_num_threads()
    x = np.ascontiguousarray(xn[None, None], dtype=np.float32)

    def make(level=None, spin="0", arena=True, pattern=True, denormal=False, threads=threads):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        if level is not None:
            opts.graph_optimization_level = level
        opts.enable_cpu_mem_arena = arena
        opts.enable_mem_pattern = pattern
        if denormal:
            opts.add_session_config_entry("session.set_denormal_as_zero", "1")
        opts.log_severity_level = 3
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda: sess.run(None, {name: x})[0]

    gol = ort.GraphOptimizationLevel
    pkg = _onnx.OnnxSession(data, threads, (1, 1, 64, 64))
    variants = {
        "the package's session (ORT_ENABLE_ALL, no spinning)": lambda: pkg(
            torch.from_numpy(x)
        ).numpy(),
        "ORT_ENABLE_EXTENDED (no NCHWc layout)": make(level=gol.ORT_ENABLE_EXTENDED),
        "ORT_ENABLE_BASIC": make(level=gol.ORT_ENABLE_BASIC),
        "spinning on": make(spin="1"),
        "no memory arena, no memory pattern": make(arena=False, pattern=False),
        "denormals as zero": make(denormal=True),
    }
    if threads > 1:
        variants[f"intra_op_num_threads {threads - 1}"] = make(threads=threads - 1)
    ref = variants["the package's session (ORT_ENABLE_ALL, no spinning)"]()
    diffs = {name: float(np.abs(fn() - ref).max()) for name, fn in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            times[name].append(_timed(fn))
    return {name: (min(times[name]), diffs[name]) for name in variants}


def print_ort_options(preset: str, res: dict, flops: float, roof: float) -> None:
    print(f"\nONNX Runtime session options, {preset} (one slice, best of the run):")
    base = next(iter(res.values()))[0]
    for name, (sec, diff) in res.items():
        print(
            f"  {name:52s} {sec:7.3f} s {flops / sec / 1e9:6.1f} GFLOPS "
            f"{flops / sec / 1e9 / roof:6.1%} {sec / base:5.2f}x  max|diff| {diff:.1e}"
        )


def bench_training(xn: np.ndarray, yn: np.ndarray, steps: int, repeats: int) -> None:
    """Steps/s of the quick recipe (small, patch 64, batch 8) in NCHW and channels-last."""
    from napari_dfct.losses import AmplifiedLoss
    from napari_dfct.train import recipe_config
    from napari_dfct.train.optim import build_optimizer

    cfg = recipe_config("quick", seed=0, device="cpu")
    rng = np.random.default_rng(1)
    side, p = xn.shape[0], cfg.patch
    batches = []
    for _ in range(steps):  # patches of the simulated slice and its target
        rc = rng.integers(0, side - p, size=(cfg.batch_size, 2))
        x = np.stack([xn[r : r + p, c : c + p] for r, c in rc])[:, None]
        y = np.stack([yn[r : r + p, c : c + p] for r, c in rc])[:, None]
        batches.append((torch.from_numpy(x), torch.from_numpy(y)))

    def train(channels_last: bool) -> tuple[float, list[float]]:
        torch.manual_seed(cfg.seed)
        net = build_model(cfg.preset, **cfg.model_args())
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        loss_fn = AmplifiedLoss(cfg.loss)
        opt = build_optimizer(net, cfg)
        net.train()
        losses = []
        t = time.perf_counter()
        for x, y in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            loss = loss_fn(net(x).float(), y, None, input=x, angular=None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss))
        return time.perf_counter() - t, losses

    runs: dict[bool, list] = {False: [], True: []}
    for _ in range(repeats):
        for cl in runs:
            runs[cl].append(train(cl))
    (tn, ln), (tc, lc) = (min(runs[k], key=lambda r: r[0]) for k in (False, True))
    same = ln == lc
    worst = max(abs(a - b) / abs(a) for a, b in zip(ln, lc))
    print(
        f"\ntraining small, patch {cfg.patch}, batch {cfg.batch_size}, {steps} steps, seed "
        f"{cfg.seed}: NCHW {steps / tn:.2f} steps/s, channels-last {steps / tc:.2f} steps/s "
        f"({tn / tc:.2f}x)"
    )
    print(
        "  losses: "
        + (
            "bit-identical"
            if same
            else f"not bit-identical: first step {abs(ln[0] - lc[0]) / abs(ln[0]):.1e}, "
            f"largest {worst:.1e} relative (both reproduce themselves run to run)"
        )
    )


#: The parts of a run (``--only``); every run prints the machine, the roofline and FLOPs.
PARTS = ("backends", "ort", "predict", "cli", "training")


def main(argv=None) -> int:
    global _SHARED_CACHE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small only, no torch.compile")
    ap.add_argument("--size", type=int, default=800, help="slice side (default 800)")
    ap.add_argument(
        "--repeats", type=int, default=5, help="interleaved repeats (best of; paper: 2 fewer)"
    )
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument(
        "--only",
        nargs="+",
        choices=PARTS,
        default=list(PARTS),
        help="run only these parts (default: all): the backends' table, ONNX Runtime's "
        "session options, predict() and dfct predict of one slice, training",
    )
    ap.add_argument("--presets", nargs="+", choices=["small", "paper"], help="default: both")
    args = ap.parse_args(argv)
    args.repeats = max(3, args.repeats)
    presets = args.presets or (["small"] if args.quick else ["small", "paper"])
    args.compile = args.compile and not args.quick
    args.compile_presets = presets
    warnings.filterwarnings("ignore")
    from napari_dfct import _onnx

    ort = _onnx.missing() is None
    tmp = tempfile.TemporaryDirectory(prefix="dfct-bench-cache-")
    _SHARED_CACHE = tmp.name  # exports of this run: never the user's cache

    info = machine()
    print_machine(info)
    rates = roofline(10 if not args.quick else 5)
    print(
        "roofline: 2048^2 fp32 matmul, best of 10: "
        + ", ".join(f"{k} {v:.0f} GFLOPS" for k, v in rates.items())
    )
    roof = max(rates.values())
    patch = 128
    print(
        f"\nFLOPs (a multiply-add counts 2), slice {args.size}^2 forward, patch {patch}^2 "
        "forward + backward:"
    )
    flops = {}
    for p in PRESETS:
        fwd, train = count_flops(p, args.size, patch)
        flops[p] = fwd
        print(f"  {p:6s} {fwd / 1e9:8.1f} GFLOP per slice, {train / 1e9:7.2f} GFLOP per patch")
    image, window, xn, yn = simulated_slice(args.size)
    print(f"window {window.low:.3f} .. {window.high:.3f} (percentiles of a simulated slice)")
    done, options = {}, {}
    for p in presets:  # the roofline is measured again around every preset
        if "backends" in args.only:
            roof = max(roof, *roofline(5).values())
            done[p] = bench_preset(p, xn, args, info)
        if "ort" in args.only and ort:
            roof = max(roof, *roofline(5).values())
            reps = args.repeats if p == "small" else max(3, args.repeats - 2)
            options[p] = bench_ort_options(calibrated(p, xn), xn, reps)
    roof = max(roof, *roofline(5).values())
    print(f"\nroofline: {roof:.0f} GFLOPS, the best matmul of this run")
    for p, (res, setup, bf16) in done.items():
        print_preset(p, args.size, res, setup, bf16, flops[p], roof)
    for p, res in options.items():
        print_ort_options(p, res, flops[p], roof)
    net = calibrated("small", xn)
    if "predict" in args.only or "cli" in args.only:
        print(f"\nend to end, small at {args.size}^2:")
    if "predict" in args.only:
        bench_predict(net, image, window, args.repeats)
    if "cli" in args.only:
        bench_cli(net, image, window, args.repeats)
    if "training" in args.only:
        bench_training(xn, yn, args.train_steps if not args.quick else 8, args.repeats)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
