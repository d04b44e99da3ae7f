"""Tables and figures of a grid folder: the paper's tables, violin plots and Fig.-3-like panels.

Everything is computed from the files of the grid folder (``metrics.json`` of each run,
``reference.json``, ``test-slice/*.tif`` and each run's ``prediction.tif``): the report
never trains nor predicts, so it can be drawn at any time, also for an incomplete grid.

A run's value of a metric is its median over the test slices (``metrics.json``; grids that
measured one test slice, an earlier format, hold that slice's value and stay readable).
Statistics: per configuration, the **median** and the **sample standard deviation**
(``ddof=1``) over the seeds whose value is finite; ``n`` counts those seeds (a cell shows it
when fewer than all finished runs have a finite value, or always in the CSV files). A
standard deviation needs two values; with one it is NaN (shown as ``n/a``). Comparisons
between configurations are paired by seed (:mod:`.paired`, :mod:`.stats`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._tables import METRICS
from ._tables import csv_text as _csv_text
from ._tables import md_table as _md_table
from ._tables import num as _num
from ._util import atomic_write_text, read_json, to_float
from .figures import _panel, _read2d, _violin, violin_figure
from .layout import (
    GRID_FILE,
    METRICS_FILE,
    PREDICTION_FILE,
    REFERENCE_FILE,
    RUNS_DIR,
    TEST_SLICE_DIR,
)
from .status import grid_status
from .volume_test import origin

__all__ = [
    "METRICS",
    "ROW_ORDER",
    "collect_runs",
    "comparison_rows",
    "grid_report",
    "paper_table",
    "representative_seed",
    "summarize",
    "violin_figure",
]

#: Rows of the paper's table, from the amplification scheme.
ROW_ORDER = {
    "none": "baseline",
    "S": "+S",
    "F": "+F",
    "S+F": "+S+F",
    "F+S": "+F+S",
    "D": "+D",
    "S+D": "+S+D",
    "D+S": "+D+S",
}
PROFILES = ("linear", "nonlinear")
PROFILE_LABEL = {"linear": "linear", "nonlinear": "non-linear"}


# --------------------------------------------------------------------------- collecting
def collect_runs(out_dir: str | os.PathLike) -> list[dict]:
    """Every finished run of a grid folder: the content of each ``metrics.json``.

    Each record gains ``run_dir`` (its folder). Moved-aside attempts
    (``seed-k.incomplete-*``) and folders without ``metrics.json`` are ignored.
    """
    runs = Path(out_dir) / RUNS_DIR
    records: list[dict] = []
    if not runs.is_dir():
        return records
    for path in sorted(runs.glob(f"*/seed-*/{METRICS_FILE}")):
        if ".incomplete-" in path.parent.name:
            continue
        rec = read_json(path, expect=dict)
        for key, typ in (("name", str), ("seed", int)):
            if not isinstance(rec.get(key), typ):
                raise ValueError(f"{path} is corrupt: it names no run ({key!r} is missing)")
        rec["run_dir"] = str(path.parent)
        records.append(rec)
    return records


def _stats(values: Sequence[float | None]) -> dict:
    arr = np.asarray([to_float(v) for v in values], dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    n = int(finite.size)
    return {
        "median": float(np.median(finite)) if n else float("nan"),
        "std": float(np.std(finite, ddof=1)) if n >= 2 else float("nan"),
        "n": n,
        "n_runs": int(arr.size),
        "values": [float(v) for v in arr],
    }


def _config_info(rec_or_dict: dict) -> dict:
    """loss, scheme and profile of a configuration from its loss dict."""
    from ..losses import LossConfig

    cfg = LossConfig.from_dict(rec_or_dict)
    family = (
        cfg.loss
        + ("-spectral" if cfg.mode == "spectral" else "")
        + ("-norm" if cfg.normalize else "")
    )
    return {
        "name": cfg.name,
        "loss": cfg.loss,
        "scheme": cfg.scheme,
        "profile": cfg.profile,
        "family": family,
        "scale": cfg.scale,
        "trains_as": cfg.trains_as.name,
    }


def summarize(records: Sequence[dict], metrics: Sequence[str] = tuple(METRICS)) -> dict:
    """Median, standard deviation (ddof=1) and n per configuration and metric.

    Returns
    -------
    dict
        ``{name: {"loss", "scheme", "profile", "family", "seeds": [...], <metric>: {"median",
        "std", "n", "n_runs", "values"}}}``, configurations in first-seen order. ``family``
        is the loss with the mode and normalisation suffixes (``"l2"``,
        ``"l2-spectral"``...): one paper table per family.
    """
    by_name: dict[str, list[dict]] = {}
    for rec in records:
        by_name.setdefault(rec["name"], []).append(rec)
    out = {}
    for name, recs in by_name.items():
        recs = sorted(recs, key=lambda r: int(r["seed"]))
        info = _config_info(recs[0]["loss"])
        entry = {**info, "name": name, "seeds": [int(r["seed"]) for r in recs]}
        for m in metrics:
            entry[m] = _stats([r.get(m) for r in recs])
        for m in ("epochs_run", "best_epoch", "seconds"):
            entry[m] = _stats([r.get(m) for r in recs])
        out[name] = entry
    return out


def representative_seed(records: Sequence[dict], metric: str = "cnr") -> int | None:
    """The seed whose ``metric`` is closest to the median over seeds (ties: lowest seed).

    Runs with a non-finite value are passed over; if none is finite, the lowest seed.
    """
    if not records:
        return None
    pairs = sorted((int(r["seed"]), to_float(r.get(metric))) for r in records)
    finite = [(s, v) for s, v in pairs if math.isfinite(v)]
    if not finite:
        return pairs[0][0]
    med = float(np.median([v for _, v in finite]))
    return min(finite, key=lambda sv: (abs(sv[1] - med), sv[0]))[0]


# --------------------------------------------------------------------------- formatting
def _cell(stats: dict | None, fmt: str, n_expected: int | None = None, bold: bool = False) -> str:
    if stats is None or stats["n_runs"] == 0:
        return "–"
    if stats["n"] == 0:
        text = "n/a"
    elif stats["n"] == 1:
        text = _num(stats["median"], fmt)
    else:
        text = f"{_num(stats['median'], fmt)} ± {_num(stats['std'], fmt)}"
    if bold and stats["n"]:
        text = f"**{text}**"
    full = n_expected if n_expected is not None else stats["n_runs"]
    if stats["n"] != full:
        text += f" (n={stats['n']}/{full})"
    else:
        text += f" (n={stats['n']})"
    return text


# --------------------------------------------------------------------------- tables
def paper_table(
    summary: dict, loss: str, reference: dict | None = None, n_expected: int | None = None
) -> dict:
    """The paper's table for one loss: rows baseline, +S, +F, +S+F, +F+S.

    ``loss`` is a family (``"l2"``, or ``"l2-spectral"`` / ``"l2-norm"`` for the other
    modes). Configurations whose spatial and frequency profiles differ have no cell here
    (they are in the summary table).

    Columns: CNR linear, CNR non-linear, FWHM linear, FWHM non-linear (median ± std over
    seeds). The baseline has no profile: its runs fill both columns. The best (highest)
    median CNR of each CNR column is marked bold. ``reference`` (``reference.json``) adds
    rows for the input, the target and the truth on the test slice.

    Returns
    -------
    dict
        ``{"markdown": str, "csv": str, "rows": [...]}``; ``rows`` holds, per row, the
        label and for each column the stats dict (or None).
    """
    columns = [(m, p) for m in ("cnr", "fwhm") for p in PROFILES]
    table_rows: list[dict[str, Any]] = []
    for scheme, label in ROW_ORDER.items():
        cells = {}
        for m, p in columns:
            entry = None
            for e in summary.values():
                if e.get("family", e["loss"]) != loss or e["scheme"] != scheme:
                    continue
                if e.get("scale", 1.0) != 1.0:
                    continue  # a scale-matched control: in its own table
                if scheme == "none" or e["profile"] == p:
                    entry = e
                    break
            cells[(m, p)] = entry[m] if entry else None
        if any(c is not None for c in cells.values()):
            table_rows.append({"label": label, "scheme": scheme, "cells": cells})

    best = {}
    for col in columns:
        if col[0] != "cnr":
            continue
        meds = [
            (r["cells"][col]["median"], i)
            for i, r in enumerate(table_rows)
            if r["cells"][col] is not None and math.isfinite(r["cells"][col]["median"])
        ]
        if meds:
            best[col] = max(meds)[0]

    header = [loss.upper()] + [
        f"{METRICS[m][0].split(' ')[0]} {PROFILE_LABEL[p]}" for m, p in columns
    ]
    md_rows, csv_rows = [], []
    for r in table_rows:
        md = [r["label"]]
        cs: list[Any] = [r["label"]]
        for col in columns:
            st = r["cells"][col]
            fmt = METRICS[col[0]][1]
            is_best = col in best and st is not None and st["median"] == best[col]
            md.append(_cell(st, fmt, n_expected, bold=is_best))
            if st is None:
                cs += [float("nan"), float("nan"), 0]
            else:
                cs += [st["median"], st["std"], st["n"]]
        md_rows.append(md)
        csv_rows.append(cs)
    if reference:
        for key in ("input", "target", "truth"):
            ref = reference.get(key)
            if not ref:
                continue
            md = [f"*{key}*"]
            cs = [key]
            for m, _ in columns:
                v = to_float(ref.get(m))
                md.append(_num(v, METRICS[m][1]))
                cs += [v, float("nan"), 1]
            md_rows.append(md)
            csv_rows.append(cs)
    csv_header = ["row"] + [f"{m}_{p}_{s}" for m, p in columns for s in ("median", "std", "n")]
    return {
        "markdown": _md_table(header, md_rows),
        "csv": _csv_text(csv_header, csv_rows),
        "rows": table_rows,
    }


def controls_table(
    summary: dict, control_of: dict[str, str], metrics: Sequence[str] = ("cnr", "fwhm")
) -> dict | None:
    """Each amplified configuration next to its scale-matched control and the baseline.

    ``control_of`` maps configuration names to control names (``grid.json``'s
    ``controls``). Columns per metric: the configuration, its control (the plain loss with
    the same loss scale) and the plain baseline, median ± std over seeds. None when no
    configuration of ``summary`` has a control there.
    """
    rows = []
    for name, e in summary.items():
        ctrl = control_of.get(name)
        if ctrl is None or ctrl not in summary:
            continue
        base = next(
            (
                b
                for b in summary.values()
                if b["scheme"] == "none"
                and b.get("scale", 1.0) == 1.0
                and b["family"] == e["loss"]
            ),
            None,
        )
        rows.append((name, summary[ctrl], e, base))
    if not rows:
        return None
    header = ["configuration", "control"]
    for m in metrics:
        label = METRICS[m][0].split(" ")[0]
        header += [f"{label}", f"{label} control", f"{label} baseline"]
    md_rows, csv_rows = [], []
    for name, ctrl, e, base in rows:
        md = [name, ctrl["name"]]
        cs: list[Any] = [name, ctrl["name"]]
        for m in metrics:
            fmt = METRICS[m][1]
            for st in (e[m], ctrl[m], base[m] if base else None):
                md.append(_cell(st, fmt))
                cs.append(st["median"] if st else float("nan"))
        md_rows.append(md)
        csv_rows.append(cs)
    csv_header = ["configuration", "control"] + [
        f"{m}_{k}" for m in metrics for k in ("config", "control", "baseline")
    ]
    return {"markdown": _md_table(header, md_rows), "csv": _csv_text(csv_header, csv_rows)}


def comparison_rows(
    summary: dict, reference: dict | None, metrics: Sequence[str] = ("cnr", "fwhm", "psnr", "ssim")
) -> list[dict]:
    """Rows input, every configuration (median over seeds), target, truth, for ``metrics``."""
    rows = []
    ref = reference or {}
    if ref.get("input"):
        rows.append(
            {
                "label": "input",
                "kind": "reference",
                **{m: _stats([ref["input"].get(m)]) for m in metrics},
            }
        )
    for name, e in summary.items():
        rows.append({"label": name, "kind": "model", **{m: e[m] for m in metrics}})
    for key in ("target", "truth"):
        if ref.get(key):
            rows.append(
                {
                    "label": key,
                    "kind": "reference",
                    **{m: _stats([ref[key].get(m)]) for m in metrics},
                }
            )
    return rows


def _comparison_tables(rows: list[dict], metrics: Sequence[str]) -> tuple[str, str]:
    header = ["image"] + [METRICS[m][0] for m in metrics] + ["n"]
    md_rows, csv_rows = [], []
    for r in rows:
        md = [r["label"] if r["kind"] == "model" else f"*{r['label']}*"]
        for m in metrics:
            st = r[m]
            fmt = METRICS[m][1]
            if st["n"] >= 2:
                md.append(f"{_num(st['median'], fmt)} ± {_num(st['std'], fmt)}")
            else:
                md.append(_num(st["median"], fmt))
        md.append(str(r[metrics[0]]["n_runs"]) if r["kind"] == "model" else "")
        md_rows.append(md)
        csv_rows.append(
            [r["label"]] + [x for m in metrics for x in (r[m]["median"], r[m]["std"], r[m]["n"])]
        )
    csv_header = ["image"] + [f"{m}_{s}" for m in metrics for s in ("median", "std", "n")]
    return _md_table(header, md_rows), _csv_text(csv_header, csv_rows)


# --------------------------------------------------------------------------- the report
def _present(metric: str, summary: dict, reference: dict) -> bool:
    """Whether any run or reference image has a finite value of ``metric``."""
    if any(metric in e and e[metric]["n"] > 0 for e in summary.values()):
        return True
    return any(
        math.isfinite(to_float((reference.get(k) or {}).get(metric))) for k in ("input", "target")
    )


def _report_metrics(summary: dict, reference: dict) -> list[str]:
    """The metrics of the summary table and the violins: CNR and FWHM; with a truth the
    error CNR, PSNR and SSIM (and the body metrics where a mask was given); without one
    PSNR and SSIM against the target."""
    if not reference.get("truth"):
        return ["cnr", "fwhm", "psnr_target", "ssim_target"]
    optional = ("error_cnr", "psnr_body", "ssim_body", "rmse_body")
    return (
        ["cnr", "fwhm"]
        + [m for m in optional[:1] if _present(m, summary, reference)]
        + ["psnr", "ssim"]
        + [m for m in optional[1:] if _present(m, summary, reference)]
    )


def _slice_value(record: dict, key: str, z: int | None) -> float:
    """``key`` of slice ``z`` (a grid measuring every test slice keeps them in
    ``per_slice``), else the record's own value (a one-slice grid)."""
    for entry in record.get("per_slice") or ():
        if entry.get("slice") == z:
            return to_float(entry.get(key))
    return to_float(record.get(key))


