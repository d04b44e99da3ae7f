"""The disk cache of ONNX exports: a second process loads the export instead of exporting
(a real process, its log), damaged or swapped files are exported again and never give a
wrong result, other weights get another key, the folder follows ``NAPARI_DFCT_CACHE_DIR``,
its size is bounded, ``backend="auto"`` takes a cached export for one slice, and
``dfct train`` leaves the export of its model in the cache.

The file-level tests need nothing but the package; those that export skip without onnx
and onnxruntime.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import time
import weakref

import numpy as np
import pytest
import torch

from napari_dfct import _onnx, _onnx_cache, infer
from napari_dfct._files import user_cache_dir
from napari_dfct.checkpoint import load_model, save_checkpoint
from napari_dfct.infer import predict
from napari_dfct.model import build_model

#: Largest difference from eager fp32 in the default memory format, in window units.
TOLERANCE = 1e-4
CPU = torch.device("cpu")

needs_ort = pytest.mark.skipif(
    _onnx.missing() is not None, reason="needs the extra napari-dfct[onnx]"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache folder of the test, and fresh in-memory sessions and notes."""
    monkeypatch.setenv("NAPARI_DFCT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_onnx, "_NOTED", set())
    monkeypatch.setattr(_onnx, "_CACHE", weakref.WeakKeyDictionary())
    monkeypatch.setattr(_onnx, "_FAILED", weakref.WeakKeyDictionary())
    return tmp_path / "cache" / "onnx"


def _forget_sessions(monkeypatch) -> None:
    """As in a new process: no session in memory (the disk cache stays)."""
    monkeypatch.setattr(_onnx, "_CACHE", weakref.WeakKeyDictionary())
    monkeypatch.setattr(_onnx, "_FAILED", weakref.WeakKeyDictionary())


@pytest.fixture(scope="module")
def loaded(trained_model):
    return load_model(trained_model, device="cpu")


def _reference(loaded, image: np.ndarray) -> np.ndarray:
    """Eager fp32 in the default (NCHW) format, computed here without :mod:`infer`."""
    win, net = loaded.window, loaded.model.eval()
    x = torch.from_numpy(np.ascontiguousarray(win.normalize(image), dtype=np.float32))
    with torch.no_grad():
        y = net(x.reshape(-1, 1, *x.shape[-2:])).numpy()[:, 0]
    return win.denormalize(y).reshape(image.shape)


def _window_units(a: np.ndarray, b: np.ndarray, loaded) -> float:
    return float(np.abs(a - b).max()) / loaded.window.width


def _tiny(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("tiny", zero_init=False).eval()


def _records(folder) -> list:
    return sorted(folder.glob("*.json"))


# --- where, and which key ---------------------------------------------------------------


def test_the_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_DFCT_CACHE_DIR", str(tmp_path / "mine"))
    assert _onnx_cache.folder() == tmp_path / "mine" / "onnx"
    monkeypatch.delenv("NAPARI_DFCT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _onnx_cache.folder() == tmp_path / "xdg" / "napari-dfct" / "onnx"
    # the sample data's cache is the same folder: one home for both
    from napari_dfct._sample_data import cache_dir

    assert cache_dir() == user_cache_dir() == tmp_path / "xdg" / "napari-dfct"


def test_other_weights_get_another_key_the_same_weights_the_same(tmp_path):
    a, b = _tiny(0), _tiny(1)
    key = _onnx._disk_key
    assert key(a, 1, 4) != key(b, 1, 4)
    assert key(a, 1, 4) == key(copy.deepcopy(a), 1, 4)  # content, not identity
    assert key(a, 1, 4) != key(a, 3, 4)  # another input
    # a model saved and loaded back (another process's view of it) has the same key
    folder = save_checkpoint(tmp_path / "m", a, {"name": "a"})
    assert key(load_model(folder).model.eval(), 1, 4) == key(a, 1, 4)
    # one changed weight changes it, in the same module object too
    before = key(a, 1, 4)
    with torch.no_grad():
        a.inc[0].weight[0, 0, 0, 0] += 1e-3
    assert key(a, 1, 4) != before
    # a model in training mode traces another graph (BatchNorm's batch statistics)
    assert key(b.train(), 1, 4) != key(b.eval(), 1, 4)


# --- the files: written whole, verified, bounded ----------------------------------------


def test_a_record_names_its_graph_by_content_and_a_changed_graph_is_damaged(cache):
    k = "0" * 32
    graph = _onnx_cache.write(k, b"graph bytes", {"check": {"max_diff": 0.0}})
    data, rec, path = _onnx_cache.read(k)
    assert data == b"graph bytes" and path == graph and rec["check"] == {"max_diff": 0.0}
    assert rec["bytes"] == 11 and graph.name.startswith(k + "-")
    assert _onnx_cache.lookup(k)
    graph.write_bytes(b"graph bytez")  # same size, other bytes
    with pytest.raises(_onnx_cache.CacheDamaged, match="not the file its record describes"):
        _onnx_cache.read(k)
    graph.unlink()
    assert not _onnx_cache.lookup(k)
    with pytest.raises(_onnx_cache.CacheDamaged, match="cannot be read"):
        _onnx_cache.read(k)
    (cache / f"{k}.json").write_text("{not json")
    with pytest.raises(_onnx_cache.CacheDamaged, match="record cannot be read"):
        _onnx_cache.read(k)
    _onnx_cache.discard(k)
    assert _onnx_cache.read(k) is None and list(cache.iterdir()) == []
    with pytest.raises(ValueError, match="not a cache key"):
        _onnx_cache.read("../../etc/passwd")


def test_the_folder_is_bounded_least_recently_used_first(cache, monkeypatch):
    keys = [f"{i:032x}" for i in range(4)]
    for i, k in enumerate(keys):
        _onnx_cache.write(k, bytes(100), {})
        os.utime(cache / f"{k}.json", (1000.0 + i, 1000.0 + i))
    _onnx_cache.read(keys[0])  # used now: the most recent
    stale = cache / ("f" * 32 + "-abc.onnx")  # a graph no record names, an hour old
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * 3600,) * 2)
    fresh = cache / ("e" * 32 + "-abc.onnx")  # perhaps a writer between its two files
    fresh.write_bytes(b"x")
    removed = _onnx_cache.prune(limit=250)
    assert stale in removed and fresh.exists()
    assert [_onnx_cache.lookup(k) for k in keys] == [True, False, False, True]
    # the newest export stays even when it alone is over the bound
    _onnx_cache.prune(limit=10)
    assert [_onnx_cache.lookup(k) for k in keys] == [True, False, False, False]


# --- the sessions ------------------------------------------------------------------------


@needs_ort
def test_an_export_is_reused_from_disk_and_auto_takes_it_for_one_slice(
    loaded, small_sim, cache, monkeypatch, caplog
):
    net, image = loaded.model, small_sim.input[0]
    assert infer._choose_backend("auto", CPU, 1, net) == "eager"  # nothing cached yet
    with caplog.at_level(logging.INFO, logger="napari_dfct.infer"):
        first = predict(net, image, window=loaded.window, device="cpu", backend="onnx")
    assert any("exported the network" in r.getMessage() for r in caplog.records)
    [record] = _records(cache)
    rec = json.loads(record.read_text())
    assert rec["check"]["max_diff"] <= rec["check"]["tolerance"] == _onnx.CHECK_TOLERANCE

    _forget_sessions(monkeypatch)  # as in a new process
    assert not _onnx.cached(net) and _onnx.ready(net)
    assert infer._choose_backend("auto", CPU, 1, net) == "onnx"
    calls = []
    monkeypatch.setattr(_onnx, "_export", lambda *a: calls.append(1))  # must not run
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="napari_dfct.infer"):
        again = predict(net, image, window=loaded.window, device="cpu")  # auto, one slice
    assert calls == []
    assert any("from the disk cache" in r.getMessage() for r in caplog.records)
    assert _onnx.cached(net)
    np.testing.assert_array_equal(again, first)
    assert _window_units(again, _reference(loaded, image), loaded) <= TOLERANCE


