"""The experiment grid: runs, restart semantics, executors and the report.

A tiny grid (preset ``tiny``, 4 slices of 64x64, patch 32, two configurations, two seeds,
two epochs) is trained once per module in this process and copied for the tests that
change it. Values in the report are checked against the per-run ``metrics.json`` files,
and those against the metrics recomputed from each run's ``prediction.tif``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_dfct.experiment import (
    GridRunError,
    SlurmOptions,
    grid_report,
    grid_status,
    make_configs,
    prepare_grid,
    read_log,
    representative_seed,
    run_grid,
    run_one,
    summarize,
)
from napari_dfct.experiment._util import parse_line, parse_point, parse_seeds
from napari_dfct.experiment.report import paper_table

CONFIGS = ["l2", "l2+s+f-nonlinear"]
SEEDS = [0, 1]
TINY = dict(
    preset="tiny", epochs=2, patience=2, batch_size=4, patch=32, patches_per_slice=2, device="cpu"
)


def _train_config(**kw):
    from napari_dfct.train import TrainConfig

    return TrainConfig(**{**TINY, **kw})


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory, small_sim):
    """Training set: the shared tiny simulation; test set: another specimen (seed 1001)."""
    from napari_dfct.simulate import save_simulation, simulate_dfct

    root = tmp_path_factory.mktemp("grid-data")
    save_simulation(small_sim, root / "train")
    test = simulate_dfct(n_slices=2, size=64, n_views=96, rotations=4, seed=1001)
    save_simulation(test, root / "test")
    return root / "train", root / "test"


@pytest.fixture(scope="module")
def base_grid(tmp_path_factory, data_dirs):
    out = tmp_path_factory.mktemp("grid") / "out"
    train, test = data_dirs
    run_grid(train, test, out, CONFIGS, SEEDS, _train_config(), progress=False)
    return out


@pytest.fixture
def grid_copy(base_grid, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(base_grid, out)
    return out


def _records(out):
    recs = {}
    for p in sorted(Path(out, "runs").glob("*/seed-*/metrics.json")):
        if ".incomplete-" in p.parent.name:
            continue
        r = json.loads(p.read_text())
        recs[(r["name"], r["seed"])] = r
    return recs


def _f(v):
    return float("nan") if v in (None, "") else float(v)


# --------------------------------------------------------------------------- pure helpers
def test_parse_seeds():
    assert parse_seeds("3") == [3]
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,2,5-7,2") == [0, 2, 5, 6, 7]
    assert parse_seeds(4) == [4]
    for bad in ("", "a", "3-1", "1-2-3"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_parse_points_and_lines():
    assert parse_point("10,20") == [10.0, 20.0]
    assert parse_line("1,2,3,4") == [[1.0, 2.0], [3.0, 4.0]]
    assert parse_line([[1, 2], [3, 4]]) == [[1.0, 2.0], [3.0, 4.0]]
    with pytest.raises(ValueError):
        parse_point("1,2,3")
    with pytest.raises(ValueError):
        parse_line("1,2,3")


def test_make_configs_is_the_paper_grid():
    from napari_dfct.losses import paper_configs

    configs = make_configs()
    assert [c.name for c in configs] == [c.name for c in paper_configs()]
    assert len(configs) == 18
    sub = make_configs(["l2"], ["none", "s+f"], ["nonlinear"])
    assert [c.name for c in sub] == ["l2", "l2+s+f-nonlinear"]
    spectral = make_configs(["l1"], ["F"], ["linear"], mode="spectral", normalize=True)
    assert spectral[0].mode == "spectral" and spectral[0].normalize
    assert [c.name for c in make_configs(names=["l2", "l2"])] == ["l2"]
    # explicit names keep their own mode: one grid can compare paper and spectral F
    mixed = make_configs(names=["l2+f-nonlinear", "l2+f-nonlinear-spectral"])
    assert [(c.mode, c.name) for c in mixed] == [
        ("paper", "l2+f-nonlinear"),
        ("spectral", "l2+f-nonlinear-spectral"),
    ]
    forced = make_configs(names=["l2+f-linear"], mode="spectral", normalize=True)
    assert forced[0].name == "l2+f-linear-spectral-norm"
    with pytest.raises(ValueError):
        make_configs(schemes=["X"])


def test_summary_statistics_and_representative_seed_handle_nan():
    loss = {"loss": "l2", "spatial": "none", "frequency": "none"}
    recs = [
        {"name": "l2", "seed": s, "loss": loss, "cnr": v, "fwhm": f}
        for s, v, f in [(0, 1.0, 2.0), (1, 3.0, None), (2, 2.5, 4.0), (3, None, None)]
    ]
    entry = summarize(recs)["l2"]
    finite = np.array([1.0, 3.0, 2.5])
    assert entry["cnr"]["n"] == 3 and entry["cnr"]["n_runs"] == 4
    assert entry["cnr"]["median"] == pytest.approx(np.median(finite))
    assert entry["cnr"]["std"] == pytest.approx(np.std(finite, ddof=1))
    assert entry["fwhm"]["n"] == 2
    # one finite value: no standard deviation
    assert math.isnan(summarize(recs[:1])["l2"]["cnr"]["std"])
    # closest to the median 2.5 is seed 2; seeds without a value are passed over
    assert representative_seed(recs) == 2
    assert representative_seed(recs[3:]) == 3


def test_paper_table_incomplete_grid_shows_n_and_bold_best():
    def rec(name, seed, cnr, spatial="none", frequency="none"):
        return {
            "name": name,
            "seed": seed,
            "cnr": cnr,
            "fwhm": 5.0,
            "loss": {"loss": "l1", "spatial": spatial, "frequency": frequency},
        }

    recs = [
        rec("l1", 0, 1.0),
        rec("l1", 1, 1.2),
        rec("l1+s-linear", 0, 2.0, spatial="linear"),
        rec("l1+s-linear", 1, float("nan"), spatial="linear"),
        rec("l1+f-nonlinear", 0, 0.5, frequency="nonlinear"),
    ]
    table = paper_table(
        summarize(recs), "l1", reference={"input": {"cnr": 0.7, "fwhm": 6.0}}, n_expected=2
    )
    md = table["markdown"]
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines()[2:]}
    assert set(lines) == {"baseline", "+S", "+F", "*input*"}
    assert "**2.00** (n=1/2)" in lines["+S"]  # best linear CNR, one finite seed of two
    assert "**1.10 ± 0.14** (n=2)" in lines["baseline"]  # best non-linear CNR column
    assert "0.50 (n=1/2)" in lines["+F"]
    rows = list(csv.DictReader(table["csv"].splitlines()))
    base = next(r for r in rows if r["row"] == "baseline")
    assert float(base["cnr_linear_median"]) == pytest.approx(1.1)
    assert float(base["cnr_linear_std"]) == pytest.approx(np.std([1.0, 1.2], ddof=1))
    plus_f = next(r for r in rows if r["row"] == "+F")
    assert plus_f["cnr_linear_median"] == "" and plus_f["cnr_linear_n"] == "0"


# --------------------------------------------------------------------------- the grid
def test_grid_runs_write_checkpoint_prediction_and_metrics(base_grid, data_dirs):
    from napari_dfct import metrics
    from napari_dfct.checkpoint import load_model
    from napari_dfct.io import read_volume

    _, test = data_dirs
    meta = json.loads((test / "meta.json").read_text())
    truth, _ = read_volume(test / "truth.tif")
    truth2d = truth[meta["slice"]]
    recs = _records(base_grid)
    assert set(recs) == {(c, s) for c in CONFIGS for s in SEEDS}
    for (name, seed), r in recs.items():
        run_dir = base_grid / "runs" / name / f"seed-{seed}"
        pred, _ = read_volume(run_dir / "prediction.tif")
        assert pred.ndim == 2 and pred.dtype == np.float32 and pred.shape == truth2d.shape
        # the saved prediction is the representative slice: its own per-slice entry in
        # metrics.json agrees with the metrics recomputed from it
        own = r["per_slice"][meta["slice"]]
        c = metrics.cnr(
            pred, meta["signal_center"], meta["background_center"], size=meta["roi_size"]
        )
        assert own["cnr"] == pytest.approx(c.cnr, rel=1e-6)
        assert own["psnr"] == pytest.approx(metrics.psnr(pred, truth2d), rel=1e-6)
        # the run's value is the median over the test slices
        assert r["cnr"] == pytest.approx(np.median([p["cnr"] for p in r["per_slice"]]))
        loaded = load_model(run_dir / "model")
        assert loaded.config["loss"]["name"] == name
        assert loaded.config["train"]["seed"] == seed
        assert r["epochs_run"] == TINY["epochs"] and r["stopped"] == "completed"
        assert r["device"] == "cpu" and r["seconds"] > 0
    # the two seeds give two different models
    assert recs[("l2", 0)]["cnr"] != recs[("l2", 1)]["cnr"]
    st = grid_status(base_grid)
    assert len(st["done"]) == 4 and not st["incomplete"] and not st["missing"]


def test_report_tables_match_the_runs(base_grid):
    recs = _records(base_grid)
    report = base_grid / "report"
    rows = {r["row"]: r for r in csv.DictReader((report / "table-l2.csv").open())}
    for row, name, prof in (
        ("baseline", "l2", "linear"),
        ("baseline", "l2", "nonlinear"),
        ("+S+F", "l2+s+f-nonlinear", "nonlinear"),
    ):
        for m in ("cnr", "fwhm"):
            vals = np.array([_f(recs[(name, s)][m]) for s in SEEDS])
            vals = vals[np.isfinite(vals)]
            got = rows[row]
            assert int(got[f"{m}_{prof}_n"]) == vals.size
            if vals.size:
                assert float(got[f"{m}_{prof}_median"]) == pytest.approx(np.median(vals))
            if vals.size >= 2:
                assert float(got[f"{m}_{prof}_std"]) == pytest.approx(np.std(vals, ddof=1))
    assert rows["+S+F"]["cnr_linear_n"] == "0"  # no linear S+F run in this grid
    ref = json.loads((base_grid / "reference.json").read_text())
    assert float(rows["input"]["cnr_linear_median"]) == pytest.approx(ref["input"]["cnr"])
    assert "target" in rows and "truth" in rows
    # the best CNR of the non-linear column is bold in the Markdown table
    md = (report / "table-l2.md").read_text()
    best = max(("baseline", "+S+F"), key=lambda k: float(rows[k]["cnr_nonlinear_median"]))
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {best} |"))
    assert line.split("|")[3].strip().startswith("**")
    summary = {r["image"]: r for r in csv.DictReader((report / "summary.csv").open())}
    assert list(summary) == ["input", "l2", "l2+s+f-nonlinear", "target", "truth"]
    ssim = np.array([_f(recs[("l2+s+f-nonlinear", s)]["ssim"]) for s in SEEDS])
    assert float(summary["l2+s+f-nonlinear"]["ssim_median"]) == pytest.approx(np.median(ssim))
    import matplotlib.image as mpimg

    for name in ("violin-cnr.png", "violin-fwhm.png", "panel-l2.png"):
        img = mpimg.imread(report / name)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "## L2" in (report / "report.md").read_text()


def test_restart_skips_finished_runs_and_redoes_a_deleted_one(grid_copy, data_dirs):
    train, test = data_dirs
    before = {
        k: (grid_copy / "runs" / k[0] / f"seed-{k[1]}" / "metrics.json").stat().st_mtime_ns
        for k in _records(grid_copy)
    }
    old = _records(grid_copy)
    shutil.rmtree(grid_copy / "runs" / "l2" / "seed-1")
    n_log = len(read_log(grid_copy))
    run_grid(train, test, grid_copy, CONFIGS, SEEDS, _train_config(), progress=False, report=False)
    events = read_log(grid_copy)[n_log:]
    assert [(e["name"], e["seed"]) for e in events if e["status"] == "trained"] == [("l2", 1)]
    assert sum(e["status"] == "skipped" for e in events) == 3
    new = _records(grid_copy)
    for k, mtime in before.items():
        path = grid_copy / "runs" / k[0] / f"seed-{k[1]}" / "metrics.json"
        if k == ("l2", 1):
            assert path.stat().st_mtime_ns != mtime
        else:
            assert path.stat().st_mtime_ns == mtime
    # same seed, same data, same options: the redone run reproduces its result
    assert new[("l2", 1)]["cnr"] == pytest.approx(old[("l2", 1)]["cnr"], rel=1e-4)


def test_killed_run_is_moved_aside_and_redone(grid_copy, data_dirs):
    train, test = data_dirs
    run_dir = grid_copy / "runs" / "l2+s+f-nonlinear" / "seed-0"
    (run_dir / "metrics.json").unlink()  # as if killed before it finished
    (run_dir / "partial.txt").write_text("left by the interrupted attempt")
    run_grid(train, test, grid_copy, CONFIGS, SEEDS, _train_config(), progress=False, report=False)
    aside = list(run_dir.parent.glob("seed-0.incomplete-*"))
    assert len(aside) == 1
    assert (aside[0] / "partial.txt").read_text() == "left by the interrupted attempt"
    assert (aside[0] / "model").is_dir()  # nothing of the attempt was deleted
    assert (run_dir / "metrics.json").is_file() and not (run_dir / "partial.txt").exists()
    events = read_log(grid_copy)
    assert any(e["status"] == "moved-aside" and e["name"] == "l2+s+f-nonlinear" for e in events)
    st = grid_status(grid_copy)
    assert len(st["done"]) == 4 and [Path(p).name for p in st["aside"]] == [aside[0].name]
    # the report ignores the moved-aside attempt
    files = grid_report(grid_copy)
    rows = list(csv.reader(files["runs.csv"].open()))
    assert len(rows) == 1 + 4


def test_run_one_does_not_repeat_a_finished_run(base_grid):
    spec = json.loads((base_grid / "runs" / "l2" / "seed-0" / "spec.json").read_text())
    mtime = (base_grid / "runs" / "l2" / "seed-0" / "metrics.json").stat().st_mtime_ns
    rec = run_one(spec)
    assert rec["status"] == "skipped"
    assert (base_grid / "runs" / "l2" / "seed-0" / "metrics.json").stat().st_mtime_ns == mtime


def test_other_settings_in_the_same_folder_are_refused(grid_copy, data_dirs):
    train, test = data_dirs
    with pytest.raises(ValueError, match="other settings"):
        prepare_grid(train, test, grid_copy, CONFIGS, SEEDS, _train_config(epochs=3))
    # more seeds and configurations with the same settings are fine (and not run here)
    settings, specs = prepare_grid(
        train, test, grid_copy, ["l2+s-linear"], [0, 5], _train_config(device="cpu")
    )
    assert set(settings["configs"]) == set(CONFIGS) | {"l2+s-linear"}
    assert settings["seeds"] == [0, 1, 5]
    assert len(specs) == 2


def test_runs_go_seed_by_seed(tmp_path, data_dirs):
    """Every configuration and control of a seed comes before the next seed, so a grid
    stopped part-way leaves whole seeds, which pair."""
    train, test = data_dirs
    settings, specs = prepare_grid(
        train,
        test,
        tmp_path / "g",
        ["l2", "l2+s-linear"],
        [3, 1, 2],
        _train_config(),
        controls=True,
    )
    names = list(settings["configs"])
    assert len(names) == 3  # the baseline, S and S's control
    order = [(s["seed"], s["name"]) for s in specs]
    assert order == [(seed, name) for seed in settings["seeds"] for name in names]
    assert [seed for seed, _ in order[:: len(names)]] == settings["seeds"]


def test_a_grid_written_before_newer_options_continues(grid_copy, data_dirs):
    """grid.json of an earlier version lacks the options added since (a loss field, a
    training option); their defaults are the old behaviour, so the grid continues, while
    a real difference is still refused."""
    import json

    train, test = data_dirs
    path = grid_copy / "grid.json"
    old = json.loads(path.read_text())
    for d in old["configs"].values():
        d.pop("directional", None)
    old["train"].pop("tensorboard", None)
    old["train"].pop("bn_recalibrate", None)  # before the stable recipe's option existed
    old["train"]["recipe"] = "stable"
    path.write_text(json.dumps(old))
    settings, specs = prepare_grid(
        train, test, grid_copy, ["l2"], [0, 7], _train_config(device="cpu")
    )
    assert settings["seeds"] == [0, 1, 7] and sorted(s["seed"] for s in specs) == [0, 7]
    old["configs"]["l2"]["scale"] = 2.0  # the same name, another loss
    path.write_text(json.dumps(old))
    with pytest.raises(ValueError, match="other loss settings"):
        prepare_grid(train, test, grid_copy, ["l2"], [0], _train_config(device="cpu"))


@pytest.mark.filterwarnings("ignore:.*non-finite value")
def test_failed_runs_are_reported_after_the_others(tmp_path, data_dirs):
    from napari_dfct.io import read_volume, write_volume

    train, test = data_dirs
    bad = tmp_path / "bad"
    bad.mkdir()
    x, _ = read_volume(train / "input.tif")
    y, _ = read_volume(train / "target.tif")
    x = x.copy()
    x[0, 0, 0] = np.nan  # the training loop refuses non-finite data
    write_volume(bad / "input.tif", x)
    write_volume(bad / "target.tif", y)
    out = tmp_path / "out"
    with pytest.raises(GridRunError, match="2 run"):
        run_grid(bad, test, out, ["l2"], [0, 1], _train_config(), progress=False)
    for seed in (0, 1):
        run_dir = out / "runs" / "l2" / f"seed-{seed}"
        assert (run_dir / "error.txt").is_file() and not (run_dir / "metrics.json").exists()
    assert [e["status"] for e in read_log(out)] == ["failed", "failed"]
    assert (out / "report" / "report.md").is_file()  # an empty grid still has a report


def test_missing_rois_are_a_clear_error(tmp_path, data_dirs):
    train, test = data_dirs
    plain = tmp_path / "test"
    shutil.copytree(test, plain)
    (plain / "meta.json").unlink()
    with pytest.raises(ValueError, match="--signal"):
        prepare_grid(train, plain, tmp_path / "out", ["l2"], [0], _train_config())
    settings, _ = prepare_grid(
        train,
        plain,
        tmp_path / "out",
        ["l2"],
        [0],
        _train_config(),
        roi={"signal_center": "30,20", "background_center": "5,30", "roi_size": 6},
    )
    assert settings["roi"]["line"] == [[30.0, 20.0], [5.0, 30.0]]
    assert settings["roi"]["slice"] == 1  # central slice of 2


# --------------------------------------------------------------------------- executors
def _close(a, b):
    for m in ("cnr", "psnr", "ssim"):
        assert _f(a[m]) == pytest.approx(_f(b[m]), rel=1e-3, abs=1e-6), m


@pytest.mark.slow
def test_process_pool_gives_the_same_runs(tmp_path, data_dirs, base_grid):
    train, test = data_dirs
    out = tmp_path / "pool"
    run_grid(
        train, test, out, ["l2"], SEEDS, _train_config(), jobs=2, progress=False, report=False
    )
    ref, got = _records(base_grid), _records(out)
    assert set(got) == {("l2", s) for s in SEEDS}
    for k in got:
        _close(got[k], ref[k])
        assert got[k]["torch_threads"] == 1  # two workers share the two cores


@pytest.mark.slow
def test_submitit_local_executor_runs_the_job_array(tmp_path, data_dirs, base_grid):
    pytest.importorskip("submitit")
    train, test = data_dirs
    out = tmp_path / "submitit"
    run_grid(
        train,
        test,
        out,
        ["l2+s+f-nonlinear"],
        SEEDS,
        _train_config(),
        executor="submitit-local",
        slurm=SlurmOptions(gpus_per_job=0, cpus_per_job=1, time=10),
        progress=False,
    )
    ref, got = _records(base_grid), _records(out)
    assert set(got) == {("l2+s+f-nonlinear", s) for s in SEEDS}
    for k in got:
        _close(got[k], ref[k])
    submitted = json.loads(next(out.glob("submitted-*.json")).read_text())
    assert submitted["executor"] == "local" and len(submitted["jobs"]) == 2
    assert any((out / "slurm").rglob("*_log.out"))
    assert (out / "report" / "table-l2.md").is_file()


def test_pool_workers_take_one_gpu_each(monkeypatch):
    import queue

    from napari_dfct.experiment.grid import _init_worker

    q = queue.Queue()
    for gpu in (2, 3):
        q.put(gpu)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    _init_worker(q, None)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    _init_worker(q, None)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    # the ids handed out are those this process may see
    from napari_dfct.experiment.grid import _visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert _visible_gpus(2) == ["4", "6"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert _visible_gpus(3) == ["0", "1", "2"]


def test_unknown_executor_is_refused(tmp_path, data_dirs):
    train, test = data_dirs
    with pytest.raises(ValueError, match="executor"):
        run_grid(train, test, tmp_path, ["l2"], [0], _train_config(), executor="pbs")


# --------------------------------------------------------------------------- the CLI
def test_cli_grid_and_grid_report(tmp_path, data_dirs, capsys):
    from napari_dfct.cli import main

    train, test = data_dirs
    out = tmp_path / "cli"
    argv = [
        "grid",
        str(out),
        "--train",
        str(train),
        "--test",
        str(test),
        "--configs",
        "l2",
        "--seeds",
        "0",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--patch",
        "32",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "| baseline |" in stdout
    rec = json.loads((out / "runs" / "l2" / "seed-0" / "metrics.json").read_text())
    assert rec["epochs_run"] == 1
    cfg = json.loads((out / "runs" / "l2" / "seed-0" / "model" / "config.json").read_text())
    assert cfg["train"]["patch"] == 32 and cfg["train"]["lr"] == 1e-3  # given / default
    assert main(["grid-report", str(out)]) == 0
    assert "| baseline |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--test", "TEST"], "no training data"),
        (["--train", "TRAIN"], "no held-out test set"),
        (["--train", "TRAIN", "--test", "TEST", "--seeds", "x"], "bad seed"),
        (["--train", "TRAIN", "--test", "TEST", "--configs", "l3"], "unknown loss"),
        (["--train", "TRAIN", "--test", "TEST", "--executor", "pbs"], "unknown executor"),
        (["--train", "TRAIN", "--test", "TEST", "--epochs", "0"], "epochs"),
    ],
)
def test_cli_grid_errors_are_one_line(tmp_path, data_dirs, capsys, extra, message):
    from napari_dfct.cli import main

    train, test = data_dirs
    extra = [str(train) if a == "TRAIN" else str(test) if a == "TEST" else a for a in extra]
    assert main(["grid", str(tmp_path / "o"), *extra, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfct grid: error:") and message in err[0]


def test_cli_grid_report_on_a_non_grid_folder(tmp_path, capsys):
    from napari_dfct.cli import main

    assert main(["grid-report", str(tmp_path)]) == 2
    assert "not a grid folder" in capsys.readouterr().err


def _grid_file(out, name):
    if name == "grid.json":
        return out / "grid.json"
    return sorted(out.glob("runs/*/seed-*/metrics.json"))[0]


def _report_error(out, capsys) -> str:
    from napari_dfct.cli import main

    assert main(["grid-report", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfct grid-report: error: "), err
    return err[0]


@pytest.mark.parametrize("name", ["grid.json", "metrics.json"])
@pytest.mark.parametrize(
    "text, words",
    [
        ('{"format": 2,\n', "is corrupt (not valid JSON: Expecting"),
        ("[]", "is corrupt: it holds an array where an object is expected"),
        ("\xff\xfe", "is corrupt (not UTF-8 text)"),
        ("{}", "is corrupt: it "),  # an object without what the file always holds
    ],
)
def test_a_corrupt_grid_or_metrics_file_is_one_line_naming_it(
    grid_copy, data_dirs, capsys, name, text, words
):
    from napari_dfct.cli import main

    path = _grid_file(grid_copy, name)
    path.write_bytes(text.encode("latin-1"))
    line = _report_error(grid_copy, capsys)
    assert str(path) in line and words in line
    if name == "grid.json" and text != "{}":  # a grid started again reads it first
        train, test = data_dirs
        argv = ["grid", str(grid_copy), "--train", str(train), "--test", str(test), "--quiet"]
        assert main([*argv, "--configs", "l2", "--seeds", "0", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(path) in err[0] and words in err[0], err


# --------------------------------------------------------------------------- concurrency
def test_a_run_with_a_live_heartbeat_is_left_alone(grid_copy, data_dirs):
    import os
    import socket
    import time

    train, test = data_dirs
    run_dir = grid_copy / "runs" / "l2" / "seed-0"
    (run_dir / "metrics.json").unlink()
    beat = {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}
    (run_dir / "running.json").write_text(json.dumps(beat))
    n_log = len(read_log(grid_copy))
    run_grid(train, test, grid_copy, CONFIGS, SEEDS, _train_config(), progress=False, report=False)
    assert not (run_dir / "metrics.json").exists()  # not trained twice ...
    assert not list(run_dir.parent.glob("seed-0.incomplete-*"))  # ... nor moved away
    events = read_log(grid_copy)[n_log:]
    assert [(e["status"], e["name"], e["seed"]) for e in events if e["status"] != "skipped"] == [
        ("running-elsewhere", "l2", 0)
    ]
    # once the heartbeat is older than stale_after, the run is taken over
    beat["heartbeat"] = time.time() - 120
    (run_dir / "running.json").write_text(json.dumps(beat))
    run_grid(
        train,
        test,
        grid_copy,
        CONFIGS,
        SEEDS,
        _train_config(),
        progress=False,
        report=False,
        stale_after=60,
    )
    assert (run_dir / "metrics.json").is_file() and not (run_dir / "running.json").exists()
    assert len(list(run_dir.parent.glob("seed-0.incomplete-*"))) == 1


def _fake_slurm(tmp_path, monkeypatch, states):
    """``sbatch``/``srun``/``sacct`` stand-ins: submission is recorded, nothing runs."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path}/sbatch.log\necho "Submitted batch job 4242"\n'
    )
    (bindir / "srun").write_text("#!/bin/sh\nexit 0\n")
    lines = "\\n".join(f"{j}|{s}|None" for j, s in states)
    (bindir / "sacct").write_text(f'#!/bin/sh\nprintf "JobID|State|NodeList\\n{lines}\\n"\n')
    for p in bindir.iterdir():
        p.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_submission_is_one_job_array(tmp_path, data_dirs, monkeypatch):
    pytest.importorskip("submitit")
    import pickle

    train, test = data_dirs
    _fake_slurm(tmp_path, monkeypatch, [("4242_0", "COMPLETED"), ("4242_[1-3]", "PENDING")])
    out = tmp_path / "slurm-grid"
    opts = SlurmOptions(
        partition="gpu",
        gpus_per_job=1,
        cpus_per_job=4,
        time=90,
        mem=16,
        array_parallelism=2,
        setup=["module load cuda"],
        extra={"account": "lab"},
    )
    run_grid(
        train,
        test,
        out,
        CONFIGS,
        SEEDS,
        _train_config(),
        executor="slurm",
        slurm=opts,
        wait=False,
        progress=False,
    )
    script = next((out / "slurm").glob("*_submission.sh")).read_text()
    for line in (
        "#SBATCH --array=0-3%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --time=90",
        "#SBATCH --mem=16GB",
        "#SBATCH --account=lab",
        "module load cuda",
    ):
        assert line in script, line
    # each array task calls run_one with its own small spec
    calls = sorted((out / "slurm").glob("4242_*_submitted.pkl"))
    assert len(calls) == 4
    with calls[0].open("rb") as fh:
        delayed = pickle.load(fh)  # our own submission file, written by submitit just now
    assert delayed.function is run_one
    spec = delayed.args[0]
    assert spec["threads"] == 4 and Path(spec["run_dir"]).parent.parent.name == "runs"
    # a second start leaves the pending array tasks alone and resubmits only the others
    run_grid(
        train,
        test,
        out,
        CONFIGS,
        SEEDS,
        _train_config(),
        executor="slurm",
        slurm=opts,
        wait=False,
        progress=False,
    )
    events = read_log(out)
    assert sorted((e["name"], e["seed"]) for e in events if e["status"] == "queued") == [
        ("l2", 1),
        ("l2+s+f-nonlinear", 0),
        ("l2+s+f-nonlinear", 1),
    ]
    assert [(e["name"], e["seed"]) for e in events[-1:]] == [("l2", 0)]
    assert events[-1]["status"] == "submitted"


