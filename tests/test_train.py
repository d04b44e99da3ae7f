"""The training loop: events, checkpoints, early stopping, cancel, resume, errors."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from napari_dfct.checkpoint import load_model, load_training_state
from napari_dfct.data import split_slices
from napari_dfct.losses import AmplifiedLoss, LossConfig
from napari_dfct.train import (
    EpochEvent,
    FitResult,
    OutOfMemory,
    TrainConfig,
    fit,
    resolve_device,
    run_fit,
)


@pytest.fixture(scope="module")
def pair():
    """Six 48x48 slices: smooth structure (target) plus stripes and noise (input)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48] / 48.0
    target = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy - k) for k in range(6)])
    target = target.astype(np.float32)
    stripes = 0.3 * np.sin(40 * (xx + 0.3 * yy))
    noisy = target + stripes + 0.1 * rng.standard_normal(target.shape)
    return noisy.astype(np.float32), target


def _cfg(**kw):
    base = dict(
        loss=LossConfig(spatial="linear"),
        preset="tiny",
        epochs=3,
        patience=20,
        batch_size=4,
        patch=24,
        patches_per_slice=2,
        device="cpu",
        seed=0,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_fit_yields_events_and_saves_best(pair, tmp_path):
    x, y = pair
    events = []
    res = run_fit(x, y, _cfg(), tmp_path / "m", callback=events.append)
    assert isinstance(res, FitResult) and res.stopped == "completed"
    assert [e.epoch for e in events] == [1, 2, 3] and res.epochs_run == 3
    assert all(isinstance(e, EpochEvent) and e.epochs == 3 for e in events)
    assert all(e.steps == 3 for e in events)  # 5 training slices x 2 patches / batch 4
    assert events[0].improved and events[0].lr == pytest.approx(1e-3)
    best = min(events, key=lambda e: e.val_loss)
    assert res.best_epoch == best.epoch and res.best_val_loss == best.val_loss
    # the preview is the first validation slice, in input units
    _, val = split_slices(6, 0.2, 0)
    assert events[0].preview_index == int(val[0])
    assert events[0].preview.shape == (48, 48) and events[0].preview.dtype == np.float32
    # the saved model is the best one: recompute its validation loss independently
    lm = load_model(tmp_path / "m")
    assert lm.config["best_epoch"] == best.epoch
    win = lm.window
    xv = torch.from_numpy(win.normalize(x[val]))[:, None]
    yv = torch.from_numpy(win.normalize(y[val]))[:, None]
    with torch.no_grad():
        pred = lm.model(xv)
        amplified = AmplifiedLoss(lm.config["loss"])(pred, yv)
        plain = AmplifiedLoss("l2")(pred, yv)
    # selection by the plain loss (the default); the amplified one is recorded too
    assert float(plain) == pytest.approx(best.val_loss, rel=1e-5)
    assert float(plain) == pytest.approx(best.val_plain, rel=1e-5)
    assert float(amplified) == pytest.approx(best.val_amplified, rel=1e-5)
    hist = json.loads((tmp_path / "m" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3] and "preview" not in hist[0]
    assert lm.config["train"]["preset"] == "tiny" and lm.config["window"] == win.to_dict()
    # the window came from the training slices only (not the validation slice)
    from napari_dfct.data import window_from_percentiles

    tr, _ = split_slices(6, 0.2, 0)
    assert win == window_from_percentiles(x[tr], y[tr])
    assert win != window_from_percentiles(x, y)
    assert not list((tmp_path / "m").glob("*.p*[tk]*"))  # no .pt/.pth/.pkl
    assert {p.suffix for p in (tmp_path / "m").iterdir()} == {".json", ".csv", ".safetensors"}


def test_preview_matches_the_model(pair):
    from napari_dfct.infer import predict

    x, y = pair
    gen = fit(x, y, _cfg(epochs=1), None, preview_index=2)
    ev = next(gen)
    with pytest.raises(StopIteration) as stop:
        next(gen)
    res = stop.value.value
    assert res.model_dir is None and res.model is not None and ev.improved
    ref = predict(res.model, x[2], window=res.window, device="cpu")
    np.testing.assert_allclose(ev.preview, ref, atol=1e-5)
    assert ev.preview_index == 2


def test_early_stopping(pair, tmp_path):
    x, y = pair
    res = run_fit(x, y, _cfg(epochs=40, patience=2, lr=3e-2), tmp_path / "m")
    assert res.stopped == "early_stopping"
    improved = [h["improved"] for h in res.history]
    # stopped exactly after the second epoch in a row without improvement
    assert improved[-2:] == [False, False]
    assert not any(a is False and b is False for a, b in zip(improved[:-2], improved[1:-2]))
    assert res.epochs_run == len(res.history) < 40
    assert load_model(tmp_path / "m").config["best_epoch"] == res.best_epoch


def test_cancel_after_first_epoch_keeps_checkpoint(pair, tmp_path):
    x, y = pair
    stop = threading.Event()
    res = run_fit(
        x, y, _cfg(epochs=10), tmp_path / "m", cancel=stop, callback=lambda ev: stop.set()
    )
    assert res.stopped == "cancelled" and res.epochs_run == 1
    assert load_model(tmp_path / "m").config["best_epoch"] == 1
    assert load_training_state(tmp_path / "m")["epoch"] == 1


def test_cancel_within_one_batch(pair, tmp_path, monkeypatch):
    from napari_dfct import model as model_mod

    x, y = pair
    steps = []
    orig = model_mod.ResidualUNet.forward

    def counting(self, inp):
        if self.training:
            steps.append(inp.shape[0])
        return orig(self, inp)

    monkeypatch.setattr(model_mod.ResidualUNet, "forward", counting)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 2  # set right after the first batch

    res = run_fit(x, y, _cfg(epochs=5), tmp_path / "m", cancel=cancel)
    assert res.stopped == "cancelled"
    assert len(steps) == 1 and len(calls) == 2  # no batch ran after the flag was seen
    assert res.epochs_run == 0 and res.model_dir is None and res.model is None
    assert not (tmp_path / "m" / "model.safetensors").exists()


def _final_weights(folder):
    return load_training_state(folder)["model"]


def test_resume_equals_straight_run(pair, tmp_path):
    x, y = pair
    straight = run_fit(x, y, _cfg(epochs=4), tmp_path / "a")
    # stopped run: 2 epochs, then continued to 4
    first = run_fit(x, y, _cfg(epochs=2), tmp_path / "b")
    assert first.stopped == "completed"
    resumed = run_fit(x, y, _cfg(epochs=4), tmp_path / "b", resume=True)
    # cancelled run: stopped from the callback after epoch 3, then continued
    stop = threading.Event()
    run_fit(
        x,
        y,
        _cfg(epochs=4),
        tmp_path / "c",
        cancel=stop,
        callback=lambda ev: ev.epoch == 3 and stop.set(),
    )
    cont = run_fit(x, y, None, tmp_path / "c", resume=True)
    for other in (resumed, cont):
        assert [h["val_loss"] for h in other.history] == [h["val_loss"] for h in straight.history]
        assert [h["train_loss"] for h in other.history] == [
            h["train_loss"] for h in straight.history
        ]
        assert other.best_epoch == straight.best_epoch and other.epochs_run == 4
    wa = _final_weights(tmp_path / "a")
    for folder in ("b", "c"):
        wb = _final_weights(tmp_path / folder)
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), folder
    saved = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["val_loss"] for h in saved] == [h["val_loss"] for h in straight.history]


