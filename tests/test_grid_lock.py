"""One grid per folder: a second ``dfct grid`` on a folder that a running grid holds exits
2 naming it; the lock of a dead grid is taken over, another host's never; a grid folder
that is a file or cannot be written is one line; ``dfct grid-report`` reads at any time;
moved-aside attempts do not pile up.

The first grid of the concurrency test is a real process; the second starts while the
first trains, and must exit 2 while the first completes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_dfct._procs import process_start
from napari_dfct.cli import main
from napari_dfct.experiment.lock import LOCK_FILE, GridLocked, grid_lock, lock_holder

START_TIMEOUT = 240.0  # seconds for the first grid to import and start training
RUN_TIMEOUT = 300.0  # seconds for it to finish


@pytest.fixture(scope="module")
def data(tmp_path_factory, small_sim):
    from napari_dfct.simulate import save_simulation, simulate_dfct

    root = tmp_path_factory.mktemp("lock-data")
    save_simulation(small_sim, root / "train")
    test = simulate_dfct(n_slices=2, size=64, n_views=96, rotations=4, seed=1001)
    save_simulation(test, root / "test")
    return root / "train", root / "test"


def _argv(out: Path, data, seeds: str = "0", epochs: int = 1) -> list[str]:
    train, test = data
    return [
        "grid",
        str(out),
        "--train",
        str(train),
        "--test",
        str(test),
        "--configs",
        "l2",
        "--seeds",
        seeds,
        "--preset",
        "tiny",
        "--epochs",
        str(epochs),
        "--patience",
        str(epochs),
        "--patch",
        "32",
        "--batch-size",
        "4",
        "--patches-per-slice",
        "2",
        "--device",
        "cpu",
        "--no-report",
        "--quiet",
    ]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfct grid: error:"), err
    return err[0]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_lock(out: Path, **record) -> None:
    out.mkdir(parents=True, exist_ok=True)
    base = {"host": socket.gethostname(), "started": "2020-01-01 00:00:00"}
    (out / LOCK_FILE).write_text(json.dumps({**base, **record}))


def test_a_second_grid_on_a_running_grids_folder_exits_2(tmp_path, data, capsys):
    out = tmp_path / "grid"
    err_path = tmp_path / "first.stderr"
    with open(err_path, "w") as err:  # 2 x 20 epochs: still training when the second starts
        first = subprocess.Popen(
            [sys.executable, "-m", "napari_dfct", *_argv(out, data, "0,1", epochs=20)],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        runs = out / "runs" / "l2"
        while not list(runs.glob("seed-*/running.json")):  # the first grid trains
            assert first.poll() is None, err_path.read_text()[-2000:]
            assert time.monotonic() < deadline, "the first grid did not start in time"
            time.sleep(0.05)
        holder = lock_holder(out)
        assert holder is not None and holder["pid"] == first.pid
        # the second grid: one line naming the first, exit 2, nothing touched
        assert main(_argv(out, data, "0,1", epochs=20)) == 2
        line = _one_error_line(capsys)
        assert f"pid {first.pid}" in line and "in use by another dfct grid" in line
        # reading is not writing: grid-report runs while the grid does (and says so)
        main(["grid-report", str(out), "--quiet"])
        assert first.wait(RUN_TIMEOUT) == 0, err_path.read_text()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    # the first grid completed every run, untroubled, and let go of the folder
    for seed in (0, 1):
        run = out / "runs" / "l2" / f"seed-{seed}"
        assert (run / "metrics.json").is_file() and not (run / "error.txt").exists()
    assert not list(out.glob("runs/*/*.incomplete-*"))
    assert not (out / LOCK_FILE).exists() and lock_holder(out) is None


def test_a_dead_grids_lock_is_taken_over_and_old_attempts_pruned(tmp_path, data, capsys):
    out = tmp_path / "grid"
    _write_lock(out, pid=_dead_pid())  # a grid of this host that was killed
    runs = out / "runs" / "l2"
    old = [runs / f"seed-0.incomplete-2024010{d}-000000" for d in (1, 2, 3)]
    for k, folder in enumerate(old):
        folder.mkdir(parents=True)
        (folder / "error.txt").write_text(f"attempt {k}")
    assert lock_holder(out) is None  # a dead owner holds nothing
    argv = [a for a in _argv(out, data) if a != "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert (runs / "seed-0" / "metrics.json").is_file()
    assert not (out / LOCK_FILE).exists()
    # only the newest attempt of the run is kept; the grid said so, and how to remove it
    assert sorted(runs.glob("seed-0.incomplete-*")) == [old[-1]]
    assert "1 moved-aside attempt(s)" in err and "2 older one(s) removed" in err
    assert f"rm -r {out.resolve() / 'runs'}" in err
    events = [json.loads(line) for line in (out / "grid-log.jsonl").read_text().splitlines()]
    removed = [e["path"] for e in events if e["status"] == "removed-aside"]
    assert removed == [str(p.resolve()) for p in old[:2]]
    assert main(["grid-report", str(out)]) == 0
    assert "moved-aside attempts: 1" in capsys.readouterr().err


def test_live_other_host_and_unreadable_locks_are_never_taken(tmp_path, data, capsys):
    out = tmp_path / "grid"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_lock(out, pid=sleeper.pid, pid_start=process_start(sleeper.pid))
        assert main(_argv(out, data)) == 2
        line = _one_error_line(capsys)
        assert f"pid {sleeper.pid}" in line and "on this host" in line
    finally:
        sleeper.kill()
        sleeper.wait()
    _write_lock(out, host="elsewhere.example", pid=1)
    before = (out / LOCK_FILE).read_text()
    assert main(_argv(out, data)) == 2
    line = _one_error_line(capsys)
    assert "host elsewhere.example" in line and f"remove {out.resolve() / LOCK_FILE}" in line
    assert (out / LOCK_FILE).read_text() == before  # untouched
    (out / LOCK_FILE).write_text("")  # a lock that names nobody
    with pytest.raises(GridLocked, match="does not say which grid"), grid_lock(out):
        pass
    assert not (out / "grid.json").exists()  # nothing was started


def test_the_lock_is_released_by_errors_and_reentrant(tmp_path):
    out = tmp_path / "grid"
    with pytest.raises(RuntimeError), grid_lock(out):
        record = json.loads((out / LOCK_FILE).read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with grid_lock(out):  # the same process may nest it
            pass
        assert (out / LOCK_FILE).is_file()  # still held by the outer block
        raise RuntimeError("a failing grid")
    assert not (out / LOCK_FILE).exists()


def _unwritable_dir(tmp_path: Path) -> Path:
    """A folder nobody may create files in: read-only for a normal user; for root (who
    ignores permissions) a kernel file system that refuses new entries."""
    import tempfile

    if os.geteuid() != 0:
        ro = tmp_path / "read-only"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    for candidate in (Path("/sys/kernel"), Path("/sys"), Path("/proc")):
        try:
            os.rmdir(tempfile.mkdtemp(dir=candidate))
        except OSError:
            return candidate
    pytest.skip("no folder here refuses new files")


@pytest.mark.parametrize(
    "case, message",
    [
        ("file", "is a file, not a folder"),
        ("under_file", "a part of its path is a file"),
        ("read_only", "cannot write to the grid folder"),
        ("read_only_new", "cannot create the grid folder"),
    ],
)
def test_a_grid_folder_that_cannot_be_written_is_one_line(tmp_path, data, capsys, case, message):
    if case == "file":
        out = tmp_path / "grid"
        out.write_text("not a folder")
    elif case == "under_file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "grid"
    elif case == "read_only":
        out = _unwritable_dir(tmp_path)
    else:
        out = _unwritable_dir(tmp_path) / "dfct-grid"
    assert main(_argv(out, data)) == 2
    line = _one_error_line(capsys)
    assert message in line and "Traceback" not in line
