"""CPU sharing: how torch's OpenMP threads wait, decided before torch is imported.

torch's CPU kernels run on an OpenMP thread team. By default the runtime torch ships with
(GNU libgomp) lets a thread that waits for the next parallel region *spin* for a while
before it sleeps. On an idle machine that saves the wake-up; on a machine whose cores are
already busy with other jobs, the spinning threads take CPU time from everyone, our own
working threads included: ``benchmarks/bench_shared.py`` measured a training run under two
competing busy processes on 2 cores at 3.2x its idle wall time and 1.9x its CPU time,
against 1.7x and 1.1x with passive waiting (``docs/performance.md``).

:func:`choose_wait_policy` runs when :mod:`napari_dfct` is imported: unless the user set
``OMP_WAIT_POLICY`` (their choice wins) or torch is already imported (too late: the
runtime reads it when it loads), it sets ``OMP_WAIT_POLICY=PASSIVE`` when other work
already occupies the cores this process may use (:func:`others_running` against
:func:`usable_cores`), and leaves the default otherwise, where spinning is a small gain.
A process started on a busy machine waits passively for its whole life; one started idle
keeps the default even if a load arrives later. Under a cgroup CPU quota smaller than the
cores the process sees (a container, a cluster job), ``OMP_NUM_THREADS`` is set to the
quota, so torch does not start more threads than it may run.

Nothing here imports torch, Qt or napari.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["usable_cores", "others_running", "decide", "choose_wait_policy"]


def usable_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup (v2) CPU
    quota (``cpu_max``, rounded up to whole cores) when one is set."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    try:
        with open(cpu_max) as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(-(-int(quota) // int(period)))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def others_running(samples: int = 3, interval: float = 0.01) -> float | None:
    """Runnable tasks of other processes right now (``/proc/loadavg``'s running count,
    less this one), the median of a few samples; None where it cannot be read."""
    counts = []
    for i in range(max(1, samples)):
        try:
            with open("/proc/loadavg") as fh:
                running = int(fh.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(max(running - 1, 0))
        if i + 1 < samples:
            time.sleep(interval)
    counts.sort()
    return float(counts[len(counts) // 2])


def decide(environ, others: float | None, cores: int, torch_loaded: bool) -> dict:
    """The environment settings to add: ``OMP_WAIT_POLICY=PASSIVE`` when ``others``
    runnable tasks occupy the ``cores`` (others >= cores - 0.5), ``OMP_NUM_THREADS`` when
    a CPU quota leaves fewer cores than torch would start threads for; nothing the user
    set, nothing once torch is loaded."""
    if torch_loaded:
        return {}
    out = {}
    if "OMP_WAIT_POLICY" not in environ and others is not None and others >= cores - 0.5:
        out["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        visible = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        visible = os.cpu_count() or 1
    if "OMP_NUM_THREADS" not in environ and cores < visible:
        out["OMP_NUM_THREADS"] = str(cores)
    return out


def choose_wait_policy(environ=None) -> dict:
    """Apply :func:`decide` to ``environ`` (default ``os.environ``) for this machine now;
    return what was set."""
    env = os.environ if environ is None else environ
    if "torch" in sys.modules:
        return {}
    out = decide(env, others_running(), usable_cores(), False)
    env.update(out)
    return out
