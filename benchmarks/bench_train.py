"""Training throughput and inference time: our pipeline against a plain baseline.

Ours
    :class:`napari_dfct.data.PatchSampler` (whole normalised set resident on the training
    device; one batched bilinear gather does crop + flips + rotation for input, target and
    A_S), the training step of :func:`napari_dfct.train.fit` (bf16 autocast on CUDA,
    channels_last on CUDA and on the CPU, torch's fused Adam), and
    :func:`napari_dfct.infer.predict` (inference mode, batched; bf16 + channels_last on
    CUDA, channels_last on the CPU).
Baseline
    the usual recipe: a ``torch.utils.data.Dataset`` that crops, flips and rotates each
    sample on the CPU (NumPy + ``scipy.ndimage.rotate``), a ``DataLoader`` that collates
    the batch, a copy to the device, float32 throughout; inference as a plain float32
    ``model(x)`` under ``torch.no_grad``.

Both sides use the same model, loss (``l2+s+f-nonlinear``, the paper's best L2 config),
optimiser (Adam, lr 1e-3, weight decay 0.1) and data (synthetic 800x800 slices), in the
same run. Printed: sampler-only patches/s, training patches/s, inference seconds per
800x800 slice, and the ratios ours / baseline (> 1 means ours is faster).

2.5-D rows (``--context``, default ``1,2``): our training patches/s of the 2-D model and of
context models (``2K + 1`` input slices, :mod:`napari_dfct.context`) on the same data in
the same run, and their ratios to the 2-D model (< 1 means slower; only the first conv and
the sampler's channels grow with K).

3-D rows (``--dims 3``, the default; ``--dims ""`` leaves them out): the 2-D model and the
3-D model of the same preset (:mod:`napari_dfct.volume3d`) trained in the same run at a
matched number of slices per optimiser step: 2-D batches of ``batch`` patches against 3-D
batches of ``batch / depth`` patches of ``--patch-depth`` slices (``2 x 4`` against ``8`` in
``--quick``); printed as slices per second and seconds per step, with the ratio 3-D / 2-D
(< 1: 3-D is slower per slice). Inference: seconds per slice of
:func:`napari_dfct.infer.predict` on a volume of ``2 x depth`` slices (the 3-D model in
overlapping z-chunks of ``depth`` slices) and of the network alone on one chunk of
``depth`` slices against ``depth`` slices through the 2-D network.

Usage::

    python benchmarks/bench_train.py --quick            # a few steps, CPU-friendly
    python benchmarks/bench_train.py --device cuda      # full run on a GPU
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np
import torch
from scipy import ndimage

from napari_dfct.data import PatchSampler, window_from_percentiles
from napari_dfct.device import autocast as _autocast
from napari_dfct.device import prefers_channels_last, resolve_device
from napari_dfct.infer import predict
from napari_dfct.losses import AmplifiedLoss, LossConfig
from napari_dfct.model import build_model, count_parameters
from napari_dfct.train import TrainConfig, build_optimizer

LOSS = LossConfig.from_name("l2+s+f-nonlinear")


# ----------------------------------------------------------------------------- data
def make_data(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth structure plus streak-like stripes and noise (values do not matter here)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    target = np.empty((n, size, size), np.float32)
    inp = np.empty_like(target)
    for k in range(n):
        target[k] = np.sin(7 * xx + k) * np.cos(5 * yy - k)
        ang = rng.uniform(0, np.pi)
        stripes = 0.3 * np.sin(60 * (np.cos(ang) * xx + np.sin(ang) * yy))
        inp[k] = target[k] + stripes + 0.1 * rng.standard_normal((size, size), dtype=np.float32)
    return inp, target


class BaselineDataset(torch.utils.data.Dataset):
    """Per-sample CPU crop + flips + rotation (the common hand-written recipe)."""

    def __init__(self, x, y, a_s, patch, length, seed=0):
        self.x, self.y, self.a_s = x, y, a_s
        self.patch = patch
        self.length = length
        self.rng = np.random.default_rng(seed)
        self.big = int(math.ceil(patch * math.sqrt(2))) + 2  # room for a rotation

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = self.rng
        z = int(rng.integers(len(self.x)))
        h, w = self.x.shape[1:]
        big = min(self.big, h, w)
        r = int(rng.integers(0, h - big + 1))
        c = int(rng.integers(0, w - big + 1))
        crops = [
            self.x[z, r : r + big, c : c + big],
            self.y[z, r : r + big, c : c + big],
            self.a_s[r : r + big, c : c + big],
        ]
        if rng.random() < 0.5:
            angle = rng.uniform(-15, 15)
            crops = [
                ndimage.rotate(a, angle, reshape=False, order=1, mode="nearest") for a in crops
            ]
        o = (big - self.patch) // 2
        crops = [a[o : o + self.patch, o : o + self.patch] for a in crops]
        if rng.random() < 0.5:
            crops = [a[:, ::-1] for a in crops]
        if rng.random() < 0.5:
            crops = [a[::-1, :] for a in crops]
        return tuple(torch.from_numpy(np.ascontiguousarray(a))[None] for a in crops)


# ----------------------------------------------------------------------------- timing
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(model, opt, loss_fn, xb, yb, wb, device, amp, channels_last):
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with _autocast(device, amp):
        pred = model(xb)
    loss = loss_fn(pred.float(), yb, wb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def _fresh(preset, device, ours):
    """The model and optimiser of one side: ours as :func:`napari_dfct.train.fit` builds
    them (channels-last where the device prefers it, ``build_optimizer``: fused Adam), the
    baseline in the default memory format with torch's default Adam."""
    torch.manual_seed(0)
    model = build_model(preset).to(device)
    if ours and prefers_channels_last(device):
        model = model.to(memory_format=torch.channels_last)
    model.train()
    if ours:
        opt = build_optimizer(model, TrainConfig(preset=preset, lr=1e-3, weight_decay=0.1))
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.1)
    return model, opt