@needs_ort
@pytest.mark.slow
def test_a_second_process_loads_the_export_and_predicts_the_same(
    trained_model, loaded, small_sim, cache, tmp_path
):
    """A real ``dfct predict`` of one slice, in its own process, after the export was
    cached here: it loads the export (its log says so) and predicts what torch does."""
    assert _onnx.warm(loaded.model)
    assert len(_records(cache)) == 1
    src, out = tmp_path / "slice.npy", tmp_path / "pred.npy"
    np.save(src, small_sim.input[1])
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, format='LOG %(message)s')\n"
        "from napari_dfct.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["predict", "--model", str(trained_model), "--input", str(src), "--out", str(out)]
    res = subprocess.run(
        [sys.executable, "-c", code, *argv, "--no-progress"],
        capture_output=True,
        text=True,
        env={**os.environ, "NAPARI_DFCT_CACHE_DIR": str(cache.parent)},
    )
    assert res.returncode == 0, res.stderr
    assert "from the disk cache" in res.stderr, res.stderr
    assert "exported the network" not in res.stderr
    got = np.load(out)
    assert _window_units(got, _reference(loaded, small_sim.input[1]), loaded) <= TOLERANCE


@needs_ort
def test_a_corrupt_cached_export_is_exported_again(loaded, small_sim, cache, monkeypatch, caplog):
    net, image = loaded.model, small_sim.input[:2]
    ref = _reference(loaded, image)
    assert _onnx.warm(net)
    [record] = _records(cache)
    graph = cache / json.loads(record.read_text())["file"]
    data = bytearray(graph.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # damaged in the middle
    graph.write_bytes(bytes(data))
    _forget_sessions(monkeypatch)
    with caplog.at_level(logging.INFO, logger="napari_dfct.infer"):
        out = predict(net, image, window=loaded.window, device="cpu", backend="onnx")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "is damaged" in warnings[0], warnings
    assert "exporting the network again" in warnings[0]
    assert _window_units(out, ref, loaded) <= TOLERANCE
    # the cache holds a good export again
    [record] = _records(cache)
    data, _, _ = _onnx_cache.read(record.stem)
    assert len(list(cache.glob("*.onnx"))) == 1


@needs_ort
def test_another_networks_export_under_this_key_is_caught_by_the_check(
    loaded, small_sim, cache, monkeypatch, caplog
):
    """A well-formed export of other weights filed under this model's key (its record
    consistent with it): ONNX Runtime loads it, the check against torch refuses it."""
    net = loaded.model
    other = copy.deepcopy(net)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    assert _onnx.warm(other)
    [record] = _records(cache)
    rec = json.loads(record.read_text())
    mine = _onnx._disk_key(net, 1, infer._multiple(net))
    data = (cache / rec["file"]).read_bytes()
    _onnx_cache.write(mine, data, {})
    _forget_sessions(monkeypatch)
    image = small_sim.input[:2]
    with caplog.at_level(logging.WARNING, logger="napari_dfct.infer"):
        out = predict(net, image, window=loaded.window, device="cpu", backend="onnx")
    [line] = [r.getMessage() for r in caplog.records]
    assert "is damaged: it differs from torch by" in line
    assert _window_units(out, _reference(loaded, image), loaded) <= TOLERANCE


@needs_ort
def test_an_unwritable_cache_folder_costs_the_reuse_not_the_result(
    loaded, small_sim, tmp_path, monkeypatch, caplog
):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NAPARI_DFCT_CACHE_DIR", str(blocker))
    monkeypatch.setattr(_onnx, "_NOTED", set())
    _forget_sessions(monkeypatch)
    image = small_sim.input[:2]
    with caplog.at_level(logging.WARNING, logger="napari_dfct.infer"):
        out = predict(loaded.model, image, window=loaded.window, device="cpu", backend="onnx")
    [line] = [r.getMessage() for r in caplog.records]
    assert "cannot be cached in" in line and "every process exports" in line
    assert _window_units(out, _reference(loaded, image), loaded) <= TOLERANCE


@needs_ort
@pytest.mark.slow
def test_dfct_train_leaves_the_export_of_its_model(small_sim, tmp_path, cache, capsys):
    from napari_dfct.cli import main
    from napari_dfct.simulate import save_simulation

    save_simulation(small_sim, tmp_path / "sim")
    out = tmp_path / "model"
    argv = ["train", "--data", str(tmp_path / "sim"), "--out", str(out), "--preset", "tiny"]
    argv += ["--epochs", "1", "--patch", "32", "--batch-size", "4", "--device", "cpu"]
    assert main([*argv, "--no-progress"]) == 0
    assert "exported the model for ONNX Runtime" in capsys.readouterr().err
    net = load_model(out).model
    assert _onnx.ready(net) and len(_records(cache)) == 1
