"""How torch's OpenMP threads wait and how many start, chosen before torch loads."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import time

from napari_dfct import _threads


def test_decision_respects_the_user_and_a_loaded_torch():
    cores = len(os.sched_getaffinity(0))
    assert _threads.decide({}, others=cores, cores=cores, torch_loaded=False) == {
        "OMP_WAIT_POLICY": "PASSIVE"}
    assert _threads.decide({}, others=0.0, cores=cores, torch_loaded=False) == {}
    assert _threads.decide({}, others=None, cores=cores, torch_loaded=False) == {}
    assert _threads.decide({"OMP_WAIT_POLICY": "ACTIVE"}, others=9, cores=cores,
                           torch_loaded=False) == {}
    assert _threads.decide({}, others=9, cores=cores, torch_loaded=True) == {}


def test_a_cpu_quota_caps_the_threads(tmp_path):
    visible = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("50000 100000\n")  # half a core: one thread
    assert _threads.usable_cores(str(quota)) == 1
    quota.write_text("max 100000\n")
    assert _threads.usable_cores(str(quota)) == visible
    assert _threads.usable_cores(str(tmp_path / "absent")) == visible
    if visible > 1:
        assert _threads.decide({}, others=0.0, cores=1, torch_loaded=False) == {
            "OMP_NUM_THREADS": "1"}
        assert _threads.decide({"OMP_NUM_THREADS": "4"}, others=0.0, cores=1,
                               torch_loaded=False) == {}


def _spin(stop):
    while not stop.is_set():
        pass


def test_importing_the_package_on_a_busy_machine_waits_passively():
    """Two busy processes per core occupy the machine: a fresh interpreter importing
    napari_dfct (before torch) chooses passive waiting; one with the user's own policy
    keeps it."""
    stop = mp.Event()
    procs = [mp.Process(target=_spin, args=(stop,), daemon=True)
             for _ in range(2 * len(os.sched_getaffinity(0)))]
    for p in procs:
        p.start()
    try:
        time.sleep(0.5)
        code = "import os, napari_dfct; print(os.environ.get('OMP_WAIT_POLICY'))"
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=120)
        assert out.stdout.strip() == "PASSIVE", out.stderr
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, timeout=120)
        assert out.stdout.strip() == "ACTIVE"
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)

