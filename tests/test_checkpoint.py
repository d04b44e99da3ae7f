"""Model folders: round trips, atomic writes, clear errors, no pickle."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_dfct import checkpoint as ckpt
from napari_dfct.checkpoint import CheckpointError, load_model, save_checkpoint
from napari_dfct.model import build_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    m = build_model("tiny", zero_init=False, **kw)
    with torch.no_grad():
        for buf in m.buffers():
            if buf.is_floating_point():
                buf.add_(torch.rand_like(buf))
    return m


def _config():
    return {"preset": "tiny", "window": {"low": -1.0, "high": 3.0}, "loss": {"name": "l2"},
            "best_epoch": 4}


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip(tmp_path):
    m = _model()
    hist = [{"epoch": 1, "val_loss": 0.5, "preview": np.zeros(3)}]
    folder = save_checkpoint(tmp_path / "m", m, _config(), hist)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "history.json", "model.safetensors"]
    lm = load_model(folder)
    assert _same_weights(lm.model, m)
    assert not lm.model.training
    assert lm.config["model"]["base_channels"] == m.base_channels
    assert lm.config["best_epoch"] == 4 and "created" in lm.config
    assert lm.config["versions"]["torch"]
    assert lm.history == [{"epoch": 1, "val_loss": 0.5}]  # arrays never reach history.json
    assert (lm.window.low, lm.window.high) == (-1.0, 3.0)
    assert lm.name == "l2" and lm.path == folder
    # identical outputs
    x = torch.rand(1, 1, 20, 24)
    m.eval()
    with torch.no_grad():
        torch.testing.assert_close(lm.model(x), m(x), rtol=0, atol=0)


def test_interrupted_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    old = _model(0)
    folder = save_checkpoint(tmp_path / "m", old, _config(), [])
    new = _model(1)

    def boom(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(folder, new, {**_config(), "best_epoch": 9}, [])
    monkeypatch.undo()
    lm = load_model(folder)
    assert _same_weights(lm.model, old)
    assert lm.config["best_epoch"] == 4
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # temp files removed


def test_atomic_write_failure_mid_file_leaves_target(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    ckpt.atomic_write_json(target, {"a": 1})

    def bad_fsync(fd):
        raise OSError("power cut (simulated)")

    monkeypatch.setattr(os, "fsync", bad_fsync)
    with pytest.raises(OSError):
        ckpt.atomic_write_json(target, {"a": 2})
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope")
    folder = save_checkpoint(tmp_path / "m", _model(), _config())
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_model(folder)
    folder = save_checkpoint(tmp_path / "m2", _model(), _config())
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config"):
        load_model(folder)
    assert issubclass(CheckpointError, ValueError)


def test_corrupt_json_and_safetensors(tmp_path):
    folder = save_checkpoint(tmp_path / "m", _model(), _config(), [])
    (folder / "config.json").write_text('{"model": {"depth": 2', encoding="utf-8")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(folder)
    folder = save_checkpoint(tmp_path / "m2", _model(), _config(), [])
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(folder)
    (folder / "model.safetensors").write_bytes(b"\x80\x04not safetensors at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(folder)
    folder = save_checkpoint(tmp_path / "m3", _model(), _config(), [])
    (folder / "history.json").write_text("[{", encoding="utf-8")
    with pytest.raises(CheckpointError, match="history"):
        load_model(folder)


def test_mismatch_with_config(tmp_path):
    folder = save_checkpoint(tmp_path / "m", _model(), _config())
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["base_channels"] = 8
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_model(folder)
    cfg["model"]["base_channels"] = 4
    cfg["model"]["depth"] = 3
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="missing"):
        load_model(folder)
    cfg["model"] = {"base_channels": 4, "depth": 2, "colour": "red"}
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="cannot build"):
        load_model(folder)
    del cfg["model"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="architecture"):
        load_model(folder)


def test_training_state_roundtrip(tmp_path):
    m = _model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 3, 0.9)
    m(torch.rand(2, 1, 16, 16)).mean().backward()
    opt.step()
    sched.step()
    state = {
        "epoch": 3,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "early_stopping": {"best_val_loss": math.inf, "bad_epochs": 2},
        "rng": {"torch_cpu": torch.get_rng_state().tolist()},
        "misc": (1, 2.5, None, "x", np.arange(3)),
    }
    ckpt.save_training_state(tmp_path, state)
    back = ckpt.load_training_state(tmp_path)
    assert back["epoch"] == 3 and back["early_stopping"]["best_val_loss"] == math.inf
    assert back["misc"][:4] == (1, 2.5, None, "x")
    np.testing.assert_array_equal(back["misc"][4], np.arange(3))
    opt2 = torch.optim.Adam(_model(5).parameters(), lr=1.0)
    opt2.load_state_dict(back["optimizer"])
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for k in s1["state"]:
        for name, v in s1["state"][k].items():
            assert torch.equal(v, s2["state"][k][name])
    assert back["scheduler"] == sched.state_dict()
    # one file: the readable summary next to it is never read back
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.STATE_FILE,
                                                          ckpt.STATE_TENSORS_FILE]
    (tmp_path / ckpt.STATE_FILE).write_text("{}")
    assert ckpt.load_training_state(tmp_path)["epoch"] == 3
    # a truncated state file is a clear error
    data = (tmp_path / ckpt.STATE_TENSORS_FILE).read_bytes()
    (tmp_path / ckpt.STATE_TENSORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        ckpt.load_training_state(tmp_path)


def test_no_pickle_anywhere(tmp_path):
    folder = save_checkpoint(tmp_path / "m", _model(), _config(), [], state={"epoch": 1})
    suffixes = {p.suffix for p in Path(folder).iterdir()}
    assert suffixes <= {".json", ".safetensors"}
    assert not suffixes & {".pt", ".pth", ".pkl", ".ckpt", ".bin"}
    for module in Path(ckpt.__file__).parent.glob("*.py"):
        src = module.read_text()
        assert "torch.load(" not in src and "import pickle" not in src, module.name
