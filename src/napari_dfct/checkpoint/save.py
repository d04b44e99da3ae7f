"""Saving model folders: a new folder appears complete in one rename; later saves replace
one file at a time, each atomically; new runs are checked up front; leftovers of killed
processes are cleaned."""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import glob
import io
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .._files import _fsync_dir, atomic_write_bytes, atomic_write_text, json_safe, write_json
from ._base import (
    CONFIG_FILE,
    FORMAT_VERSION,
    HISTORY_CSV_FILE,
    HISTORY_FILE,
    RUN_FILES,
    TENSORBOARD_DIR,
    WEIGHTS_FILE,
    CheckpointError,
    _model_config,
    _state_dict_bytes,
    _versions,
    is_model_dir,
)
from .state import save_training_state


def _complete_config(config: dict, weights: dict | None, model=None) -> dict:
    """``config`` with ``"model"`` (when it can be derived), format, versions and time."""
    cfg = dict(config)
    if "model" not in cfg and model is not None:
        mc = _model_config(model)
        if mc is not None:
            cfg["model"] = mc
    cfg.setdefault("format_version", FORMAT_VERSION)
    cfg["versions"] = _versions()
    cfg["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return cfg


def _write_parts(folder: Path, weights, config, history, state) -> None:
    """Write the given parts into ``folder``, each atomically, weights first, state last."""
    if weights is not None:
        epoch = (config or {}).get("best_epoch")
        meta = {"format": "pt", "napari_dfct": "model"}
        if epoch is not None:
            meta["epoch"] = str(int(epoch))
        atomic_write_bytes(folder / WEIGHTS_FILE, _state_dict_bytes(weights, metadata=meta))
    if config is not None:
        write_json(folder / CONFIG_FILE, config)
    if history is not None:
        write_history(folder, history)
    if state is not None:
        save_training_state(folder, state)


def _followed(folder: Path) -> Path:
    """``folder``, or the folder a symbolic link there points to (the files go there)."""
    return folder.resolve() if folder.is_symlink() else folder


def _sibling(folder: Path, kind: str) -> Path:
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"
    return folder.with_name(f".{folder.name}.{kind}-{host}-{os.getpid()}-{secrets.token_hex(4)}")


def _is_run_file(folder: Path, name: str) -> bool:
    """A file a model folder may hold: its own files and their atomic-write leftovers."""
    if name in RUN_FILES or name == TENSORBOARD_DIR:
        return True
    return any(name.startswith(f".{f}.") and name.endswith(".tmp") for f in RUN_FILES)


def _replaceable(folder: Path) -> bool:
    """Whether a new run may replace ``folder``: absent, or a folder of our files only
    that holds no model (an empty folder, a run that never saved weights, a folder left
    incomplete by a version without atomic folders)."""
    if not folder.exists():
        return True
    if not folder.is_dir() or is_model_dir(folder):
        return False
    return all(_is_run_file(folder, p.name) for p in folder.iterdir())


def _commit_new_folder(folder: Path, weights, config, history, state) -> None:
    """Write a whole model folder into a hidden sibling and rename it into place."""
    folder = _followed(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(folder)
    tmp = _sibling(folder, "partial")
    tmp.mkdir()
    try:
        _write_parts(tmp, weights, config, history, state)
        _move_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(folder.parent)


def _move_into_place(tmp: Path, folder: Path) -> None:
    """Rename ``tmp`` to ``folder``; an existing replaceable ``folder`` goes first (an
    empty one is replaced in the same rename on POSIX; a stale one is renamed aside, so
    ``folder`` is the old folder, absent, or the new one at every instant)."""
    if not folder.exists():
        os.rename(tmp, folder)
        return
    if not _replaceable(folder):
        raise CheckpointError(
            f"{folder} changed while training (it now holds a model or other files); the "
            "new run was not saved there"
        )
    if not any(folder.iterdir()):
        try:
            os.rename(tmp, folder)  # POSIX: an empty folder is replaced atomically
            return
        except OSError:
            folder.rmdir()
            os.rename(tmp, folder)
            return
    aside = _sibling(folder, "replaced")
    os.rename(folder, aside)
    os.rename(tmp, folder)
    shutil.rmtree(aside, ignore_errors=True)


def save_run(
    model_dir: str | os.PathLike,
    config: dict,
    history: list[dict] | None = None,
    state: dict | None = None,
    *,
    weights: dict[str, torch.Tensor] | None = None,
    new: bool = False,
) -> Path:
    """Save one epoch of a training run.

    Parameters
    ----------
    model_dir : path
        The model folder.
    config : dict
        ``config.json`` (completed as in :func:`save_checkpoint`); written with new
        weights and on the first save, left as it is otherwise.
    history : list of dict, optional
        ``history.json``.
    state : dict, optional
        The resume state (:func:`save_training_state`).
    weights : dict of tensors, optional
        New best weights for ``model.safetensors``.
    new : bool
        The first save of a new run: whatever ``model_dir`` holds (nothing, an empty
        folder, or the files of a run that never saved a model) is replaced as a whole by a
        complete folder, in one rename.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(model_dir)
    write_config = new or weights is not None
    cfg = _complete_config(config, weights) if write_config else None
    if new or not folder.is_dir():
        _commit_new_folder(folder, weights, cfg, history, state)
    else:
        _write_parts(folder, weights, cfg, history, state)
    return folder


def save_checkpoint(
    model_dir: str | os.PathLike,
    model: torch.nn.Module,
    config: dict,
    history: list[dict] | None = None,
    *,
    state: dict | None = None,
) -> Path:
    """Save a model folder: a new (or empty) folder appears complete in one rename, an
    existing one has its files replaced one by one, each atomically.

    Parameters
    ----------
    model_dir : path
        The folder (created if needed, parents included).
    model : torch.nn.Module
        Its ``state_dict`` goes to ``model.safetensors``.
    config : dict
        JSON-serialisable metadata. ``"model"`` (architecture kwargs) is filled from
        :func:`napari_dfct.model.model_config` when absent; ``"versions"``, ``"created"``
        and ``"format_version"`` are added.
    history : list of dict, optional
        Written to ``history.json`` (previews and other arrays must be left out).
    state : dict, optional
        Resume state, written with :func:`save_training_state`.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(model_dir)
    weights = model.state_dict()
    cfg = _complete_config(config, weights, model)
    if folder.is_dir() and any(folder.iterdir()):
        _write_parts(folder, weights, cfg, history, state)
    else:
        _commit_new_folder(folder, weights, cfg, history, state)
    return folder


def write_history(model_dir: str | os.PathLike, history: list[dict]) -> Path:
    """Write ``history.json`` and ``history.csv`` atomically (arrays and ``preview``
    entries are dropped); return the path of ``history.json``.

    ``history.csv`` holds the same numbers, one row per epoch, a column per key (in the
    order keys first appear); a value that is not finite, like ``null`` in the JSON, is an
    empty cell.
    """
    clean = []
    for rec in history:
        clean.append(
            {
                k: v
                for k, v in dict(rec).items()
                if k != "preview" and not isinstance(v, np.ndarray | torch.Tensor)
            }
        )
    path = write_json(Path(model_dir) / HISTORY_FILE, clean)
    atomic_write_text(Path(model_dir) / HISTORY_CSV_FILE, history_csv(clean))
    return path


def _csv_cell(value) -> str:
    value = json_safe(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def history_csv(history: list[dict]) -> str:
    """The text of ``history.csv`` for the records ``history``."""
    columns: list[str] = []
    for rec in history:
        columns.extend(k for k in rec if k not in columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for rec in history:
        writer.writerow([_csv_cell(rec.get(k)) for k in columns])
    return buf.getvalue()


# ------------------------------------------------------------ new runs, stale leftovers
def clean_stale(model_dir: str | os.PathLike) -> list[Path]:
    """Remove what killed processes left around ``model_dir``; return what was removed.

    That is hidden sibling folders of an unfinished first save or replacement
    (``.<name>.partial-*``, ``.<name>.replaced-*``) whose process is gone (on this host;
    another host's are left for a day), and temporary files of interrupted atomic writes
    inside the folder. Nothing else is touched.
    """
    folder = Path(model_dir)
    removed: list[Path] = []
    try:
        siblings = list(folder.parent.glob(f".{glob.escape(folder.name)}.*-*"))
    except OSError:
        siblings = []
    for path in siblings:
        if path.is_dir() and _left_by_dead_process(folder, path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name not in (*RUN_FILES, TENSORBOARD_DIR) and _is_run_file(folder, path.name):
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
    return removed


def _left_by_dead_process(folder: Path, path: Path) -> bool:
    rest = path.name[len(folder.name) + 2 :]
    kind, _, tail = rest.partition("-")
    parts = tail.rsplit("-", 2)
    if kind not in ("partial", "replaced") or len(parts) != 3 or not parts[1].isdigit():
        return False
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"
    if parts[0] != host:
        try:
            return time.time() - path.stat().st_mtime > 86400
        except OSError:
            return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def check_writable(folder: str | os.PathLike) -> Path:
    """Raise :class:`CheckpointError` unless files can be created in ``folder`` (or, when
    it does not exist, in its nearest existing parent, where it would be created).

    A real probe (a hidden folder created and removed), so read-only file systems, full
    quotas and missing permissions are all found, for every user.
    """
    target = Path(folder).expanduser()
    probe_in = target
    while not probe_in.exists():
        if probe_in.parent == probe_in:
            break
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise CheckpointError(f"cannot write to {probe_in}: it is a file, not a folder")
    try:
        tmp = tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=probe_in)
        os.rmdir(tmp)
    except OSError as exc:
        raise CheckpointError(f"cannot write to {probe_in}: {exc.strerror or exc}") from None
    return target


def check_new_run_dir(model_dir: str | os.PathLike) -> Path:
    """Raise :class:`CheckpointError` unless a new training run may be saved to
    ``model_dir``: it must be new, an empty folder, or a folder of a run that never saved
    a model (replaced as a whole at the first save), and its parent must be writable."""
    folder = _followed(Path(model_dir).expanduser())
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file, not a model folder; choose a folder")
    if is_model_dir(folder):
        raise CheckpointError(
            f"{folder} already holds a model; write the new run to "
            "another folder, or resume this one"
        )
    if not _replaceable(folder):
        other = sorted(p.name for p in folder.iterdir() if not _is_run_file(folder, p.name))
        raise CheckpointError(
            f"{folder} is not empty and is not a model folder (it holds "
            f"{other[0]!r}); choose a new or empty folder"
        )
    check_writable(folder.parent)
    return folder


def new_run_dir(
    parent: str | os.PathLike, name: str | None, loss_name: str, now: _dt.datetime | None = None
) -> Path:
    """The folder of a new training run: ``parent / name``, created parent included.

    Parameters
    ----------
    parent : path
        Where model folders go (created if missing).
    name : str, optional
        The run name; empty or None: ``<loss_name>-<YYYYmmdd>-<HHMMSS>``.
    loss_name : str
        The loss configuration's name, for the default run name.
    now : datetime.datetime, optional
        The time stamp of the default name (the current local time by default).

    Returns
    -------
    pathlib.Path
        The run folder (not created: training creates it).

    Raises
    ------
    ValueError
        The folder already holds a model (a new run never overwrites one) or other files,
        or ``parent`` cannot be created or written to (:func:`check_new_run_dir`).
    """
    base = Path(parent).expanduser()
    run = str(name or "").strip()
    if not run:
        run = f"{loss_name}-{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}"
    out = base / run
    if is_model_dir(out):
        check_new_run_dir(out)  # the one message for a folder that holds a model
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the output folder {base}: {err}") from None
    return check_new_run_dir(out)
