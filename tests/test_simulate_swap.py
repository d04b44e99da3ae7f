"""Simulated sets are replaced as a whole, and a folder whose files were not written
together is refused.

``dfct simulate --overwrite`` runs in real processes that SIGKILL themselves right after
their K-th ``os.replace`` / ``os.rename``, for every K of a write: each kill must leave the
old set or the new set (byte for byte, as written by uninterrupted runs), or hidden
folders from which the next read or write restores one; never a mix. A mixed folder made
by hand is refused by ``dfct train --data`` and by the grid, with one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from napari_dfct.cli import main
from napari_dfct.simulate import check_dataset, dataset_files, load_simulation

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks killed writers")

SMALL = ["--specimens", "2", "--size", "32", "--views", "16", "--rotations", "2", "--quiet"]
SET = ("input.tif", "target.tif", "truth.tif", "body.tif")

# One process imports everything once (a first write), then forks a writer per kill
# point: each writer runs `dfct simulate --overwrite` and SIGKILLs itself right after its
# K-th os.replace or os.rename; a writer that gets past its last one exits with 100 +
# the number it made.
DRIVER = textwrap.dedent("""
    import contextlib, io, json, os, signal, sys, tempfile
    import torch
    from napari_dfct.cli import main

    torch.set_num_threads(1)  # no thread pool: the forked writers must not inherit one
    jobs, args = json.loads(sys.argv[1]), sys.argv[2:]
    with tempfile.TemporaryDirectory() as warm, contextlib.redirect_stdout(io.StringIO()):
        main(["simulate", os.path.join(warm, "set"), *args])  # every import, done once
    status = {}
    for k, out in jobs:
        pid = os.fork()
        if pid == 0:
            calls = [0]

            def wrap(func):
                def wrapped(*a, **kw):
                    result = func(*a, **kw)
                    calls[0] += 1
                    if calls[0] == k:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return result
                return wrapped

            os.replace, os.rename = wrap(os.replace), wrap(os.rename)
            try:
                main(["simulate", out, *args, "--overwrite"])
            finally:
                os._exit(100 + calls[0])
        status[out] = os.waitpid(pid, 0)[1]
    print(json.dumps(status))
