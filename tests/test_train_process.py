"""Training in a child process (what the Train widget runs): the same loop, the same
events and result, its errors and cancellation, and nothing left behind."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading

import numpy as np
import pytest

from napari_dfct.train import TrainConfig, fit
from napari_dfct.train.process import fit_in_process


def _cfg(**kw):
    base = dict(loss="l2", preset="tiny", epochs=2, batch_size=4, patch=16, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _drain(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


@pytest.mark.slow
def test_the_child_trains_exactly_as_fit_in_this_process(pair, tmp_path):
    import torch

    x, y = pair
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here, res_here = _drain(fit(x, y, _cfg(), tmp_path / "here"))
    finally:
        torch.set_num_threads(threads)
    estimates = []
    there, res_there = _drain(
        fit_in_process(x, y, _cfg(), tmp_path / "there", threads=1, on_estimate=estimates.append)
    )
    assert [e.val_loss for e in there] == [e.val_loss for e in here]
    assert [e.train_loss for e in there] == [e.train_loss for e in here]
    assert np.array_equal(there[-1].preview, here[-1].preview)
    assert res_there.stopped == "completed" and res_there.model is None
    assert res_there.model_dir == tmp_path / "there"
    assert len(estimates) == 1 and estimates[0].seconds > 0
    assert not mp.active_children()  # the child is gone with the run


@pytest.mark.slow
def test_errors_of_the_child_arrive_with_their_type(pair, tmp_path):
    x, y = pair
    with pytest.raises(ValueError, match="at least 2"):
        _drain(fit_in_process(x[:1], y[:1], _cfg(), tmp_path / "one"))
    with pytest.raises(ValueError, match="dfct simulate"):
        _drain(fit_in_process(x, y, _cfg(loss="l2+d-nonlinear-oracle"), tmp_path / "o"))
    assert not mp.active_children()


@pytest.mark.slow
def test_cancel_stops_the_child_within_a_batch(pair, tmp_path):
    x, y = pair
    cancel = threading.Event()
    gen = fit_in_process(x, y, _cfg(epochs=200, patience=200), tmp_path / "c", cancel=cancel)
    first = next(gen)
    cancel.set()
    rest, result = _drain(gen)
    assert first.epoch == 1 and result.stopped == "cancelled"
    assert result.epochs_run == 1 + len(rest) < 200
    assert (tmp_path / "c" / "model.safetensors").is_file()
    assert not mp.active_children()


@pytest.mark.slow
def test_a_child_that_dies_is_reported_not_waited_for(pair, tmp_path):
    x, y = pair
    gen = fit_in_process(x, y, _cfg(epochs=200, patience=200), tmp_path / "k")
    next(gen)
    (child,) = mp.active_children()
    os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="exit code -9"):
        _drain(gen)
    assert not mp.active_children()


@pytest.mark.slow
def test_closing_the_generator_stops_the_child(pair, tmp_path):
    x, y = pair
    gen = fit_in_process(x, y, _cfg(epochs=200, patience=200), tmp_path / "g")
    next(gen)
    gen.close()
    assert not mp.active_children()


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="POSIX priorities")
def test_the_child_runs_at_a_lower_priority(pair, tmp_path):
    x, y = pair
    gen = fit_in_process(x, y, _cfg(epochs=200, patience=200), tmp_path / "p", nice=7)
    next(gen)
    (child,) = mp.active_children()
    try:
        assert (
            os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
            or os.getpriority(os.PRIO_PROCESS, child.pid) == 19
        )
    finally:
        gen.close()


@pytest.mark.slow
def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """spawn would re-run the caller's unguarded script in the child (a napari session
    started from a script): the child must not import it."""
    import subprocess
    import sys

    script = tmp_path / "session.py"
    script.write_text(
        "import numpy as np\n"
        "print('script body ran', flush=True)\n"
        "from napari_dfct.train import TrainConfig\n"
        "from napari_dfct.train.process import fit_in_process\n"
        "y = np.random.default_rng(0).standard_normal((4, 32, 32)).astype(np.float32)\n"
        "cfg = TrainConfig(loss='l2', preset='tiny', epochs=1, batch_size=4, patch=16,\n"
        "                  device='cpu')\n"
        f"for ev in fit_in_process(y + 0.1, y, cfg, {str(tmp_path / 'm')!r}):\n"
        "    print('epoch', ev.epoch, flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("script body ran") == 1, out.stdout
    assert "epoch 1" in out.stdout


_PARENT = """
import multiprocessing as mp, sys
import numpy as np
from napari_dfct.train import TrainConfig
from napari_dfct.train.process import fit_in_process

if __name__ == "__main__":
    y = np.random.default_rng(0).standard_normal((4, 32, 32)).astype(np.float32)
    cfg = TrainConfig(loss="l2", preset="tiny", epochs=100000, patience=100000, batch_size=4,
                      patch=16, device="cpu")
    gen = fit_in_process(y + 0.1, y, cfg, sys.argv[1], threads=1, preview=False)
    next(gen)  # the child trains
    (child,) = mp.active_children()
    print(child.pid, flush=True)
    for _ in gen:
        pass
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
@pytest.mark.parametrize("watchdog_only", [False, True])
def test_the_child_ends_with_a_parent_killed_by_sigkill(tmp_path, monkeypatch, watchdog_only):
    """A real parent process (the viewer) starts a training that would run for hours and
    is killed by SIGKILL: its training process must be gone within 10 s, by the Linux
    parent-death signal and, where that does not exist, by the parent-pid watchdog."""
    import subprocess
    import sys
    import time

    from napari_dfct._procs import pid_alive, process_start

    script = tmp_path / "viewer.py"
    script.write_text(_PARENT)
    if watchdog_only:  # as on macOS or Windows: no parent-death signal
        (tmp_path / "sitecustomize.py").write_text(
            "import napari_dfct._procs as p\np._set_pdeathsig = lambda: False\n"
        )
        path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
        monkeypatch.setenv("PYTHONPATH", path)
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "model")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent printed {line!r}"
        child = int(line)
        start = process_start(child)
        assert pid_alive(child, start) and parent.poll() is None  # training
        os.kill(parent.pid, signal.SIGKILL)
        assert parent.wait(30) == -signal.SIGKILL
        deadline = time.monotonic() + 10.0
        while pid_alive(child, start) and time.monotonic() < deadline:
            time.sleep(0.1)
        gone = not pid_alive(child, start)
        if not gone:  # do not leave it training for the rest of the suite
            os.kill(child, signal.SIGKILL)
        assert gone, "the training process outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
