"""A separate validation set (``fit(val_input=, val_target=)``, ``dfct train --val-data``,
``dfct grid --val``): every training slice trains and the given slices validate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_dfct.train import TrainConfig, run_fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(preset="tiny", epochs=2, patience=2, batch_size=2, patch=16, device="cpu")


def _pair(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, 32, 32)).astype(np.float32)
    return (y + 0.3 * rng.standard_normal(y.shape)).astype(np.float32), y


def test_every_training_slice_trains_and_the_given_slices_validate(tmp_path):
    x, y = _pair(3, 0)
    vx, vy = _pair(2, 1)
    res = run_fit(
        x,
        y,
        TrainConfig(**TINY),
        out_dir=tmp_path / "m",
        preview=False,
        val_input=vx,
        val_target=vy,
    )
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["split"] == {"train": [0, 1, 2], "val": [3, 4]}
    assert cfg["data_shape"] == [5, 32, 32]
    # the validation loss is the plain loss of the model on the given slices, in the window
    from napari_dfct.infer import predict

    w = res.window
    pred = predict(res.model, vx, window=w, device="cpu")

    def norm(v):
        return (np.clip(v, w.low, w.high) - w.low) / (w.high - w.low)

    mse = float(np.mean((norm(pred) - norm(vy)) ** 2))
    assert res.best_val_loss == pytest.approx(mse, rel=1e-3)


@pytest.mark.parametrize(
    "val, message",
    [
        ((np.zeros((2, 16, 16), np.float32),) * 2, "same size"),
        ((np.zeros((2, 32, 32), np.float32), np.zeros((3, 32, 32), np.float32)), "one shape"),
        ((np.full((2, 32, 32), np.nan, np.float32),) * 2, "NaN"),
        ((np.zeros((2, 32, 32), np.float32), None), "both"),
    ],
)
def test_a_bad_validation_set_is_one_clear_error(val, message):
    x, y = _pair(3, 0)
    with pytest.raises(ValueError, match=message):
        run_fit(x, y, TrainConfig(**TINY), preview=False, val_input=val[0], val_target=val[1])


def test_cli_train_val_data(tmp_path, small_sim, capsys):
    from napari_dfct.cli import main
    from napari_dfct.simulate import save_simulation

    save_simulation(small_sim, tmp_path / "train")
    save_simulation(small_sim, tmp_path / "val")
    argv = [
        "train",
        "--data",
        str(tmp_path / "train"),
        "--val-data",
        str(tmp_path / "val"),
        "--out",
        str(tmp_path / "m"),
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
        "--no-progress",
    ]
    assert main(argv) == 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["split"] == {"train": [0, 1, 2, 3], "val": [4, 5, 6, 7]}
    capsys.readouterr()
    bad = [a if a != str(tmp_path / "val") else str(tmp_path / "nowhere") for a in argv]
    bad[bad.index("--out") + 1] = str(tmp_path / "m2")
    assert main(bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--val-data folder not found" in err[0]


def test_cli_grid_val(tmp_path, small_sim, capsys):
    from napari_dfct.cli import main
    from napari_dfct.simulate import save_simulation, simulate_dfct

    save_simulation(small_sim, tmp_path / "train")
    save_simulation(
        simulate_dfct(n_slices=2, size=64, n_views=96, rotations=4, seed=7), tmp_path / "val"
    )
    save_simulation(
        simulate_dfct(n_slices=2, size=64, n_views=96, rotations=4, seed=1001), tmp_path / "test"
    )
    out = tmp_path / "grid"
    argv = [
        "grid",
        str(out),
        "--train",
        str(tmp_path / "train"),
        "--val",
        str(tmp_path / "val"),
        "--test",
        str(tmp_path / "test"),
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
        "--no-report",
    ]
    assert main(argv) == 0
    cfg = json.loads((out / "runs" / "l2" / "seed-0" / "model" / "config.json").read_text())
    assert cfg["split"] == {"train": [0, 1, 2, 3], "val": [4, 5]}
    grid = json.loads((out / "grid.json").read_text())
    assert {"train_val_input", "train_val_target"} <= set(grid["data"])
    capsys.readouterr()
    assert (
        main(
            [
                "grid",
                str(tmp_path / "g2"),
                "--val",
                str(tmp_path / "val"),
                "--test",
                str(tmp_path / "test"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "--val goes with --train" in capsys.readouterr().err
