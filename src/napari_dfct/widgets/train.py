"""Training dock widget: train a residual U-Net on an input/target pair, live.

The widget gathers a pair of volumes (two image layers, or two files) or a data set of
many scans (a pairs CSV or folder), an intensity window (its default computed from the
data and shown with a histogram, :mod:`napari_dfct.widgets._train_data`), a loss
configuration and the paper's hyper-parameters, validates them, and runs
:func:`napari_dfct.train.fit` in a background job
(:func:`napari_dfct.widgets._workers.train_job`). Every epoch event updates, at most every
``GUI_INTERVAL_MS``, a progress bar, a live plot of the training and validation loss, the
learning rate and best epoch, and a preview layer ``<input> [training preview]`` with the
prediction on one validation slice, drawn on that slice only; a preview the user deletes
stays deleted for the rest of the run (:mod:`napari_dfct.widgets._preview`; the viewer
stays where the user is). New runs go to ``<save under>/<run name>``
(:func:`napari_dfct.checkpoint.new_run_dir`); *resume from* continues a stopped run in
its folder (:func:`napari_dfct.train.resume_config`): the plot shows its earlier epochs
too, and a run with nothing left to train (its epochs done, or stopped early) is not
started: a message says so and which limit to raise
(:func:`napari_dfct.train.resume_finished`).

*Stop* sets the cancel flag that :func:`~napari_dfct.train.fit` checks before every batch;
the best checkpoint so far is kept. When the run ends (completed, early stopping or
stopped), the model folder is registered in :mod:`napari_dfct.widgets._models` so the
Predict widget offers it.

The run is the viewer's (:mod:`napari_dfct.widgets._jobs`): it outlives its dock, a Train
widget opened later shows it, and the form shows what it uses, deleted layers included.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QWidget

from . import (
    _help,
    _jobs,
    _layers,
    _models,
    _preview,
    _progress,
    _train_data,
    _train_dims,
    _train_params,
    _workers,
)
from ._choices import (
    FREQUENCY_CHOICES,
    LOSS_CHOICES,
    MODE_CHOICES,
    ORDER_CHOICES,
    PROFILE_CHOICES,
)
from ._curves import CurvePlot
from ._devices import device_choices
from ._layout import scroll_body, settle, tab_pages
from ._models import default_models_dir

if TYPE_CHECKING:
    import napari

__all__ = ["TrainWidget", "default_models_dir"]

PREVIEW_SUFFIX = _preview.PREVIEW_SUFFIX
_EXCLUDE = ("weights", "preview")


def _default_preset() -> str:
    try:
        import torch

        return "paper" if torch.cuda.is_available() else "small"
    except Exception:  # noqa: BLE001 - torch import problems surface at start
        return "small"


class TrainWidget(QWidget):
    """Train a model on the layers (or files) of the viewer and watch it learn.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer: source of the input/target layers, home of the preview layer.
    """

    #: Shortest interval between two GUI updates from training events.
    GUI_INTERVAL_MS = 250

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self._viewer = napari_viewer
        self._worker = None
        self._cancel: threading.Event | None = None
        self._run: SimpleNamespace | None = None
        self._viewer_job: _jobs.Job | None = None
        self._lost: set[str] = set()  # pickers whose layer was deleted during a run
        self.last_result = None
        self._history: list = []
        self._past: list = []  # a resumed run's earlier epochs (history.json)
        self._pending = None
        self._preview_event = None
        self.training_preview = _preview.TrainingPreview(napari_viewer, self._on_preview_deleted)
        self._updates = _workers.Throttle(self, self.GUI_INTERVAL_MS, self._flush)
        _workers.warm_up_torch()

        self.data_form = self._data_form()
        self.loss_form = self._loss_form()
        self.params_form = self._params_form()
        self.output_form = self._output_form()
        forms = (self.data_form, self.loss_form, self.params_form, self.output_form)
        #: every input widget by name (``widget.fields.epochs.value = 2``)
        self.fields = SimpleNamespace(**{w.name: w for form in forms for w in form})
        self.fields.lr.native.setPlaceholderText("1e-3")
        self.fields.run_name.native.setPlaceholderText("auto: <loss>-<date>-<time>")
        self.fields.preview.native.setPlaceholderText("auto")
        self.data_panel = _train_data.DataPanel(self.fields)
        self.dims_panel = _train_dims.DimsPanel(self.fields, self)
        self.data_form.native.layout().addWidget(self.data_panel.plot_box)
        self._build_layout(forms)
        self._connect_fields()
        self._on_source()
        self._on_loss()
        self._on_recipe()
        self._pick_defaults()
        self.data_panel.update()
        job = _jobs.running(napari_viewer, "training")
        if job is not None:  # a dock reopened while the viewer trains
            self._attach(job)

    # ------------------------------------------------------------------ form building
    def _data_form(self) -> Container:
        return _train_data.data_form(self._layer_choices)

    @staticmethod
    def _loss_form() -> Container:
        return Container(
            widgets=[
                ComboBox(name="loss", label="loss", choices=LOSS_CHOICES, value="l2"),
                ComboBox(name="spatial", label="spatial", choices=PROFILE_CHOICES, value="none"),
                ComboBox(
                    name="frequency", label="frequency", choices=FREQUENCY_CHOICES, value="none"
                ),
                ComboBox(
                    name="directional",
                    label="directional",
                    choices=FREQUENCY_CHOICES,
                    value="none",
                ),
                ComboBox(
                    name="order",
                    label="order",
                    choices=ORDER_CHOICES,
                    value="sf",
                ),
                ComboBox(name="mode", label="mode", choices=MODE_CHOICES, value="paper"),
                CheckBox(name="normalize", text="normalise weights to mean 1", value=False),
                Label(name="loss_name", label="name", value=""),
            ],
            labels=True,
        )

    @staticmethod
    def _params_form() -> Container:
        """The recipe, one field per TrainConfig option (:mod:`._train_params`), and the
        run's seed, augmentation, device and logging."""
        from napari_dfct.train import DEFAULT_RECIPE, RECIPES

        return Container(
            widgets=[
                ComboBox(
                    name="recipe",
                    label="recipe",
                    choices=list(RECIPES),
                    value=DEFAULT_RECIPE,
                    tooltip="stable: the paper's protocol with the fix for validation "
                    "spikes; paper: the paper's protocol exactly. Choosing one fills "
                    "the fields below",
                ),
                Label(name="recipe_note", label="", value=""),
                *_train_dims.with_note(_train_params.option_widgets()),
                SpinBox(name="seed", label="seed", value=0, min=0, max=2**31 - 1),
                CheckBox(
                    name="augment", text="augment (flips, \u00b115\u00b0 rotations)", value=True
                ),
                ComboBox(name="device", label="device", choices=device_choices, value="auto"),
                CheckBox(
                    name="tensorboard",
                    text="TensorBoard log (<model folder>/tensorboard)",
                    value=False,
                ),
            ],
            labels=True,
        )

    @staticmethod
    def _output_form() -> Container:
        return Container(
            widgets=[
                FileEdit(
                    name="save_under",
                    label="save under",
                    mode=FileDialogMode.EXISTING_DIRECTORY,
                    value=default_models_dir(),
                ),
                LineEdit(name="run_name", label="run name", value=""),
                FileEdit(
                    name="resume",
                    label="resume from",
                    mode=FileDialogMode.EXISTING_DIRECTORY,
                    nullable=True,
                    tooltip="A stopped run's model folder: continue where it stopped",
                ),
            ],
            labels=True,
        )

    #: Tallest the loss plot grows (its minimum is 150 px); the rest stays empty below.
    PLOT_MAX_HEIGHT = 280

    def _build_layout(self, forms) -> None:
        # as tall as the current tab (the window histogram fits): the body scrolls instead
        self.tabs = tab_pages(forms, ("Data", "Loss", "Training", "Output"))

        self.start_button = PushButton(name="start", text="Start training")
        self.stop_button = PushButton(name="stop", text="Stop", enabled=False)
        self.start_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.progress = ProgressBar(value=0, min=0, max=1, label="epochs")
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        # painted with QPainter: about 2 ms per update (benchmarks/bench_curves.py)
        self.plot = CurvePlot(
            xlabel="epoch", ylabel="loss", log_y=True, integer_x=True, height=150
        )

        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button.native, 2)
        buttons.addWidget(self.stop_button.native, 1)
        self.help_button = _help.help_button("train")
        buttons.addWidget(self.help_button.native)
        _help.add_tips(
            "train", [*(w for f in forms for w in f), self.start_button, self.stop_button]
        )
        # run controls first: in a short dock they stay in view above the settings
        _body, layout = scroll_body(self)
        layout.addLayout(buttons)
        layout.addWidget(self.progress.native)
        layout.addWidget(self.status)
        layout.addWidget(self.tabs)
        self.plot.setMaximumHeight(self.PLOT_MAX_HEIGHT)
        layout.addWidget(self.plot, 1)
        layout.addStretch(1)
        settle(self, *forms)

    def _connect_fields(self) -> None:
        self.fields.recipe.changed.connect(self._on_recipe)
        self.fields.source.changed.connect(self._on_source)
        for name in ("loss", "spatial", "frequency", "directional", "order", "mode", "normalize"):
            getattr(self.fields, name).changed.connect(self._on_loss)
        self.fields.resume.changed.connect(self._on_resume)
        for name in ("input", "target"):
            getattr(self.fields, name).changed.connect(
                lambda value, name=name: _jobs.found(self._lost, value, name)
            )
        ev = self._viewer.layers.events
        for name in ("inserted", "removed", "reordered"):
            getattr(ev, name).connect(self.reset_choices)

    # ------------------------------------------------------------------ form helpers
    def _layer_choices(self, _widget=None):
        choices = _layers.image_layers(self._viewer, exclude_roles=_EXCLUDE)
        job = self._viewer_job  # a run's layers stay offered, deleted or not
        return choices if job is None else _jobs.held_choices(choices, job.run.layers)

    def reset_choices(self, *_args) -> None:
        """Refresh the layer pickers (napari calls this when layers change); not while a
        run holds the form: it shows what the run uses."""
        if self._viewer_job is not None:
            return
        self.data_form.reset_choices()
        self._pick_defaults()

    def _pick_defaults(self) -> None:
        layers = [layer for _, layer in self._layer_choices()]
        if not layers:
            return
        f = self.fields

        def find(prefix):
            for layer in layers:
                if layer.name.lower().startswith(prefix):
                    return layer
            return None

        if f.input.value is None and "input" not in self._lost:
            f.input.value = find("input") or layers[0]
        if f.target.value is None and "target" not in self._lost:
            rest = [la for la in layers if la is not f.input.value]
            choice = find("target") or (rest[0] if rest else None)
            if choice is not None:
                f.target.value = choice

    def _on_recipe(self, *_args) -> None:
        """Fill every training option with the chosen recipe's value (the model preset,
        which no recipe names, with this machine's default)."""
        from napari_dfct.train import RECIPE_NOTES, RECIPES, recipe_config

        name = self.fields.recipe.value
        machine = {} if "preset" in RECIPES[name] else {"preset": _default_preset()}
        cfg = recipe_config(name, **machine)
        _train_params.fill(self.fields, vars(cfg))
        self.fields.recipe_note.value = RECIPE_NOTES[name]
        self.fields.recipe_note.native.setWordWrap(True)

    def _on_source(self, *_args) -> None:
        source = self.fields.source.value
        for name in ("input", "target"):
            getattr(self.fields, name).visible = source == "layers"
            getattr(self.fields, f"{name}_file").visible = source == "files"
        self.fields.dataset.visible = self.fields.pairs_csv.visible = source == "dataset"

    def loss_config(self):
        """The :class:`napari_dfct.losses.LossConfig` of the form
        (:func:`napari_dfct.losses.build_loss_config`, the rule of ``dfct train``)."""
        from napari_dfct.losses import build_loss_config

        f = self.fields
        return build_loss_config(
            f.loss.value,
            spatial=f.spatial.value,
            frequency=f.frequency.value,
            directional=f.directional.value,
            order=f.order.value,
            mode=f.mode.value,
            normalize=bool(f.normalize.value),
        )

    def _on_loss(self, *_args) -> None:
        try:
            cfg = self.loss_config()
            self.fields.loss_name.value = f"{cfg.name}  ({cfg.scheme})"
        except ValueError as err:
            self.fields.loss_name.value = str(err)

    def _on_resume(self, *_args) -> None:
        """Fill the form from a stopped run's config so the user sees what continues."""
        path = self.fields.resume.value
        if not path or str(path) in ("", "."):
            return
        from napari_dfct import checkpoint

        try:
            cfg = checkpoint.load_config(path)
        except ValueError as err:
            show_error(f"Cannot resume from {path}: {err}")
            return
        f = self.fields
        loss = cfg.get("loss") or {}
        for key in ("loss", "spatial", "frequency", "directional", "order", "mode"):
            if key in loss:
                getattr(f, key).value = loss[key]
        if "normalize" in loss:
            f.normalize.value = bool(loss["normalize"])
        train = cfg.get("train") or {}
        if train.get("recipe") in self.fields.recipe.choices:
            f.recipe.value = train["recipe"]
        _train_params.fill(f, train)
        if "seed" in train:
            f.seed.value = int(train["seed"])
        if "augment" in train:
            f.augment.value = bool(train["augment"])
        from napari_dfct.train import resume_config, resume_finished

        try:
            finished = resume_finished(path, resume_config(path))
        except ValueError:
            finished = None  # Start says why it cannot resume
        if finished:
            show_info(finished[0].upper() + finished[1:] + ".")
            return
        show_info(
            f"Resuming {cfg.get('name', Path(path).name)} after epoch "
            f"{cfg.get('epochs_run', '?')}; raise 'epochs' to train longer."
        )

    # ------------------------------------------------------------------ gather/validate
    def train_config(self):
        """The :class:`napari_dfct.train.TrainConfig` of the form (validated)."""
        from napari_dfct.train import recipe_config

        f = self.fields
        config = recipe_config(
            f.recipe.value,
            loss=self.loss_config(),
            seed=int(f.seed.value),
            device=f.device.value,
            augment=bool(f.augment.value),
            tensorboard=bool(f.tensorboard.value),
            **_train_dims.applicable(_train_params.read(f)),
        )
        config.validate()
        if config.tensorboard:
            from napari_dfct.train.logs import check_tensorboard

            check_tensorboard()  # the package is missing: one notification, no run
        return config

    def _gather(self) -> SimpleNamespace:
        """Collect and check everything a run needs; raise ValueError with a clear message."""
        from napari_dfct import checkpoint
        from napari_dfct.context import check_one_scan_folder, check_one_scan_record
        from napari_dfct.data import validate_pair
        from napari_dfct.train import resolve_device, resume_config, resume_finished

        from ._train_data import check_3d_runs

        f = self.fields
        config = self.train_config()
        resolve_device(config.device)  # CUDA/MPS asked for but absent -> ValueError

        resume_dir = f.resume.value
        resume = bool(resume_dir) and str(resume_dir) not in ("", ".")
        run = SimpleNamespace(
            config=config, resume=resume, layer=None, name="input", placement=None, layers=()
        )
        if f.source.value == "layers":
            inp, tgt = f.input.value, f.target.value
            if inp is None or tgt is None:
                raise ValueError("choose an input and a target image layer")
            if inp is tgt:
                raise ValueError(
                    f"input and target are the same layer ({inp.name!r}); choose the "
                    "multi-rotation reconstruction as target"
                )
            _train_dims.check_volume_layers((inp, tgt), config.dims)
            for layer in (inp, tgt):
                if layer.multiscale:
                    raise ValueError(f"layer {layer.name!r} is multiscale; not supported")
                missing = _layers.missing_slices(layer)
                if missing:
                    raise ValueError(
                        f"layer {layer.name!r} is not predicted on {len(missing)} of its "
                        f"{layer.data.shape[0]} slices; predict the whole volume first"
                    )
            x = np.asarray(inp.data, dtype=np.float32)
            y = np.asarray(tgt.data, dtype=np.float32)
            try:
                validate_pair(x, y, patch=None if resume else config.patch)
            except ValueError as err:
                raise ValueError(f"{err} (input {inp.name!r}, target {tgt.name!r})") from None
            # a layer is one scan: a context model reads its neighbours within it
            record = inp.metadata.get("dfct")
            check_one_scan_record(record, config.context, f"layer {inp.name!r}", config.dims)
            if config.dims == 3 and not resume:  # a patch's slices: the training block's
                what = f"layer {inp.name!r}"
                check_3d_runs(x, config.val_fraction, config.seed, config.patch_depth, what)
            run.input, run.target = x, y
            run.layer, run.name, run.layers = inp, inp.name, (inp, tgt)
            run.placement = _layers.spatial_placement(inp)
            run.shape = x.shape
        elif f.source.value == "dataset":
            scans = self.data_panel.scans()
            if not resume:
                scans.validate(patch=config.patch)
                if config.dims == 3:
                    check_3d_runs(scans, config.val_fraction, config.seed, config.patch_depth, "")
            run.input, run.target = scans, None
            run.name = Path(f.dataset.value).stem
            run.shape = (len(scans),)
        else:
            paths = []
            for key in ("input_file", "target_file"):
                p = getattr(f, key).value
                if not p or not Path(p).exists() or str(p) == ".":
                    raise ValueError(f"choose an existing {key.replace('_', ' ')}")
                paths.append(Path(p))
            if paths[0].resolve() == paths[1].resolve():
                raise ValueError("input file and target file are the same file")
            check_one_scan_folder(paths[0].parent, config.context, config.dims)  # one scan
            run.input, run.target = str(paths[0]), str(paths[1])
            run.name = paths[0].stem
            run.shape = None

        if not resume:
            # an edited window as typed; else None: fit() computes the default (the data
            # tab's rule) on the data as they are then, in the training process
            config.window = self.data_panel.edited_window()
        if resume:
            run.out_dir = Path(resume_dir)
            # what fit() continues: the saved run, with the form's limits and device
            run.config = resume_config(
                run.out_dir,
                epochs=config.epochs,
                patience=config.patience,
                device=config.device,
                keep_state=config.keep_state,
            )
            finished = resume_finished(run.out_dir, run.config)
            if finished:
                raise ValueError(finished)
            if f.source.value == "dataset":  # read with the resumed run's context
                run.input = self.data_panel.scans(context=run.config.context)
        else:
            run.out_dir = checkpoint.new_run_dir(
                f.save_under.value or default_models_dir(),
                f.run_name.value,
                config.loss.name,
            )
        run.preview_index = self._preview_index(run.shape)
        return run

    def _preview_index(self, shape) -> int | None:
        """The preview slice of the form: None for auto, else a checked slice number."""
        text = str(self.fields.preview.value or "").strip()
        if text.lower() in ("", "auto"):
            return None
        try:
            preview = int(text)
        except ValueError:
            raise ValueError(f"preview slice {text!r} must be a slice number or auto") from None
        if preview < 0 or (shape is not None and preview >= shape[0]):
            n = f"{shape[0]} slices" if shape is not None else "the volume"
            raise ValueError(f"preview slice {preview} is out of range for {n}")
        return preview

    # ------------------------------------------------------------------ run control
    @property
    def is_running(self) -> bool:
        """True while a training worker is alive."""
        return self._worker is not None

    def start(self, *_args) -> None:
        """Validate the form and start training in a worker thread (one per viewer)."""
        if self.is_running or _jobs.running(self._viewer, "training") is not None:
            show_warning(
                "Training is already running in this viewer; press Stop first (to train "
                "a second model at the same time, use another viewer or `dfct train`)."
            )
            return
        try:
            run = self._gather()
        except Exception as err:  # noqa: BLE001 - never a traceback in the viewer
            show_error(f"Cannot start training: {_workers.problem_text(err)}")
            return

        self._run = run
        self._history = run.history = []  # shared with a Train widget reopened later
        self._past = run.past = _earlier_epochs(run)
        self._pending = self._preview_event = None
        self.plot.clear()
        if self._past:
            self._draw_curves(self._past)
        # the widget's own progress bar only: napari's activity indicator animates the
        # main window (a quarter of a core under software OpenGL) while a job runs
        _progress.reset(self.progress, run.config.epochs)
        self.training_preview.start(run)
        self.start_button.enabled = False
        self.stop_button.enabled = True
        self.tabs.setEnabled(False)
        self.status.setText(_starting_text(run))
        # the viewer's job, not the dock's: closing the viewer stops it within a batch
        job = _jobs.start(
            self._viewer,
            "training",
            self,
            run,
            _workers.train_job,
            run.input,
            run.target,
            run.config,
            run.out_dir,
            form=_jobs.form_values(self.fields),
            resume=run.resume,
            preview_index=run.preview_index,
            threads=_workers.training_threads(run.config.device),
        )
        self._viewer_job, self._worker, self._cancel = job, job.worker, job.cancel

    def stop(self, *_args) -> None:
        """Ask the running training to stop after the current batch."""
        if self._cancel is not None and self.is_running:
            self._cancel.set()
            self.stop_button.enabled = False
            self.status.setText(_STOPPING)

    def _attach(self, job: _jobs.Job) -> None:
        """Show the viewer's running training and take over its reports: its settings
        (locked), progress, status and curves; Stop stops it."""
        job.attach(self)
        self._viewer_job, self._run = job, job.run
        self._worker, self._cancel = job.worker, job.cancel
        self.data_form.reset_choices()  # offers the run's layers, deleted or not
        # the recipe fills the options, the layers the window; resume without its note
        last = ("window_low", "window_high")
        _jobs.show_form(self.fields, job.form, first=("recipe",), last=last, quiet=("resume",))
        self._history = job.run.history
        self._past = getattr(job.run, "past", [])
        self.start_button.enabled = False
        self.stop_button.enabled = not job.cancel.is_set()
        self.tabs.setEnabled(False)
        _progress.reset(self.progress, job.run.config.epochs)
        self.status.setText(_starting_text(job.run))
        self.training_preview.attach(job.run, any(e.preview is not None for e in self._history))
        if self._history:
            self._pending = self._history[-1]
            self._flush()
            self._preview_event = None  # the preview layer has it already
        if job.cancel.is_set():
            self.status.setText(_STOPPING)

    # ------------------------------------------------------------------ worker signals
    def _on_event(self, event: _workers.JobEvent) -> None:
        if event.kind == "data":
            if self._run is not None and self._run.placement is None:
                scale = event.info.get("scale") or ()
                if len(scale) >= 2:
                    self._run.placement = {"scale": tuple(scale[-2:])}
        elif event.kind == "epoch":
            self._on_epoch(event.value)
        elif event.kind == "batch":  # within an epoch: the bar and the time left
            _progress.show_batch(self.progress, event.value)

    def _on_epoch(self, event) -> None:
        """Record an epoch; apply it to the GUI at most every ``GUI_INTERVAL_MS``.

        Each GUI step (progress and status, the plot, the preview layer) runs as its own
        short event-loop task, so no single task blocks the event loop for long; when
        epochs come faster than the interval, only the latest one is shown (the plot
        always holds every epoch).
        """
        self._history.append(event)
        self._pending = event
        self._updates.poke()

    def _flush(self) -> None:
        """Show the latest recorded epoch: progress, status and plot, then the preview."""
        event, self._pending = self._pending, None
        if event is None:
            return
        _progress.show_epoch(self.progress, event)
        where = "" if event.preview_index is None else f"; preview: slice {event.preview_index}"
        self.status.setText(
            f"Epoch {event.epoch}/{event.epochs}: training {event.train_loss:.4g}, "
            f"validation {event.val_loss:.4g}, lr {event.lr:.2e}, best epoch "
            f"{event.best_epoch} (validation {event.best_val_loss:.4g}; "
            f"{event.seconds:.1f} s/epoch){where}"
        )
        self._draw_curves(self._past + list(self._history), event)
        if event.preview is not None:
            self._preview_event = event
            QTimer.singleShot(0, self._show_preview)

    def _draw_curves(self, history: list, event=None) -> None:
        """The training and validation curves of ``history`` (a resumed run's earlier
        epochs first), and the best epoch of ``event``."""
        epochs = [e.epoch for e in history]
        self.plot.set_line(
            "train", epochs, [e.train_loss for e in history], label="training", color="#4fa3ff"
        )
        self.plot.set_line(
            "val", epochs, [e.val_loss for e in history], label="validation", color="#ff9f40"
        )
        if event is not None and event.best_epoch > 0 and math.isfinite(event.best_val_loss):
            self.plot.set_marker(
                event.best_epoch, event.best_val_loss, color="#ffd166", label="best"
            )
        # the legend sits above the plot area: it never covers a point (the best star)
        self.plot.redraw()  # deferred: painted in Qt's paint event

    def _show_preview(self) -> None:
        event, self._preview_event = self._preview_event, None
        if event is None or self._run is None or event.preview is None:
            return
        if not _jobs.viewer_open(self._viewer):  # a deferred update after the viewer closed
            return
        self.training_preview.show(event.preview, event.preview_index)

    def _on_preview_deleted(self) -> None:
        text = "Training preview deleted: it stays hidden until the next run."
        self.status.setText(text)
        show_info(text)

    def _on_returned(self, result) -> None:
        self._updates.flush()
        self._show_preview()
        self.last_result = result
        if result is None:
            return
        if result.model_dir is not None:
            _models.register_model(result.model_dir)
            how = {
                "completed": "finished",
                "early_stopping": "stopped early (patience)",
                "cancelled": "stopped",
            }.get(result.stopped, result.stopped)
            text = (
                f"Training {how} after {result.epochs_run} epochs; best epoch "
                f"{result.best_epoch} (validation loss {result.best_val_loss:.4g}). "
                f"Model saved in {result.model_dir}."
            )
            shown = [e.preview_index for e in self._history if e.preview_index is not None]
            if shown and self.training_preview.layer is not None:
                text += f" The preview layer shows slice {shown[-1]}."
            self.status.setText(text)
            show_info(text)
        else:
            text = "Training stopped before the first epoch finished; nothing was saved."
            self.status.setText(text)
            show_warning(text)

    def _on_errored(self, exc: BaseException) -> None:
        text = _workers.failure_text(
            "Training", exc, "Lower the batch size or the patch, or choose a smaller preset."
        )
        run = self._run
        if run is not None and getattr(run, "out_dir", None) is not None:
            from napari_dfct import checkpoint

            if checkpoint.is_model_dir(run.out_dir):
                _models.register_model(run.out_dir)
                text += f" The best model so far is kept in {run.out_dir}."
        self.status.setText(text)
        show_error(text)

    def _on_finished(self) -> None:
        self._updates.flush()
        self._show_preview()
        self.training_preview.end()
        self._worker = self._viewer_job = None
        self.start_button.enabled = True
        self.stop_button.enabled = False
        self.tabs.setEnabled(True)
        pickers = ("input", "target")
        reset = self.data_form.reset_choices
        lost = _jobs.release_layers(self._viewer, self.fields, pickers, reset, self._lost)
        self._pick_defaults()
        if lost:
            self.status.setText(f"{self.status.text()} {lost}")
            show_warning(lost)


_STOPPING = "Stopping after the current batch (the best model is kept)..."


def _starting_text(run) -> str:
    return f"Starting {run.config.loss.name} ({run.config.preset}) \u2192 {run.out_dir}"


def _earlier_epochs(run) -> list[SimpleNamespace]:
    """A resumed run's epochs before this run (``history.json`` up to its resume state),
    as ``epoch``, ``train_loss``, ``val_loss`` records for the plot; empty otherwise."""
    if not run.resume:
        return []
    from napari_dfct import checkpoint

    state = checkpoint.training_state_summary(run.out_dir)
    try:
        records = checkpoint.load_history(run.out_dir, until=state["epoch"] if state else None)
    except ValueError:
        return []  # an unreadable history: the run itself says what is wrong
    out = []
    for rec in records:
        try:
            epoch, train, val = int(rec["epoch"]), rec["train_loss"], rec["val_loss"]
            out.append(SimpleNamespace(epoch=epoch, train_loss=float(train), val_loss=float(val)))
        except (KeyError, TypeError, ValueError):
            continue
    return out