_RUN_KEYS = [
    "name",
    "seed",
    "cnr",
    "cnr_stderr",
    "fwhm",
    "fwhm_stderr",
    "error_cnr",
    "psnr",
    "ssim",
    "psnr_body",
    "ssim_body",
    "rmse_body",
    "psnr_target",
    "ssim_target",
    "signal_mean",
    "signal_std",
    "background_mean",
    "background_std",
    "n_slices",
    "epochs_run",
    "best_epoch",
    "best_val_loss",
    "stopped",
    "seconds",
    "device",
]


def _load(out_dir: Path) -> tuple[dict, dict, list[dict], dict]:
    """``grid.json``, ``reference.json`` (or {}), the finished runs and their summary in
    grid order."""
    if not (out_dir / GRID_FILE).is_file():
        raise ValueError(f"{out_dir} is not a grid folder (no {GRID_FILE})")
    settings = read_json(out_dir / GRID_FILE, expect=dict)
    if not isinstance(settings.get("configs"), dict):
        raise ValueError(f"{out_dir / GRID_FILE} is corrupt: it lists no configurations")
    reference = (
        read_json(out_dir / REFERENCE_FILE, expect=dict)
        if (out_dir / REFERENCE_FILE).is_file()
        else {}
    )
    records = collect_runs(out_dir)
    summary = summarize(records)
    # order configurations as in the grid settings, then anything else found on disk
    order = [n for n in settings.get("configs", {}) if n in summary]
    order += [n for n in summary if n not in order]
    return settings, reference, records, {n: summary[n] for n in order}


