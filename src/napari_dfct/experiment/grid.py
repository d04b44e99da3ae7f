"""The paper's experiment grid: one training run per (loss configuration, seed).

The grid lives in four modules; this one gathers their public names:

- :mod:`.layout`: the grid folder (file names, configurations and scale-matched controls,
  training/test data and ROIs, :func:`prepare_grid`);
- :mod:`.status`: :func:`grid_status`, :func:`queued_runs`, the event log;
- :mod:`.run`: one run (:func:`run_one`, its heartbeat and :func:`running_elsewhere`,
  :func:`measure_slice`);
- :mod:`.executors`: this process, a local process pool and submitit/Slurm
  (:class:`SlurmOptions`, :func:`run_grid`).

Restarting a grid skips every run whose ``metrics.json`` exists. A run folder without it
(a crash, a killed job, a Slurm time-out) is moved aside to
``seed-<k>.incomplete-<timestamp>`` and the run is done again from scratch, or, with
``resume=True``, continued from the training state saved after its last epoch: nothing
finished is overwritten, and of the partial attempts of a run the newest is kept (older
ones, of the same settings, are removed and logged: :func:`.layout.prune_aside`). A run
whose ``running.json`` heartbeat is fresh (another process is training it) and a run of an
earlier Slurm submission still in the queue are left alone. One grid process runs per
folder (``OUT/grid.lock``, :mod:`.lock`).
"""

from __future__ import annotations

from .executors import EXECUTORS, GridRunError, SlurmOptions, _init_worker, _visible_gpus, run_grid
from .layout import (
    GRID_FILE,
    LOG_FILE,
    METRICS_FILE,
    PREDICTION_FILE,
    REFERENCE_FILE,
    RUNNING_FILE,
    RUNS_DIR,
    TEST_SLICE_DIR,
    add_controls,
    fingerprint,
    make_configs,
    prepare_grid,
)
from .run import run_one, running_elsewhere
from .scoring import measure_slice
from .status import grid_status, queued_runs, read_log

__all__ = [
    "EXECUTORS",
    "GRID_FILE",
    "LOG_FILE",
    "GridRunError",
    "SlurmOptions",
    "add_controls",
    "fingerprint",
    "grid_status",
    "make_configs",
    "measure_slice",
    "prepare_grid",
    "queued_runs",
    "read_log",
    "run_grid",
    "run_one",
    "running_elsewhere",
]

# also importable from here, as before the split
_REEXPORTED = (
    METRICS_FILE,
    PREDICTION_FILE,
    REFERENCE_FILE,
    RUNNING_FILE,
    RUNS_DIR,
    TEST_SLICE_DIR,
    _init_worker,
    _visible_gpus,
)
