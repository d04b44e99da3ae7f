"""Reader studies: making a study (trials, sides, windows, blinding of file names,
checksums) and the append-only judgments file (real processes, a torn line, SIGKILL)."""

from __future__ import annotations

import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from napari_dfct.io import write_volume
from napari_dfct.reader_study import (
    JUDGMENT_COLUMNS,
    Study,
    Trial,
    answered,
    append_judgment,
    make_study,
    next_trial,
    read_judgments,
)

NAMES = ("input", "l2", "amplified", "target")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _volumes(z=3, size=12, seed=0):
    rng = np.random.default_rng(seed)
    return {
        n: (rng.normal(size=(z, size, size)) + i).astype(np.float32) for i, n in enumerate(NAMES)
    }


@pytest.fixture
def study(tmp_path):
    return make_study(tmp_path / "study", _volumes(), slices="all", repeats=0.0)


# --------------------------------------------------------------------------------------
# making a study
# --------------------------------------------------------------------------------------
def test_four_candidates_every_pair_on_every_slice_with_balanced_sides(tmp_path):
    paths = {}
    for name, vol in _volumes(z=5).items():
        paths[name] = tmp_path / f"{name}.tif"
        write_volume(paths[name], vol)
    s = make_study(tmp_path / "study", paths, slices="1-3", repeats=0.25, seed=3)
    first = [t for t in s.trials if t.repeat_of is None]
    shown = collections.Counter((t.slice, frozenset((t.left, t.right))) for t in first)
    expected = {(z, frozenset(p)) for z in (1, 2, 3) for p in itertools.combinations(NAMES, 2)}
    assert set(shown) == expected and set(shown.values()) == {1}
    for a, b in itertools.combinations(NAMES, 2):
        ab = sum(t.left == a and t.right == b for t in first)
        ba = sum(t.left == b and t.right == a for t in first)
        assert ab + ba == 3 and abs(ab - ba) <= 1
    lefts = collections.Counter(t.left for t in first)
    assert max(lefts.values()) - min(lefts.values()) <= 1
    # repeats: round(0.25 * 18) = 4 (rounded half to even: 4), sides swapped, later
    repeats = [t for t in s.trials if t.repeat_of is not None]
    assert len(repeats) == round(0.25 * 18)
    for t in repeats:
        o = s.trials[t.repeat_of]
        assert o.repeat_of is None and t.index > o.index
        assert (t.slice, t.left, t.right) == (o.slice, o.right, o.left)
    assert [t.index for t in s.trials] == list(range(len(s.trials)))


def test_balanced_subset_and_reproducible_order(tmp_path):
    vols = _volumes(z=6)
    s = make_study(tmp_path / "a", vols, slices="all", trials=15, repeats=0, seed=7)
    counts = collections.Counter(frozenset((t.left, t.right)) for t in s.trials)
    assert len(s.trials) == 15 and sorted(counts.values()) == [2, 2, 2, 3, 3, 3]
    # distinct slices per pair
    per = collections.defaultdict(list)
    for t in s.trials:
        per[frozenset((t.left, t.right))].append(t.slice)
    assert all(len(v) == len(set(v)) for v in per.values())
    again = make_study(tmp_path / "b", vols, slices="all", trials=15, repeats=0, seed=7)
    assert again.trials == s.trials
    other = make_study(tmp_path / "c", vols, slices="all", trials=15, repeats=0, seed=8)
    assert other.trials != s.trials


def test_one_window_per_slice_from_all_candidates(tmp_path):
    vols = _volumes(z=2)
    s = make_study(tmp_path / "s", vols, slices="all", repeats=0)
    for z in (0, 1):
        values = np.concatenate([v[z].ravel() for v in vols.values()])
        assert s.window(z) == pytest.approx(tuple(np.percentile(values, (1, 99))))
    given = make_study(tmp_path / "g", vols, slices="all", repeats=0, window=(-1, 2))
    assert given.window(0) == given.window(1) == (-1.0, 2.0)


def test_images_stored_under_neutral_names_with_checksums(tmp_path):
    vols = _volumes()
    s = make_study(tmp_path / "s", vols, slices=[0, 2], repeats=0)
    files = sorted(p.name for p in (s.dir / "images").iterdir())
    assert files == ["c0.npy", "c1.npy", "c2.npy", "c3.npy"]
    for name in NAMES:
        np.testing.assert_array_equal(s.image(name, 2), vols[name][2])
    left, right = s.pair(0)
    t = s.trials[0]
    assert left.dtype == np.float32 and left.ndim == 2
    np.testing.assert_array_equal(right, vols[t.right][t.slice])
    meta = json.loads((s.dir / "study.json").read_text())
    assert {c["name"] for c in meta["candidates"]} == set(NAMES)
    assert all(len(c["sha256"]) == 64 for c in meta["candidates"])
    # a changed image is named when the study is opened
    victim = s.dir / meta["candidates"][1]["file"]
    arr = np.load(victim)
    arr[0, 0, 0] += 1
    np.save(victim, arr)
    with pytest.raises(ValueError, match=victim.name):
        Study.open(s.dir)


