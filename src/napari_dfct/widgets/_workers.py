"""Background jobs of the dock widgets: training and prediction off the GUI thread.

One path starts every job (:func:`start_job`: a napari generator worker, a cancel flag
that the widget's destruction sets unless the viewer owns the job (:mod:`._jobs`), the
handlers connected) and one event type
reports progress (:class:`JobEvent`). The job bodies (:func:`train_job`,
:func:`predict_job`) drive :func:`napari_dfct.train.fit` and
:func:`napari_dfct.infer.predict_iter`; the widgets only start them and show the events.

Responsiveness on small machines: training runs in a child process at a lower OS
priority (:func:`napari_dfct.train.process.fit_in_process`), so it holds neither this
interpreter's lock nor the GUI thread's core when the GUI needs it, and may use every core
otherwise (:func:`training_threads`); prediction threads run at a lower OS priority
(:func:`lower_thread_priority`); torch's lazy imports are done once when a widget opens
(:func:`warm_up_torch`), and :class:`Throttle` coalesces bursts of events into GUI updates
at a bounded rate.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from qtpy.QtCore import QObject, QTimer

__all__ = [
    "JobEvent",
    "JobFailed",
    "Throttle",
    "failure_text",
    "lower_thread_priority",
    "predict_job",
    "problem_text",
    "set_progress",
    "start_job",
    "train_job",
    "training_threads",
    "warm_up_torch",
]

#: Name of the thread that imports torch's lazy modules when a widget opens.
WARM_UP_THREAD = "dfct-warm-up"


#: What a :class:`JobEvent` reports.
JobKind = Literal["data", "batch", "epoch", "model", "slice"]


@dataclass(frozen=True)
class JobEvent:
    """One progress report of a background job, delivered to the widget's GUI thread.

    Attributes
    ----------
    kind : {"data", "batch", "epoch", "model", "slice"}
        ``"data"``: training read its data; ``info`` holds ``shape`` and, for files,
        ``scale`` and ``name``.
        ``"batch"``: progress within a training epoch; ``value`` is the
        :class:`napari_dfct.train.progress.BatchProgress`.
        ``"epoch"``: a training epoch finished; ``value`` is the
        :class:`napari_dfct.train.EpochEvent`.
        ``"model"``: prediction has its model; ``value`` is the
        :class:`napari_dfct.checkpoint.LoadedModel`.
        ``"slice"``: one slice is predicted; ``index`` is its position along the first
        axis, ``value`` the 2-D prediction.
    value : object, optional
    index : int, optional
    info : mapping, optional
    """

    kind: JobKind
    value: Any = None
    index: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------ start, errors
def start_job(
    owner: QObject | None,
    body: Callable[..., Generator[JobEvent, None, Any]],
    *args,
    on_event: Callable[[JobEvent], None],
    on_error: Callable[[BaseException], None],
    on_finished: Callable[[], None],
    on_returned: Callable[[Any], None] | None = None,
    **kwargs,
):
    """Run ``body(*args, cancel=cancel, **kwargs)`` in a napari generator worker.

    Every yielded :class:`JobEvent` goes to ``on_event``, the body's return value to
    ``on_returned``, an exception to ``on_error`` (never a traceback in the viewer), and
    ``on_finished`` runs last in every case; all on the GUI thread. The cancel flag is set
    when ``owner`` is destroyed, so a closed widget stops its job; a job without an owner
    (a viewer's job, :mod:`._jobs`) is stopped through its flag only.

    Returns
    -------
    (worker, threading.Event)
        The started worker and the cancel flag the body checks.
    """
    from napari.qt.threading import create_worker

    cancel = threading.Event()
    if owner is not None:
        owner.destroyed.connect(cancel.set)

    def errored(exc: BaseException) -> None:
        on_error(exc.error if isinstance(exc, JobFailed) else exc)

    connect = {"yielded": on_event, "errored": errored, "finished": on_finished}
    if on_returned is not None:
        connect["returned"] = on_returned
    worker = create_worker(
        _guarded,
        body,
        *args,
        cancel=cancel,
        **kwargs,
        _start_thread=False,
        _connect=connect,
        _worker_class=_cancelling_worker(),
    )
    worker.start()
    return worker, cancel


@functools.cache
def _cancelling_worker():
    """napari's generator worker, whose ``quit()`` sets the job's cancel flag.

    napari quits the workers of a closing window (and of a quitting application); a
    plain worker then stops driving its generator and leaves it suspended, so the body's
    cleanup (a training process stopped and joined) waits for garbage collection while
    the process trains on. This one lets the body see its cancel flag and end as after
    Stop.
    """
    from napari.qt.threading import GeneratorWorker

    class CancellingWorker(GeneratorWorker):
        def __init__(self, func, *args, **kwargs):
            super().__init__(func, *args, **kwargs)
            self._cancel = kwargs.get("cancel")

        def quit(self) -> None:
            if self._cancel is None:
                super().quit()
            else:
                self._cancel.set()

    return CancellingWorker


class JobFailed(Exception):
    """A :class:`RuntimeError` raised by a job body, carried to the widget's error handler.

    The worker thread takes a :class:`RuntimeError` escaping a generator for a deleted Qt
    object: it emits neither ``errored`` nor ``finished``, and the widget would wait for
    the job forever (torch reports most failures, out-of-memory included, as
    RuntimeErrors). :func:`start_job` wraps them in this exception and hands the original
    to ``on_error``.
    """

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _guarded(body: Callable[..., Generator], *args, **kwargs) -> Generator:
    """Run the generator ``body(*args, **kwargs)``, re-raising a RuntimeError as
    :class:`JobFailed`."""
    try:
        return (yield from body(*args, **kwargs))
    except RuntimeError as exc:
        raise JobFailed(exc) from exc


def problem_text(exc: BaseException) -> str:
    """A one-line account of ``exc``: the message of a :class:`ValueError` (bad input,
    worded for the user), else ``Type: message``."""
    name = type(exc).__name__
    msg = str(exc)
    if isinstance(exc, ValueError):
        return msg or name
    return f"{name}: {msg}" if msg else name


def failure_text(action: str, exc: BaseException, oom_advice: str = "") -> str:
    """The message for a job that raised: ``"<action> failed: ..."``, or
    ``"<action> ran out of memory: ..."`` followed by ``oom_advice``."""
    msg = str(exc) or type(exc).__name__
    if _is_out_of_memory(exc, msg):
        return f"{action} ran out of memory: {msg}" + (f". {oom_advice}" if oom_advice else "")
    return f"{action} failed: {problem_text(exc)}"


def _is_out_of_memory(exc: BaseException, msg: str) -> bool:
    return (
        type(exc).__name__ == "OutOfMemory"
        or isinstance(exc, MemoryError)
        or "out of memory" in msg.lower()
    )


# ------------------------------------------------------------------------ GUI updates
def set_progress(progress, value: int, maximum: int | None = None) -> None:
    """Set a magicgui ``ProgressBar`` without a synchronous repaint.

    ``QProgressBar.setValue`` repaints at once whenever the shown percentage changes;
    inside the napari window that repaint flushes the whole window (about 20 ms on the
    GUI thread under software OpenGL, per call). With updates suspended around the change
    the bar is repainted in the next regular paint, together with everything else.
    """
    bar = progress.native
    bar.setUpdatesEnabled(False)
    try:
        if maximum is not None:
            progress.max = max(int(maximum), 1)
        progress.value = int(value)
    finally:
        bar.setUpdatesEnabled(True)  # schedules an ordinary (deferred) update


class Throttle:
    """Coalesce bursts of updates into calls of ``callback``, at most every ``interval_ms``.

    :meth:`poke` after each event; the callback runs once the interval since its last run
    has passed (at once after a quiet spell), so fast events never flood the event loop.
    :meth:`flush` runs it now (e.g. when the job ends).
    """

    def __init__(self, parent: QObject, interval_ms: int, callback: Callable[[], None]):
        self.interval_ms = int(interval_ms)
        self._callback = callback
        self._last = 0.0
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._fire)

    def poke(self) -> None:
        """Schedule a call, unless one is already scheduled."""
        if not self._timer.isActive():
            elapsed = (time.perf_counter() - self._last) * 1000.0
            self._timer.start(int(max(0.0, self.interval_ms - elapsed)))

    def flush(self) -> None:
        """Cancel the scheduled call and run the callback now."""
        self._timer.stop()
        self._fire()

    def stop(self) -> None:
        """Cancel the scheduled call."""
        self._timer.stop()

    def _fire(self) -> None:
        self._last = time.perf_counter()
        self._callback()


# ------------------------------------------------------------------------ CPU sharing
def lower_thread_priority(step: int = 10) -> Callable[[], None]:
    """Lower the OS priority of the calling thread (Linux only), so the GUI thread wins.

    Training and the Qt event loop compete for the same cores; a lower priority
    (``nice``) for the training thread keeps the event loop responsive on small
    machines. Linux schedules threads individually, so this touches no other thread.

    Returns
    -------
    callable
        Restores the previous priority (best effort: unprivileged users cannot raise
        a priority again; the worker thread then stays ``nice`` until the thread pool
        retires it).
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    try:
        tid = threading.get_native_id()
        old = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(old + int(step), 19))
    except (AttributeError, OSError):
        return lambda: None

    def restore() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, old)
        except OSError:
            pass

    return restore


