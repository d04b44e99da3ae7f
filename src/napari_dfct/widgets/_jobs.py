"""The viewer's running jobs: a training or a prediction belongs to its viewer, not to a dock.

napari's ✕ on a dock only takes the widget out of the window
(``viewer.window.remove_dock_widget``): the widget is neither closed nor destroyed, and a
reopened dock is a new widget. So a job lives here, in a registry keyed by the viewer, and
a dock widget is only its *view*:

* :func:`start` runs a job body in a background worker (:func:`._workers.start_job`) and
  registers it under its viewer and kind (``"training"``, ``"prediction"``); at most one
  job of a kind runs per viewer (:func:`running` tells the widget, which refuses a second).
* A job reports to one view, the widget attached last (:meth:`Job.attach`): a newly
  created widget for the same viewer attaches to the running job and shows it (settings,
  progress, curves; Stop works). The job keeps its view alive while it runs, so the end of
  a run is reported (the model registered, a notification shown) exactly once, even when
  its dock was closed.
* The job holds what it uses (:attr:`Job.run`: its settings, its data, its layers): a view
  keeps showing them while the job runs, whatever happens to the layers.
* Closing the viewer stops every job of the viewer (the cancel flag is set; a training
  process ends within one batch), and from then on no view is called.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

from . import _workers

__all__ = ["Job", "running", "start", "viewer_jobs", "viewer_open"]

#: ``id(viewer)`` -> {kind: running job}
_JOBS: dict[int, dict[str, Job]] = {}
#: viewers whose window is watched (``id(viewer)``)
_WATCHED: set[int] = set()
#: How often running jobs check that their viewer is still open.
WATCH_MS = 250
_watchdog = None  # a QTimer while jobs run


class Job:
    """One background job of a viewer, shown by the dock widget attached last.

    Attributes
    ----------
    kind : str
        ``"training"`` or ``"prediction"``.
    run : object
        What the job uses (its settings, data and layers), shared with every view.
    form : dict
        The starting widget's field values, shown by a view that attaches later.
    view : QWidget or None
        The widget that receives the job's events (its ``_on_event``, ``_on_returned``,
        ``_on_errored`` and ``_on_finished``).
    worker, cancel
        The napari worker and the cancel flag its body checks.
    """

    def __init__(self, viewer, kind: str, run: Any, view, form: dict | None = None):
        self.kind = kind
        self.run = run
        self.form = dict(form or {})
        self.view = view
        self.worker = None
        self.cancel = threading.Event()
        self.running = True
        self._viewer = weakref.ref(viewer)
        self._key = id(viewer)
        self._closed = False

    @property
    def viewer(self):
        """The viewer the job belongs to (None once it is gone)."""
        return self._viewer()

    def attach(self, view) -> None:
        """Make ``view`` the widget that shows the job from now on."""
        self.view = view

    def close(self) -> None:
        """The viewer closed: stop the job and call no view any more."""
        self._closed = True
        self.cancel.set()
        self.view = None

    # ---------------------------------------------------------------- worker signals
    def _forward(self, name: str, *args) -> None:
        if not self._closed and not viewer_open(self.viewer):
            self.close()
        view = self.view
        if self._closed or view is None or _deleted(view):
            return
        handler = getattr(view, name, None)  # a view handles the reports it needs
        if handler is not None:
            handler(*args)

    def _on_event(self, event: _workers.JobEvent) -> None:
        self._forward("_on_event", event)

    def _on_returned(self, value) -> None:
        self._forward("_on_returned", value)

    def _on_errored(self, exc: BaseException) -> None:
        self._forward("_on_errored", exc)

    def _on_finished(self) -> None:
        self.running = False
        jobs = _JOBS.get(self._key, {})
        if jobs.get(self.kind) is self:
            del jobs[self.kind]
        self._forward("_on_finished")
        self.view = None  # the job is over: nothing keeps its widget alive any more


def viewer_jobs(viewer) -> list[Job]:
    """The running jobs of ``viewer``."""
    jobs = _JOBS.get(id(viewer), {})
    return [job for job in jobs.values() if job.viewer is viewer and job.running]


def running(viewer, kind: str) -> Job | None:
    """The running job of ``kind`` in ``viewer``, or None."""
    for job in viewer_jobs(viewer):
        if job.kind == kind:
            return job
    return None


def start(
    viewer,
    kind: str,
    view,
    run: Any,
    body: Callable[..., Generator[_workers.JobEvent, None, Any]],
    *args,
    form: dict | None = None,
    **kwargs,
) -> Job:
    """Start ``body(*args, cancel=..., **kwargs)`` as the ``kind`` job of ``viewer``,
    shown by ``view``; :class:`RuntimeError` when one of that kind is running there."""
    if running(viewer, kind) is not None:
        raise RuntimeError(f"a {kind} is already running in this viewer")
    job = Job(viewer, kind, run, view, form)
    _watch(viewer)
    job.worker, job.cancel = _workers.start_job(
        None,
        body,
        *args,
        on_event=job._on_event,
        on_returned=job._on_returned,
        on_error=job._on_errored,
        on_finished=job._on_finished,
        **kwargs,
    )
    _JOBS.setdefault(id(viewer), {})[kind] = job
    _start_watchdog()
    return job


# ------------------------------------------------------------------------ the viewer
def _qt_window(viewer):
    """The viewer's main window, None once closed (napari's ``Window.close`` deletes
    its ``_qt_window``) or for a viewer without one."""
    window = getattr(viewer, "window", None)
    return getattr(window, "_qt_window", None)


def viewer_open(viewer) -> bool:
    """Whether ``viewer``'s window is still open (a deferred GUI update checks it)."""
    window = None if viewer is None else _qt_window(viewer)
    return window is not None and not _deleted(window)


