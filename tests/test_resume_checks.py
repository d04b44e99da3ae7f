"""Resuming continues the same run or says why not: the data (a fingerprint of input and
target in ``config.json``), the loss, the recipe and every training option are compared
with the saved run; only the limits, the device and what is kept or logged may change.

One tiny run (preset ``tiny``, 4 slices of 32x32, 2 epochs) is trained per module; each
test resumes a copy of its folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from napari_dfct.cli import main
from napari_dfct.data import IntensityWindow
from napari_dfct.losses import LossConfig
from napari_dfct.train import RESUME_MAY_CHANGE, TrainConfig, run_fit
from napari_dfct.train.config import resume_differences

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = dict(
    loss=LossConfig(spatial="linear"),
    preset="tiny",
    epochs=2,
    patience=20,
    batch_size=4,
    patch=16,
    lr=2e-3,
    device="cpu",
    seed=0,
)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**BASE, **kw})


@pytest.fixture(scope="module")
def stopped(pair, tmp_path_factory):
    """A run stopped after 2 epochs (its resume state kept) and its data files."""
    x, y = pair
    root = tmp_path_factory.mktemp("resume")
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    res = run_fit(x, y, _cfg(), root / "model", preview=False)
    assert res.epochs_run == 2
    return root


@pytest.fixture
def model(stopped, tmp_path):
    """A fresh copy of the stopped run's folder."""
    return shutil.copytree(stopped / "model", tmp_path / "model")


def _config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


