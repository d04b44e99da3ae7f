"""The paired statistics of ``dfct grid-report`` on hand-made grid folders.

The folders hold only what the report reads (grid.json, reference.json and each run's
metrics.json), with values chosen so that every median difference, interval, p-value and
verdict is known by hand. A grid of the earlier one-slice format stays readable.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_dfct.cli import main
from napari_dfct.experiment import grid_report, summarize
from napari_dfct.experiment.paired import baseline_of, paired_results
from napari_dfct.experiment.stats import holm, wilcoxon_test

SEEDS = list(range(8))
ROI = {
    "signal_center": [32.0, 40.0],
    "background_center": [32.0, 16.0],
    "line": [[32.0, 40.0], [32.0, 16.0]],
    "roi_size": 10,
    "slice": 1,
}


def _loss(name):
    from napari_dfct.losses import LossConfig

    return LossConfig.from_name(name).to_dict()


def _write_run(out: Path, name: str, seed: int, values: dict, per_slice: bool = True):
    run = out / "runs" / name / f"seed-{seed}"
    run.mkdir(parents=True)
    rec = {
        "name": name,
        "seed": seed,
        "loss": _loss(name),
        **values,
        "epochs_run": 3,
        "best_epoch": 2,
        "seconds": 1.0,
    }
    if per_slice:  # three test slices whose median is the run's value
        rec["per_slice"] = [
            {"slice": k, **{m: v + d for m, v in values.items()}}
            for k, d in enumerate((-0.5, 0.0, 0.5))
        ]
        rec.update(n_slices=3, slice=1)
    (run / "metrics.json").write_text(json.dumps(rec))


def _base(seed):
    return {
        "cnr": 2.0 + 0.3 * seed,
        "fwhm": 5.0 + 0.1 * seed,
        "error_cnr": 1.0 + 0.2 * seed,
        "psnr_body": 20.0 + seed,
    }


# configuration -> per-seed difference from the baseline, per metric
DELTAS = {
    # every seed better in CNR (+0.1 ... +0.8) and FWHM (lower by 0.2): "better" for both
    "l2+s-nonlinear": {
        "cnr": lambda s: 0.1 * (s + 1),
        "fwhm": lambda s: -0.2,
        "error_cnr": lambda s: 0.05 * (s + 1),
        "psnr_body": lambda s: 0.5,
    },
    # differences of both signs: the intervals cover zero, "no evidence"
    "l2+f-nonlinear": {
        "cnr": lambda s: (-1) ** s * 0.1 * (s + 1),
        "fwhm": lambda s: (-1) ** s * 0.3,
        "error_cnr": lambda s: 0.0,
        "psnr_body": lambda s: (-1) ** (s // 2) * 0.2,
    },
    # every seed worse in CNR and error CNR, FWHM higher (worse): "worse"
    "l2@1.5": {
        "cnr": lambda s: -0.5 - 0.01 * s,
        "fwhm": lambda s: 0.4 + 0.01 * s,
        "error_cnr": lambda s: -0.3,
        "psnr_body": lambda s: -1.0 - 0.1 * s,
    },
}


@pytest.fixture
def grid(tmp_path):
    out = tmp_path / "grid"
    out.mkdir()
    names = ["l2", *DELTAS]
    settings = {
        "format": "napari-dfct-grid/2",
        "roi": ROI,
        "rois": [ROI] * 3,
        "configs": {n: _loss(n) for n in names},
        "seeds": SEEDS,
        "controls": {"l2+s-nonlinear": "l2@1.5"},
    }
    (out / "grid.json").write_text(json.dumps(settings))
    ref = dict.fromkeys(("cnr", "fwhm", "error_cnr", "psnr", "ssim", "psnr_body"), 1.0)
    (out / "reference.json").write_text(
        json.dumps(
            {"slice": 1, "roi": ROI, "n_slices": 3, "input": ref, "target": ref, "truth": ref}
        )
    )
    for s in SEEDS:
        base = _base(s)
        _write_run(out, "l2", s, base)
        for name, deltas in DELTAS.items():
            _write_run(out, name, s, {m: base[m] + deltas[m](s) for m in base})
    return out


def _paired_csv(out):
    with open(out / "report" / "paired.csv") as fh:
        return {(r["kind"], r["configuration"], r["metric"]): r for r in csv.DictReader(fh)}


def test_paired_table_matches_the_hand_computation(grid):
    files = grid_report(grid, n_boot=2000)
    for key in ("paired.md", "paired.csv", "paired"):
        assert key in files
    rows = _paired_csv(grid)
    # S vs baseline: differences 0.1..0.8, all positive: median 0.45, exact p = 2/256
    r = rows[("baseline", "l2+s-nonlinear", "cnr")]
    assert r["reference"] == "l2" and int(r["n"]) == 8
    assert float(r["median_diff"]) == pytest.approx(0.45)
    assert 0.1 <= float(r["ci_low"]) < 0.45 < float(r["ci_high"]) <= 0.8
    assert float(r["p"]) == pytest.approx(2 / 256)
    assert r["verdict"] == "better" and r["good"] == "higher"
    d = [float(x) for x in r["differences"].split()]
    np.testing.assert_allclose(d, [0.1 * (s + 1) for s in SEEDS], atol=1e-12)
    # FWHM: a constant difference -0.2, lower is better: the interval is -0.2 itself
    r = rows[("baseline", "l2+s-nonlinear", "fwhm")]
    assert float(r["ci_low"]) == pytest.approx(-0.2) == float(r["ci_high"])
    assert r["verdict"] == "better" and r["good"] == "lower"
    # the alternating configuration: the interval covers zero
    r = rows[("baseline", "l2+f-nonlinear", "cnr")]
    assert float(r["ci_low"]) < 0 < float(r["ci_high"]) and r["verdict"] == "no evidence"
    # every difference zero: p = 1, no evidence
    r = rows[("baseline", "l2+f-nonlinear", "error_cnr")]
    assert float(r["p"]) == 1.0 and r["verdict"] == "no evidence"
    # the scale-matched control is a row of its own against the baseline: worse
    for m in ("cnr", "fwhm", "error_cnr", "psnr_body"):
        assert rows[("baseline", "l2@1.5", m)]["verdict"] == "worse", m
    # Holm over the three configurations of each table
    for m in ("cnr", "fwhm", "error_cnr", "psnr_body"):
        names = list(DELTAS)
        p = [float(rows[("baseline", n, m)]["p"]) for n in names]
        np.testing.assert_allclose(
            [float(rows[("baseline", n, m)]["p_holm"]) for n in names], holm(p), rtol=1e-12
        )
    # each amplified configuration against its control, in a table of its own (Holm over
    # one row: unchanged); S - control in CNR: (0.1 (s+1)) - (-0.5 - 0.01 s) > 0
    r = rows[("control", "l2+s-nonlinear", "cnr")]
    assert r["reference"] == "l2@1.5" and r["p_holm"] == r["p"] and r["verdict"] == "better"


def test_report_page_and_figure(grid):
    import matplotlib.image as mpimg

    files = grid_report(grid, n_boot=500)
    md = (grid / "report" / "paired.md").read_text()
    assert "### CNR vs the baseline (higher is better)" in md
    assert "### FWHM (px) vs the baseline (lower is better)" in md
    assert "### CNR vs the scale-matched control" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| l2@1.5 | l2 |"))
    assert line.rstrip(" |").endswith("**worse**")
    page = (grid / "report" / "report.md").read_text()
    assert "## Paired comparisons (by seed)" in page and "paired.png" in page
    assert "all 3 test slices" in page
    img = mpimg.imread(files["paired"])
    assert img.ndim == 3 and img.shape[1] > img.shape[0] > 100
    # the summary shows the truth-based metrics the runs have
    header = (grid / "report" / "summary.csv").read_text().splitlines()[0]
    assert "error_cnr_median" in header and "psnr_body_median" in header


def test_pairs_need_the_same_seed(grid):
    """A seed that one configuration lacks (or whose value is undefined) gives no pair."""
    import shutil

    shutil.rmtree(grid / "runs" / "l2" / "seed-7")
    rec_path = grid / "runs" / "l2+s-nonlinear" / "seed-0" / "metrics.json"
    rec = json.loads(rec_path.read_text())
    rec["cnr"] = None
    rec_path.write_text(json.dumps(rec))
    grid_report(grid, n_boot=200)
    rows = _paired_csv(grid)
    r = rows[("baseline", "l2+s-nonlinear", "cnr")]
    assert r["seeds"] == "1 2 3 4 5 6" and int(r["n"]) == 6
    # six positive differences: p = 2/64 before Holm
    assert float(r["p"]) == pytest.approx(2 / 64)
    assert wilcoxon_test([float(x) for x in r["differences"].split()])[1] == float(r["p"])


def test_baselines_of_families():
    recs = []
    for name in ("l2", "l1", "l2+s-nonlinear", "l1+f-linear", "l2+f-nonlinear-spectral", "l2@1.3"):
        recs.append({"name": name, "seed": 0, "loss": _loss(name), "cnr": 1.0})
    summary = summarize(recs)
    assert baseline_of("l2", summary) is None and baseline_of("l1", summary) is None
    assert baseline_of("l2+s-nonlinear", summary) == "l2"
    assert baseline_of("l1+f-linear", summary) == "l1"
    # a spectral family without its own plain run: the plain loss of its kind
    assert baseline_of("l2+f-nonlinear-spectral", summary) == "l2"
    assert baseline_of("l2@1.3", summary) == "l2"
    rows = paired_results(summary, {"l2+s-nonlinear": "l2@1.3"}, metrics=("cnr",), n_boot=10)
    got = {(r["kind"], r["configuration"], r["reference"]) for r in rows}
    assert got == {
        ("baseline", "l2+s-nonlinear", "l2"),
        ("baseline", "l1+f-linear", "l1"),
        ("baseline", "l2+f-nonlinear-spectral", "l2"),
        ("baseline", "l2@1.3", "l2"),
        ("control", "l2+s-nonlinear", "l2@1.3"),
    }


def test_a_one_slice_grid_of_the_earlier_format_stays_readable(tmp_path):
    """format 1: one test slice, no per-slice values, no truth-based metrics."""
    out = tmp_path / "old"
    out.mkdir()
    settings = {
        "format": "napari-dfct-grid/1",
        "roi": ROI,
        "seeds": [0, 1],
        "configs": {n: _loss(n) for n in ("l2", "l2+s-nonlinear")},
        "controls": {},
    }
    (out / "grid.json").write_text(json.dumps(settings))
    ref = {"cnr": 1.5, "fwhm": 4.0, "psnr": 20.0, "ssim": 0.5}
    (out / "reference.json").write_text(
        json.dumps({"slice": 1, "roi": ROI, "input": ref, "target": ref, "truth": ref})
    )
    for s in (0, 1):
        old = {"cnr": 2.0 + s, "fwhm": 5.0, "psnr": 20.0, "ssim": 0.5}
        _write_run(out, "l2", s, old, per_slice=False)
        _write_run(out, "l2+s-nonlinear", s, {**old, "cnr": 2.5 + s}, per_slice=False)
    files = grid_report(out, n_boot=100)
    header = (out / "report" / "summary.csv").read_text().splitlines()[0]
    assert "cnr_median" in header and "error_cnr" not in header and "psnr_body" not in header
    rows = _paired_csv(out)
    assert {m for _, _, m in rows} == {"cnr", "fwhm"}  # the metrics these runs have
    assert rows[("baseline", "l2+s-nonlinear", "cnr")]["verdict"] == "no evidence"  # n = 2
    assert "One test slice" in (out / "report" / "report.md").read_text()
    assert "panel-l2" not in files  # no predictions in this folder: no panel images


def test_cli_prints_the_paired_tables(grid, capsys):
    assert main(["grid-report", str(grid), "--bootstrap", "300"]) == 0
    out = capsys.readouterr().out
    assert "Paired by seed" in out and "**better**" in out
    assert main(["grid-report", str(grid), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--bootstrap" in err


def test_chosen_pairs_are_compared_by_seed(grid, capsys):
    """--compare A:B: A - B per seed, in a table of its own (Holm over its rows)."""
    assert (
        main(
            [
                "grid-report",
                str(grid),
                "--bootstrap",
                "300",
                "--quiet",
                "--compare",
                "l2+s-nonlinear:l2+f-nonlinear,l2@1.5:l2+s-nonlinear",
            ]
        )
        == 0
    )
    rows = _paired_csv(grid)
    r = rows[("pair", "l2+s-nonlinear", "cnr")]
    assert r["reference"] == "l2+f-nonlinear"
    expect = [
        DELTAS["l2+s-nonlinear"]["cnr"](s) - DELTAS["l2+f-nonlinear"]["cnr"](s) for s in SEEDS
    ]
    np.testing.assert_allclose([float(x) for x in r["differences"].split()], expect, atol=1e-9)
    assert float(r["median_diff"]) == pytest.approx(float(np.median(expect)))
    # the control is worse than S on every seed in CNR: p = 2/256, Holm over two rows
    r2 = rows[("pair", "l2@1.5", "cnr")]
    assert float(r2["p"]) == pytest.approx(2 / 256) and r2["verdict"] == "worse"
    p = [float(rows[("pair", n, "cnr")]["p"]) for n in ("l2+s-nonlinear", "l2@1.5")]
    np.testing.assert_allclose(
        [float(rows[("pair", n, "cnr")]["p_holm"]) for n in ("l2+s-nonlinear", "l2@1.5")], holm(p)
    )
    assert "for the chosen pairs" in (grid / "report" / "paired.md").read_text()
    # clear errors: a name without runs, a malformed pair
    assert main(["grid-report", str(grid), "--compare", "l2+x:l2"]) == 2
    assert "no finished run of 'l2+x'" in capsys.readouterr().err
    assert main(["grid-report", str(grid), "--compare", "l2"]) == 2
    assert "CONFIG:REFERENCE" in capsys.readouterr().err
