"""The state of a grid folder: which runs are done, incomplete, missing or still queued in
Slurm (:func:`grid_status`, :func:`queued_runs`), and the event log ``OUT/grid-log.jsonl``
(:func:`read_log`)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._util import json_safe, read_json
from .layout import ASIDE_MARK, GRID_FILE, LOG_FILE, METRICS_FILE, RUNS_DIR

__all__ = ["aside_summary", "grid_status", "queued_runs", "read_log"]


def grid_status(out_dir: str | os.PathLike) -> dict:
    """Which runs of a grid are done, incomplete (folder without metrics.json) or missing.

    Returns
    -------
    dict
        ``{"done": [(name, seed)], "incomplete": [...], "missing": [...],
        "aside": [paths of moved-aside attempts]}`` for the configurations and seeds listed
        in ``grid.json``, plus any finished run found on disk.
    """
    out_dir = Path(out_dir)
    settings = read_json(out_dir / GRID_FILE, expect=dict)
    status: dict[str, list] = {"done": [], "incomplete": [], "missing": [], "aside": []}
    expected = [
        (n, int(s)) for n in settings.get("configs", {}) for s in settings.get("seeds", [])
    ]
    runs = out_dir / RUNS_DIR
    found = set()
    if runs.is_dir():
        for cdir in sorted(p for p in runs.iterdir() if p.is_dir()):
            for rdir in sorted(p for p in cdir.iterdir() if p.is_dir()):
                if ASIDE_MARK in rdir.name:
                    status["aside"].append(str(rdir))
                    continue
                if not rdir.name.startswith("seed-"):
                    continue
                try:
                    seed = int(rdir.name[5:])
                except ValueError:
                    continue
                found.add((cdir.name, seed))
                key = "done" if (rdir / METRICS_FILE).is_file() else "incomplete"
                status[key].append((cdir.name, seed))
    status["missing"] = [k for k in expected if k not in found]
    return status


def aside_summary(out_dir: str | os.PathLike) -> dict:
    """The moved-aside attempts of a grid folder: ``{"count": n, "bytes": total size,
    "pattern": a shell glob that matches them all}``."""
    out_dir = Path(out_dir)
    count = size = 0
    for folder in (out_dir / RUNS_DIR).glob(f"*/*{ASIDE_MARK}*"):
        if not folder.is_dir():
            continue
        count += 1
        for path in folder.rglob("*"):
            try:
                size += path.stat().st_size if path.is_file() else 0
            except OSError:
                pass
    return {
        "count": count,
        "bytes": size,
        "pattern": str(out_dir / RUNS_DIR / f"*/*{ASIDE_MARK}*"),
    }


_ACTIVE_SLURM_STATES = {
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "RESIZING",
    "READY",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
}


def queued_runs(
    out_dir: str | os.PathLike, pending: Iterable[tuple[str, int]] | None = None
) -> tuple[dict, list[str]]:
    """Runs of earlier Slurm submissions (``OUT/submitted-*.json``) still queued or running.

    Asks Slurm (``sacct``, through submitit) once for all earlier arrays.

    Parameters
    ----------
    out_dir : path
        The grid folder.
    pending : iterable of (name, seed), optional
        Only these runs are looked up (default: all submitted ones).

    Returns
    -------
    active : dict
        ``{(name, seed): {"job_id", "state"}}`` for the runs in an active Slurm state
        (pending, running, requeued...).
    unknown : list of str
        Job ids whose state Slurm did not report (``sacct`` missing or the job too old).
    """
    out_dir = Path(out_dir)
    wanted = None if pending is None else {(str(n), int(s)) for n, s in pending}
    items = []
    for path in sorted(out_dir.glob("submitted-*.json")):
        try:
            doc = read_json(path, expect=dict)
        except (OSError, ValueError):
            continue
        if doc.get("executor") != "slurm":
            continue
        for item in doc.get("jobs", []):
            key = (str(item["name"]), int(item["seed"]))
            if wanted is None or key in wanted:
                items.append((key, str(item["job_id"]), doc.get("folder", str(out_dir))))
    if not items:
        return {}, []
    try:
        import submitit
    except ImportError:  # pragma: no cover
        return {}, [job_id for _, job_id, _ in items]
    jobs: list[tuple[tuple[str, int], submitit.SlurmJob[Any]]] = [
        (key, submitit.SlurmJob(folder=folder, job_id=job_id)) for key, job_id, folder in items
    ]
    jobs[0][1].get_info(mode="force")  # one sacct call for every registered array
    active, unknown = {}, []
    for key, job in jobs:
        info = job.watcher.get_info(job.job_id, mode="cache")
        state = str(info.get("State") or "UNKNOWN").split()[0].upper()
        if state in _ACTIVE_SLURM_STATES:
            active[key] = {"job_id": job.job_id, "state": state}
        elif state == "UNKNOWN":
            unknown.append(job.job_id)
    return active, unknown


# --------------------------------------------------------------------------- logging
def _log(out_dir: Path, event: dict) -> None:
    event = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **event}
    with open(out_dir / LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_safe(event), allow_nan=False) + "\n")


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    """The events of ``OUT/grid-log.jsonl`` (trained, skipped, failed, moved-aside, submitted)."""
    path = Path(out_dir) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