""")


def _set_bytes(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in SET if (folder / n).is_file()}


def _meta(folder: Path) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    meta.pop("generation", None)
    return meta


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """The old set (seed 1) and the new set (seed 2), each written without a kill."""
    root = tmp_path_factory.mktemp("refs")
    for seed in (1, 2):
        assert main(["simulate", str(root / f"seed{seed}"), *SMALL, "--seed", str(seed)]) == 0
    return root / "seed1", root / "seed2"


def _whole(folder: Path, refs) -> str:
    """ "old" or "new": which reference set ``folder`` holds, byte for byte."""
    old, new = refs
    got = _set_bytes(folder)
    for name, ref in (("old", old), ("new", new)):
        if got == _set_bytes(ref) and _meta(folder) == _meta(ref):
            return name
    raise AssertionError(f"{folder} holds a mixed set")


def test_a_killed_overwrite_leaves_the_old_or_the_new_set(tmp_path, refs):
    old = refs[0]
    kills = range(1, 11)  # past the last replace: those writers finish
    jobs = []
    for k in kills:
        for role in ("read", "write"):
            out = tmp_path / f"{role}{k}" / "set"
            shutil.copytree(old, out)
            (out / "notes.txt").write_text("mine")  # not part of the set: kept
            jobs.append([k, str(out)])
    # the new set as an uninterrupted writer of the driver writes it (same threads)
    fresh = tmp_path / "fresh" / "set"
    jobs.append([10**6, str(fresh)])
    driver = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(jobs), *SMALL, "--seed", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    assert driver.returncode == 0, driver.stderr
    status = json.loads(driver.stdout.strip().splitlines()[-1])
    refs = (old, fresh)
    assert os.waitstatus_to_exitcode(status.pop(str(fresh))) > 100  # not killed
    finished = {os.waitstatus_to_exitcode(s) for s in status.values()} - {-signal.SIGKILL}
    assert len(finished) == 1, status  # every writer that was not killed made n replaces
    n = finished.pop() - 100
    assert n >= 8  # 3 volumes, the mask, meta.json, the swap's 2 renames, notes.txt moved
    seen = set()
    for k in kills:
        read, write = (tmp_path / f"{role}{k}" / "set" for role in ("read", "write"))
        expect = -signal.SIGKILL if k <= n else 100 + n
        assert os.waitstatus_to_exitcode(status[str(read)]) == expect
        # as the kill left it: the set there (if any) is whole
        if read.is_dir():
            seen.add(_whole(read, refs))
        else:
            seen.add("missing")
        # a reader (dfct train --data, the grid) recovers and accepts a whole set
        check_dataset(read)
        state = _whole(read, refs)
        assert (read / "notes.txt").read_text() == "mine"
        assert _hidden(read.parent) == []
        if k >= n:
            assert state == "new"
        # the next write cleans up too, and keeps the other files
        main(["simulate", str(write), *SMALL, "--seed", "1", "--overwrite"])
        assert _whole(write, refs) == "old"
        assert (write / "notes.txt").read_text() == "mine"
        assert _hidden(write.parent) == []
    assert seen == {"old", "missing", "new"}  # every stage of the swap was hit


def test_train_and_the_grid_refuse_files_of_different_writes(tmp_path, refs, capsys):
    old, new = refs
    mixed = tmp_path / "mixed"
    shutil.copytree(old, mixed)
    shutil.copyfile(new / "input.tif", mixed / "input.tif")  # a half-done replace
    model = tmp_path / "model"
    argv = ["train", "--data", str(mixed), "--out", str(model), "--preset", "tiny"]
    assert main([*argv, "--epochs", "1", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input.tif" in err[0] and "mixes files" in err[0], err
    assert not model.exists()
    out = tmp_path / "grid"
    grid = ["grid", str(out), "--train", str(mixed), "--test", str(old), "--quiet"]
    assert main([*grid, "--configs", "l2", "--preset", "tiny", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input.tif" in err[0] and "Traceback" not in err[0], err
    grid = ["grid", str(out), "--train", str(old), "--test", str(mixed), "--quiet"]
    assert main([*grid, "--configs", "l2", "--preset", "tiny", "--epochs", "1"]) == 2
    assert "input.tif" in capsys.readouterr().err
    with pytest.raises(ValueError, match="mixes files"):
        load_simulation(mixed)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("cut", "target.tif is not the file written"),
        ("missing", "truth.tif is missing"),
        ("extra", "body.tif is not part of the set"),
    ],
)
def test_a_damaged_set_is_refused_and_an_old_folder_accepted(tmp_path, refs, damage, message):
    old, _ = refs
    d = tmp_path / "set"
    shutil.copytree(old, d)
    check_dataset(d)  # whole
    if damage == "cut":
        data = (d / "target.tif").read_bytes()
        (d / "target.tif").write_bytes(data[: len(data) // 2])
    elif damage == "missing":
        (d / "truth.tif").unlink()
    else:  # a set without a mask, then a body.tif from elsewhere
        meta = json.loads((d / "meta.json").read_text())
        del meta["generation"]["files"]["body.tif"]
        (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=message):
        check_dataset(d)
    # a folder written before generation ids existed is taken as it is
    meta = json.loads((d / "meta.json").read_text())
    del meta["generation"]
    (d / "meta.json").write_text(json.dumps(meta))
    check_dataset(d)


def test_every_file_is_recorded_in_meta_and_load_hides_the_record(tmp_path, small_sim):
    from napari_dfct._files import fingerprint
    from napari_dfct.simulate import save_simulation

    paths = save_simulation(small_sim, tmp_path / "a")
    save_simulation(small_sim, tmp_path / "b")
    gen = [json.loads((tmp_path / s / "meta.json").read_text())["generation"] for s in "ab"]
    assert gen[0]["id"] != gen[1]["id"]  # one id per write, even of the same data
    assert set(gen[0]["files"]) == set(SET)
    for name, want in gen[0]["files"].items():
        assert fingerprint(tmp_path / "a" / name) == want
    assert "generation" not in load_simulation(tmp_path / "a").meta
    assert {p.name for p in dataset_files(tmp_path / "a")} == {p.name for p in paths.values()}


def test_a_symlinked_folder_its_permissions_and_other_files_are_kept(tmp_path, refs):
    old, new = refs
    real = tmp_path / "real"
    shutil.copytree(old, real)
    real.chmod(0o2770)
    (real / "models" / "m").mkdir(parents=True)  # the user's own files in the folder
    (real / "models" / "m" / "config.json").write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert main(["simulate", str(link), *SMALL, "--seed", "2", "--overwrite"]) == 0
    assert link.is_symlink() and _whole(real, refs) == "new"
    assert real.stat().st_mode & 0o7777 == 0o2770
    assert (real / "models" / "m" / "config.json").read_text() == "{}"
    assert _hidden(tmp_path) == []