def _panels(
    out_dir: Path,
    rdir: Path,
    summary: dict,
    records: list[dict],
    reference: dict,
    roi: dict,
    files: dict,
) -> tuple[list[str], dict]:
    """The Fig.-3-like panel of each loss family: input, target, truth and each
    configuration's representative prediction on the representative test slice."""
    z = reference.get("slice", roi.get("slice"))
    n_slices = reference.get("n_slices")
    slices = {
        k: _read2d(out_dir / TEST_SLICE_DIR / f"{k}.tif") for k in ("input", "target", "truth")
    }
    by_name: dict[str, list[dict]] = {}
    for rec in records:
        by_name.setdefault(rec["name"], []).append(rec)
    figures, representatives = [], {}
    for loss in dict.fromkeys(e["family"] for e in summary.values()):
        images: list[tuple[str, np.ndarray]] = []
        for k in ("input", "target", "truth"):
            image = slices[k]
            if image is not None:
                cnr = _slice_value(reference.get(k) or {}, "cnr", z)
                images.append((f"{k}\nCNR {_num(cnr, '.2f')}", image))
        for name, e in summary.items():
            if e["family"] != loss:
                continue
            seed = representative_seed(by_name[name])
            rec = next(r for r in by_name[name] if int(r["seed"]) == seed)
            pred = _read2d(Path(rec["run_dir"]) / PREDICTION_FILE)
            representatives[name] = seed
            if pred is None:
                continue
            images.append(
                (
                    (
                        f"{name} (seed {seed})\n"
                        f"CNR {_num(_slice_value(rec, 'cnr', z), '.2f')}  "
                        f"FWHM {_num(_slice_value(rec, 'fwhm', z), '.1f')}"
                    ),
                    pred,
                )
            )
        if images:
            where = f"test slice {z}" + (f" of {n_slices}" if n_slices else "")
            scan = origin(reference.get("test_slices") or [], int(z)) if z is not None else None
            if scan:  # a test set of volumes: which volume and slice
                where += f" ({scan[0]}, slice {scan[1]})"
            files[f"panel-{loss}"] = _panel(
                images,
                roi,
                rdir / f"panel-{loss}.png",
                f"{loss.upper()}: {where}, representative seeds (median CNR over the test "
                "slices closest to the median over seeds); values on this slice",
            )
            figures.append(f"panel-{loss}.png")
    return figures, representatives


