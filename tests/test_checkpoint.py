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


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    m = build_model("tiny", zero_init=False, **kw)
    with torch.no_grad():
        for buf in m.buffers():
            if buf.is_floating_point():
                buf.add_(torch.rand_like(buf))
    return m


def _config():
    return {
        "preset": "tiny",
        "window": {"low": -1.0, "high": 3.0},
        "loss": {"name": "l2"},
        "best_epoch": 4,
    }


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_roundtrip(tmp_path):
    m = _model()
    hist = [{"epoch": 1, "val_loss": 0.5, "preview": np.zeros(3)}]
    folder = save_checkpoint(tmp_path / "m", m, _config(), hist)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "history.csv", "history.json", "model.safetensors"]
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
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.STATE_FILE, ckpt.STATE_TENSORS_FILE]
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
    assert suffixes <= {".json", ".csv", ".safetensors"}
    assert not suffixes & {".pt", ".pth", ".pkl", ".ckpt", ".bin"}
    for module in Path(ckpt.__file__).parent.glob("*.py"):
        src = module.read_text()
        assert "torch.load(" not in src and "import pickle" not in src, module.name


# ------------------------------------------------------------------ crash-safe folders
def _old_two_file_state(folder, state):
    """A resume state as versions before the single file wrote it: tensors in
    training-state.safetensors, the index in training-state.json."""
    from napari_dfct.checkpoint.state import _flatten

    tensors = {}
    index = _flatten(state, tensors)
    from safetensors.torch import save

    (folder / ckpt.STATE_TENSORS_FILE).write_bytes(
        save(
            {k: v.contiguous() for k, v in tensors.items()},
            metadata={"napari_dfct": "training-state"},
        )
    )
    (folder / ckpt.STATE_FILE).write_text(
        json.dumps({"format_version": 1, "tensors": len(tensors), "state": index})
    )


def test_training_state_is_one_file_and_old_pairs_still_read(tmp_path):
    m = _model()
    state = {"epoch": 2, "model": m.state_dict(), "early_stopping": {"best_epoch": 1}}
    ckpt.save_training_state(tmp_path / "new", state)
    # the one file holds everything: without the summary it still loads
    (tmp_path / "new" / ckpt.STATE_FILE).unlink()
    assert ckpt.has_training_state(tmp_path / "new")
    assert ckpt.training_state_epoch(tmp_path / "new") == 2
    back = ckpt.load_training_state(tmp_path / "new")
    assert _same_weights_dict(back["model"], m.state_dict())
    # an older folder's pair
    (tmp_path / "old").mkdir()
    _old_two_file_state(tmp_path / "old", state)
    assert ckpt.has_training_state(tmp_path / "old")
    back = ckpt.load_training_state(tmp_path / "old")
    assert back["epoch"] == 2 and _same_weights_dict(back["model"], m.state_dict())
    # an older pair missing its index is no state
    (tmp_path / "old" / ckpt.STATE_FILE).unlink()
    assert not ckpt.has_training_state(tmp_path / "old")
    assert not ckpt.has_training_state(tmp_path / "none")
    assert ckpt.training_state_epoch(tmp_path / "none") is None


def _same_weights_dict(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_first_save_appears_in_one_rename(tmp_path, monkeypatch):
    """Until the rename the folder does not exist; a failed rename leaves nothing."""
    seen = []
    real_rename = os.rename

    def watch(src, dst):
        seen.append((Path(src).name, Path(dst).name, sorted(p.name for p in Path(src).iterdir())))
        raise OSError("killed here (simulated)")

    monkeypatch.setattr(os, "rename", watch)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "m", _model(), _config(), [], state={"epoch": 1})
    monkeypatch.setattr(os, "rename", real_rename)
    src, dst, content = seen[0]
    assert src.startswith(".m.partial-") and dst == "m"
    assert content == sorted(
        [
            "model.safetensors",
            "config.json",
            "history.json",
            "history.csv",
            ckpt.STATE_TENSORS_FILE,
            ckpt.STATE_FILE,
        ]
    )
    assert list(tmp_path.iterdir()) == []  # no folder, no hidden leftovers
    save_checkpoint(tmp_path / "m", _model(), _config(), [])
    assert [p.name for p in tmp_path.iterdir()] == ["m"]
    assert ckpt.weights_epoch(tmp_path / "m") == 4  # the config's best epoch


