"""Training on a shared machine: wall and CPU time of ``dfct train`` (or, with
``--command demo``, of the whole ``dfct demo``) idle and under a competing load, with
torch's OpenMP threads waiting actively (spinning) or passively.

A competing load is ``--load`` processes that spin on the CPU for the whole run (another
user's jobs). Each case runs ``dfct train`` in a fresh process, on a simulated volume
written once, and reports its wall time and the CPU time it used (user + system, of the
process and its threads). When torch's OpenMP threads spin while they wait for each other
and the cores are oversubscribed, the CPU time grows without the run going faster: that is
the cost this benchmark exposes. Cases:

- ``spin``: ``OMP_WAIT_POLICY=ACTIVE`` (threads spin between parallel regions: what the
  OpenMP runtime torch ships with does by default for a while after each region);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once);
- ``short``: ``GOMP_SPINCOUNT=10000`` (a short spin, then sleep); ``shorter``: 1000;
- ``default``: the environment as ``dfct`` sets it (``napari_dfct`` sets a short spin,
  ``GOMP_SPINCOUNT=10000``, unless the user set a policy of their own);
- ``before`` (with ``--before-src DIR``): an earlier version of the package, default
  environment.

Usage::

    python benchmarks/bench_shared.py            # about 4 minutes on 2 cores
    python benchmarks/bench_shared.py --epochs 2 --load 2
    python benchmarks/bench_shared.py --repeat 3 --before-src OLD/src   # medians
    python benchmarks/bench_shared.py --command demo --cases default --only loaded \
        --before-src OLD/src            # the whole demo under load: about an hour
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _spin(stop) -> None:
    while not stop.is_set():
        for _ in range(100_000):
            pass


def command(kind: str, data: Path, out: Path, epochs: int) -> list[str]:
    """The ``dfct`` command line of one run: ``train`` (the default) or ``demo``."""
    dfct = [sys.executable, "-m", "napari_dfct"]
    if kind == "demo":
        return [*dfct, "demo", "--out", str(out)]
    return [
        *dfct,
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--patience",
        str(epochs + 1),
        "--preset",
        "small",
        "--batch-size",
        "8",
        "--patch",
        "64",
        "--patches-per-slice",
        "8",
        "--device",
        "cpu",
        "--no-progress",
    ]


def run_cmd(cmd: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, of the process and all its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--load", type=int, default=2, help="competing busy processes")
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs per case and condition, interleaved (medians reported)",
    )
    ap.add_argument("--cases", default="spin,passive,default")
    ap.add_argument(
        "--command",
        choices=("train", "demo"),
        default="train",
        help="what each case runs: dfct train (default; --epochs) or the whole "
        "dfct demo (about 6-9 minutes idle on 2 cores)",
    )
    ap.add_argument(
        "--only",
        choices=("idle", "loaded"),
        default=None,
        help="only the idle runs, or only the runs under load",
    )
    ap.add_argument(
        "--before-src",
        default=None,
        metavar="DIR",
        help="also run case 'before': the package in DIR (a checkout's src/ "
        "of an earlier version) with the default environment",
    )
    a = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dfct-bench-shared-"))
    data = work / "data"
    if a.command == "train":  # the demo simulates its own data
        subprocess.run(
            [
                sys.executable,
                "-m",
                "napari_dfct",
                "simulate",
                str(data),
                "--specimens",
                "12",
                "--size",
                "128",
                "--seed",
                "0",
            ],
            check=True,
            capture_output=True,
        )
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    base = {k: v for k, v in base.items() if k != "GOMP_SPINCOUNT"}
    envs = {
        "spin": {**base, "OMP_WAIT_POLICY": "ACTIVE"},
        "passive": {**base, "OMP_WAIT_POLICY": "PASSIVE"},
        "short": {**base, "GOMP_SPINCOUNT": "10000"},
        "shorter": {**base, "GOMP_SPINCOUNT": "1000"},
        "default": dict(base),
    }
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    if a.before_src:
        envs["before"] = {**base, "PYTHONPATH": str(Path(a.before_src).resolve())}
        cases.insert(0, "before")
    cores = len(os.sched_getaffinity(0))
    what = "dfct demo" if a.command == "demo" else f"dfct train, preset small, {a.epochs} epochs"
    load = "idle only" if a.only == "idle" else f"load: {a.load} busy processes"
    print(f"{what}, {cores} cores; {load}")
    print(f"{'case':9s} {'load':>5s} {'wall s':>8s} {'CPU s':>8s} {'CPU/wall':>9s}")
    results: dict = {}
    for loaded in {"idle": (False,), "loaded": (True,)}.get(a.only, (False, True)):
        stop = mp.Event()
        procs = []
        if loaded:
            procs = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(a.load)]
            for p in procs:
                p.start()
            time.sleep(1.0)
        try:
            for i in range(max(1, a.repeat)):
                for case in cases:
                    out = work / f"{case}-{int(loaded)}-{i}"
                    wall, cpu = run_cmd(command(a.command, data, out, a.epochs), envs[case])
                    results.setdefault((case, loaded), []).append((wall, cpu))
                    print(
                        f"{case:9s} {'yes' if loaded else 'no':>5s} {wall:8.1f} {cpu:8.1f} "
                        f"{cpu / wall:9.2f}",
                        flush=True,
                    )
        finally:
            stop.set()
            for p in procs:
                p.join(timeout=5)
    print("medians:")
    for case in cases:
        med = {
            k: tuple(float(np.median(v)) for v in zip(*results[(case, k)]))
            for k in (False, True)
            if (case, k) in results
        }
        if len(med) == 1:
            ((loaded, (w, c)),) = med.items()
            print(f"{case}: {'under load' if loaded else 'idle'} {w:.1f} s wall, {c:.1f} s CPU")
            continue
        (w0, c0), (w1, c1) = med[False], med[True]
        print(
            f"{case}: idle {w0:.1f} s wall, {c0:.1f} s CPU; under load {w1:.1f} s wall, "
            f"{c1:.1f} s CPU (wall x{w1 / w0:.2f}, CPU x{c1 / c0:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
