"""Training cost per step of the directional amplification D against the baseline.

One training step (forward, loss, backward, Adam step) of the ``small`` U-Net preset on a
batch of 8 random 64x64 patches, for the baseline ``l2``, the spectral F
(``l2+f-nonlinear-spectral``), D (``l2+d-nonlinear``) and S+D (``l2+s+d-nonlinear``).
The configurations are timed in interleaved rounds (each round runs every configuration
once, in a rotating order) so that a busy machine slows all of them alike; printed are the
median step times and the ratios to ``l2`` from the same run, and the cost of the loss
alone (forward and backward of the loss on a fixed prediction) for the same batch.

Usage::

    python benchmarks/bench_directional.py             # CPU, 30 rounds
    python benchmarks/bench_directional.py --rounds 10 --threads 1
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from napari_dfct.losses import AmplifiedLoss
from napari_dfct.model import build_model
from napari_dfct.weights import crop_batch, spatial_weight

CONFIGS = ("l2", "l2+f-nonlinear-spectral", "l2+d-nonlinear", "l2+s+d-nonlinear")


def _batch(batch: int, patch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(batch, 1, patch, patch, generator=g)
    yy = torch.arange(patch, dtype=torch.float32)
    stripes = 0.2 * torch.sin(0.9 * (yy[:, None] * 0.6 + yy[None, :]))  # one streak angle
    x = y + stripes + 0.05 * torch.randn(batch, 1, patch, patch, generator=g)
    corners = torch.randint(0, 256 - patch, (batch, 2), generator=g)
    w = crop_batch(spatial_weight((256, 256), "nonlinear"), corners, patch)
    return x, y, w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, w = _batch(args.batch, args.patch)
    torch.manual_seed(0)
    models = {}
    for name in CONFIGS:
        torch.manual_seed(0)
        model = build_model(args.preset)
        models[name] = (
            model,
            torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=0.1),
            AmplifiedLoss(name),
        )

    def step(name):
        model, opt, loss_fn = models[name]
        model.train()
        pred = model(x)
        loss = loss_fn(pred.float(), y, w, input=x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def loss_only(name):
        p = (x * 0.9).requires_grad_(True)
        loss = models[name][2](p, y, w, input=x)
        loss.backward()

    for name in CONFIGS:  # warm-up
        step(name)
        loss_only(name)
    times = {n: [] for n in CONFIGS}
    ltimes = {n: [] for n in CONFIGS}
    for r in range(args.rounds):
        order = CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]
        for name in order:
            t0 = time.perf_counter()
            step(name)
            times[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(5):
                loss_only(name)
            ltimes[name].append((time.perf_counter() - t0) / 5)
    base = float(np.median(times["l2"]))
    lbase = float(np.median(ltimes["l2"]))
    print(
        f"machine: {platform.processor() or platform.machine()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; preset {args.preset}, "
        f"batch {args.batch}, {args.patch}x{args.patch} patches, {args.rounds} rounds"
    )
    print(f"{'configuration':28s} {'step ms':>9s} {'/ l2':>6s} {'loss ms':>9s} {'/ l2':>6s}")
    for name in CONFIGS:
        st, lt = float(np.median(times[name])), float(np.median(ltimes[name]))
        print(f"{name:28s} {1e3 * st:9.1f} {st / base:6.3f} {1e3 * lt:9.2f} {lt / lbase:6.2f}")


if __name__ == "__main__":
    main()
