"""Start-up time of the ``dfct`` command: ``python -m napari_dfct --help`` against two
baselines from the same run, the bare interpreter (``python -c pass``) and an interpreter
that imports torch (``python -c "import torch"``, what ``dfct --help`` cost while it
imported torch).

Each command runs ``--runs`` times (default 5) in a fresh process; the median wall time and
the median CPU time (user + system, of the child process: what a busy machine does not
inflate) are printed, with the ratio of ours to each baseline. It also reports whether
``dfct --help`` loaded torch (it should not)::

    python benchmarks/bench_cli.py
    python benchmarks/bench_cli.py --runs 9
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time

BARE = "python -c pass"
TORCH = 'python -c "import torch"'
OURS = "python -m napari_dfct --help"
COMMANDS = {
    BARE: [sys.executable, "-c", "pass"],
    TORCH: [sys.executable, "-c", "import torch"],
    OURS: [sys.executable, "-m", "napari_dfct", "--help"],
}

_PROBE = (
    "import sys\n"
    "from napari_dfct.cli import main\n"
    "try:\n"
    "    main(['--help'])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('torch' in sys.modules)\n"
)


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timings(cmd: list[str], runs: int) -> tuple[float, float]:
    """Median (wall, CPU) time of ``cmd`` over ``runs`` fresh processes, in seconds."""
    subprocess.run(cmd, check=True, capture_output=True)  # warm the file cache
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), _cpu()
        subprocess.run(cmd, check=True, capture_output=True)
        wall.append(time.perf_counter() - t)
        cpu.append(_cpu() - c)
    return statistics.median(wall), statistics.median(cpu)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    args = parser.parse_args(argv)
    medians = {name: timings(cmd, args.runs) for name, cmd in COMMANDS.items()}
    print(f"median of {args.runs} runs each ({sys.executable}):")
    print(f"  {'':32s} {'wall':>8s} {'CPU':>8s}")
    for name, (wall, cpu) in medians.items():
        print(f"  {name:32s} {wall:7.3f}s {cpu:7.3f}s")
    for base in (BARE, TORCH):
        ratios = [medians[OURS][i] / medians[base][i] for i in (0, 1)]
        print(f"  {OURS} / {base}: {ratios[0]:.2f}x wall, {ratios[1]:.2f}x CPU")
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True
    )
    loaded = probe.stdout.strip().splitlines()[-1]
    print(f"dfct --help imports torch: {loaded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
