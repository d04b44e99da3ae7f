"""Training in a child process: the same :func:`~napari_dfct.train.fit` loop, its events
sent back over a queue.

:func:`fit_in_process` is a generator with :func:`~napari_dfct.train.fit`'s contract (an
:class:`~napari_dfct.train.EpochEvent` per epoch, the
:class:`~napari_dfct.train.FitResult` as its return value, the same exceptions), but the
loop runs in a fresh process (``spawn``) at a lower OS priority. Nothing of the training
holds the caller's interpreter lock or competes with its threads at equal priority, which
is what keeps a napari viewer fluid while a model trains on a small machine; and every
byte of host and device memory of the run is returned to the system when the process
ends.

NumPy arrays travel through shared memory (copied once into the child, released as soon
as it holds them); a :class:`~napari_dfct.scans.ScanSlices` is pickled. The
child checks the cancel flag through a shared event (within one batch, as ``fit``); a
child that dies without a word (killed, a crash in native code) raises a
:class:`RuntimeError` that names its exit code. The child never outlives its parent: it
ends when the parent process ends, by any signal including ``SIGKILL``
(:func:`napari_dfct._procs.die_with_parent`, as the grid's workers). On Linux that
signal comes when the parent *thread* that started the child ends, so the generator is
iterated to its end by the thread that started it (as a napari worker does).

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import queue as _queue
import sys
import time
import types
from collections.abc import Callable, Generator
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["fit_in_process", "PRIORITY_STEP"]

#: How much lower (``nice``) the training process runs than its parent.
PRIORITY_STEP = 10


def _share(a: Any, blocks: list) -> Any:
    """A NumPy array as a picklable shared-memory reference; anything else unchanged."""
    from ..scans import ScanSlices

    if a is None or isinstance(a, ScanSlices) or not hasattr(a, "__array__"):
        return a
    arr = np.ascontiguousarray(np.asarray(a))
    shm = shared_memory.SharedMemory(create=True, size=max(int(arr.nbytes), 1))
    blocks.append(shm)
    np.ndarray(arr.shape, arr.dtype, buffer=shm.buf)[...] = arr
    return {"__shm__": shm.name, "shape": arr.shape, "dtype": arr.dtype.str}


def _unshare(a: Any) -> Any:
    if isinstance(a, dict) and "__shm__" in a:
        shm = shared_memory.SharedMemory(name=a["__shm__"])
        try:
            return np.array(np.ndarray(tuple(a["shape"]), np.dtype(a["dtype"]), buffer=shm.buf))
        finally:
            shm.close()
    return a


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` if it survives a round trip through pickle, else a RuntimeError with its
    type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any unpicklable exception
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _child(events, cancel, spec: dict) -> None:
    """The child process: end with the parent, lower priority, thread count, data, then
    ``fit``."""
    if spec.get("parent_pid") is not None:
        from .._procs import die_with_parent

        die_with_parent(spec["parent_pid"])
    try:
        if spec.get("nice"):
            try:
                os.nice(int(spec["nice"]))
            except (AttributeError, OSError):  # no nice() (Windows) or not permitted
                pass
        import torch

        from .loop import fit

        if spec.get("threads"):
            torch.set_num_threads(int(spec["threads"]))
        x = _unshare(spec["input"])
        y = _unshare(spec["target"])
        events.put(("ready", None))
        gen = fit(
            x,
            y,
            spec["config"],
            spec["out_dir"],
            cancel=cancel.is_set,
            resume=spec["resume"],
            preview_index=spec["preview_index"],
            preview=spec["preview"],
            oracle=spec.get("oracle"),
            on_estimate=lambda est: events.put(("estimate", est)),
            on_batch=(lambda p: events.put(("batch", p))) if spec.get("batches") else None,
        )
        del x, y
        while True:
            try:
                event = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            events.put(("epoch", event))
        if result is not None and result.model_dir is not None:
            result.model = None  # saved in its folder: the parent loads it from there
        elif result is not None and result.model is not None:
            result.model = result.model.to("cpu")
        events.put(("done", result))
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent
        events.put(("error", _picklable(exc)))


def fit_in_process(
    input: Any,
    target: Any,
    config: Any = None,
    out_dir: str | Path | None = None,
    *,
    cancel: Any = None,
    resume: bool = False,
    preview_index: int | None = None,
    preview: bool = True,
    oracle: np.ndarray | None = None,
    on_estimate: Callable[[Any], Any] | None = None,
    batches: bool = False,
    threads: int | None = None,
    nice: int = PRIORITY_STEP,
    poll: float = 0.05,
) -> Generator[Any, None, Any]:
    """:func:`~napari_dfct.train.fit` in a child process; same events, result and errors.

    Parameters
    ----------
    input, target
        As :func:`~napari_dfct.train.fit`.
    cancel : threading.Event or callable, optional
        Polled every ``poll`` seconds; when set, the child stops within one batch and the
        generator returns ``stopped="cancelled"``.
    batches : bool
        Also yield the child's :class:`~napari_dfct.train.progress.BatchProgress` reports
        (within an epoch, at most every 0.5 s; ``fit``'s ``on_batch``) between the epochs'
        events.
    threads : int, optional
        torch intra-op threads in the child (None: torch's default, all cores).
    nice : int
        How much lower the child's OS priority is (0: the caller's).
    Other parameters
        As :func:`~napari_dfct.train.fit`.

    Raises
    ------
    ValueError, OutOfMemory, FloatingPointError, OSError
        What ``fit`` raised in the child.
    RuntimeError
        The child ended without a result (its exit code is in the message).
    """
    from ..device import cancel_check

    check_cancel = cancel_check(cancel)
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    child_cancel = ctx.Event()
    blocks: list = []
    proc = None
    try:
        spec = {
            "input": _share(input, blocks),
            "target": _share(target, blocks),
            "config": config,
            "out_dir": None if out_dir is None else str(out_dir),
            "resume": bool(resume),
            "preview_index": preview_index,
            "preview": bool(preview),
            "oracle": oracle,
            "batches": bool(batches),
            "threads": threads,
            "nice": int(nice),
            "parent_pid": os.getpid(),
        }
        proc = ctx.Process(
            target=_child, args=(events, child_cancel, spec), name="dfct-train", daemon=True
        )
        with _without_main_script():
            proc.start()
        while True:
            if check_cancel():
                child_cancel.set()
            try:
                kind, value = events.get(timeout=poll)
            except _queue.Empty:
                if not proc.is_alive():
                    try:  # a last message may still be in the pipe
                        kind, value = events.get(timeout=1.0)
                    except _queue.Empty:
                        raise RuntimeError(
                            f"the training process ended without a result (exit code "
                            f"{proc.exitcode})"
                        ) from None
                else:
                    continue
            if kind == "ready":
                _release(blocks)
            elif kind in ("epoch", "batch"):
                yield value
            elif kind == "estimate":
                if on_estimate is not None:
                    on_estimate(value)
            elif kind == "done":
                return value
            elif kind == "error":
                raise value
    finally:
        # also when the caller closes the generator early: stop the child, then wait
        if proc is not None:
            child_cancel.set()
            # drain what it still sends: a child whose queue pipe is full cannot exit
            deadline = time.monotonic() + 10.0
            while proc.is_alive() and time.monotonic() < deadline:
                try:
                    events.get(timeout=0.1)
                except (_queue.Empty, OSError, EOFError):
                    pass
            proc.join(timeout=1.0)
            if proc.is_alive():  # pragma: no cover - a child stuck in native code
                proc.terminate()
                proc.join(timeout=5.0)
        _release(blocks)
        events.close()


@contextlib.contextmanager
def _without_main_script():
    """Start a child that does not import the caller's ``__main__``.

    ``spawn`` re-imports the main script in the child (to find functions defined there).
    The child needs nothing of it, and a script without an ``if __name__ == "__main__"``
    guard (a napari session started from a script) would run again in the child: open a
    second viewer, or start another child. While the child is being started,
    ``__main__`` is a module without a file, which ``spawn`` leaves alone.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _release(blocks: list) -> None:
    while blocks:
        shm = blocks.pop()
        try:
            shm.close()
            shm.unlink()
        except OSError:  # pragma: no cover - already gone
            pass