def _alternate(fn_ours, fn_base, steps, rounds, device):
    """Best (minimum) seconds per call of each side, measured in alternating rounds so
    that load from other processes hits both sides alike."""
    best = [math.inf, math.inf]
    for _ in range(rounds):
        for k, fn in enumerate((fn_ours, fn_base)):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            best[k] = min(best[k], (time.perf_counter() - t0) / steps)
    return best


def _loader(ds, batch, workers, cuda):
    """An endless iterator over DataLoader batches."""
    while True:
        yield from torch.utils.data.DataLoader(
            ds, batch_size=batch, num_workers=workers, pin_memory=cuda, persistent_workers=False
        )


def bench_sampler(xn, yn, a_s, patch, batch, steps, rounds, device, workers):
    ours = PatchSampler(xn, yn, a_s, patch=patch, seed=0, device=device)
    idx = torch.arange(batch) % len(xn)
    ds = BaselineDataset(xn, yn, a_s.cpu().numpy(), patch, batch * 64)
    it = _loader(ds, batch, workers, device.type == "cuda")

    def base():
        return [t.to(device, non_blocking=True) for t in next(it)]

    ours.sample(idx)
    base()
    t_ours, t_base = _alternate(lambda: ours.sample(idx), base, steps, rounds, device)
    return batch / t_ours, batch / t_base


def bench_train(preset, xn, yn, a_s, patch, batch, steps, rounds, device, workers):
    loss_fn = AmplifiedLoss(LOSS).to(device)
    cuda = device.type == "cuda"
    m_ours, o_ours = _fresh(preset, device, True)
    cl_ours = prefers_channels_last(device)
    sampler = PatchSampler(xn, yn, a_s, patch=patch, seed=0, device=device)
    idx = torch.arange(batch) % len(xn)
    m_base, o_base = _fresh(preset, device, False)
    ds = BaselineDataset(xn, yn, a_s.cpu().numpy(), patch, batch * 64)
    it = _loader(ds, batch, workers, cuda)

    def ours():
        _train_step(m_ours, o_ours, loss_fn, *sampler.sample(idx), device, cuda, cl_ours)

    def base():
        xb, yb, wb = (t.to(device, non_blocking=True) for t in next(it))
        _train_step(m_base, o_base, loss_fn, xb, yb, wb, device, False, False)

    ours()  # warm-up (allocator, kernels)
    base()
    t_ours, t_base = _alternate(ours, base, steps, rounds, device)
    # release them before emptying the cache (the closures hold their cells)
    m_ours = o_ours = m_base = o_base = sampler = None
    if cuda:
        torch.cuda.empty_cache()
    return batch / t_ours, batch / t_base


def bench_context(preset, xn, yn, a_s, patch, batch, steps, rounds, device, contexts):
    """Our training patches/s of the 2-D model (K = 0) and of each context model in
    ``contexts`` on the same slices (every slice's 2K+1 neighbours, reflected at the
    ends), measured in alternating rounds (best kept)."""
    from napari_dfct.context import context_stack

    loss_fn = AmplifiedLoss(LOSS).to(device)
    cuda = device.type == "cuda"
    idx = torch.arange(batch) % len(xn)
    ks = [0, *contexts]
    steps_of = []
    for k in ks:
        torch.manual_seed(0)
        model = build_model(preset, context=k).to(device)
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.1)
        inputs = context_stack(xn, np.arange(len(xn)), k)
        sampler = PatchSampler(inputs, yn, a_s, patch=patch, seed=0, device=device)

        def step(model=model, opt=opt, sampler=sampler):
            _train_step(model, opt, loss_fn, *sampler.sample(idx), device, cuda, cuda)

        step()  # warm-up
        steps_of.append(step)
    best = _best_of(steps_of, steps, rounds, device)
    steps_of = []  # release the models before emptying the cache
    if cuda:
        torch.cuda.empty_cache()
    return {k: batch / t for k, t in zip(ks, best)}