def test_check_new_run_dir(tmp_path):
    check = ckpt.check_new_run_dir
    assert check(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    check(tmp_path / "empty")
    ckpt.save_training_state(tmp_path / "stale", {"epoch": 1})  # never saved a model
    check(tmp_path / "stale")
    save_checkpoint(tmp_path / "model", _model(), _config())
    with pytest.raises(CheckpointError, match="already holds a model"):
        check(tmp_path / "model")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(CheckpointError, match="not empty.*'notes.txt'"):
        check(tmp_path / "mine")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        check(tmp_path / "file")
    with pytest.raises(CheckpointError, match="is a file, not a folder"):
        check(tmp_path / "file" / "below")
    with pytest.raises(ValueError, match="already holds a model"):
        ckpt.new_run_dir(tmp_path, "model", "l2")


@pytest.mark.parametrize("before", ["empty", "stale", "link"])
def test_new_run_replaces_an_empty_or_stale_folder_whole(tmp_path, before):
    folder = tmp_path / "m"
    if before == "empty":
        folder.mkdir()
    elif before == "link":  # a link to an empty folder elsewhere: the files go there
        (tmp_path / "elsewhere").mkdir()
        folder.symlink_to(tmp_path / "elsewhere")
        ckpt.check_new_run_dir(folder)
    else:
        ckpt.save_training_state(folder, {"epoch": 7})
        (folder / "history.json").write_text("[]")
    m = _model()
    ckpt.save_run(
        folder,
        {**_config(), "model": {"base_channels": m.base_channels, "depth": 2}},
        [{"epoch": 1}],
        {"epoch": 1},
        weights=m.state_dict(),
        new=True,
    )
    assert ckpt.training_state_epoch(folder) == 1
    assert ckpt.load_history(folder) == [{"epoch": 1}]
    assert _same_weights(load_model(folder).model, m)
    expected = ["elsewhere", "m"] if before == "link" else ["m"]
    assert sorted(p.name for p in tmp_path.iterdir()) == expected
    assert folder.is_symlink() == (before == "link")


def test_clean_stale_removes_only_what_dead_processes_left(tmp_path, monkeypatch):
    import subprocess

    from napari_dfct.checkpoint.save import _sibling

    folder = save_checkpoint(tmp_path / "m", _model(), _config())
    gone = subprocess.Popen(["true"])  # noqa: S607 - a process that has ended
    gone.wait()
    monkeypatch.setattr(os, "getpid", lambda: gone.pid)
    dead = _sibling(folder, "partial")
    monkeypatch.undo()
    live = _sibling(folder, "partial")  # this process: still writing
    for d in (dead, live):
        d.mkdir()
    (folder / ".history.json.0123456789ab.tmp").write_text("half")
    (tmp_path / ".other").mkdir()
    (folder / "notes.txt").write_text("not ours: kept")
    removed = {p.name for p in ckpt.clean_stale(folder)}
    assert removed == {dead.name, ".history.json.0123456789ab.tmp"}
    assert live.is_dir() and (tmp_path / ".other").is_dir()
    assert (folder / "notes.txt").is_file() and load_model(folder)


# ------------------------------------------------------------------ malformed files
@pytest.mark.parametrize(
    "arch, words",
    [
        ({"base_channels": 4, "depth": 100}, "depth must be in 1..8, got 100"),
        ({"base_channels": 4096, "depth": 2}, "base_channels must be in 1..256, got 4096"),
        ({"base_channels": 256, "depth": 8}, "M parameters, more than the 200 M accepted"),
        ({"base_channels": 4, "depth": 0}, "depth must be in 1..8, got 0"),
        ({"base_channels": 4, "depth": "2"}, "depth must be an integer, got '2'"),
        ({"base_channels": 4.5, "depth": 2}, "base_channels must be an integer"),
        ({"base_channels": 4, "depth": 2, "in_channels": 100000}, "in_channels must be in"),
        ({"base_channels": 4, "depth": 2, "out_channels": 2}, "in_channels == out_channels"),
        ({"base_channels": 4, "depth": 2, "bilinear": "yes"}, "bilinear must be true or false"),
    ],
)
def test_a_model_config_is_checked_before_anything_is_built(tmp_path, monkeypatch, arch, words):
    """A config.json describing an absurd network is one line, and no layer is made."""
    from napari_dfct import model as model_mod

    folder = save_checkpoint(tmp_path / "m", _model(), _config())
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"] = arch
    (folder / "config.json").write_text(json.dumps(cfg))
    built = []
    monkeypatch.setattr(
        model_mod.DoubleConv, "__init__", lambda self, *a: built.append(a) or 1 / 0
    )
    with pytest.raises(CheckpointError) as info:
        load_model(folder)
    msg = str(info.value)
    assert "\n" not in msg and str(folder / "config.json") in msg and words in msg
    assert built == []


def test_a_huge_model_config_is_one_line_in_predict(tmp_path, capsys):
    from napari_dfct.cli import main

    folder = save_checkpoint(tmp_path / "m", _model(), _config())
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["depth"] = 100
    (folder / "config.json").write_text(json.dumps(cfg))
    np.save(tmp_path / "x.npy", np.zeros((2, 16, 16), np.float32))
    args = ["predict", "--model", str(folder), "--input", str(tmp_path / "x.npy")]
    assert main([*args, "--out", str(tmp_path / "o.npy"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "depth must be in 1..8, got 100" in err[0]


def _state_with_index(folder, index: str, tensors=None):
    """A training-state file whose metadata index is ``index`` (a JSON text)."""
    from safetensors.torch import save

    tensors = tensors or {"t0": torch.zeros(2)}
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"napari_dfct": "training-state", "format_version": "2", "index": index}
    (folder / ckpt.STATE_TENSORS_FILE).write_bytes(save(tensors, metadata=meta))


def _doc(state, tensors=1) -> str:
    return json.dumps({"format_version": 2, "tensors": tensors, "state": state})


@pytest.mark.parametrize(
    "index, words",
    [
        (
            '{"format_version": 2, "tensors": 1, "state": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "nested too deeply",
        ),
        (
            _doc({"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
            "nested deeper than 32",
        ),
        (_doc({"x": {"__ndarray__": [1, 2], "dtype": "object"}}), "array of dtype object"),
        (_doc({"x": {"__ndarray__": [1, 2], "dtype": "<U3"}}), "array of dtype <U3"),
        (_doc({"x": {"__ndarray__": [1, 2], "dtype": "no-such-type"}}), "unknown dtype"),
        (
            _doc({"x": {"__ndarray__": [[1, 2], [3]], "dtype": "float32"}}),
            "malformed float32 array",
        ),
        (_doc({"x": {"__ndarray__": "abc", "dtype": "int64"}}), "malformed int64 array"),
        (_doc({"x": {"__tensor__": ["t0"]}}), "missing tensor"),
        (_doc({"x": {"__tensor__": "t9"}}), "missing tensor 't9'"),
        (_doc({"x": {"__items__": [[{"a": 1}, 2]]}}), "mapping key of type dict"),
        (_doc({"x": {"__items__": [[1]]}}), "malformed mapping"),
        (_doc({"x": {"__items__": {"a": 1}}}), "malformed mapping"),
        (_doc({"x": {"__tuple__": 5}}), "malformed tuple"),
        (_doc({"x": {"__float__": [1]}}), "malformed number"),
        (_doc({"epoch": 1}, tensors=[1]), "inconsistent"),
        ("[1, 2]", "malformed"),
        ("{not json", "corrupt"),
    ],
)
def test_a_malformed_training_state_is_one_line(tmp_path, index, words):
    folder = tmp_path / "m"
    _state_with_index(folder, index)
    with pytest.raises(CheckpointError) as info:
        ckpt.load_training_state(folder)
    msg = str(info.value)
    assert "\n" not in msg and words in msg, msg
    assert str(folder / ckpt.STATE_TENSORS_FILE) in msg or str(folder) in msg
    assert ckpt.training_state_epoch(folder) is None


def test_a_real_state_is_within_the_depth_limit(tmp_path):
    """The limits refuse nothing a training run writes: a full state round-trips."""
    m = _model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.rand(2, 1, 16, 16)).mean().backward()
    opt.step()
    state = {"epoch": 1, "model": m.state_dict(), "optimizer": opt.state_dict()}
    state["rng"] = {"numpy": {"keys": np.arange(624, dtype=np.uint32)}}
    ckpt.save_training_state(tmp_path, state)
    back = ckpt.load_training_state(tmp_path)
    assert back["optimizer"]["param_groups"] == opt.state_dict()["param_groups"]
    assert back["rng"]["numpy"]["keys"].dtype == np.uint32


def test_a_deeply_nested_config_is_one_line(tmp_path):
    folder = save_checkpoint(tmp_path / "m", _model(), _config())
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_model(folder)
