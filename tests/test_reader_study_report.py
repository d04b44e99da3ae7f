"""Reader-study statistics against independent computations, the report of hand-written
judgments, the model observer, and ``dfct reader-study``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import friedmanchisquare, rankdata

from napari_dfct.cli import main
from napari_dfct.io import write_volume
from napari_dfct.reader_study import JUDGMENT_COLUMNS, make_study
from napari_dfct.reader_study.observer import display_errors, simulate_readers
from napari_dfct.reader_study.report import (
    bt_scores,
    format_report,
    holm,
    kendall_w,
    krippendorff_alpha,
    report,
)

ORDER = ("target", "amplified", "l2", "input")  # best first


def _volumes(z=2, size=24, seed=0):
    """Candidates truth + k * noise: the truth's error order is ORDER."""
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=(z, size, size)).astype(np.float32)
    vols = {
        name: truth + np.float32(0.25 * (k + 1)) * rng.normal(size=truth.shape).astype(np.float32)
        for k, name in enumerate(ORDER)
    }
    return vols, truth


def _write_csv(study, rows):
    """judgments.csv in the documented format, written by hand."""
    lines = [",".join(JUDGMENT_COLUMNS)]
    for reader, t, choice in rows:
        lines.append(
            f"{reader},{t.index},{t.slice},{t.left},{t.right},{choice},1.0,"
            "2026-05-04T10:00:00+02:00"
        )
    (study.dir / "judgments.csv").write_text("\n".join(lines) + "\n")


def _prefers(order, t):
    return "left" if order.index(t.left) < order.index(t.right) else "right"


# --------------------------------------------------------------------------------------
# the statistics against independent computations
# --------------------------------------------------------------------------------------
def test_bradley_terry_closed_form():
    # wins in the ratio of strengths 1 : 2 : 4 for every pair: the likelihood equations
    # sum_j n_ij p_i / (p_i + p_j) = wins_i hold exactly at p = (1, 2, 4)
    wins = np.array([[0, 10, 5], [20, 0, 10], [20, 20, 0]], dtype=float)
    expected = np.log([1.0, 2.0, 4.0])
    np.testing.assert_allclose(bt_scores(wins, prior=0), expected - expected.mean(), atol=1e-6)


