"""Device list, and memory release: nothing of a training or prediction run survives it."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from napari_dfct.device import DeviceInfo, list_devices, resolve_device
from napari_dfct.train import TrainConfig, run_fit
from napari_dfct.train import loop as _loop


def test_device_list_starts_with_auto_and_names_resolve():
    devices = list_devices()
    assert all(isinstance(d, DeviceInfo) for d in devices)
    names = [d.name for d in devices]
    assert names[:2] == ["auto", "cpu"]
    assert len(set(names)) == len(names)
    for d in devices:
        assert d.label.startswith(d.name)
        resolve_device(d.name)  # every listed device is usable as a device name
    assert [d.name for d in list_devices(auto=False)][0] == "cpu"
    import torch

    cuda = [d for d in devices if d.name.startswith("cuda")]
    assert len(cuda) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    for d in cuda:  # pragma: no cover - CUDA machines only
        assert "free of" in d.label and d.free_bytes is not None


def _cfg(**kw):
    base = dict(
        loss="l2", preset="tiny", epochs=2, batch_size=4, patch=16, device="cpu", bn_recalibrate=1
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def watch_build(monkeypatch):
    """Weak references to the model, optimiser, schedule and sampler each fit builds."""
    refs: list[dict] = []
    real = _loop._build

    def build(run, *args, **kwargs):
        real(run, *args, **kwargs)
        refs.append(
            {
                name: weakref.ref(getattr(run, name))
                for name in ("model", "optimizer", "scheduler", "sampler")
            }
        )

    monkeypatch.setattr(_loop, "_build", build)
    return refs


def _alive(refs: dict) -> list[str]:
    gc.collect()
    return [name for name, ref in refs.items() if ref() is not None]


def test_a_finished_run_keeps_only_the_returned_model(pair, tmp_path, watch_build):
    x, y = pair
    result = run_fit(x, y, _cfg(), tmp_path / "m", preview=False)
    assert result.stopped == "completed"
    assert _alive(watch_build[0]) == ["model"]  # the best model is the result's
    assert watch_build[0]["model"]() is result.model
    del result
    assert _alive(watch_build[0]) == []


@pytest.mark.parametrize("how", ["cancel", "error", "close"])
def test_a_stopped_or_failed_run_keeps_nothing(pair, tmp_path, watch_build, how):
    x, y = pair
    cancel = threading.Event()
    gen = _loop.fit(x, y, _cfg(epochs=5), tmp_path / "m", cancel=cancel, preview=False)
    next(gen)
    if how == "cancel":
        cancel.set()
        with pytest.raises(StopIteration) as stop:
            next(gen)
        assert stop.value.value.stopped == "cancelled"
        stop = None
    elif how == "error":
        with pytest.raises(RuntimeError, match="boom"):
            gen.throw(RuntimeError("boom"))
    else:
        gen.close()
    del gen
    refs = watch_build[0]
    alive = _alive(refs)
    assert set(alive) <= {"model"}  # a cancelled run returns its best model
    assert "optimizer" not in alive and "sampler" not in alive


@pytest.mark.slow
def test_the_widget_job_trains_outside_the_viewers_process(pair, tmp_path, watch_build):
    """The Train widget's job runs fit() in a child process: nothing of the run (model,
    optimiser, sampler, device memory) is ever built in the viewer's process, and the
    child is gone when the job returns."""
    pytest.importorskip("qtpy", reason="the widgets need Qt")
    import multiprocessing as mp

    from napari_dfct.widgets._workers import train_job

    x, y = pair
    gen = train_job(x, y, _cfg(), tmp_path / "m", cancel=threading.Event())
    kinds = []
    while True:
        try:
            kinds.append(next(gen).kind)
        except StopIteration as stop:
            result = stop.value
            break
    # batch progress within each epoch (the first right after its first batch), then the epoch
    assert [k for k in kinds if k != "batch"] == ["data", "epoch", "epoch"]
    assert kinds[1] == "batch" and kinds[kinds.index("epoch") + 1] == "batch"
    assert result.model is None and result.model_dir == tmp_path / "m"
    assert (tmp_path / "m" / "model.safetensors").is_file()
    assert watch_build == []  # no _build ran here
    assert not mp.active_children()


def test_prediction_keeps_no_network(pair, tmp_path, monkeypatch):
    from napari_dfct import infer

    x, y = pair
    run_fit(x, y, _cfg(epochs=1), tmp_path / "m", preview=False)
    nets = []
    real = infer._resolve_model

    def resolve(*args, **kwargs):
        out = real(*args, **kwargs)
        nets.append(weakref.ref(out[0]))
        return out

    monkeypatch.setattr(infer, "_resolve_model", resolve)
    pred = [z for z, _ in infer.predict_iter(tmp_path / "m", x, device="cpu")]
    assert pred == [0, 1, 2, 3]
    gc.collect()
    assert nets[0]() is None
