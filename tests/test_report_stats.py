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
    # differences of both signs: the intervals cover zero; within the equivalence margins
    # (±0.3 dB PSNR, ±0.5 error CNR) for two metrics, beyond them for CNR and FWHM
    "l2+f+s-nonlinear": {
        "cnr": lambda s: (-1) ** s * 0.1 * (s + 1),
        "fwhm": lambda s: (-1) ** s * 0.45,
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
    r = rows[("baseline", "l2+f+s-nonlinear", "cnr")]
    assert float(r["ci_low"]) < 0 < float(r["ci_high"]) and r["verdict"] == "inconclusive"
    assert rows[("baseline", "l2+f+s-nonlinear", "fwhm")]["verdict"] == "inconclusive"
    # every error-CNR difference zero (but not the other metrics': a real comparison): p = 1,
    # and each one-sided test of TOST sees 8 differences on its side: p = 1/256; Holm over
    # the three rows: 3/256, equivalent
    r = rows[("baseline", "l2+f+s-nonlinear", "error_cnr")]
    assert float(r["p"]) == 1.0 and float(r["p_tost"]) == pytest.approx(1 / 256)
    assert float(r["p_tost_holm"]) == pytest.approx(3 / 256) and r["verdict"] == "equivalent"
    assert float(r["margin"]) == 0.5 and int(r["family_size"]) == 3
    # PSNR differences ±0.2 dB, inside ±0.3: equivalent, the 90 % interval inside too
    r = rows[("baseline", "l2+f+s-nonlinear", "psnr_body")]
    assert r["verdict"] == "equivalent" and float(r["margin"]) == 0.3
    assert -0.3 < float(r["ci90_low"]) <= float(r["ci90_high"]) < 0.3
    # the scale-matched control is a row of its own against the baseline: worse
    for m in ("cnr", "fwhm", "error_cnr", "psnr_body"):
        assert rows[("baseline", "l2@1.5", m)]["verdict"] == "worse", m
    # Holm over the three configurations of each table, superiority and TOST separately
    for m in ("cnr", "fwhm", "error_cnr", "psnr_body"):
        names = list(DELTAS)
        for key in ("p", "p_tost"):
            p = [float(rows[("baseline", n, m)][key]) for n in names]
            np.testing.assert_allclose(
                [float(rows[("baseline", n, m)][f"{key}_holm"]) for n in names],
                holm(p),
                rtol=1e-12,
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
    assert rows[("baseline", "l2+s-nonlinear", "cnr")]["verdict"] == "inconclusive"  # n = 2
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
                "l2+s-nonlinear:l2+f+s-nonlinear,l2@1.5:l2+s-nonlinear",
            ]
        )
        == 0
    )
    rows = _paired_csv(grid)
    r = rows[("pair", "l2+s-nonlinear", "cnr")]
    assert r["reference"] == "l2+f+s-nonlinear"
    expect = [
        DELTAS["l2+s-nonlinear"]["cnr"](s) - DELTAS["l2+f+s-nonlinear"]["cnr"](s) for s in SEEDS
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


def test_trains_as_knows_the_dc_identity():
    from napari_dfct.losses import LossConfig

    def t(name):
        return LossConfig.from_name(name).trains_as.name

    assert t("l2+f-nonlinear") == "l2" and t("l1+f-linear@1.5") == "l1@1.5"
    assert t("l2+s+f-nonlinear") == "l2+s-nonlinear"
    # F+S smooths A_S, the spectral mode filters the error, normalised A_F(DC) != 1
    for name in ("l2+f+s-nonlinear", "l2+f-nonlinear-spectral", "l2+f-linear-norm", "l2"):
        assert t(name) == name


def _identity_grid(tmp_path):
    """l2+f-nonlinear trains as l2 (its differences here are not even 0: the algebra
    decides); l2+s+f-nonlinear trains as l2+s-nonlinear (a duplicate row);
    l2+f-linear-spectral has every difference exactly 0 (an identity from the data)."""
    out = tmp_path / "id-grid"
    out.mkdir()
    deltas = {
        "l2+s-nonlinear": lambda s: 0.3 + 0.05 * s,
        "l2+f+s-nonlinear": lambda s: 0.4 + 0.02 * s,
        "l2+f-nonlinear": lambda s: (-1) ** s * 0.01,
        "l2+s+f-nonlinear": lambda s: 0.3 + 0.05 * s,
        "l2+f-linear-spectral": lambda s: 0.0,
    }
    names = ["l2", *deltas]
    settings = {
        "format": "napari-dfct-grid/2",
        "roi": ROI,
        "configs": {n: _loss(n) for n in names},
        "seeds": SEEDS,
        "controls": {},
    }
    (out / "grid.json").write_text(json.dumps(settings))
    for s in SEEDS:
        base = _base(s)
        _write_run(out, "l2", s, base)
        for name, d in deltas.items():
            _write_run(out, name, s, {m: v + d(s) for m, v in base.items()})
    return out


def test_identity_rows_are_outside_the_holm_family(tmp_path):
    out = _identity_grid(tmp_path)
    grid_report(out, n_boot=200)
    rows = _paired_csv(out)
    verdicts = {n: rows[("baseline", n, "cnr")]["verdict"] for n in ("l2+f-nonlinear",)}
    assert verdicts == {"l2+f-nonlinear": "identity"}
    assert rows[("baseline", "l2+f-linear-spectral", "cnr")]["verdict"] == "identity"
    assert rows[("baseline", "l2+s+f-nonlinear", "cnr")]["verdict"] == "duplicate"
    family = ["l2+s-nonlinear", "l2+f+s-nonlinear"]
    for m in ("cnr", "fwhm", "error_cnr", "psnr_body"):
        # every row of a table states the family's size: the two real comparisons
        assert {int(r["family_size"]) for k, r in rows.items() if k[2] == m} == {2}
        # Holm over those two only (8 positive differences each: p = 2/256 -> 4/256)
        p = [float(rows[("baseline", n, m)]["p"]) for n in family]
        got = [float(rows[("baseline", n, m)]["p_holm"]) for n in family]
        np.testing.assert_allclose(got, holm(p), rtol=1e-12)
        for n in ("l2+f-nonlinear", "l2+s+f-nonlinear", "l2+f-linear-spectral"):
            r = rows[("baseline", n, m)]
            assert r["p_holm"] == "" and r["p_tost_holm"] == "" and r["excluded_why"]
    assert float(rows[("baseline", "l2+s-nonlinear", "cnr")]["p_holm"]) == pytest.approx(4 / 256)
    md = (out / "report" / "paired.md").read_text()
    assert "Holm family (m = 2): l2+s-nonlinear, l2+f+s-nonlinear." in md
    assert "Outside it: l2+f-nonlinear (identity: trains as l2, the DC identity); " in md
    assert "l2+s+f-nonlinear (duplicate: trains as l2+s-nonlinear, a row of this table)" in md
    assert "l2+f-linear-spectral (identity: every paired difference is exactly 0)" in md
    # a chosen pair that compares a configuration with the one it trains as: identity
    assert main(
        ["grid-report", str(out), "--quiet", "--bootstrap", "100",
         "--compare", "l2+s+f-nonlinear:l2+s-nonlinear,l2+f+s-nonlinear:l2+s-nonlinear"]
    ) == 0  # fmt: skip
    rows = _paired_csv(out)
    assert rows[("pair", "l2+s+f-nonlinear", "cnr")]["verdict"] == "identity"
    assert int(rows[("pair", "l2+f+s-nonlinear", "cnr")]["family_size"]) == 1


def test_report_states_verdicts_margins_and_power(grid, capsys):
    """The regenerated report holds the verdict column, the declared margins (the
    defaults, or those given with --margins) and the seeds for 80 % power."""
    assert main(["grid-report", str(grid), "--bootstrap", "300"]) == 0
    printed = capsys.readouterr().out
    assert "p TOST (Holm)" in printed and "seeds for 80% power" in printed
    page = (grid / "report" / "report.md").read_text()
    assert "Equivalence margins: CNR ±0.5, FWHM (px) ±0.3 px, error CNR ±0.5" in page
    assert "(the defaults)" in page and "### Seeds for an equivalence test" in page
    assert "| verdict |" in page and "**equivalent**" in page
    power = {r["metric"]: r for r in csv.DictReader((grid / "report" / "power.csv").open())}
    assert set(power) == {"cnr", "fwhm", "error_cnr", "psnr_body"}
    # the pooled spread of the CNR differences, from the CSV's own differences
    by_row = [
        [float(x) for x in r["differences"].split()]
        for r in csv.DictReader((grid / "report" / "paired.csv").open())
        if r["metric"] == "cnr" and not r["excluded_why"]
    ]
    pooled = np.sqrt(
        sum((len(d) - 1) * np.var(d, ddof=1) for d in by_row) / sum(len(d) - 1 for d in by_row)
    )
    assert float(power["cnr"]["sd_pooled"]) == pytest.approx(pooled)
    from napari_dfct.experiment.stats import seeds_for_power

    assert int(power["cnr"]["seeds_needed"]) == seeds_for_power(pooled, 0.5)
    assert int(power["cnr"]["family_size"]) == 3
    # margins given on the command line: used and recorded
    assert main(["grid-report", str(grid), "--quiet", "--bootstrap", "300",
                 "--margins", "cnr=2,psnr_body=0.1"]) == 0  # fmt: skip
    rows = _paired_csv(grid)
    assert float(rows[("baseline", "l2+f+s-nonlinear", "cnr")]["margin"]) == 2.0
    # CNR differences of ±0.1..0.8 lie inside ±2: equivalent now
    assert rows[("baseline", "l2+f+s-nonlinear", "cnr")]["verdict"] == "equivalent"
    page = (grid / "report" / "report.md").read_text()
    assert "CNR ±2," in page and "PSNR (dB) in the body ±0.1 dB" in page
    assert "given for this report: cnr, psnr_body" in page


@pytest.mark.parametrize(
    "value", ["cnr", "cnr=abc", "cnr=0", "cnr=-1", "cnr=inf", "sharpness=0.5", "cnr=0.5,fwhm"]
)
def test_bad_margins_are_one_line_exit_2(grid, capsys, value):
    assert main(["grid-report", str(grid), "--quiet", "--margins", value]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--margins" in err
    assert not (grid / "report").exists()  # nothing written


def test_baseline_family_of_the_amplified_configurations_only(grid):
    """--baseline-family amplified: the control's row against the baseline is shown but
    stays out of the Holm family, whose corrections are over the amplified rows alone."""
    assert main(["grid-report", str(grid), "--quiet", "--bootstrap", "300",
                 "--baseline-family", "amplified"]) == 0  # fmt: skip
    rows = _paired_csv(grid)
    amplified = ["l2+s-nonlinear", "l2+f+s-nonlinear"]
    for m in ("cnr", "fwhm", "error_cnr", "psnr_body"):
        r = rows[("baseline", "l2@1.5", m)]
        assert r["verdict"] == "outside" and r["p_holm"] == r["p_tost_holm"] == ""
        assert "scale-matched control" in r["excluded_why"]
        # its own difference and p are still reported (every seed worse: 8 of one sign;
        # a worse FWHM is a higher one)
        assert float(r["p"]) == pytest.approx(2 / 256)
        assert float(r["median_diff"]) * (1 if m == "fwhm" else -1) > 0
        assert {int(rows[("baseline", n, m)]["family_size"]) for n in amplified} == {2}
        for key in ("p", "p_tost"):
            p = [float(rows[("baseline", n, m)][key]) for n in amplified]
            got = [float(rows[("baseline", n, m)][f"{key}_holm"]) for n in amplified]
            np.testing.assert_allclose(got, holm(p), rtol=1e-12)
        # the table against the control is the same in both designs: one row
        r = rows[("control", "l2+s-nonlinear", m)]
        assert int(r["family_size"]) == 1 and r["p_holm"] == r["p"]
    # S vs the baseline in CNR: 2/256 corrected over 2 rows, not 3
    assert float(rows[("baseline", "l2+s-nonlinear", "cnr")]["p_holm"]) == pytest.approx(4 / 256)
    page = (grid / "report" / "report.md").read_text()
    assert "Holm family (m = 2): l2+s-nonlinear, l2+f+s-nonlinear." in page
    assert "Outside it: l2@1.5 (outside: a scale-matched control" in page
    assert "--baseline-family amplified" in page
    power = {r["metric"]: r for r in csv.DictReader((grid / "report" / "power.csv").open())}
    assert int(power["cnr"]["family_size"]) == 2
    # the default keeps every configuration in the family
    assert main(["grid-report", str(grid), "--quiet", "--bootstrap", "300"]) == 0
    assert _paired_csv(grid)[("baseline", "l2@1.5", "cnr")]["verdict"] == "worse"
    with pytest.raises(ValueError, match="baseline's family"):
        grid_report(grid, n_boot=10, baseline_family="controls")
