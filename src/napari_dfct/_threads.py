"""CPU sharing: how long torch's OpenMP threads spin, decided before torch is imported.

torch's CPU kernels run on an OpenMP thread team. The runtime torch ships with (GNU
libgomp) lets a thread that waits for the next parallel region *spin* for up to 300 000
iterations before it sleeps. On an idle machine that saves a wake-up; on a machine whose
cores other jobs already use, the spinning threads take CPU time from everyone, our own
working threads included. ``benchmarks/bench_shared.py`` (``docs/performance.md``): a
``dfct train`` under two competing busy processes on 2 cores took 3-4.5x its idle wall
time and 1.7-2.8x its CPU time with the default; with a spin of 10 000 iterations
(``GOMP_SPINCOUNT=10000``) 2.2x and 1.2x, for 4 % more wall time when idle.

:func:`configure_openmp` runs when :mod:`napari_dfct` is imported: unless the user set
``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (their choice wins) or torch is already imported
(too late: the runtime reads them when it loads), it sets ``GOMP_SPINCOUNT=10000``. Under
a cgroup CPU quota smaller than the cores the process sees (a container, a cluster job)
it also sets ``OMP_NUM_THREADS`` to the quota, so torch does not start more threads than
it may run. Child processes (the Train widget's training process, grid jobs) inherit both.

Nothing here imports torch, Qt or napari.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping

__all__ = ["SPIN_COUNT", "configure_openmp", "decide", "default_threads", "usable_cores"]

#: Spin iterations of a waiting OpenMP thread before it sleeps (libgomp's default: 300000).
SPIN_COUNT = 10_000


def _visible_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def usable_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup (v2) CPU
    quota (``cpu_max``, rounded up to whole cores) when one is set."""
    n = _visible_cores()
    try:
        with open(cpu_max) as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(-(-int(quota) // int(period)))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def default_threads(environ: Mapping[str, str] | None = None) -> int:
    """The threads torch's CPU kernels take by default, told without importing torch (for
    an ONNX Runtime session that must not take more): ``OMP_NUM_THREADS`` when it is a
    positive integer (:func:`configure_openmp` sets it under a CPU quota), else the cores
    of the process's affinity mask; the same as ``torch.get_num_threads()`` on a
    2-core x86_64 machine with and without ``taskset -c 0``."""
    env = os.environ if environ is None else environ
    try:
        n = int(env.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        n = 0
    return n if n > 0 else _visible_cores()


def decide(environ: Mapping[str, str], cores: int, torch_loaded: bool) -> dict[str, str]:
    """The environment settings to add: ``GOMP_SPINCOUNT`` unless the user chose a wait
    policy or a spin count, ``OMP_NUM_THREADS`` when ``cores`` (the quota) is below the
    cores the process sees; nothing the user set, nothing once torch is loaded."""
    if torch_loaded:
        return {}
    out: dict[str, str] = {}
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        out["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    if "OMP_NUM_THREADS" not in environ and cores < _visible_cores():
        out["OMP_NUM_THREADS"] = str(cores)
    return out


def configure_openmp(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Apply :func:`decide` to ``environ`` (default ``os.environ``); return what was set."""
    env = os.environ if environ is None else environ
    out = decide(env, usable_cores(), "torch" in sys.modules)
    env.update(out)
    return out