def _margins_line(margins: dict | None) -> str:
    """Which equivalence margins the report used, and which of them were given."""
    from .paired import PAIRED_METRICS, _margin_text
    from .stats import equivalence_margins

    given = list(margins or {})
    used = equivalence_margins(margins)
    parts = [
        f"{METRICS.get(m, (m,))[0]} {_margin_text(m, used[m])}"
        for m in dict.fromkeys([*PAIRED_METRICS, *given])
        if m in used
    ]
    where = (
        f"given for this report: {', '.join(given)}; the others the defaults"
        if given
        else "the defaults"
    )
    return f"Equivalence margins: {', '.join(parts)} ({where}).\n"


def _paired_section(
    summary: dict,
    settings: dict,
    rdir: Path,
    files: dict,
    n_boot: int,
    compare=(),
    margins: dict | None = None,
    baseline_family: str = "all",
) -> list[str]:
    """Write ``paired.md``/``.csv``/``.png`` and ``power.md``/``.csv`` (:mod:`.paired`);
    the report's section."""
    from .paired import paired_figure, paired_results, paired_tables, power_table

    rows = paired_results(
        summary,
        settings.get("controls") or {},
        n_boot=n_boot,
        compare=compare,
        margins=margins,
        baseline_family=baseline_family,
    )
    if not rows:
        return []
    t = paired_tables(rows)
    margins_md = _margins_line(margins)
    files["paired.md"] = atomic_write_text(rdir / "paired.md", margins_md + "\n" + t["markdown"])
    files["paired.csv"] = atomic_write_text(rdir / "paired.csv", t["csv"])
    files["paired"] = paired_figure(rows, rdir / "paired.png")
    pw = power_table(rows)
    files["power.md"] = atomic_write_text(rdir / "power.md", pw["markdown"])
    files["power.csv"] = atomic_write_text(rdir / "power.csv", pw["csv"])
    return [
        "## Paired comparisons (by seed)\n",
        (
            "Runs with the same seed share the split, the initialisation and the patch order, "
            "so each configuration is compared with its family's baseline seed by seed (and, "
            "in the second kind of table, with its scale-matched control; in a third, the "
            "pairs chosen with --compare). Δ: median over seeds "
            "of the per-seed difference (configuration − reference) of the runs' values; CI: "
            f"95 % percentile bootstrap interval of that median ({n_boot} resamples, seeded); "
            "p: two-sided Wilcoxon signed-rank test (exact for small n); p TOST: two one-sided "
            "Wilcoxon tests of equivalence, Δ + margin > 0 and Δ − margin < 0, the larger p; "
            "p (Holm) and p TOST (Holm): each corrected over the table's Holm family (stated "
            "under each table). Verdict **better** / **worse**: the interval excludes zero on "
            "the good (bad) side of the metric and p (Holm) < 0.05; else **equivalent**: p "
            "TOST (Holm) < 0.05, the differences lie within the margin; else inconclusive "
            '(not "no effect"). *identity* (the configuration trains as its reference, or '
            "every difference is exactly 0) and *duplicate* (it trains as the configuration "
            "of another row) rows are no comparisons and stay out of the family"
            + (
                "; so do the scale-matched controls' rows against the baseline (*outside*: "
                "this report's baseline family holds the amplified configurations only, "
                "--baseline-family amplified)"
                if baseline_family == "amplified"
                else ""
            )
            + ". With 5 seeds "
            "or fewer the smallest two-sided p is 0.0625, with 4 or fewer the smallest TOST p "
            "0.0625: such a grid can give no verdict.\n"
        ),
        margins_md,
        t["markdown"],
        "![paired.png](paired.png)\n",
        "### Seeds for an equivalence test\n",
        (
            "The spread of the paired differences per metric (pooled standard deviation over "
            "the family rows with two or more seeds) and the number of seeds for 80 % power "
            "of TOST at the margin when the true difference is 0: the Wilcoxon TOST simulated "
            "on normal differences of that spread (4000 samples per n, seeded), at α = 0.05 "
            "and at α/m for Holm over the largest family m of the metric; the t-approximation "
            "n = (z₁₋α + z₁₋β/₂)² σ² / δ² (with t quantiles) beside it.\n"
        ),
        pw["markdown"],
    ]


