"""The Train widget's Data tab: where the pairs come from, what they are, and the window.

Three sources: two image layers, two volume files, or a data set of many scans (a pairs
CSV or a folder, :mod:`napari_dfct.io.dataset`). For layers and data sets a summary line
(slices, sizes; scans and the scans held out for validation) and the intensity window
are shown before training starts: the window fields hold the default that training would
compute (:func:`napari_dfct.train.default_window`, the rule of ``dfct train`` without
``--window``) until the user edits them, and a histogram of the training slices shows the
window as two lines. For files the data are read when training starts, so the window
fields stay empty (the default) unless filled in. The window given here is stored in the
model (``config.json``) and applied at prediction.

With a 2.5-D context (the ``context`` option, K > 0) a data set is read with every
slice's ``2K + 1`` neighbouring slices of its own scan (``load_scans(..., context=K)``, as
``dfct train --pairs`` reads it), layers and files are one scan each, and the summary adds
what the context costs in memory (:func:`context_text`). With a 3-D model (``dims`` 3)
a layer's volume is split into two blocks (its last slices validate), the default window
is that of its training block, and training slices that cannot hold a patch of
``patch_depth`` consecutive slices of one scan are said in the summary
(:func:`check_3d_runs`, the rule of :func:`napari_dfct.train.fit`).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import ComboBox, Container, FileEdit, Label, LineEdit, PushButton
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._plot import PlotCanvas

if TYPE_CHECKING:
    from napari_dfct.data import IntensityWindow

__all__ = ["SOURCES", "DataPanel", "check_3d_runs", "data_form"]

#: The data sources of the Train widget.
SOURCES = ["layers", "files", "dataset"]
#: The pairs-CSV field's file filter.
PAIRS_FILTER = "*.csv"
_VOLUMES = "Volumes (*.tif *.tiff *.npy *.npz *.dcm)"


def data_form(layer_choices) -> Container:
    """The Data tab's fields (``source``, layers, files, ``dataset``, ``preview``, the
    summary and the window)."""
    return Container(
        widgets=[
            ComboBox(
                name="source",
                label="source",
                choices=SOURCES,
                value="layers",
                tooltip="Two image layers, two volume files, or a data set of many "
                "scans (a pairs CSV or a folder DATASET/<scan>/input.* + target.*)",
            ),
            ComboBox(
                name="input",
                label="input",
                choices=layer_choices,
                nullable=True,
                tooltip="Single-rotation reconstruction (Z, Y, X)",
            ),
            ComboBox(
                name="target",
                label="target",
                choices=layer_choices,
                nullable=True,
                tooltip="Multi-rotation reconstruction, same shape",
            ),
            FileEdit(
                name="input_file",
                label="input file",
                mode=FileDialogMode.EXISTING_FILE,
                nullable=True,
                filter=_VOLUMES,
            ),
            FileEdit(
                name="target_file",
                label="target file",
                mode=FileDialogMode.EXISTING_FILE,
                nullable=True,
                filter=_VOLUMES,
            ),
            FileEdit(
                name="dataset",
                label="data set",
                mode=FileDialogMode.EXISTING_DIRECTORY,
                nullable=True,
                tooltip="A data-set folder: DATASET/<scan>/input.* + target.*, or a "
                "pairs.csv in it (columns input,target[,slices]); or choose a pairs CSV "
                "below. Validation holds out whole scans",
            ),
            FileEdit(
                name="pairs_csv",
                label="pairs CSV",
                mode=FileDialogMode.EXISTING_FILE,
                nullable=True,
                filter=PAIRS_FILTER,
            ),
            LineEdit(
                name="preview",
                label="preview slice",
                value="auto",
                tooltip="Slice shown in the preview layer each epoch: a slice "
                "number, or auto (the first validation slice)",
            ),
            Label(name="data_summary", label="data", value=""),
            LineEdit(
                name="window_low",
                label="window low",
                value="",
                tooltip="Intensity window (input units) shared by input and target: "
                "clipped and scaled to [0, 1] for training, stored in the model and "
                "applied at prediction. Default: computed from the training slices",
            ),
            LineEdit(name="window_high", label="window high", value=""),
            PushButton(name="window_default", text="Default window (from the data)"),
        ],
        labels=True,
    )


def _chosen(path) -> bool:
    """Whether a file field holds a path (not None, empty or ".")."""
    return bool(path) and str(path) not in ("", ".")


def context_text(k: int, train_pixels: int) -> str:
    """The summary's words on a context-``K`` run: what one input is, and the memory the
    patch sampler keeps (per training slice, ``2K + 1`` input slices and the target, float32:
    ``(2K + 2) / 2`` times a 2-D run's); ``""`` for a 2-D run."""
    from napari_dfct._memory import format_bytes

    k = int(k)
    if not k:
        return ""
    need = format_bytes(4 * (2 * k + 2) * int(train_pixels))
    return (
        f"; context {k}: each input is {2 * k + 1} neighbouring slices of its scan, the "
        f"training slices take {need} in memory ({k + 1}x a 2-D run's)"
    )


def check_3d_runs(data, val_fraction: float, seed: int, depth: int, what: str) -> None:
    """Refuse (one :class:`ValueError` line) training data whose training slices do not
    hold a 3-D patch of ``depth`` consecutive slices of one scan: ``data`` a volume (named
    ``what``) or a data set of scans, split as :func:`napari_dfct.train.fit` splits it for
    a 3-D model."""
    from napari_dfct.scans import ScanSlices
    from napari_dfct.train import training_split
    from napari_dfct.volume3d import check_runs, run_namer, scan_runs

    scans = data if isinstance(data, ScanSlices) else None
    train_idx, _ = training_split(data, val_fraction, seed, 3)
    check_runs(scan_runs(train_idx, scans), depth, run_namer(scans, what))


def _volume_text(depth: int | None, n_train: int) -> str:
    """The summary's words on a 3-D run of one volume: its training block and patches."""
    if depth is None:
        return ""
    return (
        f"; 3-D: patches of {depth} consecutive slices of the {n_train} training slices "
        "(the validation slices are the last ones, one block)"
    )


def _scans_text(scans, val_fraction: float, seed: int, depth: int | None = None) -> str:
    """The summary of a data set of scans; ``depth`` for a 3-D model (its patch depth)."""
    from napari_dfct.io.dataset import describe_scans
    from napari_dfct.train import training_split

    text = describe_scans(scans)
    try:
        _, val_idx = training_split(scans, val_fraction, seed)
    except ValueError as err:
        return f"{text}; {err}"
    if depth is not None:
        check_3d_runs(scans, val_fraction, seed, depth, "")
    held = sorted({scans.names[int(scans.scans[i])] for i in val_idx})
    train = sorted(set(range(len(scans))) - {int(i) for i in val_idx})
    pixels = sum(int(np.prod(scans.shapes[i])) for i in train)
    return (
        f"{text}; held out for validation: {', '.join(held)}"
        f"{context_text(getattr(scans, 'context', 0), pixels)}"
    )


class DataPanel:
    """The Data tab's behaviour: the summary, the default window and the histogram.

    Parameters
    ----------
    fields : SimpleNamespace
        The Train widget's fields (``source``, ``input``, ``target``, ``dataset``,
        ``val_fraction``, ``seed``, ``window_low``, ``window_high``, ...).
    """

    def __init__(self, fields: SimpleNamespace):
        self.fields = fields
        self._scans_key: tuple[str, float, int] | None = None
        self._scans = None
        self._scans_error: str | None = None
        #: The default window of the current data (None when not computed).
        self.default: IntensityWindow | None = None
        self._computed_for: tuple | None = None
        self._shown_default: tuple[str, str] | None = None
        self.histogram = PlotCanvas(
            xlabel="intensity (input units)", ylabel="count", title="", height=1.45
        )
        self.histogram.set_yscale("log")
        self.plot_box = QWidget()
        layout = QVBoxLayout(self.plot_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.histogram)
        fields.data_summary.native.setWordWrap(True)
        for name in (
            "source",
            "input",
            "target",
            "dataset",
            "val_fraction",
            "seed",
            "context",
            "dims",
            "patch_depth",
        ):
            getattr(fields, name).changed.connect(self.update)
        for name in ("window_low", "window_high"):
            getattr(fields, name).changed.connect(self._draw_window)
        fields.window_default.changed.connect(self.reset_window)
        fields.pairs_csv.changed.connect(self._on_pairs_csv)
        fields.dataset.changed.connect(self._on_dataset)

    def _on_pairs_csv(self, value) -> None:
        """A chosen pairs CSV is the data set."""
        if _chosen(value):
            self.fields.dataset.value = value

    def _on_dataset(self, value) -> None:
        """Another data set than the chosen CSV: the CSV field is cleared."""
        csv = self.fields.pairs_csv.value
        if _chosen(csv) and not (_chosen(value) and Path(value) == Path(csv)):
            self.fields.pairs_csv.value = None

    # ------------------------------------------------------------------ data
    def context(self) -> int:
        """The form's 2.5-D context K (0: a 2-D run, and a 3-D one)."""
        field = getattr(self.fields, "context", None)
        return int(field.value) if field is not None and self.depth() is None else 0

    def depth(self) -> int | None:
        """The patch depth of a 3-D run (the form's ``dims`` 3); None for 2-D and 2.5-D."""
        f = self.fields
        return int(f.patch_depth.value) if int(f.dims.value) == 3 else None

    def scans(self, context: int | None = None):
        """The chosen data set's slices (:class:`napari_dfct.scans.ScanSlices`), with
        every slice's ``2K + 1`` neighbours for a context K (default: the form's), as
        ``dfct train --pairs --context K`` reads them; read once per path and context;
        :class:`ValueError` when it cannot be read."""
        from napari_dfct.context import check_one_scan_folder
        from napari_dfct.io.dataset import load_scans

        k = self.context() if context is None else int(context)
        path = self.fields.dataset.value
        if not path or str(path) in ("", "."):
            raise ValueError("choose a data set (a pairs CSV or a folder of scans)")
        path = Path(path).expanduser()
        try:
            key = (str(path.resolve()), path.stat().st_mtime, k)
        except OSError:
            raise ValueError(f"data set not found: {path}") from None
        if key != self._scans_key:
            self._scans_key, self._scans, self._scans_error = key, None, None
            try:
                check_one_scan_folder(path if path.is_dir() else path.parent, k)
                self._scans = load_scans(path, context=k)
            except ValueError as err:
                self._scans_error = str(err).splitlines()[0]
        if self._scans_error:
            raise ValueError(self._scans_error)
        return self._scans

    def _pair(self):
        """``(input, target)`` for the window and histogram: arrays of the layers, or the
        data set (target None); None for files or an incomplete choice."""
        f = self.fields
        if f.source.value == "dataset":
            return self.scans(), None
        if (
            f.source.value == "layers"
            and f.input.value is not None
            and f.target.value is not None
            and f.input.value is not f.target.value
        ):
            x = np.asarray(f.input.value.data, dtype=np.float32)
            y = np.asarray(f.target.value.data, dtype=np.float32)
            if x.shape == y.shape and x.ndim == 3 and x.shape[0] >= 2:
                return x, y
            raise ValueError(
                f"input {x.shape} and target {y.shape} must be volumes of "
                "the same shape with at least 2 slices"
            )
        return None

    def update(self, *_args, force: bool = False) -> None:
        """Recompute the summary, the default window and the histogram for the current
        data (after any change of source, layers, data set, validation share or seed);
        the same choice is not computed twice unless ``force`` (data changed in place)."""
        from napari_dfct.train import default_window, intensity_histogram, training_split

        f = self.fields
        vf, seed, k = float(f.val_fraction.value), int(f.seed.value), self.context()
        depth = self.depth()
        dims = 2 if depth is None else 3
        key = (
            f.source.value,
            vf,
            seed,
            k,
            depth,
            str(f.dataset.value),
            *(id(getattr(getattr(f, n).value, "data", None)) for n in ("input", "target")),
        )
        if key == self._computed_for and not force:
            return
        self._computed_for = key
        self.default = None
        try:
            pair = self._pair()
            if pair is None:
                f.data_summary.value = (
                    "read when training starts" if f.source.value == "files" else ""
                )
                self._clear_plot()
                self._fill_window()
                return
            x, y = pair
            if y is None:
                f.data_summary.value = _scans_text(x, vf, seed, depth)
                train_idx, _ = training_split(x, vf, seed)
                values = [x.inputs[i] for i in train_idx] + [x.targets[i] for i in train_idx]
            else:
                from napari_dfct.context import check_context_slices

                check_context_slices(x.shape[0], k, "the input layer")
                if depth is not None:
                    check_3d_runs(x, vf, seed, depth, f"layer {f.input.value.name!r}")
                train_idx, val_idx = training_split(x, vf, seed, dims)
                f.data_summary.value = (
                    f"{x.shape[0]} slices of {x.shape[1]}x{x.shape[2]}; "
                    f"validation slices: "
                    f"{', '.join(str(int(i)) for i in val_idx)}"
                    f"{context_text(k, len(train_idx) * x.shape[1] * x.shape[2])}"
                    f"{_volume_text(depth, len(train_idx))}"
                )
                values = [x[train_idx], y[train_idx]]
            self.default = default_window(x, y, val_fraction=vf, seed=seed, dims=dims)
            counts, edges = intensity_histogram(*values)
        except ValueError as err:
            f.data_summary.value = str(err)
            self._clear_plot()
            self._fill_window()
            return
        self.histogram.set_line(
            "hist",
            np.repeat(edges, 2)[1:-1],
            np.repeat(counts, 2).clip(min=0.8),
            color="#9aa5b1",
            linewidth=1.0,
        )
        self._fill_window()
        self._draw_window()

    # ------------------------------------------------------------------ window
    def _fill_window(self) -> None:
        """Show the new default in the fields unless the user edited them."""
        f = self.fields
        current = (str(f.window_low.value).strip(), str(f.window_high.value).strip())
        untouched = current in (("", ""), self._shown_default)
        text = (
            ("", "")
            if self.default is None
            else (f"{self.default.low:.6g}", f"{self.default.high:.6g}")
        )
        if untouched:
            f.window_low.value, f.window_high.value = text
            self._shown_default = text

    def reset_window(self, *_args) -> None:
        """Put the data's default window back into the fields."""
        f = self.fields
        f.window_low.value = f.window_high.value = ""
        self._shown_default = None
        self.update(force=True)

    def window(self):
        """The window of the fields (:class:`~napari_dfct.data.IntensityWindow`), the
        exact default when the fields show it, or None when both are empty (training
        computes the default); :class:`ValueError` for a bad entry."""
        from napari_dfct.data import IntensityWindow

        f = self.fields
        low, high = str(f.window_low.value).strip(), str(f.window_high.value).strip()
        if not low and not high:
            return None
        if self.default is not None and (low, high) == self._shown_default:
            return self.default  # the shown text is rounded; the default is exact
        try:
            return IntensityWindow(float(low), float(high))
        except ValueError:
            raise ValueError(
                f"bad intensity window [{low or '?'}, {high or '?'}]: give "
                "two numbers with low < high, or leave both empty"
            ) from None

    def edited_window(self):
        """The window a training run is given: None while the fields are empty or show
        the default (training then computes the default itself, by the same rule, on the
        data as they are then and off the GUI thread), else :meth:`window`."""
        f = self.fields
        shown = (str(f.window_low.value).strip(), str(f.window_high.value).strip())
        if shown == ("", "") or shown == self._shown_default:
            return None
        return self.window()

    def _draw_window(self, *_args) -> None:
        try:
            window = self.window()
        except ValueError:
            window = None
        hist = self.histogram.line("hist")
        if hist is None:
            return
        counts = np.asarray(hist.get_ydata())
        top = float(np.max(counts)) * 1.5 if len(counts) else 1.0
        for key, value in (
            ("low", None if window is None else window.low),
            ("high", None if window is None else window.high),
        ):
            if value is None or not math.isfinite(value):
                self.histogram.set_line(key, [], [], color="#ffd166", linewidth=1.2)
            else:
                self.histogram.set_line(
                    key, [value, value], [0.8, top], color="#ffd166", linewidth=1.2, linestyle="--"
                )
        self.histogram.set_title(
            "" if window is None else f"window [{window.low:.4g}, {window.high:.4g}]"
        )
        self.histogram.redraw()

    def _clear_plot(self) -> None:
        self.histogram.clear()
        self.histogram.set_title("")
