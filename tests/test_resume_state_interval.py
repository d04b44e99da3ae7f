"""The resume state goes to disk after the first and the last epoch, at a stop, at an
error, and otherwise every ``STATE_INTERVAL`` seconds; between writes the last finished
epoch's state waits in memory. Whichever state a run stops with, resuming ends exactly
where the uninterrupted run ends."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_dfct import checkpoint as ckpt
from napari_dfct.losses import LossConfig
from napari_dfct.train import TrainConfig, _state, run_fit

EPOCHS = 4


def _pair():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    target = np.stack([np.sin(5 * xx + k) * np.cos(3 * yy - k) for k in range(4)])
    noisy = target + 0.3 * np.sin(35 * (xx + 0.2 * yy)) + 0.1 * rng.standard_normal(target.shape)
    return noisy.astype(np.float32), target.astype(np.float32)


def _config():
    return TrainConfig(
        loss=LossConfig(),
        preset="tiny",
        epochs=EPOCHS,
        patience=EPOCHS,
        batch_size=4,
        patch=24,
        patches_per_slice=2,
        lr=0.03,
        seed=0,
        device="cpu",
        keep_state=True,
        window={"low": -1.5, "high": 1.5},
    )


def _train(out, interval, monkeypatch, **kwargs):
    """Run to the end, recording the resume state's epoch on disk after every epoch."""
    monkeypatch.setattr(_state, "STATE_INTERVAL", interval)
    x, y = _pair()
    on_disk = []
    res = run_fit(
        x,
        y,
        _config(),
        out,
        preview=False,
        callback=lambda ev: on_disk.append(ckpt.training_state_epoch(out)),
        **kwargs,
    )
    return res, on_disk


def _record(history):
    return [(h["epoch"], h["train_loss"], h["val_loss"], h["best_epoch"]) for h in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        out = tmp_path_factory.mktemp("ref") / "m"
        res, on_disk = _train(out, 0.0, mp)
    return {"result": res, "on_disk": on_disk, "state": ckpt.load_training_state(out)}


def _assert_same_end(ref, res, out):
    assert _record(res.history) == _record(ref["result"].history)
    state = ckpt.load_training_state(out)
    assert state["epoch"] == EPOCHS
    for k, v in ref["state"]["model"].items():
        assert torch.equal(state["model"][k], v), k


def test_interval_zero_writes_every_epoch(uninterrupted):
    assert uninterrupted["on_disk"] == [1, 2, 3, 4]


def test_a_long_interval_writes_the_first_and_the_last_epoch_only(
    tmp_path, monkeypatch, uninterrupted
):
    res, on_disk = _train(tmp_path / "m", 1e9, monkeypatch)
    assert on_disk == [1, 1, 1, EPOCHS]
    _assert_same_end(uninterrupted, res, tmp_path / "m")


def test_a_stop_writes_the_last_finished_epochs_state(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "m"
    stop = threading.Event()
    monkeypatch.setattr(_state, "STATE_INTERVAL", 1e9)
    x, y = _pair()

    def on_epoch(ev):
        if ev.epoch == 2:
            stop.set()  # seen within the first batch of epoch 3

    res = run_fit(x, y, _config(), out, preview=False, cancel=stop, callback=on_epoch)
    assert res.stopped == "cancelled" and res.epochs_run == 2
    assert ckpt.training_state_epoch(out) == 2  # not epoch 1's, the last one on disk before
    resumed = run_fit(x, y, None, out, resume=True, preview=False)
    _assert_same_end(uninterrupted, resumed, out)


def test_an_error_writes_the_last_finished_epochs_state(tmp_path, monkeypatch, uninterrupted):
    out = tmp_path / "m"
    monkeypatch.setattr(_state, "STATE_INTERVAL", 1e9)
    x, y = _pair()

    def on_epoch(ev):
        if ev.epoch == 3:
            raise RuntimeError("the consumer failed")

    with pytest.raises(RuntimeError, match="consumer failed"):
        run_fit(x, y, _config(), out, preview=False, callback=on_epoch)
    assert ckpt.training_state_epoch(out) == 3
    resumed = run_fit(x, y, None, out, resume=True, preview=False)
    _assert_same_end(uninterrupted, resumed, out)


def test_loaded_moments_take_their_parameters_layout():
    """A loaded optimiser state is contiguous; a channels-last model's moments must follow
    the parameters' strides, or the fused step pairs the wrong elements."""
    from napari_dfct.model import build_model
    from napari_dfct.train import build_optimizer

    model = build_model("tiny").to(memory_format=torch.channels_last)
    opt = build_optimizer(model, _config())
    x = torch.randn(2, 1, 24, 24).contiguous(memory_format=torch.channels_last)
    model(x).square().mean().backward()
    opt.step()
    saved = opt.state_dict()
    for per_param in saved["state"].values():
        for key, value in per_param.items():
            per_param[key] = value.contiguous()  # as a state read back from disk
    fresh = build_optimizer(model, _config())
    fresh.load_state_dict(saved)
    conv = next(p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1)
    assert fresh.state[conv]["exp_avg"].stride() != conv.stride()
    _state.match_param_layouts(fresh)
    for param, per_param in fresh.state.items():
        assert per_param["exp_avg"].stride() == param.stride()
        assert per_param["exp_avg_sq"].stride() == param.stride()
    assert torch.equal(fresh.state[conv]["exp_avg"], opt.state[conv]["exp_avg"])
