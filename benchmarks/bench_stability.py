"""Training stability in the demo's setting: validation spikes and seed-to-seed spread.

For every configuration x seed it trains the ``small`` preset on the demo's simulated
training set (12 slices of 128x128, seed 0) with the demo's sizes (40 epochs, 8 patches of
64x64 per slice, batch 8) and reports

* the **spike ratio**: the largest ``val_loss(epoch) / min(val_loss(1..epoch))`` over
  epochs >= 3 (the acceptance rule is <= 3);
* the test CNR of the selected model on the held-out specimen (seed 1000) and its spread
  over seeds.

``--diagnose`` adds, at every epoch, the validation loss the same weights give with
BatchNorm in *batch-statistics* mode and after *re-estimating* the running statistics on
the current weights (many training patches, cumulative average), plus the smallest
running variance, the norm of the conv weights and the mean |gamma| -- the measurements
behind ``docs/training-stability.md``.

Examples::

    python benchmarks/bench_stability.py --recipe paper --seeds 0-7 --out stab-paper.jsonl
    python benchmarks/bench_stability.py --recipe stable --seeds 0-7
    python benchmarks/bench_stability.py --recipe paper --seeds 0 --diagnose
    python benchmarks/bench_stability.py --recipe paper --set bn_momentum=0.01 --seeds 0-3

The baseline printed next to our figure is the paper recipe from the same run, when both
are asked for (``--recipe paper,stable``).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def _data(folder: Path):
    from napari_dfct.simulate import load_simulation, save_simulation, simulate_dfct

    out = {}
    for name, n, seed in (("train", 12, 0), ("test", 3, 1000)):
        d = folder / name
        if not (d / "meta.json").is_file():
            save_simulation(simulate_dfct(n_slices=n, size=128, seed=seed), d)
        out[name] = load_simulation(d)
    return out


def spike_ratio(val_losses: list[float], first_epoch: int = 3) -> float:
    """Largest ``val[e] / min(val[1..e])`` for epochs ``e >= first_epoch`` (1-based)."""
    worst = 0.0
    best = math.inf
    for e, v in enumerate(val_losses, start=1):
        v = float(v) if v is not None else math.inf
        best = min(best, v)
        if e >= first_epoch:
            worst = max(worst, v / best if best > 0 else math.inf)
    return worst


def _diagnose_hook(train_mod, x_train, batch, patch):
    """Wrap ``train._validate`` to log BN diagnostics per epoch (same weights)."""
    import torch

    from napari_dfct.data import PatchSampler

    records = []
    orig = train_mod.loop._validate
    calib = PatchSampler(
        x_train[0], x_train[1], None, patch=patch, patches_per_slice=8, augment=True, seed=12345
    )

    @torch.no_grad()
    def wrapped(model, loss_fn, x_val, y_val, bsz, device, amp, cl, keep):
        val, kept = orig(model, loss_fn, x_val, y_val, bsz, device, amp, cl, keep)
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        saved = {id(m): (m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in bns}
        # 1) batch statistics on the validation slices themselves
        model.train()
        for m in bns:
            m.track_running_stats = False
        pred = model(x_val.unsqueeze(1))
        val_batchstats = float(loss_fn(pred, y_val.unsqueeze(1)))
        for m in bns:
            m.track_running_stats = True
        # 2) running statistics re-estimated on the current weights
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average
        for _ in range(4):
            for xb, _, _ in calib.epoch(batch):
                model(xb)
        model.eval()
        pred = model(x_val.unsqueeze(1))
        val_recal = float(loss_fn(pred, y_val.unsqueeze(1)))
        recal_var = min(float(m.running_var.min()) for m in bns)
        for m in bns:
            m.running_mean.copy_(saved[id(m)][0])
            m.running_var.copy_(saved[id(m)][1])
            m.momentum = saved[id(m)][2]
        model.eval()
        convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        records.append(
            {
                "val": val,
                "val_batchstats": val_batchstats,
                "val_recalibrated": val_recal,
                "min_running_var": min(float(m.running_var.min()) for m in bns),
                "min_recalibrated_var": recal_var,
                "median_running_var": float(torch.cat([m.running_var for m in bns]).median()),
                "conv_norm": float(torch.sqrt(sum((w.double() ** 2).sum() for w in convs))),
                "mean_abs_gamma": float(torch.cat([m.weight.abs() for m in bns]).mean()),
            }
        )
        return val, kept

    train_mod.loop._validate = wrapped
    return records


def run_one(job: dict) -> dict:
    import torch

    torch.set_num_threads(int(job["threads"]))
    from napari_dfct import train as train_mod
    from napari_dfct.experiment.grid import measure_slice
    from napari_dfct.infer import predict
    from napari_dfct.train import recipe_config, run_fit

    data = _data(Path(job["data"]))
    tr, te = data["train"], data["test"]
    cfg = recipe_config(
        job["recipe"],
        loss=job["config"],
        preset="small",
        epochs=40,
        patience=20,
        batch_size=8,
        patch=64,
        patches_per_slice=8,
        seed=int(job["seed"]),
        device="cpu",
    )
    for key, value in job["set"].items():
        old = getattr(cfg, key)
        if isinstance(old, bool):
            value = value.strip().lower() in ("1", "true", "yes", "on")
        elif old is not None:
            value = type(old)(value)
        setattr(cfg, key, value)
    diag = None
    if job["diagnose"]:
        from napari_dfct.data import split_slices

        tidx, _ = split_slices(tr.input.shape[0], cfg.val_fraction, cfg.seed)
        from napari_dfct.data import window_from_percentiles

        win = cfg.window or window_from_percentiles(tr.input[tidx], tr.target[tidx])
        xt = (
            torch.from_numpy(win.normalize(tr.input[tidx])),
            torch.from_numpy(win.normalize(tr.target[tidx])),
        )
        diag = _diagnose_hook(train_mod, xt, cfg.batch_size, cfg.patch)
    t0 = time.perf_counter()
    res = run_fit(tr.input, tr.target, cfg, preview=False)
    seconds = time.perf_counter() - t0
    meta = te.meta
    z = int(meta.get("slice", te.input.shape[0] // 2))
    roi = {
        "signal_center": meta["signal_center"],
        "background_center": meta["background_center"],
        "line": meta["line"],
        "roi_size": meta["roi_size"],
        "slice": z,
    }
    pred = np.asarray(predict(res.model, te.input[z], window=res.window, device="cpu"))
    m = measure_slice(pred, roi, truth=te.truth[z])
    val = [h["val_loss"] for h in res.history]
    return {
        "recipe": job["recipe"],
        "config": job["config"],
        "seed": job["seed"],
        "set": job["set"],
        "val_loss": val,
        "val_plain": [h.get("val_plain") for h in res.history],
        "val_amplified": [h.get("val_amplified") for h in res.history],
        "spike_ratio": spike_ratio(val),
        "spike_ratio_plain": spike_ratio([h.get("val_plain", h["val_loss"]) for h in res.history]),
        "best_epoch": res.best_epoch,
        "epochs_run": res.epochs_run,
        "cnr": m.get("cnr"),
        "psnr": m.get("psnr"),
        "ssim": m.get("ssim"),
        "fwhm": m.get("fwhm"),
        "seconds": seconds,
        "diagnostics": diag,
    }


def _summary(rows: list[dict], key: str) -> str:
    vals = [r[key] for r in rows if r.get(key) is not None and math.isfinite(r[key])]
    if not vals:
        return "n/a"
    return (
        f"median {statistics.median(vals):.3g}, sd {statistics.pstdev(vals):.3g}, "
        f"min {min(vals):.3g}, max {max(vals):.3g}"
    )


def cost(data_dir: Path, epochs: int = 4, repeats: int = 3) -> int:
    """Seconds per epoch of both recipes (the baseline: the paper's), interleaved so that
    a changing machine load hits both alike; prints the medians and their ratio."""
    import torch

    from napari_dfct.train import recipe_config, run_fit

    torch.set_num_threads(1)
    tr = _data(data_dir)["train"]
    times: dict[str, list[float]] = {"paper": [], "stable": []}
    for _ in range(repeats):
        for recipe in ("paper", "stable"):
            cfg = recipe_config(
                recipe,
                preset="small",
                epochs=epochs,
                patience=epochs,
                batch_size=8,
                patch=64,
                patches_per_slice=8,
                device="cpu",
            )
            res = run_fit(tr.input, tr.target, cfg, preview=False)
            times[recipe] += [h["seconds"] for h in res.history[1:]]  # skip the first epoch
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; one torch thread; {len(times['paper'])} epochs each"
    )
    print(
        f"paper (baseline): {med['paper']:.2f} s/epoch; stable: {med['stable']:.2f} "
        f"s/epoch; ratio {med['stable'] / med['paper']:.2f}"
    )
    return 0


def report(files: list[str]) -> int:
    """Per (file, recipe, configuration): runs, spike ratio (worst, runs over 3), first
    spike epoch, test CNR and PSNR (median, sd, range) -- a Markdown table."""
    print(
        "| runs | recipe / change | configuration | n | worst spike ratio | runs > 3 | "
        "test CNR median (sd) [min, max] | test PSNR median (sd) |"
    )
    print("| --- | --- | --- | ---: | ---: | ---: | --- | --- |")
    for f in files:
        rows = [json.loads(line) for line in Path(f).read_text().splitlines() if line.strip()]
        keys = list(dict.fromkeys((r["recipe"], json.dumps(r["set"]), r["config"]) for r in rows))
        for recipe, sets, config in keys:
            sel = [
                r
                for r in rows
                if (r["recipe"], json.dumps(r["set"]), r["config"]) == (recipe, sets, config)
            ]
            ratios = [r["spike_ratio"] for r in sel]
            cnr = [r["cnr"] for r in sel]
            psnr = [r["psnr"] for r in sel]
            change = recipe + (
                " " + ", ".join(f"{k}={v}" for k, v in json.loads(sets).items())
                if json.loads(sets)
                else ""
            )
            print(
                f"| {Path(f).name} | {change} | {config} | {len(sel)} | {max(ratios):.3g} | "
                f"{sum(x > 3 for x in ratios)} | {statistics.median(cnr):.2f} "
                f"({statistics.stdev(cnr) if len(cnr) > 1 else float('nan'):.2f}) "
                f"[{min(cnr):.2f}, {max(cnr):.2f}] | {statistics.median(psnr):.2f} "
                f"({statistics.stdev(psnr) if len(psnr) > 1 else float('nan'):.2f}) |"
            )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", default="paper,stable", help="comma list: paper, stable")
    p.add_argument("--configs", default="l2,l2+s+f-nonlinear")
    p.add_argument("--seeds", default="0-7")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TrainConfig field (one change at a time)",
    )
    p.add_argument("--diagnose", action="store_true")
    p.add_argument("--jobs", type=int, default=2, help="parallel runs (1 torch thread each)")
    p.add_argument("--data", default=".bench-stability-data")
    p.add_argument("--out", default=None, help="append one JSON line per run")
    p.add_argument(
        "--report",
        nargs="+",
        metavar="JSONL",
        default=None,
        help="summarise earlier --out files instead of training",
    )
    p.add_argument(
        "--cost",
        action="store_true",
        help="time epochs of the paper and the stable recipe, interleaved, in "
        "this process (one torch thread) and print the ratio",
    )
    args = p.parse_args(argv)
    if args.report:
        return report(args.report)
    if args.cost:
        return cost(Path(args.data))

    sets = dict(s.split("=", 1) for s in args.set)
    jobs = [
        {
            "recipe": r,
            "config": c,
            "seed": s,
            "set": sets,
            "diagnose": args.diagnose,
            "data": str(Path(args.data).resolve()),
            "threads": max(1, (os.cpu_count() or 1) // max(1, args.jobs)),
        }
        for r in args.recipe.split(",")
        for c in args.configs.split(",")
        for s in _parse_seeds(args.seeds)
    ]
    _data(Path(args.data))  # simulate once, before the workers start
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or ''} "
        f"python {platform.python_version()}; {len(jobs)} runs, {args.jobs} at a time",
        flush=True,
    )
    t0 = time.perf_counter()
    rows = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.jobs) as pool:
        for row in pool.imap_unordered(run_one, jobs):
            rows.append(row)
            print(
                f"{row['recipe']:7s} {row['config']:18s} seed {row['seed']}: spike ratio "
                f"{row['spike_ratio']:.3g} (plain {row['spike_ratio_plain']:.3g}), best "
                f"epoch {row['best_epoch']}, CNR {row['cnr']:.3f}, PSNR {row['psnr']:.2f}, "
                f"{row['seconds']:.0f} s",
                flush=True,
            )
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print(f"# wall time {time.perf_counter() - t0:.0f} s")
    for r in args.recipe.split(","):
        for c in args.configs.split(","):
            sel = [x for x in rows if x["recipe"] == r and x["config"] == c]
            print(f"{r:7s} {c:18s} n={len(sel)}  spike ratio: {_summary(sel, 'spike_ratio')}")
            print(f"{'':7s} {'':18s}        test CNR: {_summary(sel, 'cnr')}")
            print(f"{'':7s} {'':18s}       test PSNR: {_summary(sel, 'psnr')}")
    for r in args.recipe.split(","):
        sel = [x for x in rows if x["recipe"] == r]
        if sel:
            print(f"worst spike ratio, recipe {r}: {max(x['spike_ratio'] for x in sel):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
