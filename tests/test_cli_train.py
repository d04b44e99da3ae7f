"""``dfct train`` and ``dfct predict`` end to end, and their one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_dfct.cli import main
from napari_dfct.commands.predict import parse_slices
from napari_dfct.io import write_volume


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"dfct {cmd}: error: ")
    return err[0]


def test_train_then_predict(files, capsys):
    folder, sim_dir = files
    model = folder / "model"
    rc = main(["train", "--input", str(folder / "in.tif"), "--target", str(folder / "gt.tif"),
               "--out", str(model), "--epochs", "2", "--loss", "l2", "--spatial", "nonlinear",
               "--frequency", "linear", "--order", "fs", *TINY])
    assert rc == 0
    out = capsys.readouterr().out
    assert "completed: 2 epochs" in out
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["loss"]["name"] == "l2+f-linear+s-nonlinear" and cfg["preset"] == "tiny"
    assert len(json.loads((model / "history.json").read_text())) == 2
    # predict all slices, then a subset
    rc = main(["predict", "--model", str(model), "--input", str(folder / "in.tif"),
               "--out", str(folder / "pred.tif"), "--no-progress"])
    assert rc == 0
    pred = tifffile.imread(folder / "pred.tif")
    assert pred.shape == (4, 64, 64) and pred.dtype == np.float32
    rc = main(["predict", "--model", str(model), "--input", str(folder / "in.tif"),
               "--out", str(folder / "sub.npy"), "--slices", "3,0-1", "--tile", "32",
               "--overlap", "16", "--no-progress"])
    assert rc == 0
    sub = np.load(folder / "sub.npy")
    assert sub.shape == (3, 64, 64)
    np.testing.assert_allclose(sub, pred[[3, 0, 1]], atol=0.05)  # tiled vs whole slices
    # resume the finished run for one more epoch
    rc = main(["train", "--data", str(sim_dir), "--out", str(model), "--resume", "--epochs", "3",
               "--no-progress"])
    assert rc == 0
    assert "3 epochs" in capsys.readouterr().out


def test_train_recipe_scale_and_selection_are_saved(files, tmp_path, capsys):
    folder, sim_dir = files
    model = tmp_path / "paper"
    rc = main(["train", "--data", str(sim_dir), "--out", str(model), "--epochs", "2",
               "--recipe", "paper", "--loss-scale", "1.5", "--select", "amplified",
               "--bn-recalibrate", "2", *TINY])
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
    assert all(h["val_amplified"] == pytest.approx(1.5 * h["val_plain"], rel=1e-5)
               for h in hist)
    # the default recipe is the stable one
    rc = main(["train", "--data", str(sim_dir), "--out", str(tmp_path / "stable"),
               "--epochs", "1", *TINY])
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
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", "x", "--out", "y", "--recipe", "fast"])
    assert exc.value.code == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err


def test_train_from_simulation_folder(files, capsys, tmp_path):
    _, sim_dir = files
    rc = main(["train", "--data", str(sim_dir), "--out", str(tmp_path / "m"), "--epochs", "1",
               "--loss", "l1+s-linear", *TINY])
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
        out.mkdir()
        (out / "model.safetensors").write_bytes(b"")
    elif case == "resume":
        extra = ["--resume"]
    elif case == "scale":
        extra = ["--loss-scale", "-1"]
    argv = ["train", "--input", inp, "--target", tgt, "--out", str(out), "--epochs", "1",
            "--preset", "tiny", "--batch-size", "4", "--no-progress"]
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
        argv = ["train", "--input", str(folder / "in.tif"), "--target", str(folder / "gt.tif"),
                "--out", str(model), "--epochs", "1", *TINY]
        assert main(argv) == 0
        capsys.readouterr()
    opts = {"--model": str(model), "--input": str(folder / "in.tif"),
            "--out": str(tmp_path / "p.tif")}
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
