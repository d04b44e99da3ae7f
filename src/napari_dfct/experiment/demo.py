"""The demo: a small grid on the built-in simulator, on a CPU, in minutes.

It simulates a training set of independent specimens (seed 0: every slice its own anatomy
and its own acquisition, as the paper's central slices of independent scans) and a
held-out test set of other specimens (seed 1000), trains the L2 baseline and L2 + S+F
non-linear (preset ``small``) for six seeds through the grid machinery
(:func:`run_grid`), measures every test slice and compares input, models (median over
seeds of the median over test slices), target and truth by CNR, FWHM, the error CNR and
PSNR in the body; then it compares the two configurations **paired by seed** (median
difference, 95 % bootstrap interval, Wilcoxon p, equivalence test against the default
margins, verdict: better / worse / equivalent / inconclusive).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._util import atomic_write_json, atomic_write_text, read_json

__all__ = ["DEMO_CONFIGS", "DemoSettings", "demo_settings", "run_demo"]

#: The two configurations of the demo: the baseline and the paper's best L2 configuration.
DEMO_CONFIGS = ("l2", "l2+s+f-nonlinear")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo (chosen to finish in minutes on two CPU cores).

    The optimiser and schedule are the paper's, the defaults of
    :class:`~napari_dfct.train.TrainConfig`.
    """

    size: int = 128
    train_slices: int = 12
    test_slices: int = 8
    n_views: int | None = None
    rotations: int | None = None
    preset: str = "small"
    epochs: int = 40
    patience: int = 20
    batch_size: int = 8
    patch: int = 64
    patches_per_slice: int = 8
    seeds: int = 6


def demo_settings(quick: bool = False) -> DemoSettings:
    """The demo's sizes; ``quick``: a smoke version (seconds: 64x64 slices, two seeds)."""
    if quick:
        return DemoSettings(
            size=64,
            train_slices=8,
            test_slices=3,
            preset="small",
            epochs=10,
            patience=10,
            batch_size=8,
            patch=32,
            patches_per_slice=8,
            seeds=2,
        )
    return DemoSettings()


def _simulate(
    folder: Path, n_slices: int, size: int, seed: int, s: DemoSettings, say: Callable[[str], None]
) -> Path:
    from ..simulate import save_simulation, simulate_dfct

    wanted = {
        "n_slices": n_slices,
        "size": size,
        "seed": seed,
        "n_views": s.n_views,
        "rotations": s.rotations,
        "specimens": True,
    }
    stamp = folder / "simulation-request.json"
    if (folder / "meta.json").is_file() and stamp.is_file() and read_json(stamp) == wanted:
        say(f"reusing the simulation in {folder}")
        return folder
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} holds other data; use another demo folder (--out)")
    phys: dict[str, Any] = {
        k: v for k, v in (("n_views", s.n_views), ("rotations", s.rotations)) if v
    }
    t0 = time.perf_counter()
    sim = simulate_dfct(n_slices=n_slices, size=size, seed=seed, specimens=True, **phys)
    save_simulation(sim, folder)
    atomic_write_json(stamp, wanted)
    say(
        f"simulated {n_slices} independent specimens of {size}x{size} (seed {seed}) in "
        f"{time.perf_counter() - t0:.0f} s -> {folder}"
    )
    return folder


