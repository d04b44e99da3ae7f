"""A GPU check in under 5 minutes: training and inference speed of the ``paper`` preset
with and without bf16 autocast / channels-last, peak memory, and how far bf16 predictions
are from fp32 ones.

On a CUDA machine it trains the ``paper`` preset (31 M parameters, batch 32, 128x128
patches, loss ``l2+s+f-nonlinear``, Adam lr 1e-3 with weight decay 0.1) for ``--steps``
optimiser steps on synthetic 800x800 slices in four settings (fp32, fp32 + channels-last,
bf16, bf16 + channels-last; the training loop of :func:`napari_dfct.train.fit` uses bf16 +
channels-last on CUDA), predicts one 800x800 slice with :func:`napari_dfct.infer.predict`
in fp32 and bf16, and prints patches/s, ms per slice, peak memory and the largest
difference between the bf16 and the fp32 prediction (in the window's [0, 1] scale and in
input units). Without CUDA it says so and exits 0.

The 3-D row (``--patch-depth``, default 8; 0 leaves it out) trains the 3-D model of the
same preset (:mod:`napari_dfct.volume3d`) the way the training loop does on CUDA (bf16, no
channels-last: a 4-D memory format) at the same slices per step (``batch / depth`` patches
of ``depth x patch x patch``: 4 x 8 for batch 32) and predicts a volume of ``2 x depth``
slices in z-chunks, and prints slices/s, ms per slice and peak memory next to the 2-D
figures.

Usage::

    python benchmarks/gpu_check.py                 # cuda:0, 200 steps per setting
    python benchmarks/gpu_check.py --device cuda:1 --steps 300

``--allow-cpu --size 64 --patch 32 --steps 2 --preset tiny`` runs the same code on a CPU (a smoke
test of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from bench_train import _sync, _train_step, make_data  # benchmarks/, next to this script


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> str:
    if device.type != "cuda":
        return "n/a"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"


def train_speed(preset, xn, yn, device, steps, batch, patch, amp, channels_last):
    """Patches/s of ``steps`` optimiser steps (after 3 warm-up steps)."""
    from napari_dfct.data import PatchSampler
    from napari_dfct.losses import AmplifiedLoss, LossConfig
    from napari_dfct.model import build_model

    torch.manual_seed(0)
    model = build_model(preset).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = AmplifiedLoss(LossConfig.from_name("l2+s+f-nonlinear")).to(device)
    a_s = loss_fn.full_spatial_weight(xn.shape[1:], device=device)
    sampler = PatchSampler(xn, yn, a_s, patch=patch, seed=1, device=device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.1)
    model.train()

    def step():
        xb, yb, wb = sampler.sample(torch.randint(0, xn.shape[0], (batch,)))
        _train_step(model, opt, loss_fn, xb, yb, wb, device, amp, channels_last)

    seconds, peak = _timed_steps(step, steps, device)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    # released before the peak reset (the closure holds their cells)
    model = opt = sampler = loss_fn = None
    _peak_reset(device)
    return steps * batch / seconds, peak, state


def _timed_steps(step, steps, device) -> tuple[float, str]:
    """Seconds of ``steps`` calls of ``step`` after 3 warm-up calls, and the peak memory
    from before the warm-up."""
    _peak_reset(device)
    for _ in range(3):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return time.perf_counter() - t0, _peak(device)


def train_speed_3d(preset, xn, yn, device, steps, batch, patch, depth):
    """Slices/s of ``steps`` optimiser steps of the 3-D model (after 3 warm-up steps):
    ``batch // depth`` patches of ``depth`` slices, bf16 autocast on CUDA as in training
    (no channels-last: a 4-D memory format); the peak memory and the weights."""
    from napari_dfct.losses import AmplifiedLoss, LossConfig
    from napari_dfct.model import build_model
    from napari_dfct.volume3d import VolumePatchSampler

    torch.manual_seed(0)
    model = build_model(preset, dims=3).to(device)
    loss_fn = AmplifiedLoss(LossConfig.from_name("l2+s+f-nonlinear")).to(device)
    a_s = loss_fn.full_spatial_weight(xn.shape[1:], device=device)
    sampler = VolumePatchSampler(
        xn, yn, a_s, lengths=[len(xn)], depth=depth, patch=patch, seed=1, device=device
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.1)
    model.train()
    n = max(1, batch // depth)
    amp = device.type == "cuda"

    def step():
        xb, yb, wb = sampler.sample(torch.randint(0, sampler.n_slices, (n,)))
        _train_step(model, opt, loss_fn, xb, yb, wb, device, amp, False)

    seconds, peak = _timed_steps(step, steps, device)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    model = opt = sampler = loss_fn = None  # released before the peak reset
    _peak_reset(device)
    return steps * n * depth / seconds, peak, state


def predict_speed_3d(preset, state, x, window, device, depth, repeats):
    """ms per slice of a 3-D prediction of ``x`` (z-chunks of ``depth``; median of
    ``repeats`` after a warm-up) and the peak memory."""
    from napari_dfct.infer import predict
    from napari_dfct.model import build_model

    model = build_model(preset, dims=3)
    model.load_state_dict(state)
    model.patch_depth = depth
    model.eval()
    _peak_reset(device)
    predict(model, x, window=window, device=device)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        predict(model, x, window=window, device=device)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)) / len(x), _peak(device)


def predict_speed(preset, state, x, window, device, amp, repeats):
    """ms per slice (median of ``repeats`` after a warm-up) and the prediction."""
    from napari_dfct.infer import predict
    from napari_dfct.model import build_model

    model = build_model(preset)
    model.load_state_dict(state)
    model.eval()
    _peak_reset(device)
    pred = predict(model, x, window=window, device=device, amp=amp, batch_size=1)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        pred = predict(model, x, window=window, device=device, amp=amp, batch_size=1)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)), _peak(device), pred


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--steps", type=int, default=200, help="timed optimiser steps per setting")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--size", type=int, default=800, help="slice side")
    p.add_argument("--preset", default="paper")
    p.add_argument("--repeats", type=int, default=5, help="timed predictions per setting")
    p.add_argument(
        "--patch-depth",
        type=int,
        default=8,
        help="slices of the 3-D row's patches and chunks (0: no 3-D row)",
    )
    p.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if not torch.cuda.is_available() and not args.allow_cpu:
        print(
            "gpu_check: no CUDA device on this machine (torch.cuda.is_available() is "
            "False); nothing to measure. Run it on a machine with an NVIDIA GPU."
        )
        return 0
    from napari_dfct.data import window_from_percentiles

    device = torch.device(args.device if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"gpu_check: {name} ({device}), torch {torch.__version__}, preset {args.preset!r}, "
        f"batch {args.batch}, {args.patch}x{args.patch} patches, {args.steps} steps per "
        f"setting, {args.size}x{args.size} slices"
    )
    t_start = time.perf_counter()
    depth = int(args.patch_depth)
    x, y = make_data(max(8, 2 * depth), args.size)
    window = window_from_percentiles(x, y)
    xn, yn = window.normalize(x), window.normalize(y)
    states = {}
    print(f"{'training':<28} {'patches/s':>10} {'peak memory':>12}")
    for amp, cl in ((False, False), (False, True), (True, False), (True, True)):
        label = f"{'bf16' if amp else 'fp32'}{' + channels-last' if cl else ''}"
        rate, peak, state = train_speed(
            args.preset, xn, yn, device, args.steps, args.batch, args.patch, amp, cl
        )
        states[(amp, cl)] = state
        print(f"{label:<28} {rate:>10.1f} {peak:>12}")
    state = states[(True, True)]  # the setting the training loop uses on CUDA
    print(f"{'inference (one slice)':<28} {'ms/slice':>10} {'peak memory':>12}")
    preds = {}
    for amp in (False, True):
        ms, peak, pred = predict_speed(args.preset, state, x[0], window, device, amp, args.repeats)
        preds[amp] = pred
        print(f"{('bf16 + channels-last' if amp else 'fp32'):<28} {ms:>10.1f} {peak:>12}")
    if depth:
        _print_3d(args, xn, yn, x, window, device, depth)
    diff = np.abs(preds[True] - preds[False])
    print(
        f"largest |bf16 - fp32| prediction difference: {diff.max():.4g} in input units, "
        f"{diff.max() / window.width:.4g} of the window width (mean "
        f"{diff.mean() / window.width:.3g})"
    )
    print(f"gpu_check: done in {time.perf_counter() - t_start:.0f} s")
    return 0


def _print_3d(args, xn, yn, x, window, device, depth: int) -> None:
    """The 3-D rows: training slices/s at the 2-D run's slices per step, prediction."""
    n = max(1, args.batch // depth)
    label = f"3-D {n} x {depth} slices" + (" (bf16)" if device.type == "cuda" else "")
    rate, peak, state = train_speed_3d(
        args.preset, xn, yn, device, args.steps, args.batch, args.patch, depth
    )
    print(f"{label:<28} {rate:>10.1f} {peak:>12}   (slices/s)")
    ms, peak = predict_speed_3d(
        args.preset, state, x[: 2 * depth], window, device, depth, args.repeats
    )
    print(f"{f'3-D predict {2 * depth} slices':<28} {ms:>10.1f} {peak:>12}   (ms/slice)")


if __name__ == "__main__":
    sys.exit(main())