def _files(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------- the rule
def _other(value, f):
    """A value of field ``f`` different from ``value``, whatever the field's type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if isinstance(value, str):
        choices = f.metadata.get("choices") or ()
        return next((c for c in choices if c != value), value + "-other")
    if isinstance(value, LossConfig):
        return LossConfig(loss="l1")
    if f.name == "window":
        return IntensityWindow(-1.0, 3.0)
    if value is None:  # an option whose default means "decided elsewhere"
        return 1
    if isinstance(value, dict):
        return {**value, "depth": 3}
    raise AssertionError(f"no other value for field {f.name} ({type(value).__name__})")


def test_every_option_but_the_allowed_ones_is_compared():
    """Generic over the fields: an option added later is compared without a change here."""
    saved = _cfg(window=IntensityWindow(0.0, 1.0))
    assert resume_differences(saved, dataclasses.replace(saved)) == []
    for f in dataclasses.fields(TrainConfig):
        given = dataclasses.replace(saved, **{f.name: _other(getattr(saved, f.name), f)})
        names = [d[0] for d in resume_differences(saved, given)]
        assert names == ([] if f.name in RESUME_MAY_CHANGE else [f.name]), f.name
    # a given window of None means the saved one
    assert resume_differences(saved, dataclasses.replace(saved, window=None)) == []


# --------------------------------------------------------------------------- fit()
@pytest.mark.parametrize(
    "change, words",
    [
        ({"lr": 3e-3}, "lr was 0.002, now 0.003"),
        ({"preset": "small"}, "preset was tiny, now small"),
        ({"patch": 8}, "patch was 16, now 8"),
        ({"seed": 5}, "seed was 0, now 5"),
        ({"recipe": "paper"}, "recipe was stable, now paper"),
        ({"window": IntensityWindow(0.0, 1.0)}, "window was"),
        (
            {"loss": LossConfig(loss="l1", spatial="linear")},
            "loss was l2+s-linear, now l1+s-linear",
        ),
        (
            {"loss": LossConfig(directional="nonlinear")},
            "loss was l2+s-linear, now l2+d-nonlinear",
        ),
        ({"augment": False}, "augment was on, now off"),
        ({"batch_size": 2, "weight_decay": 0.0}, "batch_size was 4, now 2; weight_decay"),
    ],
)
def test_a_changed_option_is_refused_with_its_name(pair, model, change, words):
    x, y = pair
    before = _files(model)
    with pytest.raises(ValueError) as info:
        run_fit(x, y, _cfg(epochs=3, **change), model, resume=True, preview=False)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"cannot resume {model}: ")
    assert words in msg
    assert "only epochs, patience" in msg
    assert _files(model) == before  # nothing trained, nothing written


def test_swapped_or_other_data_are_refused(pair, model):
    x, y = pair
    with pytest.raises(ValueError, match="input and the target are swapped"):
        run_fit(y, x, _cfg(epochs=3), model, resume=True, preview=False)
    other = x.copy()
    other[0, 0, 0] += 1.0  # one pixel of the same shape
    with pytest.raises(ValueError, match="other data \\(the input differs"):
        run_fit(other, y, _cfg(epochs=3), model, resume=True, preview=False)
    with pytest.raises(ValueError, match="other data \\(the target differs"):
        run_fit(x, x, None, model, resume=True, preview=False)


def test_epochs_patience_device_and_keeping_may_change_and_are_recorded(pair, model):
    x, y = pair
    cfg = _cfg(epochs=3, patience=7, device="auto", keep_state=False)
    res = run_fit(x, y, cfg, model, resume=True, preview=False)
    assert res.epochs_run == 3 and [h["epoch"] for h in res.history] == [1, 2, 3]
    train = _config(model)["train"]
    assert (train["epochs"], train["patience"], train["device"]) == (3, 7, "auto")
    assert not (model / "training-state.safetensors").exists()  # keep_state=False


def test_config_records_the_resumed_epochs_before_any_new_epoch(pair, model):
    """config.json is otherwise rewritten only with new best weights: a resumed run
    records its new limits before its first epoch (here: cancelled before it)."""
    x, y = pair
    res = run_fit(x, y, _cfg(epochs=4), model, resume=True, preview=False, cancel=lambda: True)
    assert res.stopped == "cancelled" and res.epochs_run == 2
    assert _config(model)["train"]["epochs"] == 4
    assert _config(model)["best_epoch"] == res.best_epoch  # the rest stays as it was


def test_a_folder_without_a_fingerprint_still_resumes_and_gains_one(pair, model):
    x, y = pair
    cfg = _config(model)
    saved_fp = cfg.pop("data_fingerprint")
    assert set(saved_fp) == {"method", "input", "target"}
    (model / "config.json").write_text(json.dumps(cfg))
    # an older folder is compared by what it has: the shape and the settings
    with pytest.raises(ValueError, match="lr was 0.002, now 0.003"):
        run_fit(x, y, _cfg(epochs=3, lr=3e-3), model, resume=True, preview=False)
    res = run_fit(x, y, _cfg(epochs=3), model, resume=True, preview=False)
    assert res.epochs_run == 3
    assert _config(model)["data_fingerprint"] == saved_fp


# --------------------------------------------------------------------------- dfct train
def _cli(stopped, model, *extra, inputs=("x.npy", "y.npy")):
    return main(
        [
            "train",
            "--input",
            str(stopped / inputs[0]),
            "--target",
            str(stopped / inputs[1]),
            "--out",
            str(model),
            "--resume",
            "--no-progress",
            *extra,
        ]
    )


def _error(capsys) -> str:
    err = [
        line
        for line in capsys.readouterr().err.splitlines()
        if not line.startswith("dfct train: on the CPU")
    ]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--lr", "0.003"], "--lr was 0.002, now 0.003"),
        (["--loss", "l1"], "--loss was l2+s-linear, now l1+s-linear"),
        (["--spatial", "nonlinear"], "--loss was l2+s-linear, now l2+s-nonlinear"),
        (["--directional", "nonlinear"], "--loss was l2+s-linear, now l2+d-nonlinear"),
        (["--preset", "small"], "--preset was tiny, now small"),
        (["--patch", "8"], "--patch was 16, now 8"),
        (["--seed", "2"], "--seed was 0, now 2"),
        (["--recipe", "paper"], "--recipe was stable, now paper"),
        (["--window", "0,1"], "--window was"),
        (["--no-augment"], "augmentation (--no-augment) was on, now off"),
    ],
)
def test_cli_a_changed_option_exits_2_naming_it(stopped, model, capsys, extra, words):
    before = _files(model)
    assert _cli(stopped, model, "--epochs", "3", *extra) == 2
    line = _error(capsys)
    assert line.startswith(f"dfct train: error: cannot resume {model}: ")
    assert words in line
    assert "only --epochs, --patience, --device and --tensorboard may change" in line
    assert _files(model) == before


def test_cli_swapped_data_exits_2(stopped, model, capsys):
    assert _cli(stopped, model, "--epochs", "3", inputs=("y.npy", "x.npy")) == 2
    assert "input and the target are swapped" in _error(capsys)


def test_cli_options_left_out_take_the_saved_values(stopped, model, capsys):
    """The run was trained with --lr 0.002, --patch 16, an S-weighted loss and the tiny
    preset: resuming with none of them (or with the same values) continues it."""
    assert _cli(stopped, model, "--epochs", "3", "--patience", "9") == 0, capsys.readouterr().err
    assert "3 epochs" in capsys.readouterr().out
    same = ["--lr", "0.002", "--patch", "16", "--loss", "l2+s-linear", "--preset", "tiny"]
    assert _cli(stopped, model, "--epochs", "4", *same, "--device", "cpu") == 0
    train = _config(model)["train"]
    assert (train["epochs"], train["patience"], train["device"]) == (4, 9, "cpu")
    assert (train["lr"], train["patch"], train["preset"]) == (2e-3, 16, "tiny")


def test_cli_a_data_set_of_scans_resumes_only_on_the_same_scans(tmp_path, capsys):
    """Scans of several sizes (``--pairs``): the fingerprint covers every slice."""
    rng = np.random.default_rng(3)
    root = tmp_path / "scans"
    for name, shape in (("a", (3, 32, 32)), ("b", (3, 40, 36)), ("c", (2, 32, 48))):
        (root / name).mkdir(parents=True)
        y = rng.standard_normal(shape).astype(np.float32)
        np.save(root / name / "target.npy", y)
        np.save(root / name / "input.npy", y + 0.3 * rng.standard_normal(shape).astype("f4"))
    out = tmp_path / "model"
    base = ["train", "--pairs", str(root), "--out", str(out), "--no-progress"]
    tiny = ["--preset", "tiny", "--patch", "16", "--batch-size", "4", "--device", "cpu"]
    assert main([*base, *tiny, "--epochs", "1"]) == 0, capsys.readouterr().err
    assert main([*base, "--resume", "--epochs", "2"]) == 0, capsys.readouterr().err
    assert _config(out)["train"]["epochs"] == 2
    y = np.load(root / "b" / "target.npy")
    y[..., 0] += 1.0
    np.save(root / "b" / "target.npy", y)
    capsys.readouterr()
    assert main([*base, "--resume", "--epochs", "3"]) == 2
    err = capsys.readouterr().err.splitlines()  # the data set's summary, then the error
    assert [e for e in err if "error" in e] == err[-1:]
    assert "cannot resume" in err[-1] and "other data (the target differs" in err[-1]
