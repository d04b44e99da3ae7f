"""Crash safety of model folders: a training run killed at *every* file-replace point.

A child process trains a short run (tiny preset, three epochs, CPU, one thread) into a
model folder and SIGKILLs itself right after (or right before) its K-th ``os.replace`` /
``os.rename``, for every K. After each kill the folder must be absent, or load, or resume;
a resumed (or restarted) run must end exactly where the uninterrupted run ends (history,
saved model and final weights), and no leftovers of the killed process may remain.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from napari_dfct import checkpoint as ckpt
from napari_dfct.losses import LossConfig
from napari_dfct.train import TrainConfig, run_fit

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    import torch

    torch.set_num_threads(1)
    kill_at, when, out, data, cfg = int(sys.argv[1]), sys.argv[2], *sys.argv[3:6]
    calls = [0]

    def wrap(func):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = func(*args, **kwargs)
            if calls[0] == kill_at and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapped

    os.replace, os.rename = wrap(os.replace), wrap(os.rename)
    from napari_dfct.train import TrainConfig, run_fit

    arrays = np.load(data)
    run_fit(arrays["x"], arrays["y"], TrainConfig.from_dict(json.loads(cfg)), out,
            preview=False)
    print(calls[0])
""")


def _pair():
    """Five 48x48 slices: smooth structure (target) plus stripes and noise (input)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48] / 48.0
    target = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy - k) for k in range(5)])
    stripes = 0.3 * np.sin(40 * (xx + 0.3 * yy))
    noisy = target + stripes + 0.1 * rng.standard_normal(target.shape)
    return noisy.astype(np.float32), target.astype(np.float32)


def _config(lr=0.1, seed=0):
    return TrainConfig(
        loss=LossConfig(spatial="linear"),
        preset="tiny",
        epochs=3,
        batch_size=4,
        patch=24,
        patches_per_slice=2,
        lr=lr,
        seed=seed,
        device="cpu",
        keep_state=True,
        window={"low": -1.5, "high": 1.5},
    )


#: The first of these settings whose run improves in epochs 1 and 3 but not in 2 is
#: used: the first save, a save without new weights (history and state) and new weights
#: over old ones then all happen.
CANDIDATES = [(lr, seed) for lr in (0.1, 0.3, 0.03, 1.0) for seed in (0, 1, 2)]


def _record(history):
    keys = ("epoch", "train_loss", "val_loss", "improved", "best_epoch", "lr", "steps")
    return [tuple(h[k] for k in keys) for h in history]


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, the weights it exported after each epoch, and the child's
    inputs (data file, script, config)."""
    folder = tmp_path_factory.mktemp("crash")
    x, y = _pair()
    exported = {}

    def snapshot(ev):
        exported[ev.epoch] = _weights(ref / ckpt.WEIGHTS_FILE)

    for i, (lr, seed) in enumerate(CANDIDATES):
        ref, exported = folder / f"ref{i}", {}
        config = _config(lr, seed)
        res = run_fit(x, y, config, ref, callback=snapshot, preview=False)
        if [h["improved"] for h in res.history] == [True, False, True]:
            break
    else:
        pytest.fail("no candidate setting improves in epochs 1 and 3 only")
    np.savez(folder / "data.npz", x=x, y=y)
    (folder / "child.py").write_text(CHILD)
    return {
        "folder": folder,
        "x": x,
        "y": y,
        "result": res,
        "exported": exported,
        "config": config,
        "final": ckpt.load_training_state(ref)["model"],
        "best": _weights(ref / ckpt.WEIGHTS_FILE),
        "cfg": json.dumps(config.to_dict()),
    }


