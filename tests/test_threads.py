"""How long torch's OpenMP threads spin and how many start, chosen before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from napari_dfct import _threads


def test_decision_respects_the_user_and_a_loaded_torch():
    cores = len(os.sched_getaffinity(0))
    assert _threads.decide({}, cores, torch_loaded=False) == {"GOMP_SPINCOUNT": "10000"}
    assert _threads.decide({"OMP_WAIT_POLICY": "PASSIVE"}, cores, torch_loaded=False) == {}
    assert _threads.decide({"GOMP_SPINCOUNT": "5"}, cores, torch_loaded=False) == {}
    assert _threads.decide({}, cores, torch_loaded=True) == {}


def test_a_cpu_quota_caps_the_threads(tmp_path):
    visible = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("50000 100000\n")  # half a core: one thread
    assert _threads.usable_cores(str(quota)) == 1
    quota.write_text("250000 100000\n")  # 2.5 cores: three, unless fewer are visible
    assert _threads.usable_cores(str(quota)) == min(3, visible)
    quota.write_text("max 100000\n")
    assert _threads.usable_cores(str(quota)) == visible
    assert _threads.usable_cores(str(tmp_path / "absent")) == visible
    if visible > 1:
        env = {"GOMP_SPINCOUNT": "5"}
        assert _threads.decide(env, 1, torch_loaded=False) == {"OMP_NUM_THREADS": "1"}
        assert _threads.decide({**env, "OMP_NUM_THREADS": "4"}, 1, torch_loaded=False) == {}


@pytest.mark.slow
def test_importing_the_package_sets_the_spin_count_before_torch_loads():
    """A fresh interpreter: napari_dfct sets the spin count, torch (imported after) runs;
    a spin count or wait policy of the user's own is kept."""
    code = (
        "import os, napari_dfct, torch; torch.ones(2).sum(); "
        "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}

    def run(e):
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120
        )

    out = run(env)
    assert out.stdout.split() == ["10000", "None"], out.stderr
    assert run({**env, "GOMP_SPINCOUNT": "7"}).stdout.split() == ["7", "None"]
    assert run({**env, "OMP_WAIT_POLICY": "ACTIVE"}).stdout.split() == ["None", "ACTIVE"]


def test_grid_workers_share_the_cores_this_process_may_use():
    """A grid's pool workers divide the cores of the affinity mask, not the machine's
    count (which a mask or a container's quota does not change)."""
    from napari_dfct.experiment.executors import pool_threads

    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})  # one core allowed, the machine unchanged
        assert pool_threads(1) == 1 and pool_threads(2) == 1
    finally:
        os.sched_setaffinity(0, mask)
    assert pool_threads(1) == _threads.usable_cores()
    assert pool_threads(2) == max(1, _threads.usable_cores() // 2)
    assert pool_threads(64) == 1
