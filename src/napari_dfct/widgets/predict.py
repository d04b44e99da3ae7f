"""Predict dock widget: apply a trained model to the current slice or the whole volume.

Pick a model (trained in this session, see :mod:`napari_dfct.widgets._models`, or a model
folder on disk) and an image layer; *Current slice* and *Whole volume* add or update the
layer ``<layer name> [prediction: <model name>]`` with the input's scale, translate and
contrast limits. Work runs in a background job
(:func:`napari_dfct.widgets._workers.predict_job`, through
:func:`napari_dfct.infer.predict_iter`); a whole volume streams into the layer slice by
slice and *Cancel* stops it between batches. A read-only panel shows what the model is
(:func:`napari_dfct.checkpoint.describe_model`): its loss, preset, intensity window, and
how its training went. *Export…* writes the chosen model as a bioimage.io package
(:func:`napari_dfct.export.export_bioimageio`, in a background job), its test tensors cut
from the image layer's current slice: a central crop, or the slice padded by reflection
when it is smaller than the package's smallest input (a warning says so first); for a
2.5-D model (context K) the slice and its 2K neighbours. The description shows a context
model's input (e.g. "2.5-D, context 1 (3 slices: z-1, z, z+1)"), and *Current slice*
reads the neighbouring slices of the layer it needs. For a 3-D model the description
names its patch depth ("3-D, patch depth 8 (a volume, in z-chunks of 8 slices)"),
*Current slice* computes only the z-chunks that reach the slice (what the whole volume
gives there) and *Whole volume* streams into the layer chunk by chunk.

What other widgets see of a prediction:

* the layer is added when its first slice is ready, never before, so a prediction that
  fails or is cancelled at once leaves no empty layer behind; it goes right above its
  input layer and its training preview (under the ROI shapes);
* a volume layer has the input's shape; the slices not predicted yet hold NaN
  placeholders and the layer lists the predicted ones in its metadata
  (:data:`napari_dfct.widgets._layers.PREDICTED_KEY`). Measure shows "not predicted on
  this slice" for a placeholder slice, and Train and Loss amplification refuse it with
  a message, so no placeholder reaches a metric or a training run;
* every filled slice is announced as a change of the layer's data (``layer.events.data``,
  at most every :attr:`PredictWidget.REFRESH_MS`), so Measure recomputes at once; the
  canvas is refreshed only when a slice it shows was filled (in 2-D), so a whole volume
  costs one repaint for the slice in view instead of one per update.

A prediction is the viewer's (:mod:`napari_dfct.widgets._jobs`): it goes on when the dock
is closed, a Predict widget opened later shows it (Cancel works), and the form shows what
it uses, a deleted image layer included. Deleting its output layer stops it, and nothing
is claimed.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, ProgressBar, PushButton
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPlainTextEdit, QWidget

from . import _help, _jobs, _layers, _models, _workers
from ._devices import device_choices
from ._layout import Section, scroll_body, settle

if TYPE_CHECKING:
    import napari

__all__ = ["PredictWidget", "prediction_name"]

ROLE = "prediction"
_EXCLUDE = ("weights", "preview", "prediction")


def prediction_name(layer_name: str, model_name: str) -> str:
    """Name of the output layer: ``<layer name> [prediction: <model name>]``."""
    return f"{layer_name} [prediction: {model_name}]"


def model_name(model_dir: str | os.PathLike) -> str:
    """Display name of a model folder: the folder name (the run name, unique per run)."""
    return Path(model_dir).name


class PredictWidget(QWidget):
    """Run a trained model on the displayed slice or the whole volume of a layer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer holding the image layers; predictions are added to it.
    """

    #: Shortest interval between two canvas refreshes while a volume streams in.
    REFRESH_MS = 100
    #: Lines of the model description shown before it scrolls.
    INFO_MAX_LINES = 16

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self._viewer = napari_viewer
        self._worker = None
        self._cancel: threading.Event | None = None
        self._job: SimpleNamespace | None = None
        self._viewer_job: _jobs.Job | None = None
        self._lost: set[str] = set()  # "image" when its layer was deleted during a run
        self._cache: dict[tuple, Any] = {}
        self._export_worker = None
        self.last_layer = None
        self.last_export: Path | None = None
        self._export_tile = ""

        self.form = Container(
            widgets=[
                ComboBox(
                    name="model",
                    label="model",
                    choices=self._model_choices,
                    nullable=True,
                    tooltip="Models trained or opened in this session, then the recent "
                    "ones in ~/napari-dfct/models (the Train widget's default), newest first",
                ),
                FileEdit(
                    name="model_dir",
                    label="open folder",
                    mode=FileDialogMode.EXISTING_DIRECTORY,
                    nullable=True,
                    tooltip="A model folder (model.safetensors + config.json)",
                ),
                ComboBox(name="image", label="image", choices=self._layer_choices, nullable=True),
                ComboBox(name="device", label="device", choices=device_choices, value="auto"),
            ],
            labels=True,
        )
        self.form.native.layout().setContentsMargins(0, 0, 0, 0)
        self.fields = SimpleNamespace(**{w.name: w for w in self.form})
        self.slice_button = PushButton(name="current_slice", text="Current slice")
        self.volume_button = PushButton(name="whole_volume", text="Whole volume")
        self.cancel_button = PushButton(name="cancel", text="Cancel", enabled=False)
        self.export_button = PushButton(
            name="export",
            text="Export\u2026",
            tooltip="Write the model as a bioimage.io "
            "package (.zip); the test tensors come from the image's current slice (with "
            "its neighbours for a 2.5-D model)",
        )
        self.export_button.changed.connect(self.export_package)
        self.slice_button.changed.connect(self.predict_current_slice)
        self.volume_button.changed.connect(self.predict_volume)
        self.cancel_button.changed.connect(self.cancel)
        self.progress = ProgressBar(value=0, min=0, max=1, label="slices")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.info = QPlainTextEdit()
        self.info.setReadOnly(True)
        self.info.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(font.pointSizeF() - 1.0, 7.0))
        self.info.setFont(font)
        self.info.setPlaceholderText("The model's configuration appears here.")
        self.info.setMinimumHeight(90)
        self.info.setMaximumHeight(self.INFO_MAX_LINES * self.info.fontMetrics().lineSpacing())
        self.model_section = Section("Model", self.info)

        buttons = QHBoxLayout()
        buttons.addWidget(self.slice_button.native)
        buttons.addWidget(self.volume_button.native)
        buttons.addWidget(self.cancel_button.native)
        buttons.addWidget(self.export_button.native)
        self.help_button = _help.help_button("predict")
        buttons.addWidget(self.help_button.native)
        buttons_ = (self.slice_button, self.volume_button, self.cancel_button)
        _help.add_tips("predict", [*self.form, *buttons_], [self.model_section])
        _body, layout = scroll_body(self)
        layout.addWidget(self.form.native)
        layout.addLayout(buttons)
        layout.addWidget(self.progress.native)
        layout.addWidget(self.status)
        layout.addWidget(self.model_section)
        layout.addStretch(1)
        settle(self, self.form)
        self._shown_choice: tuple | None = None

        self._refresh = _workers.Throttle(self, self.REFRESH_MS, self._refresh_output)

        self.fields.model.changed.connect(self._on_model)
        self.fields.model_dir.changed.connect(self._on_model_dir)
        self.fields.image.changed.connect(self._update_status)
        self.fields.image.changed.connect(lambda v: _jobs.found(self._lost, v, "image"))
        _models.connect_registry(self, self._on_registry)
        ev = self._viewer.layers.events
        for name in ("inserted", "removed", "reordered"):
            getattr(ev, name).connect(self.reset_choices)
        ev.removed.connect(self._on_layer_removed)
        self.reset_choices()
        self._select_newest()
        self._on_model()
        self._update_status()
        job = _jobs.running(napari_viewer, "prediction")
        if job is not None:  # a dock reopened while the viewer predicts
            self._attach(job)

    # ------------------------------------------------------------------ choices
    def _model_choices(self, _widget=None):
        models = list(reversed(_models.registered_models()))  # newest first
        # then the default folder's, from earlier sessions too, newest first
        models += [p for p in _models.recent_models() if p not in models]
        return [(model_name(p), p) for p in models]

    def _layer_choices(self, _widget=None):
        choices = _layers.image_layers(self._viewer, exclude_roles=_EXCLUDE)
        job = self._viewer_job  # a running prediction's image stays offered, deleted or not
        return choices if job is None else _jobs.held_choices(choices, (job.run.layer,))

    def reset_choices(self, *_args) -> None:
        """Refresh the model and layer pickers (not while a prediction holds them)."""
        if self._viewer_job is not None:
            return
        self.form.reset_choices()
        if self.fields.image.value is None and "image" not in self._lost:
            layers = [la for _, la in self._layer_choices()]
            preferred = [la for la in layers if la.name.lower().startswith("input")]
            if preferred or layers:
                self.fields.image.value = (preferred or layers)[0]
        self._update_status()

    def _update_status(self, *_args) -> None:
        """Say what is missing, or that a prediction can start (when the choice changes
        and no prediction runs, so a result stays shown until then)."""
        model, layer = self.fields.model.value, self.fields.image.value
        choice = (model, None if layer is None else layer.name)
        if self.is_running or choice == self._shown_choice:
            return
        self._shown_choice = choice
        missing = [
            what
            for what, value in (
                ("a model (train one, or open a model folder)", model),
                ("an image layer", layer),
            )
            if value is None
        ]
        if missing:
            self.status.setText("Choose " + " and ".join(missing) + ".")
        else:
            self.status.setText(
                f"Ready: {model_name(model)} on {layer.name!r}. "
                "Current slice predicts the slice on view."
            )

    def _select_newest(self) -> None:
        choices = self._model_choices()
        if choices:
            self.fields.model.value = choices[0][1]

    def _on_registry(self, *_args) -> None:
        if self._viewer_job is not None:  # the form shows the running prediction's model
            return
        self.fields.model.reset_choices()
        self._select_newest()

    def _on_model_dir(self, *_args) -> None:
        path = self.fields.model_dir.value
        if not path or str(path) in ("", "."):
            return
        from napari_dfct import checkpoint

        if not checkpoint.is_model_dir(path):
            show_error(
                f"{path} is not a model folder: it needs {checkpoint.WEIGHTS_FILE} and "
                f"{checkpoint.CONFIG_FILE}"
            )
            return
        key = _models.register_model(path)  # offered in every Predict widget
        self.fields.model.value = key

    def _on_model(self, *_args) -> None:
        from napari_dfct.checkpoint import describe_model

        self._update_status()
        path = self.fields.model.value
        if path is None:
            self.info.setPlainText("")
            return
        try:
            self.info.setPlainText(describe_model(path))
        except ValueError as err:
            self.info.setPlainText(str(err))
            show_error(f"Cannot read the model: {err}")

    # ------------------------------------------------------------------ actions
    @property
    def is_running(self) -> bool:
        """True while a prediction worker is alive."""
        return self._worker is not None

    def predict_current_slice(self, *_args) -> None:
        """Predict the slice of the chosen layer that the viewer shows."""
        self._start(whole=False)

    def predict_volume(self, *_args) -> None:
        """Predict every slice of the chosen layer, streaming them into the output."""
        self._start(whole=True)

    def cancel(self, *_args) -> None:
        """Stop a running prediction between batches."""
        if self._cancel is not None and self.is_running:
            self._cancel.set()
            self.cancel_button.enabled = False
            self.status.setText("Cancelling...")

    def _start(self, whole: bool) -> None:
        if self.is_running or _jobs.running(self._viewer, "prediction") is not None:
            show_warning("A prediction is running; wait for it or press Cancel.")
            return
        try:
            job = self._gather(whole)
        except Exception as err:  # noqa: BLE001 - never a traceback in the viewer
            show_error(f"Cannot predict: {_workers.problem_text(err)}")
            return
        # the widget's own progress bar only: napari's activity indicator animates the
        # main window (a quarter of a core under software OpenGL) while a job runs
        self._job = job
        job.output = self._reusable_output(job)  # a new layer waits for the first slice
        job.done, job.output_lost = 0, False
        self.progress.max = max(len(job.slices), 1)
        self.progress.value = 0
        for b in (self.slice_button, self.volume_button):
            b.enabled = False
        self.cancel_button.enabled = True
        form = _jobs.form_values(self.fields)
        self.form.enabled = False  # it shows what the prediction uses
        self.status.setText(_predicting_text(job))
        # the viewer's job, not the dock's: closing the viewer stops it between batches
        vjob = _jobs.start(
            self._viewer,
            "prediction",
            self,
            job,
            _workers.predict_job,
            job.model_dir,
            job.loaded,
            job.device,
            job.volume,
            job.slices if job.volume.ndim == 3 else None,
            form=form,
        )
        self._viewer_job, self._worker, self._cancel = vjob, vjob.worker, vjob.cancel

    def _attach(self, vjob: _jobs.Job) -> None:
        """Show the viewer's running prediction and take over its reports: its model,
        image and device (locked), progress and status; Cancel stops it."""
        vjob.attach(self)
        self._viewer_job, self._job = vjob, vjob.run
        self._worker, self._cancel = vjob.worker, vjob.cancel
        self.form.reset_choices()  # offers its image, deleted or not
        _jobs.show_form(self.fields, vjob.form, quiet=("model_dir",))
        self.form.enabled = False
        for b in (self.slice_button, self.volume_button):
            b.enabled = False
        self.cancel_button.enabled = not vjob.cancel.is_set()
        _workers.set_progress(self.progress, vjob.run.done, len(vjob.run.slices))
        self.status.setText(
            "Cancelling..." if vjob.cancel.is_set() else _predicting_text(vjob.run)
        )

    def _on_layer_removed(self, event) -> None:
        """The prediction's output layer deleted while it runs: stop it (nothing to fill)."""
        job = self._job
        if job is None or not self.is_running or event.value is not job.output:
            return
        job.output_lost = True
        if self._cancel is not None:
            self._cancel.set()
        self.cancel_button.enabled = False
        self.status.setText(f"Stopping: the prediction layer {job.output.name!r} was deleted...")

    def export_package(self, *_args, path: str | os.PathLike | None = None) -> None:
        """Write the chosen model as a bioimage.io package (:func:`napari_dfct.export.
        export_bioimageio`) in a background job; ``path`` None asks with a file dialog
        (which confirms replacing a file). The test tensors come from the chosen image
        layer's current slice (a simulated slice without one)."""
        from napari_dfct import checkpoint
        from napari_dfct.export import bioimageio_missing

        model_dir = self.fields.model.value
        problem = bioimageio_missing()
        if model_dir is None:
            problem = "choose a model (train one, or open a model folder)"
        elif not checkpoint.is_model_dir(model_dir):
            problem = f"{model_dir} is no longer a model folder"
        elif self._export_worker is not None:
            problem = "an export is running"
        if problem:
            show_error(f"Cannot export: {problem}")
            return
        overwrite = path is None  # the dialog asked before replacing a file
        if path is None:
            start = str(Path.home() / f"{model_name(model_dir)}.zip")
            path, _ = QFileDialog.getSaveFileName(
                self, "Export a bioimage.io model package", start, "bioimage.io package (*.zip)"
            )
            if not path:
                return
            if not path.lower().endswith(".zip"):
                path += ".zip"
        try:
            sample, words = self._export_sample(model_dir)
            self._export_tile = self._test_tile(model_dir, sample, words)
        except ValueError as err:
            show_error(f"Cannot export: {err}")
            return
        self.export_button.enabled = False
        self.status.setText(
            f"Exporting {model_name(model_dir)} to {path} (test tile: {self._export_tile})..."
        )
        self._export_worker, _cancel = _workers.start_job(
            self,
            _export_job,
            Path(model_dir),
            Path(path),
            sample,
            words,
            overwrite,
            on_event=lambda _event: None,
            on_returned=self._on_exported,
            on_error=self._on_export_failed,
            on_finished=self._on_export_finished,
        )

    def _export_sample(self, model_dir) -> tuple[np.ndarray | None, str | None]:
        """The test data of an export: the image layer's current slice; for a 2.5-D model
        (context K) that slice and its ``2K`` neighbours (reflected at the volume's ends);
        for a 3-D model the consecutive slices around it
        (:func:`napari_dfct.export.volume.volume_block`); a 2-D layer is refused for both
        (:class:`ValueError`)."""
        from napari_dfct.context import context_stack
        from napari_dfct.export import model_context, model_patch_depth
        from napari_dfct.export.volume import volume_block

        layer = self.fields.image.value
        if layer is None or layer.multiscale or layer.ndim not in (2, 3):
            return None, None
        data = np.asarray(layer.data)
        if data.dtype.kind not in "fiub":
            return None, None
        k, depth = model_context(model_dir), model_patch_depth(model_dir)
        if data.ndim == 2 and (k or depth):
            reads = f"2.5-D model (context {k}) reads {2 * k} neighbouring slices"
            if depth:
                reads = "3-D model reads volumes"
            raise ValueError(
                f"a {reads}; layer {layer.name!r} is a single slice: choose a volume layer"
            )
        if data.ndim == 2:
            return data.astype(np.float32), f"layer {layer.name!r}"
        z = _layers.current_index(self._viewer, layer)
        if depth:
            block, which = volume_block(data, z, depth)
            return block.astype(np.float32), f"layer {layer.name!r}, {which}"
        if k:
            words = f"layer {layer.name!r}, slice {z} and its {2 * k} neighbours"
            return context_stack(data, [z], k)[0].astype(np.float32), words
        return data[z].astype(np.float32), f"layer {layer.name!r}, slice {z}"

    def _test_tile(self, model_dir, sample: np.ndarray | None, words: str | None) -> str:
        """Words naming the export's test tile (:func:`napari_dfct.export.tile_plan`): a
        central crop of the slice, or the slice padded when it is smaller than the
        package's smallest input, which a warning says before the export starts."""
        from napari_dfct.export import model_input_sizes, tile_plan

        if sample is None:
            return "a simulated slice (no image layer chosen)"
        multiple, _halo, smallest = model_input_sizes(model_dir)
        side, padded = tile_plan(sample.shape, multiple, smallest)
        if padded is None:
            return f"a central {side}x{side} crop of {words}"
        show_warning(f"Export: the test tile is {words}: {padded}.")
        return f"{words}, padded to {side}x{side}"

    def _on_exported(self, out) -> None:
        self.last_export = Path(out)
        text = f"bioimage.io package written: {out} (test tile: {self._export_tile})"
        self.status.setText(text)
        show_info(text)

    def _on_export_failed(self, exc: BaseException) -> None:
        text = _workers.failure_text("Export", exc)
        self.status.setText(text)
        show_error(text)

    def _on_export_finished(self) -> None:
        self._export_worker = None
        self.export_button.enabled = True

    def _gather(self, whole: bool) -> SimpleNamespace:
        from napari_dfct import checkpoint

        model_dir = self.fields.model.value
        if model_dir is None:
            raise ValueError("choose a model (train one, or open a model folder)")
        if not checkpoint.is_model_dir(model_dir):
            raise ValueError(f"{model_dir} is no longer a model folder")
        layer = self.fields.image.value
        if layer is None:
            raise ValueError("choose an image layer")
        if layer.multiscale:
            raise ValueError(f"layer {layer.name!r} is multiscale; not supported")
        if layer.ndim not in (2, 3):
            raise ValueError(
                f"layer {layer.name!r} has {layer.ndim} dimensions; expected a 2-D slice "
                "or a 3-D volume"
            )
        volume = np.asarray(layer.data)
        if volume.dtype.kind not in "fiub":
            raise ValueError(f"layer {layer.name!r} is not numeric ({volume.dtype})")
        if volume.ndim == 3:
            slices = (
                list(range(volume.shape[0]))
                if whole
                else [_layers.current_index(self._viewer, layer)]
            )
        else:
            slices = [0]
        device = self.fields.device.value
        key = (str(model_dir), _mtime(model_dir))
        return SimpleNamespace(
            model_dir=Path(model_dir),
            model_name=model_name(model_dir),
            layer=layer,
            volume=volume,
            slices=slices,
            whole=whole,
            device=device,
            loaded=self._cache.get(key),
            cache_key=key,
            written=set(),  # slices filled since the last refresh
        )

    def _reusable_output(self, job):
        """The existing prediction layer of this input and model, when it has the input's
        shape (its predicted slices are kept), else None."""
        layer = job.layer
        name = prediction_name(layer.name, job.model_name)
        # a LayerList is a sequence indexed by name: it has no get()
        existing = self._viewer.layers[name] if name in self._viewer.layers else None  # noqa: SIM401
        if (
            existing is None
            or tuple(existing.data.shape) != tuple(job.volume.shape)
            or existing.metadata.get(_layers.OWNER_KEY) != ROLE
        ):
            return None
        existing.scale = tuple(layer.scale)
        existing.translate = tuple(layer.translate)
        return existing

    def _new_output(self, job, z: int, y: np.ndarray):
        """Add the prediction layer holding its first slice: the input's shape, placement
        and contrast; the other slices are placeholders listed as not predicted."""
        layer = job.layer
        if job.volume.ndim == 3:
            data = np.full(job.volume.shape, np.nan, dtype=np.float32)
            data[z] = y
        else:
            data = np.asarray(y, dtype=np.float32)
        name = prediction_name(layer.name, job.model_name)
        new = name not in self._viewer.layers
        out = _layers.upsert_image(
            self._viewer,
            name,
            data,
            role=ROLE,
            contrast_limits=tuple(layer.contrast_limits),
            colormap=layer.colormap.name,
            scale=tuple(layer.scale),
            translate=tuple(layer.translate),
        )
        layers = self._viewer.layers
        if new and layer in layers:
            # right above its input (and a training preview there): over the image it
            # improves, under the ROI shapes
            at = layers.index(layer) + 1
            while (
                at < len(layers)
                and layers[at] is not out
                and layers[at].metadata.get(_layers.OWNER_KEY) == "preview"
            ):
                at += 1
            layers.move(layers.index(out), at)
        out.metadata["model_dir"] = str(job.model_dir)
        out.metadata["source_layer"] = layer.name
        if data.ndim == 3:
            out.metadata[_layers.PREDICTED_KEY] = [int(z)]
        else:
            out.metadata.pop(_layers.PREDICTED_KEY, None)
        return out

    # ------------------------------------------------------------------ worker signals
    def _on_event(self, event: _workers.JobEvent) -> None:
        job = self._job
        if job is None:
            return
        if event.kind == "model":
            self._cache.clear()
            self._cache[job.cache_key] = event.value
            return
        if event.kind != "slice":
            return
        z, y = event.index, event.value
        assert z is not None  # a slice event names its slice
        if job.output_lost:  # deleted by the user: nothing more is written or announced
            return
        out = job.output
        if out is None:
            out = job.output = self.last_layer = self._new_output(job, z, y)
        elif out.data.ndim == 3:
            out.data[z] = y
            done = out.metadata.get(_layers.PREDICTED_KEY)
            if done is not None and z not in done:
                done = sorted({*done, int(z)})
                # every slice predicted: a plain layer again
                if len(done) == out.data.shape[0]:
                    out.metadata.pop(_layers.PREDICTED_KEY)
                else:
                    out.metadata[_layers.PREDICTED_KEY] = done
        else:
            out.data = y
        self.last_layer = out
        job.changed = True
        job.written.add(int(z))
        job.done += 1
        _workers.set_progress(self.progress, job.done)
        self._refresh.poke()

    def _refresh_output(self, job=None) -> None:
        """Announce the slices written in place since the last call: a data event (Measure
        and any other listener recompute) and a redraw."""
        job = job or self._job
        if job is None or job.output is None or not getattr(job, "changed", False):
            return
        job.changed = False
        written, job.written = job.written, set()
        out = job.output
        out.events.data(value=out.data)
        if self._shows_any(out, written):
            out.refresh()

    def _shows_any(self, layer, slices: set[int]) -> bool:
        """Whether the canvas shows any of these slices of ``layer``: a slice written
        while the viewer shows another needs no re-slice, thumbnail and repaint (the
        viewer reads it from the data when the user moves there)."""
        if layer.data.ndim != 3 or self._viewer.dims.ndisplay != 2 or not slices:
            return True
        return _layers.current_index(self._viewer, layer) in slices

    def _on_errored(self, exc: BaseException) -> None:
        text = _workers.failure_text("Prediction", exc)
        self.status.setText(text)
        show_error(text)

    def _on_finished(self) -> None:
        job, self._job = self._job, None
        self._worker = self._viewer_job = None
        self._refresh.stop()
        for b in (self.slice_button, self.volume_button):
            b.enabled = True
        self.cancel_button.enabled = False
        self.form.enabled = True
        lost = _jobs.release_layers(
            self._viewer, self.fields, ("image",), self.form.reset_choices, self._lost
        )
        self.reset_choices()
        if job is None:
            return
        n = len(job.slices)
        if not job.output_lost:
            self._refresh_output(job)
        if job.output_lost:
            text = (
                f"Prediction stopped after {job.done} of {n} slices: its layer "
                f"{job.output.name!r} was deleted, so nothing was kept."
            )
            self.status.setText(text)
            show_warning(text)
        elif job.done == n:
            what = f"{n} slices" if job.whole else f"slice {job.slices[0]}"
            self.status.setText(f"Predicted {what} \u2192 {job.output.name!r}")
        elif self._cancel is not None and self._cancel.is_set():
            text = _cancelled_text(job)
            self.status.setText(text)
            show_info(text)
        if lost:
            self.status.setText(f"{self.status.text()} {lost}")
            show_warning(lost)


