"""The Train widget's model dimensionality: 2-D, 2.5-D (context K) or 3-D (patch depth).

The choice is :class:`~napari_dfct.train.TrainConfig`'s ``dims``, ``context`` and
``patch_depth`` options (form fields of :mod:`._train_params`). This module shows the
fields that apply (the context for a model on slices, the patch depth for a 3-D one; the
other one does not count, :func:`applicable`) and a line under them (``dims_note``) that
says what the chosen model sees and predicts, and the memory one training step needs:
:func:`napari_dfct.train.resources.memory_estimate`, the estimate that ``dfct train``
and every run check before they allocate anything, a 3-D patch of
``patch_depth x patch x patch`` counted. The estimate runs on the meta device (a fraction
of a second; the first one also needs the modules that the widget's warm-up thread
imports, and waits for it), in a background thread after the fields settle, and is kept
per model and patch: the form never waits for it.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from magicgui.widgets import Label
from qtpy.QtCore import QObject, QTimer, Signal

__all__ = [
    "NOTE",
    "DimsPanel",
    "applicable",
    "check_volume_layers",
    "model_words",
    "note_label",
    "note_text",
    "with_note",
]

#: The name of the line under the options.
NOTE = "dims_note"
#: The fields that change what the line says.
WATCHED = (
    "dims",
    "context",
    "patch_depth",
    "preset",
    "base_channels",
    "batch_size",
    "patch",
    "device",
)
_ESTIMATING = "memory: estimating\u2026"


def note_label() -> Label:
    """The line under the dimensionality options (word-wrapped by the layout)."""
    return Label(name=NOTE, label="model, memory", value="")


def with_note(options: list) -> list:
    """The training option fields with the line (:func:`note_label`) after the patch
    depth."""
    at = next(i for i, w in enumerate(options) if w.name == "patch_depth") + 1
    return [*options[:at], note_label(), *options[at:]]


def check_volume_layers(layers, dims: int) -> None:
    """Refuse (one :class:`ValueError` line) a 2-D image layer for a 3-D model."""
    flat = [layer for layer in layers if layer.ndim == 2]
    if int(dims) == 3 and flat:
        raise ValueError(
            "a 3-D model trains on volumes of neighbouring slices; layer "
            f"{flat[0].name!r} is a single 2-D image: choose volume layers"
        )


def applicable(values: dict) -> dict:
    """The form's option values with the field that does not apply set to its no-op: a
    3-D model takes no context (its input is the volume itself)."""
    out = dict(values)
    if int(out.get("dims", 2)) == 3:
        out["context"] = 0
    return out


def model_words(config) -> str:
    """What a model of ``config`` sees and predicts, in a sentence."""
    if int(config.dims) == 3:
        d, p = int(config.patch_depth), int(config.patch)
        return (
            f"3-D U-Net on {d}x{p}x{p} patches ({d} consecutive slices of one scan); "
            f"predicts volumes in overlapping z-chunks of {d} slices; per-slice losses."
        )
    k = int(config.context)
    if k:
        return (
            f"2.5-D: each input is the {2 * k + 1} slices z-{k}..z+{k} of one scan "
            "(reflected at its ends); predicts slice z."
        )
    return "2-D: sees one slice, predicts it."


def note_text(config, estimate, free: int | None, where: str) -> str:
    """The line under the options: :func:`model_words`, then the memory a training step
    of ``config`` needs (``estimate``: :func:`~napari_dfct.train.resources.
    memory_estimate`'s ``(need, per_patch, fixed)``; None: not known) against the
    ``free`` bytes of the device ``where`` (``"CPU"``, ``"CUDA"``; None: unknown)."""
    from napari_dfct._memory import format_bytes

    words = model_words(config)
    if estimate is None:
        return words
    need, per_patch, fixed = estimate
    text = (
        f"{words} A training step needs at least {format_bytes(need)} "
        f"({config.batch_size} x {format_bytes(per_patch)} per patch + "
        f"{format_bytes(fixed)} weights and optimiser)"
    )
    if free is None:
        return text + "."
    if need > free:
        lower = "the batch size or the patch depth" if int(config.dims) == 3 else "the batch size"
        return (
            f"{text}: more than the {format_bytes(free)} of {where} memory available; "
            f"training will be refused: lower {lower}."
        )
    return f"{text}; {where}: {format_bytes(free)} available."


class DimsPanel(QObject):
    """Shows the dimensionality fields that apply and keeps the line under them current.

    Parameters
    ----------
    fields : SimpleNamespace
        The Train widget's fields (the options of :data:`WATCHED` and :data:`NOTE`).
    parent : QObject
        The widget; the panel lives as long as it.
    """

    #: Shortest quiet time after a change before the line is recomputed.
    SETTLE_MS = 150
    _estimated = Signal(object, object)

    def __init__(self, fields: SimpleNamespace, parent: QObject):
        super().__init__(parent)
        self.fields = fields
        self._cache: dict[tuple, Any] = {}
        self._running: tuple | None = None  # the key a thread is estimating
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.SETTLE_MS)
        self._timer.timeout.connect(self.update)
        self._estimated.connect(self._on_estimated)
        fields.dims_note.native.setWordWrap(True)
        for name in WATCHED:
            getattr(fields, name).changed.connect(self._changed)
        self._changed()

    def _changed(self, *_args) -> None:
        f = self.fields
        three = int(f.dims.value) == 3
        f.context.visible = not three
        f.patch_depth.visible = three
        self._timer.start()

    def config(self):
        """The TrainConfig of the watched fields (the rest default), or None when they
        are out of bounds."""
        from napari_dfct.train import TrainConfig

        f = self.fields
        values = applicable(
            {
                name: getattr(f, name).value
                for name in WATCHED
                if name not in ("device", "batch_size")
            }
        )
        config = TrainConfig(batch_size=int(f.batch_size.value), **values)
        try:
            config.validate()
        except ValueError:
            return None
        return config

    def update(self) -> None:
        """Recompute the line now (the estimate from the cache, else in a thread)."""
        config = self.config()
        if config is None:
            self.fields.dims_note.value = ""
            return
        key = _key(config)
        if key in self._cache:
            estimate = self._cache[key]
            if estimate is not None:  # for this batch size
                _need, per_patch, fixed = estimate
                estimate = (fixed + int(config.batch_size) * per_patch, per_patch, fixed)
            free, where = _available(self.fields.device.value)
            text = note_text(config, estimate, free, where)
        else:
            text = f"{model_words(config)} ({_ESTIMATING})"
            if self._running is None:
                self._running = key
                threading.Thread(
                    target=self._estimate, args=(key, config), name="dfct-estimate", daemon=True
                ).start()
        self.fields.dims_note.value = text

    def wait(self, timeout: float = 30.0) -> None:
        """Wait until no estimate is pending and the line is current (for tests and
        screenshots); the Qt event loop runs meanwhile."""
        from qtpy.QtCore import QCoreApplication, QElapsedTimer

        clock = QElapsedTimer()
        clock.start()
        while clock.elapsed() < timeout * 1000 and (
            self._timer.isActive() or self._running is not None
        ):
            QCoreApplication.processEvents()
            time.sleep(0.01)

    def _estimate(self, key: tuple, config) -> None:
        from napari_dfct.train.resources import memory_estimate

        from ._workers import WARM_UP_THREAD

        for thread in threading.enumerate():  # its imports are most of a first estimate's
            if thread.name == WARM_UP_THREAD:
                thread.join()
        estimate = memory_estimate(config)
        try:
            self._estimated.emit(key, estimate)
        except RuntimeError:  # the widget is gone
            pass

    def _on_estimated(self, key: tuple, estimate) -> None:
        self._cache[key] = estimate
        self._running = None
        self.update()


def _key(config) -> tuple:
    """What the estimate depends on (the batch size only scales it: not in the key)."""
    c = config
    return (c.preset, c.base_channels, c.context, c.dims, c.patch, c.patch_depth)


def _available(device: str) -> tuple[int | None, str]:
    """The free bytes of ``device`` (a form value) and its name in words."""
    from napari_dfct.device import available_memory, resolve_device

    try:
        dev = resolve_device(device)
    except ValueError:
        return None, str(device).upper()
    return available_memory(dev), dev.type.upper()
