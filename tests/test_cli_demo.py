"""``dfct demo``: the quick version end to end, and its table against the runs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from napari_dfct.cli import main


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "quick"
    status = main(
        ["demo", "--quick", "--out", str(out), "--device", "cpu", "--quiet", "--jobs", "2"]
    )
    return status, out


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(quick_demo, capsys):
    status, out = quick_demo
    assert status == 0
    for name in (
        "demo-table.md",
        "demo-table.csv",
        "demo-panel.png",
        "demo-violins.png",
        "demo-verdict.md",
        "demo-verdict.csv",
        "demo.json",
        "grid/report/report.md",
        "grid/report/violin-cnr.png",
    ):
        assert (out / name).is_file(), name
    meta = json.loads((out / "data" / "test" / "meta.json").read_text())
    train_meta = json.loads((out / "data" / "train" / "meta.json").read_text())
    assert meta["seed"] != train_meta["seed"]  # the test specimens are held out
    # independent specimens: every test slice has ROIs of its own
    assert len(meta["rois"]) == 3 and len(train_meta["rois"]) == 8


@pytest.mark.slow
def test_demo_prints_the_paired_verdict(quick_demo):
    _, out = quick_demo
    rows = list(csv.DictReader((out / "demo-verdict.csv").open()))
    assert {r["metric"] for r in rows} == {"cnr", "fwhm", "error_cnr", "psnr_body"}
    for r in rows:
        assert r["configuration"] == "l2+s+f-nonlinear" and r["reference"] == "l2"
        # two seeds: the smallest possible Wilcoxon p is 0.5 and TOST p 0.25, so never a
        # verdict; the margins are the grid report's
        assert r["verdict"] == "inconclusive" and int(r["n"]) == 2
        assert float(r["p_tost"]) >= 0.25 and float(r["margin"]) > 0
        diffs = [float(d) for d in r["differences"].split()]
        assert float(r["median_diff"]) == pytest.approx(float(np.median(diffs)))


@pytest.mark.slow
def test_demo_table_matches_the_runs(quick_demo):
    _, out = quick_demo
    rows = {r["image"]: r for r in csv.DictReader((out / "demo-table.csv").open())}
    assert list(rows) == ["input", "l2", "l2+s+f-nonlinear", "target", "truth"]
    ref = json.loads((out / "grid" / "reference.json").read_text())
    for key in ("input", "target"):
        for m in ("cnr", "error_cnr", "psnr_body"):
            assert float(rows[key][f"{m}_median"]) == pytest.approx(ref[key][m])
    for name in ("l2", "l2+s+f-nonlinear"):
        runs = [
            json.loads(p.read_text())
            for p in (out / "grid" / "runs" / name).glob("seed-*/metrics.json")
        ]
        assert len(runs) == 2  # --quick: two seeds
        for m in ("cnr", "fwhm", "error_cnr", "psnr_body"):
            assert float(rows[name][f"{m}_median"]) == pytest.approx(
                np.median([r[m] for r in runs])
            )
    md = (out / "demo-table.md").read_text()
    assert md.startswith("| image |") and "l2+s+f-nonlinear" in md


@pytest.mark.slow
def test_demo_again_reuses_the_runs(quick_demo, capsys):
    _, out = quick_demo
    before = sorted(p.stat().st_mtime_ns for p in (out / "grid" / "runs").rglob("metrics.json"))
    assert (
        main(["demo", "--quick", "--out", str(out), "--device", "cpu", "--quiet", "--jobs", "2"])
        == 0
    )
    after = sorted(p.stat().st_mtime_ns for p in (out / "grid" / "runs").rglob("metrics.json"))
    assert before == after
    assert "| *input* |" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_refuses_other_settings_in_the_same_folder(quick_demo, capsys):
    _, out = quick_demo
    assert main(["demo", "--quick", "--out", str(out), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfct demo: error:") and "other settings" in err
    # another recipe is another setting too (the grid records its weight decay)
    assert main(["demo", "--quick", "--out", str(out), "--recipe", "stable", "--quiet"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_demo_rejects_bad_arguments(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path), "--seeds", "0", "--quick"]) == 2
    assert "at least one seed" in capsys.readouterr().err
    assert main(["demo", "--out", str(tmp_path / "r"), "--recipe", "fast", "--quick"]) == 2
    assert "unknown recipe 'fast'" in capsys.readouterr().err
