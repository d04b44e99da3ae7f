"""The paper's experiment grid, its report and the demo.

- :func:`run_grid` trains every (loss configuration, seed) of a grid through the one
  training loop (:func:`napari_dfct.train.run_fit`), predicts a held-out test slice and
  measures it (:mod:`napari_dfct.metrics`); runs go in this process, in parallel processes
  or as a Slurm job array (submitit). Finished runs are skipped on restart.
- :func:`grid_report` writes the paper's tables (median ± std over seeds), violin plots and
  Fig.-3-like panels from a grid folder.
- :func:`run_demo` runs a small grid on the built-in simulator (CPU, minutes).
"""

from .demo import run_demo
from .executors import EXECUTORS, GridRunError, SlurmOptions, run_grid
from .layout import make_configs, prepare_grid
from .report import collect_runs, grid_report, paper_table, representative_seed, summarize
from .run import run_one
from .scoring import measure_slice
from .status import grid_status, read_log

__all__ = [
    "EXECUTORS",
    "GridRunError",
    "SlurmOptions",
    "collect_runs",
    "grid_report",
    "grid_status",
    "make_configs",
    "measure_slice",
    "paper_table",
    "prepare_grid",
    "read_log",
    "representative_seed",
    "run_demo",
    "run_grid",
    "run_one",
    "summarize",
]
