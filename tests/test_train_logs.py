"""Training logs: ``history.csv`` beside ``history.json``, TensorBoard event files."""

from __future__ import annotations

import csv
import json
import sys

import numpy as np
import pytest

from napari_dfct.checkpoint import history_csv
from napari_dfct.cli import main
from napari_dfct.train import TrainConfig, run_fit


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    target = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy - k) for k in range(5)])
    noisy = target + 0.2 * np.sin(40 * xx) + 0.1 * rng.standard_normal(target.shape)
    return noisy.astype(np.float32), target.astype(np.float32)


def _cfg(**kw):
    base = dict(
        loss="l2",
        preset="tiny",
        epochs=2,
        batch_size=4,
        patch=16,
        patches_per_slice=1,
        device="cpu",
        seed=0,
        bn_recalibrate=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _same_numbers(rows, hist):
    assert len(rows) == len(hist)
    for row, rec in zip(rows, hist):
        assert list(row) == list(rec)  # the same columns, in the same order
        for key, value in rec.items():
            if value is None:
                assert row[key] == ""
            elif isinstance(value, bool):
                assert row[key] == ("true" if value else "false")
            elif isinstance(value, (int, float)):
                assert float(row[key]) == value  # exactly: the same float
            else:
                assert row[key] == str(value)


def test_history_csv_matches_history_json_after_every_epoch(pair, tmp_path):
    x, y = pair
    out = tmp_path / "m"
    seen = []

    def check(event):  # written as it goes: complete after every epoch
        rows = _read_csv(out / "history.csv")
        hist = json.loads((out / "history.json").read_text())
        seen.append(len(rows))
        _same_numbers(rows, hist)

    run_fit(x, y, _cfg(), out, callback=check)
    assert seen == [1, 2]
    assert {"epoch", "train_loss", "val_loss", "lr"} <= set(_read_csv(out / "history.csv")[0])


def test_history_csv_cells():
    text = history_csv(
        [
            {"epoch": 1, "val_loss": float("nan"), "improved": True, "lr": 0.1},
            {"epoch": 2, "val_loss": 0.25, "improved": False, "extra": 3},
        ]
    )
    assert text.splitlines() == [
        "epoch,val_loss,improved,lr,extra",
        "1,,true,0.1,",
        "2,0.25,false,,3",
    ]


def test_tensorboard_holds_losses_lr_and_previews(pair, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y = pair
    out = tmp_path / "m"
    run_fit(x, y, _cfg(tensorboard=True), out, preview=False)
    log_dir = out / "tensorboard"
    assert any(p.name.startswith("events.out.tfevents") for p in log_dir.iterdir())
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    hist = json.loads((out / "history.json").read_text())
    for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("lr", "lr")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2]
        np.testing.assert_allclose([e.value for e in events], [h[key] for h in hist], rtol=1e-6)
    images = [t for t in tags["images"] if t.startswith("preview")]
    assert len(images) == 1 and [e.step for e in acc.Images(images[0])] == [1, 2]
    # the model folder still loads and a new run can tell it holds a model
    from napari_dfct.checkpoint import load_model

    assert load_model(out).config["train"]["tensorboard"] is True


def test_cli_tensorboard_flag(pair, tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from napari_dfct.io import write_volume

    x, y = pair
    write_volume(tmp_path / "in.tif", x)
    write_volume(tmp_path / "gt.tif", y)
    rc = main(
        [
            "train",
            "--input",
            str(tmp_path / "in.tif"),
            "--target",
            str(tmp_path / "gt.tif"),
            "--out",
            str(tmp_path / "m"),
            "--epochs",
            "1",
            "--preset",
            "tiny",
            "--patch",
            "16",
            "--batch-size",
            "4",
            "--no-progress",
            "--device",
            "cpu",
            "--tensorboard",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert any((tmp_path / "m" / "tensorboard").iterdir())
    assert (tmp_path / "m" / "history.csv").is_file()


def test_missing_tensorboard_is_one_clear_line(pair, tmp_path, capsys, monkeypatch):
    from napari_dfct.io import write_volume

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    x, y = pair
    write_volume(tmp_path / "in.tif", x)
    write_volume(tmp_path / "gt.tif", y)
    rc = main(
        [
            "train",
            "--input",
            str(tmp_path / "in.tif"),
            "--target",
            str(tmp_path / "gt.tif"),
            "--out",
            str(tmp_path / "m"),
            "--epochs",
            "1",
            "--preset",
            "tiny",
            "--no-progress",
            "--tensorboard",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "napari-dfct[tensorboard]" in err[0]
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="tensorboard"):
        run_fit(x, y, _cfg(tensorboard=True), tmp_path / "m2")