def test_resume_errors(pair, tmp_path):
    x, y = pair
    with pytest.raises(ValueError, match="nothing to resume"):
        run_fit(x, y, _cfg(), tmp_path / "empty", resume=True)
    with pytest.raises(ValueError, match="out_dir"):
        run_fit(x, y, _cfg(), None, resume=True)
    run_fit(x, y, _cfg(epochs=1), tmp_path / "m")
    with pytest.raises(ValueError, match="trained on data of shape"):
        run_fit(x[:5], y[:5], _cfg(epochs=2), tmp_path / "m", resume=True)


def test_out_of_memory_names_smaller_batch(pair, monkeypatch):
    from napari_dfct import model as model_mod

    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

    def boom(self, inp):
        raise oom("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(model_mod.ResidualUNet, "forward", boom)
    x, y = pair
    with pytest.raises(OutOfMemory, match="try batch size 2"):
        run_fit(x, y, _cfg(), None)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda x, y: (x, y[:, :, :40]), "shapes differ"),
        (lambda x, y: (x[0], y[0]), "3-D"),
        (lambda x, y: (x[:1], y[:1]), "at least 2"),
        (lambda x, y: (np.where(x > 0.9, np.nan, x), y), "NaN"),
    ],
)
def test_input_validation(pair, mutate, match):
    x, y = mutate(*pair)
    with pytest.raises(ValueError, match=match):
        run_fit(x, y, _cfg(), None)


