"""``dfct train`` and ``dfct predict`` end to end, and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_dfct.cli import main
from napari_dfct.commands.predict import parse_slices
from napari_dfct.io import write_volume


@pytest.fixture(scope="module")
def files(small_sim, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    from napari_dfct.simulate import save_simulation

    sim_dir = folder / "sim"
    save_simulation(small_sim, sim_dir)
    write_volume(folder / "in.tif", small_sim.input)
    write_volume(folder / "gt.tif", small_sim.target)
    return folder, sim_dir


TINY = ["--preset", "tiny", "--patch", "32", "--batch-size", "4", "--no-progress"]


def _one_line_error(capsys, cmd):
    # on a CPU, `dfct train` prints the measured time per epoch once training started
    err = [
        line
        for line in capsys.readouterr().err.strip().splitlines()
        if not line.startswith("dfct train: on the CPU one epoch takes")
    ]
    assert len(err) == 1, err
    assert err[0].startswith(f"dfct {cmd}: error: ")
    return err[0]


def test_train_then_predict(files, capsys):
    folder, sim_dir = files
    model = folder / "model"
    rc = main(
        [
            "train",
            "--input",
            str(folder / "in.tif"),
            "--target",
            str(folder / "gt.tif"),
            "--out",
            str(model),
            "--epochs",
            "2",
            "--loss",
            "l2",
            "--spatial",
            "nonlinear",
            "--frequency",
            "linear",
            "--order",
            "fs",
            *TINY,
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "completed: 2 epochs" in out
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["loss"]["name"] == "l2+f-linear+s-nonlinear" and cfg["preset"] == "tiny"
    assert len(json.loads((model / "history.json").read_text())) == 2
    # predict all slices, then a subset
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            "--input",
            str(folder / "in.tif"),
            "--out",
            str(folder / "pred.tif"),
            "--no-progress",
        ]
    )
    assert rc == 0
    pred = tifffile.imread(folder / "pred.tif")
    assert pred.shape == (4, 64, 64) and pred.dtype == np.float32
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            "--input",
            str(folder / "in.tif"),
            "--out",
            str(folder / "sub.npy"),
            "--slices",
            "3,0-1",
            "--tile",
            "32",
            "--overlap",
            "16",
            "--no-progress",
        ]
    )
    assert rc == 0
    sub = np.load(folder / "sub.npy")
    assert sub.shape == (3, 64, 64)
    np.testing.assert_allclose(sub, pred[[3, 0, 1]], atol=0.05)  # tiled vs whole slices
    # resume the finished run for one more epoch
    rc = main(
        [
            "train",
            "--data",
            str(sim_dir),
            "--out",
            str(model),
            "--resume",
            "--epochs",
            "3",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "3 epochs" in capsys.readouterr().out


def test_train_recipe_scale_and_selection_are_saved(files, tmp_path, capsys):
    folder, sim_dir = files
    model = tmp_path / "paper"
    rc = main(
        [
            "train",
            "--data",
            str(sim_dir),
            "--out",
            str(model),
            "--epochs",
            "2",
            "--recipe",
            "paper",
            "--loss-scale",
            "1.5",
            "--select",
            "amplified",
            "--bn-recalibrate",
            "2",
            *TINY,
        ]
    )
    assert rc == 0
    cfg = json.loads((model / "config.json").read_text())
    train = cfg["train"]
    # the recipe's values, then the options given on top of it
    assert train["recipe"] == "paper" and train["select"] == "amplified"
    assert train["bn_recalibrate"] == 2 and train["weight_decay"] == 0.1
    assert cfg["loss"]["scale"] == 1.5 and cfg["name"] == "l2@1.5"
    hist = json.loads((model / "history.json").read_text())
    assert all(h["val_loss"] == h["val_amplified"] for h in hist)
    # the plain loss ignores the scale: the amplified one is exactly 1.5 times it
    assert all(h["val_amplified"] == pytest.approx(1.5 * h["val_plain"], rel=1e-5) for h in hist)
    # the default recipe is the stable one
    rc = main(
        [
            "train",
            "--data",
            str(sim_dir),
            "--out",
            str(tmp_path / "stable"),
            "--epochs",
            "1",
            *TINY,
        ]
    )
    assert rc == 0
    train = json.loads((tmp_path / "stable" / "config.json").read_text())["train"]
    assert train["recipe"] == "stable" and train["bn_recalibrate"] > 0
    assert train["select"] == "plain"


def test_train_help_lists_the_recipes_and_their_differences(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "stable (default):" in out and "paper: the paper's protocol exactly" in out
    assert "recipe stable: 8; recipe paper: 0" in " ".join(out.split())
    assert "converge: stable without weight decay" in " ".join(out.split())
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "x", "--out", "y", "--recipe", "fast"])
    assert exc.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_the_converge_recipe_is_stable_without_decay_and_four_times_the_steps():
    """The values the diagnosis evaluated (docs/reach-the-target.md): the stable recipe
    with weight decay 0 and four times the patches per slice; nothing else differs."""
    from dataclasses import asdict

    from napari_dfct.train import recipe_config

    stable, conv = asdict(recipe_config("stable")), asdict(recipe_config("converge"))
    differ = {k for k in stable if stable[k] != conv[k]}
    assert differ == {"weight_decay", "patches_per_slice", "recipe"}
    assert (
        conv["weight_decay"] == 0 and conv["patches_per_slice"] == 4 * stable["patches_per_slice"]
    )


def test_train_from_simulation_folder(files, capsys, tmp_path):
    _, sim_dir = files
    rc = main(
        [
            "train",
            "--data",
            str(sim_dir),
            "--out",
            str(tmp_path / "m"),
            "--epochs",
            "1",
            "--loss",
            "l1+s-linear",
            *TINY,
        ]
    )
    assert rc == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["loss"]["name"] == "l1+s-linear"


def _write(path, arr):
    write_volume(path, np.asarray(arr, dtype=np.float32))
    return str(path)


@pytest.mark.parametrize(
    "case,match",
    [
        ("shapes", "shapes differ"),
        ("one_slice", "at least 2"),
        ("small", "larger than the slices"),
        ("nan", "NaN"),
        ("missing", "not found"),
        ("loss", "unknown"),
        ("exists", "already holds a model"),
        ("resume", "nothing to resume"),
        ("scale", "loss scale must be positive"),
    ],
)
def test_train_errors(case, match, files, tmp_path, capsys):
    folder, _ = files
    x = tifffile.imread(folder / "in.tif")
    inp, tgt = str(folder / "in.tif"), str(folder / "gt.tif")
    extra = []
    out = tmp_path / "m"
    if case == "shapes":
        tgt = _write(tmp_path / "t.tif", x[:, :, :60])
    elif case == "one_slice":
        inp = _write(tmp_path / "i.tif", x[:1])
        tgt = _write(tmp_path / "t.tif", x[:1])
    elif case == "small":
        extra = ["--patch", "128"]
    elif case == "nan":
        bad = x.copy()
        bad[1, 5, 5] = np.nan
        inp = _write(tmp_path / "i.tif", bad)
    elif case == "missing":
        inp = str(tmp_path / "nope.tif")
    elif case == "loss":
        extra = ["--loss", "l3+q"]
    elif case == "exists":
        from napari_dfct.checkpoint import save_checkpoint
        from napari_dfct.model import build_model

        save_checkpoint(out, build_model("tiny"), {"preset": "tiny"})
    elif case == "resume":
        extra = ["--resume"]
    elif case == "scale":
        extra = ["--loss-scale", "-1"]
    argv = [
        "train",
        "--input",
        inp,
        "--target",
        tgt,
        "--out",
        str(out),
        "--epochs",
        "1",
        "--preset",
        "tiny",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    argv += ["--patch", "32"] if "--patch" not in extra else []
    rc = main(argv + extra)
    assert rc == 2
    assert match in _one_line_error(capsys, "train")


@pytest.mark.parametrize(
    "args,match",
    [
        (["--slices", "1,x"], "bad --slices syntax"),
        (["--slices", "3-1"], "bad --slices range"),
        (["--slices", "2-9"], "out of range"),
        (["--model", "MISSING"], "not found"),
        (["--input", "MISSING"], "not found"),
        (["--out", "p.png"], "must end in"),
    ],
)
def test_predict_errors(args, match, files, tmp_path, capsys):
    folder, _ = files
    model = folder / "model-for-errors"
    if not model.exists():
        argv = [
            "train",
            "--input",
            str(folder / "in.tif"),
            "--target",
            str(folder / "gt.tif"),
            "--out",
            str(model),
            "--epochs",
            "1",
            *TINY,
        ]
        assert main(argv) == 0
        capsys.readouterr()
    opts = {
        "--model": str(model),
        "--input": str(folder / "in.tif"),
        "--out": str(tmp_path / "p.tif"),
    }
    extra = []
    for i in range(0, len(args), 2):
        key, val = args[i], args[i + 1]
        if key in opts:
            opts[key] = str(tmp_path / "missing-thing") if val == "MISSING" else val
        else:
            extra += [key, val]
    argv = ["predict", "--no-progress"] + [v for kv in opts.items() for v in kv] + extra
    assert main(argv) == 2
    assert match in _one_line_error(capsys, "predict")


def test_parse_slices():
    assert parse_slices("3,5-7", 10) == [3, 5, 6, 7]
    assert parse_slices(" 0 , 2 - 3 ", 4) == [0, 2, 3]
    for bad in ("", "a", "1,,2", "-1", "5-"):
        with pytest.raises(ValueError):
            parse_slices(bad, 10)
    with pytest.raises(ValueError, match="out of range"):
        parse_slices("10", 10)


# ------------------------------------------------------------ output location, I/O, size
def _unwritable_dir(tmp_path):
    """A folder nobody may create files in: read-only for a normal user; for root (who
    ignores permissions) a kernel file system that refuses new entries."""
    import os
    import tempfile
    from pathlib import Path

    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    for candidate in (Path("/sys/kernel"), Path("/sys"), Path("/proc")):
        try:
            os.rmdir(tempfile.mkdtemp(dir=candidate))
        except OSError:
            return candidate
    pytest.skip("no folder here refuses new files")


@pytest.mark.parametrize(
    "case,match",
    [
        ("file", "is a file, not a model folder"),
        ("under_file", "is a file, not a folder"),
        ("unwritable", "cannot write to"),
        ("foreign", "is not empty and is not a model folder"),
        ("patches", "just to shuffle one epoch"),
        ("batch", "needs at least"),
    ],
)
def test_train_refuses_before_training(case, match, files, tmp_path, capsys):
    """Output location and memory are checked up front: one line, exit 2, nothing
    trained and nothing written."""
    _, sim_dir = files
    out = tmp_path / "m"
    extra = []
    if case == "file":
        out.write_text("not a folder")
    elif case == "under_file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "m"
    elif case == "unwritable":
        out = _unwritable_dir(tmp_path) / "dfct-model"
    elif case == "foreign":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "patches":
        extra = ["--patches-per-slice", str(10**13)]
    elif case == "batch":
        extra = ["--batch-size", str(10**9)]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main(["train", "--data", str(sim_dir), "--out", str(out), "--epochs", "1", *TINY, *extra])
    assert rc == 2
    assert match in _one_line_error(capsys, "train")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert not (out / "model.safetensors").exists() if out.is_dir() else True


def test_train_full_disk_is_one_line_and_keeps_the_last_save(files, tmp_path, capsys, monkeypatch):
    import errno
    import os

    from napari_dfct.checkpoint import load_model

    _, sim_dir = files
    real_replace = os.replace
    calls = []

    def full_after(n):
        def replace(src, dst):
            calls.append(dst)
            if len(calls) > n:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
            return real_replace(src, dst)

        return replace

    # the very first file: nothing appears, nothing is left behind
    monkeypatch.setattr(os, "replace", full_after(0))
    out = tmp_path / "m"
    rc = main(["train", "--data", str(sim_dir), "--out", str(out), "--epochs", "2", *TINY])
    assert rc == 2
    line = _one_line_error(capsys, "train")
    assert f"cannot save the model in {out}: No space left on device" in line
    assert list(tmp_path.iterdir()) == []
    # after the first epoch was saved: the folder keeps epoch 1 and still loads
    calls.clear()
    monkeypatch.setattr(os, "replace", full_after(6))  # the 6 files of the first save
    rc = main(["train", "--data", str(sim_dir), "--out", str(out), "--epochs", "2", *TINY])
    assert rc == 2
    assert "No space left on device" in _one_line_error(capsys, "train")
    monkeypatch.setattr(os, "replace", real_replace)
    assert load_model(out).config["best_epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_before_the_first_epoch_claims_nothing(files, tmp_path, capsys, monkeypatch):
    """On a CPU the time per epoch is printed after the first timed steps, with a hint for
    the paper preset; Ctrl-C right after it (inside epoch 1) says nothing was saved."""
    from napari_dfct.commands import train as train_cmd

    _, sim_dir = files
    printed = []
    original = train_cmd._on_estimate

    def estimate_then_ctrl_c(est):
        printed.append(est)
        original(est)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_cmd, "_on_estimate", estimate_then_ctrl_c)
    out = tmp_path / "m"
    rc = main(
        [
            "train",
            "--data",
            str(sim_dir),
            "--out",
            str(out),
            "--epochs",
            "5",
            "--preset",
            "paper",
            "--patch",
            "32",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 130
    err = capsys.readouterr().err.strip().splitlines()
    est = printed[0]
    # 3 training slices (1 of 4 held out) x 1 patch / batch 2 = 2 steps
    assert est.steps == 2 and est.epochs == 5 and est.device == "cpu"
    assert len(err) == 2
    assert err[0].startswith("dfct train: on the CPU one epoch takes about")
    assert f"({est.steps} steps of" in err[0] and "for 5 epochs" in err[0]
    assert "--preset small" in err[0]
    assert err[1] == "dfct train: interrupted before the first epoch finished; nothing was saved"
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_estimate_is_printed_on_cpu_without_hint_for_small_presets(files, tmp_path, capsys):
    _, sim_dir = files
    rc = main(
        [
            "train",
            "--data",
            str(sim_dir),
            "--out",
            str(tmp_path / "m"),
            "--epochs",
            "1",
            "--device",
            "cpu",
            *TINY,
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "dfct train: on the CPU one epoch takes about" in err
    assert "--preset small" not in err


def test_interrupted_text_names_what_the_folder_holds(tmp_path):
    from napari_dfct.checkpoint import save_checkpoint, save_training_state
    from napari_dfct.commands.train import _interrupted_text
    from napari_dfct.model import build_model

    assert "nothing was saved" in _interrupted_text(tmp_path / "absent")
    save_training_state(tmp_path / "state-only", {"epoch": 1})
    assert "continue the run" in _interrupted_text(tmp_path / "state-only")
    save_checkpoint(tmp_path / "model", build_model("tiny"), {"preset": "tiny"})
    text = _interrupted_text(tmp_path / "model")
    assert "best model so far" in text and "--resume" not in text
    save_training_state(tmp_path / "model", {"epoch": 1})
    assert _interrupted_text(tmp_path / "model").endswith("(continue with --resume)")


def test_plain_run_restarts_a_dead_folder(files, tmp_path, capsys, monkeypatch):
    """What an older version left when killed in its first save (weights without a
    config), plus a hidden folder of a killed save: a plain run replaces and cleans."""
    import os
    import subprocess

    from napari_dfct.checkpoint import is_model_dir, load_model
    from napari_dfct.checkpoint.save import _sibling

    _, sim_dir = files
    out = tmp_path / "m"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"half a file")
    gone = subprocess.Popen(["true"])  # noqa: S607 - a process that has ended
    gone.wait()
    monkeypatch.setattr(os, "getpid", lambda: gone.pid)
    stale = _sibling(out, "partial")  # the name a save of that process would use
    monkeypatch.undo()
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    assert not is_model_dir(out)
    rc = main(["train", "--data", str(sim_dir), "--out", str(out), "--epochs", "1", *TINY])
    assert rc == 0, capsys.readouterr().err
    assert load_model(out).config["best_epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_resume_without_training_settings_is_one_line(files, tmp_path, capsys):
    _, sim_dir = files
    out = tmp_path / "m"
    assert main(["train", "--data", str(sim_dir), "--out", str(out), "--epochs", "1", *TINY]) == 0
    cfg = json.loads((out / "config.json").read_text())
    del cfg["train"]
    (out / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    rc = main(
        [
            "train",
            "--data",
            str(sim_dir),
            "--out",
            str(out),
            "--resume",
            "--epochs",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "holds no training settings" in _one_line_error(capsys, "train")


def test_resuming_a_finished_run_says_so_and_trains_on_when_extended(files, tmp_path, capsys):
    _, sim_dir = files
    out = tmp_path / "m"
    assert main(["train", "--data", str(sim_dir), "--out", str(out), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    base = ["train", "--data", str(sim_dir), "--out", str(out), "--resume", "--no-progress"]
    assert main(base) == 2
    line = _one_line_error(capsys, "train")
    assert "finished at epoch 1 of 1" in line and "raise --epochs above 1" in line
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())] == [1]
    assert main([*base, "--epochs", "2"]) == 0
    assert [e["epoch"] for e in json.loads((out / "history.json").read_text())] == [1, 2]