def _best_of(fns, steps, rounds, device) -> list[float]:
    """Best (minimum) seconds per call of each of ``fns``, in alternating rounds."""
    best = [math.inf] * len(fns)
    for _ in range(rounds):
        for j, fn in enumerate(fns):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            best[j] = min(best[j], (time.perf_counter() - t0) / steps)
    return best


def bench_3d(preset, xn, yn, a_s, patch, batch, depth, steps, rounds, device):
    """Seconds per optimiser step of the 2-D model (``batch`` patches) and of the 3-D
    model (``batch // depth`` patches of ``depth`` slices: the same slices per step) on
    the same slices, measured in alternating rounds (best kept); and the slices per step
    of each."""
    from napari_dfct.volume3d import VolumePatchSampler

    loss_fn = AmplifiedLoss(LOSS).to(device)
    cuda = device.type == "cuda"
    n3 = max(1, batch // depth)
    runs = []
    for dims, n in ((2, batch), (3, n3)):
        torch.manual_seed(0)
        model = build_model(preset, dims=dims).to(device)
        cl = cuda and dims == 2  # channels_last is a 4-D memory format
        if cl:
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.1)
        if dims == 2:
            sampler = PatchSampler(xn, yn, a_s, patch=patch, seed=0, device=device)
            idx = torch.arange(n) % len(xn)
        else:
            sampler = VolumePatchSampler(
                xn, yn, a_s, lengths=[len(xn)], depth=depth, patch=patch, seed=0, device=device
            )
            idx = torch.arange(n) % sampler.n_slices

        def step(model=model, opt=opt, sampler=sampler, idx=idx, cl=cl):
            _train_step(model, opt, loss_fn, *sampler.sample(idx), device, cuda, cl)

        step()  # warm-up
        runs.append(step)
    best = _best_of(runs, steps, rounds, device)
    runs = []  # release the models before emptying the cache
    if cuda:
        torch.cuda.empty_cache()
    return best, (batch, n3 * depth)


def bench_infer_3d(preset, x, depth, rounds, device, window):
    """Seconds per slice: :func:`predict` of ``2 x depth`` slices with the 2-D and with the
    3-D model (z-chunks of ``depth``), and the networks alone on ``depth`` slices (the
    2-D one batched, the 3-D one as one chunk)."""
    torch.manual_seed(0)
    nets = [build_model(preset, dims=d, zero_init=False).to(device).eval() for d in (2, 3)]
    nets[1].patch_depth = depth
    vol = x[: 2 * depth]
    chunk = torch.from_numpy(window.normalize(vol[:depth])).to(device)

    def pred(net):
        return lambda: predict(net, vol, window=window, device=device, batch_size=4)

    @torch.inference_mode()
    def flat():
        for k in range(0, depth, 4):
            nets[0](chunk[k : k + 4, None])

    @torch.inference_mode()
    def volume():
        nets[1](chunk[None, None])

    fns = [pred(nets[0]), pred(nets[1]), flat, volume]
    for fn in fns:
        fn()  # warm-up
    best = _best_of(fns, 1, rounds, device)
    nets = fns = []  # released before emptying the cache
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return best[0] / len(vol), best[1] / len(vol), best[2] / depth, best[3] / depth