def test_arrays_and_simulations_are_saved_once_and_never_overwritten(tmp_path, small_sim):
    from napari_dfct.io import read_volume

    out = tmp_path / "arrays"
    settings, specs = prepare_grid(
        (small_sim.input, small_sim.target), small_sim, out, ["l2"], [0], _train_config()
    )
    x, _ = read_volume(settings["train_data"]["input"])
    np.testing.assert_array_equal(x, small_sim.input)
    truth, _ = read_volume(settings["test"]["truth"])
    np.testing.assert_array_equal(truth, small_sim.truth)
    assert settings["roi"]["signal_center"] == [float(v) for v in small_sim.meta["signal_center"]]
    prepare_grid(small_sim, small_sim, out, ["l2"], [0], _train_config())  # same data: fine
    with pytest.raises(ValueError, match="other data"):
        prepare_grid(
            (small_sim.input + 1, small_sim.target), small_sim, out, ["l2"], [0], _train_config()
        )
    x, _ = read_volume(settings["train_data"]["input"])
    np.testing.assert_array_equal(x, small_sim.input)  # still the first data


def test_resume_continues_an_interrupted_run_to_the_same_result(tmp_path, data_dirs, base_grid):
    from napari_dfct.io import read_volume
    from napari_dfct.train import TrainConfig, run_fit

    train, test = data_dirs
    out = tmp_path / "resume"
    _, specs = prepare_grid(train, test, out, ["l2"], [0], _train_config(), resume=True)
    spec = specs[0]
    run_dir = Path(spec["run_dir"])
    # an attempt that stopped after its first epoch (its training state saved)
    first = TrainConfig.from_dict(
        {
            **spec["train"],
            "loss": spec["loss"],
            "seed": spec["seed"],
            "device": "cpu",
            "epochs": 1,
            "keep_state": True,
        }
    )
    x, _ = read_volume(train / "input.tif")
    y, _ = read_volume(train / "target.tif")
    run_fit(x, y, first, out_dir=run_dir / "model", preview=False)
    assert (run_dir / "model" / "training-state.json").is_file()
    run_grid(
        train, test, out, ["l2"], [0], _train_config(), progress=False, report=False, resume=True
    )
    rec = json.loads((run_dir / "metrics.json").read_text())
    assert rec["resumed_from_epoch"] == 1 and rec["epochs_run"] == TINY["epochs"]
    assert not list(run_dir.parent.glob("seed-0.incomplete-*"))
    assert not (run_dir / "model" / "training-state.json").exists()  # keep_state=False
    _close(rec, _records(base_grid)[("l2", 0)])  # as if never interrupted