def test_config_validation(pair):
    x, y = pair
    with pytest.raises(ValueError, match="larger than the slices"):
        run_fit(x, y, _cfg(patch=64), None)
    with pytest.raises(ValueError, match="optimizer"):
        run_fit(x, y, _cfg(optimizer="sgd"), None)
    with pytest.raises(ValueError, match="preset"):
        run_fit(x, y, _cfg(preset="huge"), None)


def test_config_roundtrip_and_adamw(pair):
    cfg = _cfg(optimizer="adamw", loss=LossConfig.from_name("l1+f+s-nonlinear"))
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    x, y = pair
    res = run_fit(x, y, _cfg(optimizer="adamw", epochs=1), None)
    assert res.best_epoch == 1


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")


# ------------------------------------------------------- time, memory, folders, old states
def test_epoch_estimate_is_measured_once_per_call_before_the_first_event(pair, tmp_path):
    from napari_dfct.train import EpochEstimate

    x, y = pair
    seen = []
    gen = fit(
        x,
        y,
        _cfg(epochs=2),
        tmp_path / "m",
        preview=False,
        on_estimate=lambda est: seen.append(est),
    )
    first = next(gen)
    assert len(seen) == 1 and first.epoch == 1  # reported inside epoch 1
    list(gen)
    assert len(seen) == 1
    est = seen[0]
    assert isinstance(est, EpochEstimate)
    # 5 training slices x 2 patches / batch 4: 3 steps, as the epoch then ran
    assert est.steps == 3 == first.steps and est.epochs == 2 and est.device == "cpu"
    # the 10 patches of an epoch at the timed step's pace, plus forward-only work
    # (BatchNorm re-estimation and validation)
    assert est.seconds_per_step > 0 and est.seconds > est.seconds_per_step * 10 / 4
    assert est.preset == "tiny"
    # a resumed call measures again, for the epochs it has left
    run_fit(
        x, y, _cfg(epochs=3), tmp_path / "m", resume=True, on_estimate=lambda est: seen.append(est)
    )
    assert len(seen) == 2 and seen[1].epochs == 1


def test_huge_sizes_are_refused_before_allocating(pair):
    from napari_dfct.data import PatchSampler
    from napari_dfct.train import check_memory

    x, y = pair
    with pytest.raises(ValueError, match=r"just to shuffle one epoch.*use at most \d+"):
        PatchSampler(x, y, patch=24, patches_per_slice=10**13)
    with pytest.raises(ValueError, match="just to shuffle"):
        run_fit(x, y, _cfg(patches_per_slice=10**13), None)
    with pytest.raises(OutOfMemory, match=r"needs at least .* try batch size \d+"):
        check_memory(_cfg(batch_size=10**9), torch.device("cpu"))
    with pytest.raises(OutOfMemory, match="needs at least"):
        run_fit(x, y, _cfg(batch_size=10**9), None)
    check_memory(_cfg(), torch.device("cpu"))  # the usual sizes pass


