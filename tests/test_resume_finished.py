"""A resumed run with nothing left to train says so and which limit to raise; its earlier
epochs are read from the folder up to its resume state (the states are written by the
checkpoint module itself; no training runs here)."""

from __future__ import annotations

import json

import pytest
import torch

from napari_dfct import checkpoint
from napari_dfct.train import TrainConfig, resume_finished


def _folder(tmp_path, epoch: int, best: int, bad: int, history_epochs: int | None = None):
    folder = tmp_path / "l2-run"
    state = {
        "epoch": epoch,
        "model": {"w": torch.zeros(2)},
        "early_stopping": {"best_epoch": best, "best_val_loss": 0.5, "bad_epochs": bad},
    }
    checkpoint.save_training_state(folder, state)
    n = epoch if history_epochs is None else history_epochs
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 2.0 / e} for e in range(1, n + 1)]
    (folder / checkpoint.HISTORY_FILE).write_text(json.dumps(history))
    return folder


def test_the_state_summary_is_read_from_the_header(tmp_path):
    folder = _folder(tmp_path, epoch=5, best=3, bad=2)
    assert checkpoint.training_state_summary(folder) == {
        "epoch": 5,
        "best_epoch": 3,
        "bad_epochs": 2,
    }
    assert checkpoint.training_state_summary(tmp_path / "none") is None
    (folder / checkpoint.STATE_TENSORS_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    assert checkpoint.training_state_summary(folder) is None  # damaged: resuming says why


def test_history_up_to_the_resume_state(tmp_path):
    # killed after epoch 4's history but before its state: the run continues from 3
    folder = _folder(tmp_path, epoch=3, best=3, bad=0, history_epochs=4)
    assert [r["epoch"] for r in checkpoint.load_history(folder)] == [1, 2, 3, 4]
    assert [r["epoch"] for r in checkpoint.load_history(folder, until=3)] == [1, 2, 3]


@pytest.mark.parametrize(
    "epochs, patience, bad, expected",
    [
        (5, 20, 0, ("run 'l2-run' finished at epoch 5 of 5; nothing is left to train: raise "
         "epochs above 5 to continue it")),
        (4, 20, 0, ("run 'l2-run' finished at epoch 5 (epochs 4); nothing is left to train: "
         "raise epochs above 5 to continue it")),
        (10, 3, 3, ("run 'l2-run' stopped early at epoch 5: no improvement in its last 3 "
         "epochs (patience 3); nothing is left to train: raise patience above 3 to "
         "continue it")),
        (5, 3, 4, ("run 'l2-run' finished at epoch 5 of 5, with no improvement in its last 4 "
         "epochs (patience 3); nothing is left to train: raise epochs above 5 and patience "
         "above 4 to continue it")),
        (6, 20, 0, None),
        (10, 5, 4, None),
    ],
)  # fmt: skip
def test_a_finished_run_says_which_limit_to_raise(tmp_path, epochs, patience, bad, expected):
    folder = _folder(tmp_path, epoch=5, best=5 - bad, bad=bad)
    config = TrainConfig(epochs=epochs, patience=patience)
    assert resume_finished(folder, config) == expected


def test_no_state_is_not_called_finished(tmp_path):
    assert resume_finished(tmp_path, TrainConfig()) is None
