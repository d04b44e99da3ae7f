"""Per-epoch costs of training beside the network itself: the optimiser step and the
resume state.

Ours
    the optimiser of :func:`napari_dfct.train.build_optimizer` (torch's fused Adam kernel
    on the CPU and CUDA), and the resume state kept in memory after each epoch and written
    to disk every :data:`napari_dfct.train._state.STATE_INTERVAL` seconds.
Baseline
    ``torch.optim.Adam`` with torch's defaults (one tensor at a time on the CPU), and the
    resume state written to disk after every epoch.

Same model (preset ``--preset``, channels-last on the CPU), same gradients (one
``l2`` training step on random patches against a smoothed target), same run. Printed: the
median seconds of one optimiser step, of one write of the resume state, of one in-memory
copy of it, and what these cost per epoch for an epoch of ``--epoch-seconds`` (default
2.3 s: the demo's epochs on one core of a 2-core x86_64 CPU) and ``--steps`` optimiser
steps per epoch.

Usage::

    python benchmarks/bench_epoch_costs.py            # one thread, small preset
    python benchmarks/bench_epoch_costs.py --preset paper --threads 2
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time

import torch

from napari_dfct.checkpoint import save_training_state
from napari_dfct.model import build_model
from napari_dfct.train import TrainConfig
from napari_dfct.train._state import STATE_INTERVAL, copy_tensors
from napari_dfct.train.optim import build_optimizer


def _model_and_grads(preset: str, batch: int, patch: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(preset).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 1, patch, patch).contiguous(memory_format=torch.channels_last)
    y = torch.nn.functional.avg_pool2d(x, 3, 1, 1) + 0.1 * torch.randn_like(x)
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    return model


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--preset", default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--steps", type=int, default=10, help="optimiser steps per epoch")
    ap.add_argument("--epoch-seconds", type=float, default=2.3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"{platform.machine()}, {platform.processor() or 'cpu'}, torch {torch.__version__}, "
        f"{args.threads} thread(s), preset {args.preset}"
    )

    model = _model_and_grads(args.preset, args.batch, args.patch)
    ours = build_optimizer(model, TrainConfig(preset=args.preset, weight_decay=0.0))
    base = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.0)
    # interleaved, so both sides see the same machine state
    t_ours, t_base = [], []
    for _ in range(3):
        t_ours.append(_median_seconds(ours.step, args.repeats))
        t_base.append(_median_seconds(base.step, args.repeats))
    step_ours, step_base = min(t_ours), min(t_base)
    print(
        f"optimiser step: ours {1e3 * step_ours:.2f} ms (fused {ours.defaults.get('fused')})"
        f", baseline {1e3 * step_base:.2f} ms, ours/baseline {step_ours / step_base:.2f}"
    )

    state = {
        "epoch": 1,
        "model": model.state_dict(),
        "optimizer": ours.state_dict(),
        "rng": {"torch_cpu": torch.get_rng_state().tolist()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        write = _median_seconds(lambda: save_training_state(tmp, state), max(5, args.repeats // 3))
    copy = _median_seconds(lambda: copy_tensors(state), args.repeats)
    per_write = max(1, math.ceil(STATE_INTERVAL / args.epoch_seconds))
    ours_epoch = copy + write / per_write
    print(
        f"resume state: one write {1e3 * write:.1f} ms, one in-memory copy {1e3 * copy:.1f} ms; "
        f"a write every {per_write} epochs of {args.epoch_seconds:g} s (STATE_INTERVAL "
        f"{STATE_INTERVAL:g} s)"
    )
    epoch_ours = args.steps * step_ours + ours_epoch
    epoch_base = args.steps * step_base + write
    saved = 100 * (epoch_base - epoch_ours) / args.epoch_seconds
    print(
        f"per epoch ({args.steps} steps): ours {1e3 * epoch_ours:.0f} ms, baseline "
        f"{1e3 * epoch_base:.0f} ms, i.e. {saved:.1f} % of a {args.epoch_seconds:g} s epoch saved"
    )


if __name__ == "__main__":
    main()