def test_activation_bytes_count_every_layer_output():
    """Independent count: the tiny U-Net's layer outputs on one 24x24 patch."""
    from napari_dfct.model import build_model
    from napari_dfct.train.resources import activation_bytes

    model = build_model("tiny")
    outputs = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: outputs.append(o.numel()))
        for m in model.modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 1, 24, 24))
    for h in hooks:
        h.remove()
    per_sample, params = activation_bytes(_cfg())
    assert per_sample == 4 * sum(outputs)
    assert params == 4 * sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "kw",
    [
        dict(preset="small", patch=64),
        dict(preset="small", patch=40),  # not a multiple of 16: the network pads it to 48
        dict(preset="tiny", patch=24, context=1),
        dict(preset="tiny", patch=32, dims=3, patch_depth=4),
    ],
)
def test_activation_bytes_equal_a_count_on_the_full_patch(kw):
    """The estimate (an m x m count, scaled) equals the layer outputs counted on the
    whole patch on the meta device, and building the counted network leaves the random
    state alone."""
    from napari_dfct.model import build_model
    from napari_dfct.train.resources import activation_bytes

    cfg = _cfg(**kw)
    outputs = []
    with torch.device("meta"):
        model = build_model(cfg.preset, **cfg.model_args())
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: outputs.append(o.numel()))
        for m in model.modules()
        if not list(m.children())
    ]
    depth = [cfg.patch_depth] if cfg.dims == 3 else []
    model.eval()(torch.empty(1, model.in_channels, *depth, cfg.patch, cfg.patch, device="meta"))
    for h in hooks:
        h.remove()
    state = torch.get_rng_state()
    assert activation_bytes(cfg)[0] == 4 * sum(outputs)
    assert torch.equal(torch.get_rng_state(), state)


def test_new_run_never_lands_on_a_model(pair, tmp_path):
    x, y = pair
    run_fit(x, y, _cfg(epochs=1), tmp_path / "m")
    with pytest.raises(ValueError, match="already holds a model"):
        run_fit(x, y, _cfg(epochs=1), tmp_path / "m")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        run_fit(x, y, _cfg(epochs=1), tmp_path / "f")


def test_resume_from_a_folder_with_the_old_two_file_state(pair, tmp_path):
    """A folder written before the state was one file (no best weights in it, the index
    in training-state.json) resumes to the same end as a straight run."""
    from napari_dfct import checkpoint as ckpt
    from test_checkpoint import _old_two_file_state  # tests/ is on sys.path

    x, y = pair
    straight = run_fit(x, y, _cfg(epochs=4, lr=0.3), tmp_path / "a")
    run_fit(x, y, _cfg(epochs=3, lr=0.3), tmp_path / "b")
    state = load_training_state(tmp_path / "b")
    # the best epoch is not the last one: its weights come from model.safetensors
    assert state["early_stopping"]["best_epoch"] < state["epoch"] == 3
    state.pop("best_model")
    for name in (ckpt.STATE_FILE, ckpt.STATE_TENSORS_FILE):
        (tmp_path / "b" / name).unlink()
    _old_two_file_state(tmp_path / "b", state)
    resumed = run_fit(x, y, _cfg(epochs=4, lr=0.3), tmp_path / "b", resume=True)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]
    assert resumed.best_epoch == straight.best_epoch
    la, lb = load_model(tmp_path / "a").model, load_model(tmp_path / "b").model
    assert all(
        torch.equal(a, b) for a, b in zip(la.state_dict().values(), lb.state_dict().values())
    )
    wa, wb = _final_weights(tmp_path / "a"), _final_weights(tmp_path / "b")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