def _child(ref, kill_at, when, out):
    folder = ref["folder"]
    return subprocess.run(
        [
            sys.executable,
            str(folder / "child.py"),
            str(kill_at),
            when,
            str(out),
            str(folder / "data.npz"),
            ref["cfg"],
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _children(ref, points, when, tmp_path):
    """The killed children of ``points``, two at a time (each uses one thread): most of a
    child's time is the interpreter starting, which two cores halve."""
    from concurrent.futures import ThreadPoolExecutor

    outs = {k: tmp_path / f"k{k}" / "m" for k in points}
    for out in outs.values():
        out.parent.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        procs = {k: pool.submit(_child, ref, k, when, outs[k]) for k in points}
        return {k: (procs[k].result(), outs[k]) for k in points}


def _assert_ends_like_reference(ref, res, out):
    assert _record(res.history) == _record(ref["result"].history)
    assert res.best_epoch == ref["result"].best_epoch and res.epochs_run == 3
    assert _record(ckpt.load_history(out)) == _record(ref["result"].history)
    assert _same(_weights(out / ckpt.WEIGHTS_FILE), ref["best"])
    assert _same(ckpt.load_training_state(out)["model"], ref["final"])
    assert ckpt.load_config(out)["best_epoch"] == ref["result"].best_epoch
    assert ckpt.weights_epoch(out) == ref["result"].best_epoch


def _leftovers(out):
    hidden = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    inside = (
        [p.name for p in out.iterdir() if p.name not in ckpt.RUN_FILES] if out.is_dir() else []
    )
    return hidden + inside


def test_uninterrupted_child_matches_and_counts_replaces(reference, tmp_path):
    out = tmp_path / "m"
    proc = _child(reference, 0, "after", out)
    assert proc.returncode == 0, proc.stderr
    # 6 files into the hidden folder + its rename, 2 files (epoch 2: the history; its
    # resume state is kept in memory, STATE_INTERVAL), 6 files (epoch 3: the last)
    assert int(proc.stdout.split()[-1]) == 15
    assert _same(_weights(out / ckpt.WEIGHTS_FILE), reference["best"])
    assert _same(ckpt.load_training_state(out)["model"], reference["final"])
    assert _leftovers(out) == []


#: Every replace of the uninterrupted run: epoch 1 writes a hidden folder (weights,
#: config, history as JSON and CSV, the resume state as two files) and renames it into
#: place (7); epoch 2, which does not improve, writes its history only (8, 9: its resume
#: state waits in memory, ``STATE_INTERVAL``); epoch 3, the last, writes weights, config,
#: history and state (10-15).
ALL = tuple(range(1, 16))


@pytest.mark.parametrize(
    "when,points",
    [
        ("after", ALL),
        # before a replace, its temporary file is left behind: inside the hidden folder (1),
        # next to the finished hidden folder (7), inside the model folder (8, 10, 15)
        ("before", (1, 7, 8, 10, 15)),
    ],
)
def test_kill_at_every_replace_point(reference, tmp_path, when, points):
    """Killed right after the K-th replace, for every K = 1..15 (and right before some):
    absent, loadable or resumable, and a resumed or restarted run ends exactly like the
    uninterrupted one, with nothing of the killed process left behind."""
    x, y = reference["x"], reference["y"]
    outcomes = {}
    for k, (proc, out) in _children(reference, points, when, tmp_path).items():
        assert proc.returncode == -signal.SIGKILL, (k, proc.returncode, proc.stderr)
        if out.exists():
            # a folder that exists is complete: it loads, and its weights are exactly
            # those the run exported after one of its epochs
            loaded = ckpt.load_model(out)
            tagged = ckpt.weights_epoch(out)
            assert _same(loaded.model.state_dict(), reference["exported"][tagged]), k
            assert ckpt.has_training_state(out), k
            # a new run never lands on it; resuming continues it
            with pytest.raises(ckpt.CheckpointError, match="already holds a model"):
                ckpt.check_new_run_dir(out)
            res = run_fit(x, y, None, out, resume=True, preview=False)
            outcomes[k] = "resumed"
        else:
            # absent: a plain new run starts (and cleans what the killed one left)
            res = run_fit(x, y, reference["config"], out, preview=False)
            outcomes[k] = "restarted"
        _assert_ends_like_reference(reference, res, out)
        assert _leftovers(out) == [], (k, _leftovers(out))
    # kills inside the hidden folder leave nothing; from its rename on, the folder is there
    first = 7 if when == "after" else 8
    assert outcomes == {k: "restarted" if k < first else "resumed" for k in points}


def test_resume_after_kill_between_weights_and_config(reference, tmp_path):
    """Epoch 3's weights replaced, its config, history and state not: the folder loads
    (the config still names epoch 1, same architecture), the state on disk is epoch 1's
    (epoch 2's waited in memory), and resuming puts the state's best model back first,
    cuts the history to epoch 1, then redoes epochs 2 and 3."""
    out = tmp_path / "m"
    proc = _child(reference, 10, "after", out)  # 7 (epoch 1) + 2 (epoch 2) + weights
    assert proc.returncode == -signal.SIGKILL
    assert ckpt.load_config(out)["best_epoch"] == 1 and ckpt.weights_epoch(out) == 3
    assert ckpt.load_model(out).config["best_epoch"] == 1
    assert ckpt.training_state_epoch(out) == 1
    assert len(ckpt.load_history(out)) == 2
    gen_state = ckpt.load_training_state(out)
    assert "best_model" not in gen_state  # epoch 1 is its own best
    assert _same(gen_state["model"], reference["exported"][1])
    res = run_fit(reference["x"], reference["y"], None, out, resume=True, preview=False)
    _assert_ends_like_reference(reference, res, out)