def grid_report(
    out_dir: str | os.PathLike,
    report_dir: str | os.PathLike | None = None,
    *,
    n_boot: int = 10_000,
    compare=(),
    margins: dict | None = None,
    baseline_family: str = "all",
) -> dict:
    """Write the tables and figures of a grid folder (complete or not).

    Files (under ``OUT/report`` unless ``report_dir`` is given):

    - ``table-<loss>.md`` / ``.csv``: the paper's table per loss (median ± std, n),
      with the input's, target's and truth's values as reference rows;
    - ``controls.md`` / ``.csv`` (grids with ``controls``): each amplified configuration
      next to its scale-matched control and the baseline;
    - ``summary.md`` / ``.csv``: every configuration with CNR, FWHM, the error CNR, PSNR
      and SSIM (in the body too, with a mask) (and the same for input, target, truth),
      ``runs.csv``: one row per run;
    - ``paired.md`` / ``.csv`` / ``.png``: each configuration against its baseline (and
      its scale-matched control) paired by seed, with bootstrap intervals, Holm-corrected
      Wilcoxon and equivalence (TOST) p-values against the declared margins, and verdicts
      (better / worse / equivalent / inconclusive; identity rows outside the family)
      (:mod:`.paired`); ``power.md`` / ``.csv``: the spread of the paired differences per
      metric and the seeds an equivalence test needs for 80 % power;
    - ``violin-<metric>.png``: violin plots per configuration, the input as a dashed line;
    - ``panel-<loss>.png``: input, target, truth and the representative prediction of each
      configuration (the seed whose CNR is closest to the median), ROIs and line drawn;
    - ``report.md``: all of the above in one page.

    A run's value is its median over the test slices (one value for grids of one test
    slice, which stay readable); statistics over seeds are taken of those.

    Parameters
    ----------
    n_boot : int
        Bootstrap resamples of the paired intervals.
    compare : sequence of (str, str)
        Extra paired comparisons ``(configuration, reference)``
        (:func:`~.paired.parse_compare`).
    margins : dict of str to float, optional
        Equivalence margins that override :data:`~.stats.EQUIVALENCE_MARGINS`
        (:func:`~.stats.parse_margins`); the report states which were used.
    baseline_family : {"all", "amplified"}
        The Holm family of the table against the baseline: every configuration's row, or
        only the amplified configurations' (the scale-matched controls' rows are shown
        outside it) (:func:`~.paired.paired_results`).

    Returns
    -------
    dict of str to Path
        The files written, by short name (``"table-l2.md"``, ``"violin-cnr"``...).
    """
    from .paired import check_baseline_family

    check_baseline_family(baseline_family)
    out_dir = Path(out_dir)
    settings, reference, records, summary = _load(out_dir)
    rdir = Path(report_dir) if report_dir else out_dir / "report"
    rdir.mkdir(parents=True, exist_ok=True)
    roi = reference.get("roi") or settings["roi"]
    status = grid_status(out_dir)
    n_seeds = len(settings.get("seeds", [])) or None
    files: dict[str, Path] = {}

    tables_md = []
    for loss in dict.fromkeys(e["family"] for e in summary.values()):
        t = paper_table(summary, loss, reference, n_expected=n_seeds)
        files[f"table-{loss}.md"] = atomic_write_text(rdir / f"table-{loss}.md", t["markdown"])
        files[f"table-{loss}.csv"] = atomic_write_text(rdir / f"table-{loss}.csv", t["csv"])
        tables_md.append((loss, t["markdown"]))

    metrics = _report_metrics(summary, reference)
    comp_md, comp_csv = _comparison_tables(comparison_rows(summary, reference, metrics), metrics)
    files["summary.md"] = atomic_write_text(rdir / "summary.md", comp_md)
    files["summary.csv"] = atomic_write_text(rdir / "summary.csv", comp_csv)
    ctrl = controls_table(summary, settings.get("controls") or {}, metrics[:2])
    if ctrl is not None:
        files["controls.md"] = atomic_write_text(rdir / "controls.md", ctrl["markdown"])
        files["controls.csv"] = atomic_write_text(rdir / "controls.csv", ctrl["csv"])
    run_rows = [[r.get(k) if r.get(k) is not None else "" for k in _RUN_KEYS] for r in records]
    files["runs.csv"] = atomic_write_text(rdir / "runs.csv", _csv_text(_RUN_KEYS, run_rows))
    paired_md = _paired_section(
        summary, settings, rdir, files, n_boot, compare, margins, baseline_family
    )

    figures = []
    if summary:
        for m in metrics:
            files[f"violin-{m}"] = _violin(summary, m, reference, rdir / f"violin-{m}.png")
            figures.append(f"violin-{m}.png")
    panels, representatives = _panels(out_dir, rdir, summary, records, reference, roi, files)
    figures += panels

    # one page
    n_done, n_inc, n_miss = (len(status[k]) for k in ("done", "incomplete", "missing"))
    n_slices = reference.get("n_slices") or 1
    lines = [
        "# Grid report\n",
        (
            f"Grid folder: `{out_dir}`. Runs finished: {n_done}; incomplete: {n_inc}; "
            f"not started: {n_miss}; moved-aside attempts: {len(status['aside'])}.\n"
        ),
        (
            f"Every run is measured on all {n_slices} test slices, each with its own ROIs; a "
            "run's value is its median over the slices (per-slice values in each run's "
            "metrics.json). Panels show "
            if n_slices > 1
            else "One test slice: "
        )
        + f"test slice {roi.get('slice')}; ROIs {roi['roi_size']}x{roi['roi_size']} px at "
        f"{roi['signal_center']} (signal) and {roi['background_center']} (background); "
        f"edge line {roi['line']}.\n",
        "Values: median ± sample standard deviation (ddof=1) over seeds, with n the number "
        "of seeds with a finite value; bold: the best CNR of each column. The baseline has "
        "no weight profile: the same runs fill its linear and non-linear cells. Reference "
        "rows (in italics) are the input's, target's and truth's values "
        + ("(medians over the test slices).\n" if n_slices > 1 else "on the test slice.\n"),
    ]
    for loss, md in tables_md:
        lines += [f"## {loss.upper()}\n", md]
    lines += paired_md
    if ctrl is not None:
        lines += [
            "## Scale-matched controls\n",
            (
                "Each amplified configuration next to its control: the plain loss "
                "multiplied by the configuration's effective loss scale (`l2@1.47` is L2 "
                "times 1.47). With Adam's coupled weight decay a loss scale alone changes "
                "training: a difference between a configuration and its control is what "
                "the amplification's structure does.\n"
            ),
            ctrl["markdown"],
        ]
    lines += ["## All metrics\n", comp_md]
    if representatives:
        lines.append(
            "Representative seeds: "
            + ", ".join(f"{n}: {s}" for n, s in representatives.items())
            + ".\n"
        )
    for f in figures:
        lines.append(f"![{f}]({f})\n")
    files["report.md"] = atomic_write_text(rdir / "report.md", "\n".join(lines))
    return files