def test_other_loss_modes_get_their_own_table():
    recs = [
        {"name": n, "seed": s, "loss": d, "cnr": c + s, "fwhm": 3.0}
        for n, d, c in [
            ("l2", {"loss": "l2"}, 1.0),
            ("l2-spectral", {"loss": "l2", "mode": "spectral"}, 5.0),
        ]
        for s in (0, 1)
    ]
    summary = summarize(recs)
    assert {e["family"] for e in summary.values()} == {"l2", "l2-spectral"}
    paper = list(csv.DictReader(paper_table(summary, "l2")["csv"].splitlines()))
    spectral = list(csv.DictReader(paper_table(summary, "l2-spectral")["csv"].splitlines()))
    assert float(paper[0]["cnr_linear_median"]) == pytest.approx(1.5)
    assert float(spectral[0]["cnr_linear_median"]) == pytest.approx(5.5)


def test_controls_add_scale_matched_baselines_and_a_report_table(tmp_path, data_dirs):
    from napari_dfct.io import read_volume
    from napari_dfct.losses import measured_scale

    train, test = data_dirs
    out = tmp_path / "ctrl"
    cfg = _train_config(epochs=1, patience=1)
    run_grid(
        train,
        test,
        out,
        ["l2", "l2+s-nonlinear", "l2+f-nonlinear"],
        [0],
        cfg,
        progress=False,
        controls=True,
    )
    settings = json.loads((out / "grid.json").read_text())
    # S on 32x32 patches: the control carries the scale measured on the training error
    x, y = (read_volume(train / f"{k}.tif")[0] for k in ("input", "target"))
    scale = measured_scale("l2+s-nonlinear", x, y, 32, n_patches=1024)["scale"]
    control = f"l2@{float(f'{scale:.3g}'):g}"
    # paper-mode F alone has A_F(DC) = 1: no control, the baseline is its own
    assert settings["controls"] == {"l2+s-nonlinear": control}
    assert list(settings["configs"]) == ["l2", "l2+s-nonlinear", control, "l2+f-nonlinear"]
    rec = json.loads((out / "runs" / control / "seed-0" / "metrics.json").read_text())
    assert rec["loss"]["scale"] == pytest.approx(float(f"{scale:.3g}"))
    report = (out / "report" / "report.md").read_text()
    assert "## Scale-matched controls" in report
    table = (out / "report" / "controls.md").read_text().splitlines()
    assert len(table) == 3 and table[2].startswith(f"| l2+s-nonlinear | {control} |")
    # the control is not the paper table's baseline row
    l2_table = (out / "report" / "table-l2.csv").read_text()
    base_cnr = json.loads((out / "runs" / "l2" / "seed-0" / "metrics.json").read_text())["cnr"]
    row = next(r for r in csv.DictReader(l2_table.splitlines()) if r["row"] == "baseline")
    assert float(row["cnr_linear_median"]) == pytest.approx(base_cnr)