def training_threads(device: str) -> int | None:
    """Intra-op threads for training on ``device``: on the CPU, every core this process
    may use (:func:`napari_dfct._threads.usable_cores`: its affinity mask, capped by a
    cgroup CPU quota), since the training process runs at a lower priority and yields
    them to the GUI thread whenever it needs one; None (torch's choice) on an
    accelerator."""
    from napari_dfct._threads import usable_cores
    from napari_dfct.train import resolve_device

    try:
        cpu = resolve_device(device).type == "cpu"
    except ValueError:
        cpu = True
    return usable_cores() if cpu else None


def _import_torch_compiler() -> None:
    try:
        import torch._dynamo  # noqa: F401
    except Exception:  # noqa: BLE001 - an optional speed-up only
        pass


def warm_up_torch() -> threading.Thread:
    """Import what ``torch.optim`` imports lazily on first use (torch's compiler stack),
    in a daemon thread named :data:`WARM_UP_THREAD`.

    Creating the first optimizer imports ``torch._dynamo``, about a second of module
    loading; done when the widget opens, it no longer stalls the event loop at the start
    of the first training.
    """
    thread = threading.Thread(target=_import_torch_compiler, name=WARM_UP_THREAD, daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------ job bodies
def _relay(gen: Generator, kind: JobKind) -> Generator[JobEvent, None, Any]:
    """Yield ``JobEvent(kind, value=item)`` for each item of ``gen`` (a ``"batch"`` event
    for a :class:`~napari_dfct.train.progress.BatchProgress`); return its value."""
    from napari_dfct.train.progress import BatchProgress

    try:
        while True:
            try:
                item = next(gen)
            except StopIteration as stop:
                return stop.value
            if isinstance(item, BatchProgress):
                yield JobEvent("batch", value=item)  # progress within an epoch
            else:
                yield JobEvent(kind, value=item)
    finally:
        gen.close()


def train_job(
    input: Any,
    target: Any,
    config: Any,
    out_dir: Path,
    *,
    cancel: threading.Event,
    resume: bool = False,
    preview_index: int | None = None,
    threads: int | None = None,
) -> Generator[JobEvent, None, Any]:
    """Read files if needed, then drive :func:`napari_dfct.train.fit`.

    ``input`` and ``target`` are arrays or volume files. Yields one ``"data"`` event, then
    ``"batch"`` events within an epoch and an ``"epoch"`` event per epoch; returns the
    :class:`~napari_dfct.train.FitResult` (without its network when the model was saved:
    it is loaded from its folder).
    Training runs in a child process (:func:`napari_dfct.train.process.fit_in_process`);
    ``threads`` sets its torch intra-op threads (None: torch's default).
    """
    from napari_dfct.train import process as _process

    info: dict[str, Any] = {}
    if isinstance(input, str | os.PathLike):
        from napari_dfct import io as _io

        input, meta = _io.read_volume(input)
        info["scale"] = tuple(meta.get("scale") or ())
        info["name"] = meta.get("name")
    if isinstance(target, str | os.PathLike):
        from napari_dfct import io as _io

        target, _ = _io.read_volume(target)
    info["shape"] = tuple(int(s) for s in np.shape(input))
    yield JobEvent("data", info=info)

    # the same fit() loop in a child process at a lower OS priority: it holds neither
    # this interpreter's lock nor the GUI thread's cores, and returns all its memory
    result = yield from _relay(
        _process.fit_in_process(
            input,
            target,
            config,
            out_dir,
            cancel=cancel,
            resume=resume,
            preview_index=preview_index,
            batches=True,
            threads=threads,
        ),
        "epoch",
    )
    if result is not None and result.model_dir is not None:
        # saved in its folder (and offered from there): the viewer keeps no network, so
        # nothing of the run outlives it (fit dropped its optimiser and device memory)
        result.model = None
    return result


def predict_job(
    model_dir: Path,
    loaded: Any,
    device: str,
    volume: np.ndarray,
    slices: list[int] | None,
    *,
    cancel: threading.Event,
) -> Generator[JobEvent, None, None]:
    """Load the model unless ``loaded`` is given, then predict ``slices`` of ``volume``.

    Yields a ``"model"`` event, then a ``"slice"`` event per predicted slice
    (:func:`napari_dfct.infer.predict_iter`; ``slices`` None for a 2-D ``volume``).
    """
    from napari_dfct import checkpoint, infer

    restore_priority = lower_thread_priority()
    try:
        if loaded is None:
            loaded = checkpoint.load_model(model_dir, device="cpu")
        yield JobEvent("model", value=loaded)
        for z, y in infer.predict_iter(loaded, volume, slices, device=device, cancel=cancel):
            yield JobEvent("slice", value=y, index=int(z))
    finally:
        restore_priority()