def test_make_rejects_bad_input(tmp_path):
    vols = _volumes()
    with pytest.raises(ValueError, match="at least 2"):
        make_study(tmp_path / "a", {"one": vols["l2"]})
    with pytest.raises(ValueError, match="shapes differ"):
        make_study(tmp_path / "a", {"a": vols["l2"], "b": vols["l2"][:2]})
    with pytest.raises(ValueError, match="duplicate"):
        make_study(tmp_path / "a", {"a": vols["l2"], " a": vols["input"]})
    with pytest.raises(ValueError, match="comma"):
        make_study(tmp_path / "a", {"a,b": vols["l2"], "c": vols["input"]})
    with pytest.raises(ValueError, match="slices"):
        make_study(tmp_path / "a", vols, slices="2-9")
    with pytest.raises(ValueError, match="trials"):
        make_study(tmp_path / "a", vols, slices="all", trials=19)
    assert not (tmp_path / "a").exists()  # nothing half-made
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        make_study(tmp_path / "full", vols)
    # the same study again is fine; a different one is not
    first = make_study(tmp_path / "same", vols, seed=1)
    assert make_study(tmp_path / "same", vols, seed=1).trials == first.trials
    with pytest.raises(ValueError, match="not empty"):
        make_study(tmp_path / "same", vols, seed=2)
    (tmp_path / "empty").mkdir()
    assert make_study(tmp_path / "empty", vols).trials


def test_reference_with_meta_and_body_mask_is_stored(tmp_path):
    vols = _volumes(z=3, size=40)
    sim = tmp_path / "sim"
    sim.mkdir()
    write_volume(sim / "truth.tif", vols["target"])
    body = np.zeros((3, 40, 40), np.float32)
    body[:, 5:35, 5:35] = 1
    write_volume(sim / "body.tif", body)
    (sim / "meta.json").write_text(
        json.dumps({"signal_center": [12, 12], "background_center": [30, 30], "roi_size": 6})
    )
    s = make_study(tmp_path / "s", vols, slices="all", reference=sim / "truth.tif")
    assert s.has_reference
    np.testing.assert_array_equal(s.reference(1), vols["target"][1])
    assert s.body(2).sum() == 900
    assert s.rois(0)["signal_center"] == [12, 12] and s.rois(0)["roi_size"] == 6


# --------------------------------------------------------------------------------------
# judgments
# --------------------------------------------------------------------------------------
def test_append_and_resume(study):
    assert next_trial(study, "AB") == 0
    for t in study.trials[:3]:
        append_judgment(study, "AB", t, "left", 1.5)
    append_judgment(study, "CD", study.trials[0], "right", 0.25)
    rows = read_judgments(study.dir)
    assert [r["reader"] for r in rows] == ["AB", "AB", "AB", "CD"]
    assert tuple(rows[0]) == JUDGMENT_COLUMNS
    t0 = study.trials[0]
    assert rows[3] | {"time": None} == {
        "reader": "CD", "trial": 0, "slice": t0.slice, "left": t0.left, "right": t0.right,
        "choice": "right", "seconds": 0.25, "time": None,
    }  # fmt: skip
    assert answered(study, "AB") == {0, 1, 2} and next_trial(study, "AB") == 3
    assert next_trial(study, "CD") == 1
    text = (study.dir / "judgments.csv").read_text()
    assert text.startswith(",".join(JUDGMENT_COLUMNS) + "\n") and text.count("reader,") == 1


def test_append_rejects_bad_answers(study):
    t = study.trials[0]
    for bad in ("", "a,b", "x\ny"):
        with pytest.raises(ValueError, match="reader name"):
            append_judgment(study, bad, t, "left", 1)
    with pytest.raises(ValueError, match="'left' or 'right'"):
        append_judgment(study, "AB", t, "A", 1)
    with pytest.raises(ValueError, match="decision time"):
        append_judgment(study, "AB", t, "left", float("nan"))
    with pytest.raises(ValueError, match="not a trial"):
        append_judgment(study, "AB", Trial(0, t.slice, t.right, t.left, None), "left", 1)
    append_judgment(study, "AB", t, "left", 1)
    with pytest.raises(ValueError, match="already answered"):
        append_judgment(study, "AB", t, "right", 1)
    assert len(read_judgments(study.dir)) == 1


