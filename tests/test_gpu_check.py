"""benchmarks/gpu_check.py: without CUDA it says so and exits 0; ``--allow-cpu`` runs every
row (the 3-D ones included) on the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_without_cuda_it_says_so_and_exits_0():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout


@pytest.mark.slow
def test_on_the_cpu_every_row_runs_the_3d_ones_included():
    small = ["--size", "48", "--patch", "32", "--steps", "1", "--preset", "tiny"]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--allow-cpu", *small, "--repeats", "1", "--batch", "4"]
        + ["--patch-depth", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("  ")[0]: line.split() for line in proc.stdout.splitlines()}
    assert float(rows["3-D 2 x 2 slices"][-3]) > 0  # slices/s
    assert float(rows["3-D predict 4 slices"][-3]) > 0  # ms/slice