def bench_infer(preset, x, n_slices, rounds, device, window):
    torch.manual_seed(0)
    model = build_model(preset, zero_init=False).to(device).eval()
    vol = x[:n_slices]
    xt = torch.from_numpy(window.normalize(vol))[:, None]

    def ours():
        predict(model, vol, window=window, device=device, batch_size=4)

    @torch.no_grad()
    def base():
        for k in range(n_slices):
            model(xt[k : k + 1].to(device)).cpu()

    predict(model, vol[:1], window=window, device=device)  # warm-up
    base()
    t_ours, t_base = _alternate(ours, base, 1, rounds, device)
    model = None  # released before emptying the cache (the closures hold its cell)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return t_ours / n_slices, t_base / n_slices


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few steps and small batches (CPU)")
    p.add_argument("--presets", default="paper,small")
    p.add_argument("--device", default="auto")
    p.add_argument("--size", type=int, default=800, help="slice side (paper: 800)")
    p.add_argument("--slices", type=int, default=None, help="training slices held in memory")
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=None, help="default 32 (quick: 8)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (quick: 2)")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternating rounds; the best of each side is kept (quick: 2)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's); 1 is steadier on a busy machine",
    )
    p.add_argument(
        "--no-train",
        dest="train",
        action="store_false",
        help="sampler only: skip the training and inference figures",
    )
    p.add_argument(
        "--context",
        default="1,2",
        help="context K of the 2.5-D training rows, comma-separated (empty: none)",
    )
    p.add_argument(
        "--dims",
        default="3",
        help="3: the 3-D rows (3-D training and inference against 2-D); empty: none",
    )
    p.add_argument(
        "--patch-depth",
        type=int,
        default=None,
        help="slices of a 3-D patch and chunk (default 8; quick: 4)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="baseline DataLoader workers (default: 0 on CPU, 4 on CUDA)",
    )
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    quick = args.quick
    batch = args.batch_size or (8 if quick else 32)
    steps = args.steps or (2 if quick else 10)
    rounds = args.rounds or (2 if quick else 3)
    n_slices = args.slices or (8 if quick else 32)
    n_infer = 1 if quick else 8
    workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)

    x, y = make_data(n_slices, args.size)
    window = window_from_percentiles(x, y)
    xn, yn = window.normalize(x), window.normalize(y)
    a_s = AmplifiedLoss(LOSS).full_spatial_weight((args.size, args.size))
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    print(
        f"device: {device} ({name}); torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"data: {n_slices} slices {args.size}x{args.size}; patch {args.patch}; batch {batch}; "
        f"{steps} timed steps x {rounds} alternating rounds (best kept); loss {LOSS.name}; "
        f"baseline workers {workers}"
    )

    s_ours, s_base = bench_sampler(
        xn, yn, a_s, args.patch, batch, max(5 * steps, 10), rounds, device, workers
    )
    print(
        f"\nsampler only          ours {s_ours:10.1f} patches/s   "
        f"baseline {s_base:10.1f} patches/s"
        f"   ratio {s_ours / s_base:6.2f}x"
    )
    presets = [s.strip() for s in args.presets.split(",") if s.strip()] if args.train else []
    for preset in presets:
        m = build_model(preset)
        print(f"\npreset {preset}: {count_parameters(m) / 1e6:.2f} M parameters")
        del m
        tr_ours, tr_base = bench_train(
            preset, xn, yn, a_s, args.patch, batch, steps, rounds, device, workers
        )
        print(
            f"  training            ours {tr_ours:10.2f} patches/s   baseline {tr_base:10.2f} "
            f"patches/s   ratio {tr_ours / tr_base:6.2f}x"
        )
        in_ours, in_base = bench_infer(preset, x, n_infer, rounds, device, window)
        print(
            f"  inference {args.size}x{args.size}  ours {in_ours:10.3f} s/slice     baseline "
            f"{in_base:10.3f} s/slice     ratio {in_base / in_ours:6.2f}x"
        )
        contexts = [int(k) for k in args.context.split(",") if k.strip()]
        if contexts:
            rate = bench_context(
                preset, xn, yn, a_s, args.patch, batch, steps, rounds, device, contexts
            )
            print(
                "  2.5-D training      "
                + "   ".join(
                    f"K={k} {v:8.2f} patches/s ({v / rate[0]:4.2f}x)" for k, v in rate.items()
                )
            )
        if "3" in args.dims.split(","):
            _print_3d(preset, args, xn, yn, a_s, x, batch, steps, rounds, device, window)


def _print_3d(preset, args, xn, yn, a_s, x, batch, steps, rounds, device, window) -> None:
    """The 3-D rows of ``preset``: training at matched slices per step, inference."""
    depth = args.patch_depth or (4 if args.quick else 8)
    if batch < depth or len(xn) < 2 * depth:
        print(f"  3-D: skipped (needs a batch and {2 * depth} slices for depth {depth})")
        return
    (t2, t3), (s2, s3) = bench_3d(
        preset, xn, yn, a_s, args.patch, batch, depth, steps, rounds, device
    )
    print(
        f"  3-D training        2-D batch {s2}: {s2 / t2:8.2f} slices/s {t2:7.3f} s/step   "
        f"3-D batch {s3 // depth} x depth {depth}: {s3 / t3:8.2f} slices/s {t3:7.3f} s/step"
        f"   ratio {(s3 / t3) / (s2 / t2):5.2f}x"
    )
    p2, p3, f2, f3 = bench_infer_3d(preset, x, depth, rounds, device, window)
    size = f"{args.size}x{args.size}"
    print(
        f"  3-D inference {size}  predict {2 * depth} slices: 2-D {p2:8.3f} s/slice   "
        f"3-D {p3:8.3f} s/slice   ratio {p2 / p3:5.2f}x;  network on {depth} slices: "
        f"2-D {f2:8.3f} s/slice   3-D {f3:8.3f} s/slice   ratio {f2 / f3:5.2f}x"
    )


if __name__ == "__main__":
    main()