def test_torn_last_line_is_skipped_and_closed_by_the_next_append(study):
    for t in study.trials[:2]:
        append_judgment(study, "AB", t, "left", 1)
    path = study.dir / "judgments.csv"
    with open(path, "ab") as fh:
        fh.write(b"AB,2,0,inp")  # a crash mid-write
    with pytest.warns(UserWarning, match="torn last line"):
        rows = read_judgments(study.dir)
    assert [r["trial"] for r in rows] == [0, 1]
    assert next_trial(study, "AB") == 2
    append_judgment(study, "AB", study.trials[2], "right", 1)
    with pytest.warns(UserWarning, match="malformed line 4"):
        rows = read_judgments(study.dir)
    assert [r["trial"] for r in rows] == [0, 1, 2] and rows[2]["choice"] == "right"


_WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from napari_dfct.reader_study import Study, append_judgment
    study = Study.open(sys.argv[1])
    reader, start = sys.argv[2], float(sys.argv[3])
    pause = float(sys.argv[4])
    while time.time() < start:
        time.sleep(0.001)
    for t in study.trials:
        append_judgment(study, reader, t, "left" if t.index % 2 else "right", 0.5)
        print(t.index, flush=True)
        time.sleep(pause)
    """
)


def _writer(study_dir, reader, start, pause=0.0):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(study_dir), reader, str(start), str(pause)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_two_processes_appending_at_once_never_interleave(tmp_path):
    s = make_study(tmp_path / "s", _volumes(z=8, size=8), slices="all", repeats=0)  # 48 trials
    start = time.time() + 1.0
    procs = [_writer(s.dir, name, start) for name in ("P1", "P2")]
    for p in procs:
        p.communicate(timeout=120)
        assert p.returncode == 0
    text = (s.dir / "judgments.csv").read_text()
    lines = text.splitlines()
    assert text.endswith("\n") and lines[0] == ",".join(JUDGMENT_COLUMNS)
    assert all(len(line.split(",")) == 8 for line in lines[1:])
    rows = read_judgments(s.dir)
    assert len(rows) == 2 * len(s.trials)
    for name in ("P1", "P2"):
        assert sorted(r["trial"] for r in rows if r["reader"] == name) == list(range(48))
    order = [r["reader"] for r in rows]
    assert order != sorted(order)  # they really ran at the same time


@pytest.mark.skipif(sys.platform == "win32", reason="no flock")
def test_an_append_waits_for_another_append_in_flight(study):
    """Another process's write in flight shows a size that ends mid-line (Linux grows the
    size page by page); the append must wait for it, not take it for a torn line."""
    import fcntl
    import threading

    append_judgment(study, "AB", study.trials[0], "left", 1.0)
    path = study.dir / "judgments.csv"
    t1 = study.trials[1]
    row = f"CD,1,{t1.slice},{t1.left},{t1.right},right,2.000,2026-01-01T00:00:00+00:00\n"
    other = row.encode()
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, other[:10])  # half of the other appender's line is in the file
    waiter = threading.Thread(
        target=append_judgment, args=(study, "AB", study.trials[1], "right", 1.0)
    )
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # it waits for the lock
    os.write(fd, other[10:])
    os.close(fd)  # releases the lock
    waiter.join(10)
    assert not waiter.is_alive()
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and all(len(line.split(",")) == 8 for line in lines)
    assert [(r["reader"], r["trial"]) for r in read_judgments(study.dir)] == [
        ("AB", 0),
        ("CD", 1),
        ("AB", 1),
    ]


def test_sigkill_mid_study_loses_no_recorded_answer(study):
    proc = _writer(study.dir, "AB", time.time(), pause=0.05)
    done = [int(proc.stdout.readline()) for _ in range(5)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        recorded = [r["trial"] for r in read_judgments(study.dir)]
    assert recorded[:5] == done == [0, 1, 2, 3, 4]
    assert recorded == list(range(len(recorded)))
    resumed = Study.open(study.dir)
    assert next_trial(resumed, "AB") == len(recorded) < len(study.trials)


def test_allow_back_and_a_foreign_file(tmp_path):
    s = make_study(tmp_path / "s", _volumes(z=1), repeats=0, allow_back=True)
    assert Study.open(s.dir).allow_back
    t = s.trials[0]
    append_judgment(s, "AB", t, "left", 1)
    append_judgment(s, "AB", t, "right", 1)  # going back is allowed: both rows are kept
    assert [r["choice"] for r in read_judgments(s.dir)] == ["left", "right"]
    (s.dir / "judgments.csv").write_text("name,answer\nAB,left\n")
    with pytest.raises(ValueError, match="header"):
        read_judgments(s.dir)