def test_bradley_terry_matches_a_direct_likelihood_fit():
    rng = np.random.default_rng(3)
    wins = rng.integers(0, 9, size=(5, 5)).astype(float)
    np.fill_diagonal(wins, 0)
    wins[0, 1] = wins[1, 0] = 0  # a pair never compared
    prior = 0.5
    aug = wins + prior * (1 - np.eye(5))

    def nll(s):
        d = s[:, None] - s[None, :]
        return float(np.sum(aug * np.logaddexp(0, -d)))

    fit = minimize(nll, np.zeros(5), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(bt_scores(wins, prior), fit - fit.mean(), atol=1e-5)
    # a perfectly consistent reader gets finite, ordered scores
    perfect = np.triu(np.full((4, 4), 3.0), 1)
    s = bt_scores(perfect)
    assert np.all(np.isfinite(s)) and np.all(np.diff(s) < 0)


def test_krippendorff_alpha_by_hand():
    # 2 readers, 4 trials: (0,0) (1,1) (0,1) (1,1). Coincidences: o00 = 2, o11 = 4,
    # o01 = o10 = 1; n0 = 3, n1 = 5, n = 8. D_o = 2/8, D_e = 2 n0 n1 / (n (n-1)) = 30/56,
    # alpha = 1 - D_o / D_e = 1 - 14/30 = 8/15.
    data = np.array([[0, 1, 0, 1, np.nan], [0, 1, 1, 1, 0]], dtype=float)
    assert krippendorff_alpha(data) == pytest.approx(8 / 15)
    assert math.isnan(krippendorff_alpha(data[:1]))


def test_kendall_w_with_ties_matches_friedman():
    ranks = np.array(
        [rankdata(r) for r in ([3, 1, 2, 4], [2, 2, 1, 4], [1, 3, 3, 4], [4, 1, 2, 3])]
    )
    chi2 = friedmanchisquare(*ranks.T).statistic  # tie-corrected
    m, n = ranks.shape
    assert kendall_w(ranks) == pytest.approx(chi2 / (m * (n - 1)))
    assert kendall_w(np.array([[1, 2, 3], [1, 2, 3]])) == pytest.approx(1.0)
    assert kendall_w(np.array([[1, 2, 3], [3, 2, 1]])) == pytest.approx(0.0)


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------
def test_report_of_consistent_readers(tmp_path, capsys):
    vols, _ = _volumes()
    s = make_study(tmp_path / "s", vols, slices="all", repeats=0.25, seed=2)
    rows = [(r, t, _prefers(ORDER, t)) for r in ("AB", "CD") for t in s.trials]
    _write_csv(s, rows)
    assert main(["reader-study", "report", str(s.dir), "--json", "--bootstrap", "200"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["readers"] == 2 and out["judgments"] == 2 * len(s.trials)
    c = out["candidates"]
    assert [c[n]["rank"] for n in ORDER] == [1, 2, 3, 4]
    for n in ORDER:
        lo, hi = c[n]["ci"]
        assert lo <= c[n]["score"] <= hi and lo < hi
    assert c["target"]["ci"][0] > c["input"]["ci"][1]
    assert out["agreement"]["krippendorff_alpha"] == pytest.approx(1.0)
    assert out["agreement"]["kendall_w"] == pytest.approx(1.0)
    pair = next(p for p in out["pairs"] if {p["a"], p["b"]} == {"target", "input"})
    n = 2 * sum({t.left, t.right} == {"target", "input"} for t in s.trials)
    assert pair["n"] == n and pair["wins_a"] in (0, n) and pair["p"] == pytest.approx(2 * 0.5**n)
    assert out["per_reader"]["AB"]["consistency"]["rate"] == 1.0
    assert out["per_reader"]["AB"]["consistency"]["repeats"] == 3  # round(0.25 * 12)
    text = format_report(report(s.dir, n_boot=50))
    assert "Krippendorff" in text and text.index("target") < text.index("input")


def test_report_agreement_and_consistency_by_hand(tmp_path):
    vols, _ = _volumes(z=1)
    s = make_study(tmp_path / "s", vols, repeats=0, seed=4)  # 6 trials
    t = s.trials
    # choices as sides: R1 = (L, R, L, R), R2 = (L, R, R, R) on trials 0-3 (alpha 8/15);
    # R2 also answers trials 4 and 5, which R1 did not (not pairable)
    rows = [("R1", t[i], c) for i, c in enumerate(("left", "right", "left", "right"))]
    r2 = ("left", "right", "right", "right", "left", "left")
    rows += [("R2", t[i], c) for i, c in enumerate(r2)]
    _write_csv(s, rows)
    out = report(s.dir, n_boot=20)
    assert out["agreement"]["krippendorff_alpha"] == pytest.approx(8 / 15)
    assert out["per_reader"]["R2"]["judgments"] == 6 and out["judgments"] == 10


def test_report_takes_the_last_answer_and_skips_foreign_rows(tmp_path):
    vols, _ = _volumes(z=1)
    s = make_study(tmp_path / "s", vols, repeats=0)
    t0, t1 = s.trials[:2]
    _write_csv(s, [("AB", t0, "left"), ("AB", t0, "right"), ("AB", t1, "left")])
    with open(s.dir / "judgments.csv", "a") as fh:  # a row that matches no trial
        fh.write(f"AB,1,{t1.slice},{t1.right},{t1.left},left,1.0,2026-05-04T10:00:00+02:00\n")
    with pytest.warns(UserWarning, match="match no trial"):
        out = report(s.dir, n_boot=10)
    assert out["judgments"] == 2 and out["skipped"] == 1
    winner = t0.right
    assert out["candidates"][winner]["wins"] >= 1


def test_report_metrics_against_the_truth(tmp_path):
    vols, truth = _volumes(z=2, size=40)
    sim = tmp_path / "sim"
    sim.mkdir()
    write_volume(sim / "truth.tif", truth)
    body = np.zeros_like(truth)
    body[:, 4:36, 4:36] = 1
    write_volume(sim / "body.tif", body)
    (sim / "meta.json").write_text(
        json.dumps({"signal_center": [12, 12], "background_center": [28, 28], "roi_size": 8})
    )
    s = make_study(tmp_path / "s", vols, slices="all", reference=sim / "truth.tif")
    simulate_readers(s.dir, readers=3, noise=0.005, seed=1)
    out = report(s.dir, n_boot=20)
    from napari_dfct import metrics

    m = out["metrics"]
    expected = np.mean([metrics.psnr_body(vols["l2"][z], truth[z], body[z] != 0) for z in (0, 1)])
    assert m["values"]["l2"]["psnr_body"] == pytest.approx(expected)
    expected = np.mean(
        [
            metrics.error_cnr(vols["l2"][z], truth[z], (12, 12), (28, 28), 8).error_cnr
            for z in (0, 1)
        ]  # fmt: skip
    )
    assert m["values"]["l2"]["error_cnr"] == pytest.approx(expected)
    assert m["spearman"]["psnr_body"]["rho"] == pytest.approx(1.0)
    # the same numbers with the truth given to the report instead of stored in the study
    bare = make_study(tmp_path / "bare", vols, slices="all")
    simulate_readers(bare.dir, readers=3, noise=0.005, seed=1, reference=sim / "truth.tif")
    again = report(bare.dir, reference=sim / "truth.tif", n_boot=20)["metrics"]
    assert again["values"] == m["values"]


def test_missing_statistics_package_says_how_to_install(tmp_path, monkeypatch, capsys):
    vols, _ = _volumes(z=1)
    s = make_study(tmp_path / "s", vols, repeats=0)
    _write_csv(s, [("AB", s.trials[0], "left")])
    monkeypatch.setitem(sys.modules, "choix", None)
    with pytest.raises(ImportError, match=r"napari-dfct\[reader\]"):
        report(s.dir)
    assert main(["reader-study", "report", str(s.dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "napari-dfct[reader]" in err


# --------------------------------------------------------------------------------------
# the model observer
# --------------------------------------------------------------------------------------
def test_observers_recover_the_true_order(tmp_path):
    vols, truth = _volumes(z=3)
    s = make_study(tmp_path / "s", vols, slices="all", reference=truth, seed=5)
    errors = display_errors(s)
    for z in s.slices:  # the error order is the construction's
        assert [errors[(n, z)] for n in ORDER] == sorted(errors[(n, z)] for n in ORDER)
    written = simulate_readers(s.dir, readers=4, noise=0.02, seed=0)
    assert written == 4 * len(s.trials)
    assert simulate_readers(s.dir, readers=4, noise=0.02, seed=0) == 0  # nothing left
    out = report(s.dir, n_boot=100)
    assert [out["candidates"][n]["rank"] for n in ORDER] == [1, 2, 3, 4]
    assert sorted(out["per_reader"]) == [f"observer-{k}" for k in (1, 2, 3, 4)]


def test_agreement_falls_as_noise_rises(tmp_path):
    vols, truth = _volumes(z=4)
    alphas, ws = [], []
    for k, noise in enumerate((0.002, 0.05, 1.0)):
        s = make_study(tmp_path / f"s{k}", vols, slices="all", reference=truth, seed=1)
        simulate_readers(s.dir, readers=6, noise=noise, seed=3)
        out = report(s.dir, n_boot=1)
        alphas.append(out["agreement"]["krippendorff_alpha"])
        ws.append(out["agreement"]["kendall_w"])
    assert alphas[0] > alphas[1] + 0.2 > alphas[2] + 0.4
    assert ws[0] > ws[2] + 0.3


def test_observer_needs_a_truth(tmp_path):
    vols, _ = _volumes(z=1)
    s = make_study(tmp_path / "s", vols)
    with pytest.raises(ValueError, match="no truth"):
        simulate_readers(s.dir, readers=2, noise=0.01)


# --------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------
def test_cli_make_simulate_report(tmp_path, capsys):
    vols, truth = _volumes(z=3)
    args = []
    for name, vol in vols.items():
        write_volume(tmp_path / f"{name}.tif", vol)
        args += ["--image", f"{name}={tmp_path / f'{name}.tif'}"]
    write_volume(tmp_path / "truth.tif", truth)
    study = str(tmp_path / "study")
    assert main(["reader-study", "make", study, *args, "--slices", "0-1", "--trials", "8",
                 "--repeats", "0.25",
                 "--reference", str(tmp_path / "truth.tif")]) == 0  # fmt: skip
    assert "10 trials (2 repeated" in capsys.readouterr().out
    assert main(["reader-study", "simulate", study, "--readers", "2", "--noise", "0.01"]) == 0
    capsys.readouterr()
    assert main(["reader-study", "report", study]) == 0
    assert "Bradley-Terry" in capsys.readouterr().out
    meta = json.loads((Path(study) / "study.json").read_text())
    assert meta["reference"]["file"] == "images/reference.npy"
    for bad, message in (
        (["make", str(tmp_path / "x"), "--image", "nofile"], "NAME=FILE"),
        (["make", str(tmp_path / "x"), *args[:2], "--window", "1"], "LOW,HIGH"),
        (["make", str(tmp_path / "x"), *args, "--window", "2,1"], "LOW < HIGH"),
        (["make", study, *args[:4]], "not empty"),
        (["report", str(tmp_path)], "not a reader study"),
        (["simulate", study, "--readers", "0", "--noise", "1"], "at least 1"),
    ):
        assert main(["reader-study", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and err.count("\n") == 0, err