def run_demo(
    out_dir: str | os.PathLike = "dfct-demo",
    *,
    seeds: int | None = None,
    epochs: int | None = None,
    device: str = "auto",
    quick: bool = False,
    jobs: int = 2,
    progress: bool = True,
    print_fn: Callable[[str], None] | None = None,
    recipe: str = "converge",
) -> dict:
    """Run the demo end to end and write its table and figures under ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Demo folder: ``data/`` (simulated train and test sets), ``grid/`` (the runs and
        ``grid/report``), ``demo-table.md``/``.csv``, ``demo-panel.png`` (input, target,
        truth and the representative prediction of each configuration, ROIs and line drawn)
        ``demo-violins.png`` (CNR, FWHM, error CNR, PSNR in the body over seeds) and
        ``demo-verdict.md``/``.csv`` (the paired comparison). Running the demo again reuses
        finished runs.
    seeds : int, optional
        Seeds per configuration (default 6, 2 with ``quick``; a verdict needs at least 6).
    epochs : int, optional
        Epochs per run (default 40, 10 with ``quick``).
    device : str
        ``auto``, ``cpu``, ``cuda``...
    quick : bool
        A smoke version: 64x64 slices, 10 epochs, two seeds (seconds).
    jobs : int
        Parallel runs (processes; each gets its share of the CPU cores).
    progress : bool
        Progress bar and per-run lines on stderr.
    print_fn : callable, optional
        Where messages go (default: stderr).
    recipe : str
        Training recipe (:data:`napari_dfct.train.config.RECIPES`; default ``converge``,
        whose optimiser settings are ``stable``'s without weight decay: under ``stable``
        the demo's models under-fit, docs/reach-the-target.md): its optimiser settings
        (weight decay, BatchNorm recalibration) apply; the demo's sizes (preset, patch,
        batch, patches per slice, epochs, patience) stay the demo's.

    Returns
    -------
    dict
        ``{"out_dir", "table_md", "table_csv", "rows", "verdict_md", "paired", "files",
        "seconds", "settings"}``; ``rows`` holds per image (input, each configuration,
        target, truth) the median, std and n of CNR, FWHM, error CNR and PSNR in the body
        (against the truth); ``paired`` the rows of
        :func:`napari_dfct.experiment.paired.paired_results`.
    """
    from ..train.config import recipe_config
    from .executors import run_grid
    from .report import _comparison_tables, collect_runs, comparison_rows, grid_report, summarize

    t_start = time.perf_counter()
    say = print_fn or (lambda m: print(m, file=sys.stderr))
    s = demo_settings(quick)
    n_seeds = int(seeds) if seeds is not None else s.seeds
    n_epochs = int(epochs) if epochs is not None else s.epochs
    if n_seeds < 1 or n_epochs < 1:
        raise ValueError("the demo needs at least one seed and one epoch")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)

    train_dir = _simulate(out / "data" / "train", s.train_slices, s.size, 0, s, say)
    test_dir = _simulate(out / "data" / "test", s.test_slices, s.size, 1000, s, say)
    config = recipe_config(
        recipe,
        preset=s.preset,
        epochs=n_epochs,
        patience=min(s.patience, n_epochs),
        batch_size=s.batch_size,
        patch=s.patch,
        patches_per_slice=s.patches_per_slice,
        device=device,
    )
    grid_dir = out / "grid"
    say(
        f"training {len(DEMO_CONFIGS)} configurations x {n_seeds} seeds (recipe {recipe}, "
        f"preset {s.preset}, "
        f"{n_epochs} epochs, {s.patches_per_slice} patches of {s.patch}x{s.patch} per slice)"
    )
    run_grid(
        train_dir,
        test_dir,
        grid_dir,
        list(DEMO_CONFIGS),
        list(range(n_seeds)),
        config,
        executor="local",
        jobs=jobs,
        device=device,
        progress=progress,
        print_fn=print_fn,
        report=False,
    )
    files = grid_report(grid_dir)

    reference = read_json(grid_dir / "reference.json", expect=dict)
    summary = summarize(collect_runs(grid_dir))
    metrics = ("cnr", "fwhm", "error_cnr", "psnr_body")
    rows = comparison_rows(summary, reference, metrics)
    table_md, table_csv = _comparison_tables(rows, list(metrics))
    written = {
        "demo-table.md": atomic_write_text(out / "demo-table.md", table_md),
        "demo-table.csv": atomic_write_text(out / "demo-table.csv", table_csv),
    }
    from .paired import paired_results, paired_tables

    paired = paired_results(summary, {}, metrics)
    verdict = paired_tables(paired) if paired else {"markdown": "", "csv": ""}
    written["demo-verdict.md"] = atomic_write_text(out / "demo-verdict.md", verdict["markdown"])
    written["demo-verdict.csv"] = atomic_write_text(out / "demo-verdict.csv", verdict["csv"])
    import shutil

    from .report import violin_figure

    written["demo-violins.png"] = violin_figure(
        summary,
        list(metrics),
        reference,
        out / "demo-violins.png",
        title=f"Held-out test specimens (median over slices), {n_seeds} "
        f"seed{'s' if n_seeds != 1 else ''} per configuration",
    )

    for key, name in (("panel-l2", "demo-panel.png"),):
        if key in files:
            written[name] = Path(shutil.copyfile(files[key], out / name))
    seconds = time.perf_counter() - t_start
    result: dict[str, Any] = {
        "out_dir": out,
        "table_md": table_md,
        "table_csv": table_csv,
        "rows": rows,
        "verdict_md": verdict["markdown"],
        "paired": paired,
        "files": {**{k: Path(v) for k, v in files.items()}, **written},
        "seconds": seconds,
        "settings": {
            **s.__dict__,
            "seeds": n_seeds,
            "epochs": n_epochs,
            "device": device,
            "quick": quick,
            "recipe": recipe,
        },
    }
    atomic_write_json(out / "demo.json", {"seconds": seconds, "settings": result["settings"]})
    return result