def _start_watchdog() -> None:
    """Check every :data:`WATCH_MS` that each job's viewer is open (napari's
    ``Window.close`` drops the main window at once; its ``destroyed`` signal comes only
    when Qt deletes it later), until no job runs."""
    global _watchdog
    if _watchdog is None:
        from qtpy.QtCore import QTimer

        _watchdog = QTimer()
        _watchdog.setInterval(WATCH_MS)
        _watchdog.timeout.connect(_check_viewers)
    if not _watchdog.isActive():
        _watchdog.start()


def _check_viewers() -> None:
    for key, jobs in list(_JOBS.items()):
        for kind, job in list(jobs.items()):
            if not viewer_open(job.viewer):
                del jobs[kind]
                job.close()
        if not jobs:
            del _JOBS[key]
    if not _JOBS and _watchdog is not None:
        _watchdog.stop()


def _watch(viewer) -> None:
    """Stop the viewer's jobs when its main window is destroyed (closed)."""
    key = id(viewer)
    if key in _WATCHED:
        return
    window = _qt_window(viewer)
    if window is None:
        return
    _WATCHED.add(key)
    window.destroyed.connect(partial(_viewer_closed, key, id(window)))


def _viewer_closed(key: int, window_id: int, *_args) -> None:
    """The main window ``window_id`` of the viewer ``key`` is destroyed: stop its jobs
    (those of that window only: a viewer's id may be reused once it is gone)."""
    _WATCHED.discard(key)
    jobs = _JOBS.get(key, {})
    for kind, job in list(jobs.items()):
        window = None if job.viewer is None else _qt_window(job.viewer)
        if window is None or id(window) == window_id:
            del jobs[kind]
            job.close()
    if not jobs:
        _JOBS.pop(key, None)


def _deleted(obj) -> bool:
    """Whether the C++ side of a Qt object is gone."""
    try:
        from qtpy import sip

        return sip.isdeleted(obj)
    except ImportError:  # PySide
        from qtpy import shiboken

        return not shiboken.isValid(obj)  # type: ignore[attr-defined]


def found(lost: set, value, name: str) -> None:
    """A picker chose a layer again (``value`` not None): ``name`` is no longer lost."""
    if value is not None:
        lost.discard(name)


# ------------------------------------------------------------------------ the views' forms
def form_values(fields) -> dict:
    """Every setting of a widget's ``fields`` (a namespace of magicgui widgets) by name;
    labels and buttons are left out."""
    from magicgui.widgets import Label, PushButton

    return {
        name: w.value for name, w in vars(fields).items() if not isinstance(w, Label | PushButton)
    }


def show_form(fields, values: dict, *, first=(), last=(), quiet=()) -> None:
    """Put ``values`` (:func:`form_values`) into ``fields``: the names in ``first`` before
    the others, those in ``last`` after them, those in ``quiet`` without their change
    handlers (a value no longer offered is skipped)."""
    names = [*first, *(n for n in values if n not in (*first, *last, *quiet)), *last]
    for name in names:
        if name in values:
            try:
                getattr(fields, name).value = values[name]
            except ValueError:  # no longer a choice (a model folder removed, ...)
                pass
    for name in quiet:
        if name in values:
            with getattr(fields, name).changed.blocked():
                getattr(fields, name).value = values[name]


def held_choices(choices: list, held) -> list:
    """Layer ``choices`` (``(name, layer)``) with the ``held`` layers of a running job
    added where the viewer no longer has them: the form keeps showing what the job uses."""
    shown = {id(layer) for _, layer in choices}
    return [*choices, *((la.name, la) for la in held if id(la) not in shown)]


def release_layers(viewer, fields, names, reset: Callable[[], None], lost: set[str]) -> str:
    """After a job: ``reset()`` the layer pickers ``names`` of ``fields``, keeping each
    chosen layer the viewer still has (renamed or not). A picker whose layer was deleted
    during the job is left empty (never another layer) and added to ``lost``; the text
    returned names those layers ("" when none)."""
    held = {name: getattr(fields, name).value for name in names}
    reset()
    gone = []
    for name, layer in held.items():
        if layer is None:
            continue
        if layer in viewer.layers:
            getattr(fields, name).value = layer
        else:
            lost.add(name)
            getattr(fields, name).value = None
            gone.append((name, layer.name))
    if not gone:
        return ""
    what = " and the ".join(f"{name} layer {layer!r}" for name, layer in gone)
    return (
        f"The {what} {'was' if len(gone) == 1 else 'were'} deleted during the run (the "
        f"run used its own copy); choose the {' and '.join(n for n, _ in gone)} again."
    )