def _predicting_text(job) -> str:
    what = f"{len(job.slices)} slices" if job.whole else f"slice {job.slices[0]}"
    return f"Predicting {what} of {job.layer.name!r} with {job.model_name}..."


def _cancelled_text(job) -> str:
    """What a cancelled prediction left: the slices it wrote, and what the others hold."""
    out, n = job.output, len(job.slices)
    if out is None:
        return "Prediction cancelled before the first slice; no layer was added."
    if job.done == 0:
        return f"Prediction cancelled before the first slice; {out.name!r} is unchanged."
    text = f"Prediction cancelled after {job.done} of {n} slices"
    if out.data.ndim < 3:
        return text + "."
    missing = len(_layers.missing_slices(out))
    earlier = int(out.data.shape[0]) - missing - job.done  # slices this run left alone
    held = [f"{earlier} other slices keep their earlier prediction"] if earlier else []
    if missing:
        held.append(
            f"{missing} {'are' if earlier else 'other slices are'} marked as not predicted"
        )
    return f"{text}; {', '.join(held)}." if held else f"{text}."


def _export_job(model_dir: Path, out: Path, sample, words, overwrite: bool, *, cancel):
    """The export as a job body (no progress events; not cancellable)."""
    from napari_dfct.export import export_bioimageio

    yield from ()
    return export_bioimageio(
        model_dir, out, sample=sample, sample_source=words, overwrite=overwrite
    )


def _mtime(model_dir) -> float:
    try:
        return (Path(model_dir) / "model.safetensors").stat().st_mtime
    except OSError:
        return time.time()
