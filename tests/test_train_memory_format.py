"""Training on the CPU runs in channels-last memory format, records it in ``config.json``,
and a resumed run goes on in the format it was trained in: a folder saved before the
format was recorded (trained in the default format) continues bit for bit.
"""

from __future__ import annotations

import json

import pytest
import torch

from napari_dfct.checkpoint import load_training_state
from napari_dfct.losses import LossConfig
from napari_dfct.train import TrainConfig, loop, run_fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(**kw) -> TrainConfig:
    base = dict(
        loss=LossConfig(spatial="linear"),
        preset="tiny",
        base_channels=8,
        epochs=2,
        patience=20,
        batch_size=4,
        patch=16,
        lr=2e-3,
        device="cpu",
        seed=0,
    )
    return TrainConfig(**{**base, **kw})


def _config(folder) -> dict:
    return json.loads((folder / "config.json").read_text())


def _losses(result) -> list[tuple[float, float]]:
    return [(h["train_loss"], h["val_loss"]) for h in result.history]


def _default_format(monkeypatch) -> None:
    """Train as before the memory format was switched on the CPU."""
    monkeypatch.setattr(loop, "prefers_channels_last", lambda device: device.type == "cuda")


def test_a_cpu_run_trains_channels_last_and_records_it(pair, tmp_path):
    x, y = pair
    res = run_fit(x, y, _cfg(epochs=1), tmp_path / "m", preview=False)
    assert _config(tmp_path / "m")["memory_format"] == "channels_last"
    weights = [p for p in res.model.parameters() if p.ndim == 4]
    assert all(p.is_contiguous() for p in weights)  # the model handed back: default format


def test_an_older_folder_resumes_in_its_own_format_bit_for_bit(pair, tmp_path, monkeypatch):
    x, y = pair
    with monkeypatch.context() as patch:
        _default_format(patch)
        before = run_fit(x, y, _cfg(), tmp_path / "before", preview=False)
        run_fit(x, y, _cfg(epochs=1), tmp_path / "old", preview=False)
    assert _config(tmp_path / "before")["memory_format"] == "contiguous"
    now = run_fit(x, y, _cfg(), tmp_path / "now", preview=False)
    # the two formats round differently: otherwise this test would prove nothing
    assert _losses(now) != _losses(before)

    cfg = _config(tmp_path / "old")
    del cfg["memory_format"]  # as saved before the format was recorded
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    resumed = run_fit(x, y, _cfg(), tmp_path / "old", resume=True, preview=False)
    assert _losses(resumed) == _losses(before)
    wa = load_training_state(tmp_path / "before")["model"]
    wb = load_training_state(tmp_path / "old")["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert _config(tmp_path / "old")["memory_format"] == "contiguous"
