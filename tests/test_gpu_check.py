"""benchmarks/gpu_check.py: without CUDA it says so and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
