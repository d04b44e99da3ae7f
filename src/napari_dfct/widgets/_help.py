"""Help in the widgets: the tooltips of fields and buttons that have none of their own, and
a *Help* button per widget that opens its section of the documentation.

Tooltips: the training options take their help text from
:class:`napari_dfct.train.TrainConfig`'s field metadata (:mod:`._train_params`); every
other field or button without a tooltip takes it from :data:`TIPS` here, by widget and
name (``"predict.device"``) or by name alone (``"spatial"``, the same in Train and Loss
amplification), through :func:`add_tips`.

Help links: :data:`HELP_SECTIONS` names each widget's documentation file and section. The
target is the Markdown file in the project's ``docs/`` folder (or ``README.md``) next to
the package's source (an install from a clone, as the README's quick start does): a
``file://`` URL with the section's anchor, which opens offline in the system's viewer
for Markdown files; nothing is downloaded. Without the files (a wheel install) the
button says where the section is instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["HELP_SECTIONS", "TIPS", "add_tips", "help_button", "help_target", "tip"]

#: Tooltips of the fields and buttons that have none where they are made.
TIPS: dict[str, str] = {
    # the loss, in Train and Loss amplification
    "loss": "Pixel loss: l1 (mean absolute error) or l2 (mean squared error)",
    "spatial": "A_S: a spatial weight rising towards the iso-centre, where the streaks "
    "are strongest (none, linear, nonlinear)",
    "frequency": "A_F: a frequency weight rising towards high spatial frequencies "
    "(none, linear, nonlinear, sqrt)",
    "directional": "A_D: a frequency weight aimed at the streaks' directions, estimated "
    "per patch from input - target (spectral mode only; not with a frequency weight)",
    "order": "Order of the two amplifications when both are on: sf (spatial, then "
    "frequency or directional) or fs",
    "mode": "paper: the paper's formula; spectral: weight the error's spectrum "
    "(needed by the directional weight)",
    "normalize": "Rescale each amplification map to mean 1, so amplified and plain "
    "losses have the same scale",
    # Train
    "train.input_file": "Single-rotation reconstruction (a TIFF, .npy or .npz volume)",
    "train.target_file": "Multi-rotation reconstruction of the same shape",
    "train.pairs_csv": "A pairs CSV (columns input,target[,slices], one row per scan): "
    "choose it here instead of a data-set folder",
    "train.window_high": "Upper end of the intensity window (input units); empty: the "
    "default computed from the training slices",
    "train.window_default": "Put back the window computed from the training slices",
    "train.seed": "Seeds the split, the initial weights and the patch order",
    "train.augment": "Random flips and \u00b115\u00b0 rotations of the training patches",
    "train.device": "Where training runs: auto (a GPU when there is one), the CPU or a GPU",
    "train.tensorboard": "Also write TensorBoard logs (losses, learning rate, the preview "
    "slice) into the model folder's tensorboard/ (needs the tensorboard package)",
    "train.save_under": "Folder in which each new run gets its own model folder; the "
    "Predict widget lists the models saved here",
    "train.run_name": "Name of the new model folder (empty: <loss>-<date>-<time>)",
    "train.start": "Check the settings and start training in a separate process",
    "train.stop": "Stop after the current batch; the best model so far is kept",
    # Predict
    "predict.image": "The image layer to predict (2-D or 3-D)",
    "predict.device": "Where prediction runs; the model goes back to the CPU afterwards",
    "predict.current_slice": "Predict the slice shown in the viewer; adds or updates the "
    "layer <image> [prediction: <model>]. A 2.5-D or 3-D model reads the neighbouring "
    "slices it needs (a 3-D model: the z-chunks that reach the slice)",
    "predict.whole_volume": "Predict every slice, streamed into the prediction layer",
    "predict.cancel": "Stop predicting after the current slice; finished slices stay",
    "predict.Model": "Show or hide the model's configuration",
    # Loss amplification
    "weights.Profiles": "Show or hide the weights' radial profiles",
    # Reader study
    "reader.reader": "Your name or initials: your answers are saved under it, and a later "
    "session with the same name continues where you stopped",
    "reader.study": "The study folder (study.json, the images, judgments.csv), made with "
    "dfct reader-study make",
    "reader.start": "Open the study and show your first unanswered trial",
    "reader.pause": "Stop for now: every answer is already saved, and the viewer gets "
    "its layers back; Resume continues at the next unanswered trial",
    "reader.back": "Show the previous trial again (only in studies that allow it)",
    "reader.a_better": "The left image, A, is better (key \u2190)",
    "reader.b_better": "The right image, B, is better (key \u2192)",
    "reader.report": "Rank the candidates from every reader's answers; the report names "
    "the candidates, so it is for the study's organiser, not during reading",
    "reader.report_text": "The study's report: scores, pairwise tests, agreement",
    # every widget
    "help": "Open this widget's section of the documentation (a local file)",
}

#: Each widget's documentation: (file, section anchor, section title), the file relative
#: to the project's root.
HELP_SECTIONS: dict[str, tuple[str, str, str]] = {
    "train": ("docs/first-model.md", "3-train", "3. Train"),
    "predict": ("docs/first-model.md", "4-predict", "4. Predict"),
    "weights": (
        "docs/first-model.md",
        "2-look-at-the-loss-you-are-about-to-train-with",
        "2. Look at the loss you are about to train with",
    ),
    "reader": ("docs/reader-study.md", "3-read", "3. Read"),
    "measure": (
        "README.md",
        "widgets-plugins--napari-dfct",
        "Widgets (Plugins \u25b8 napari-dfct)",
    ),
}


def tip(kind: str, name: str) -> str:
    """The tooltip of field or button ``name`` of widget ``kind`` (``""`` if none)."""
    return TIPS.get(f"{kind}.{name}") or TIPS.get(name, "")


def add_tips(kind: str, widgets: Iterable, sections: Iterable = ()) -> None:
    """Give every magicgui widget in ``widgets`` without a tooltip its :data:`TIPS` text,
    and each collapsible section (:class:`._layout.Section`) its toggle's."""
    for w in widgets:
        if not w.tooltip:
            text = tip(kind, w.name)
            if text:
                w.tooltip = text
    for section in sections:
        toggle = section.toggle
        if not toggle.toolTip():
            toggle.setToolTip(tip(kind, toggle.text().strip()))


def _project_root() -> Path:
    """The folder that holds the package's ``src/`` (a clone of the repository)."""
    return Path(__file__).resolve().parents[3]


def help_target(kind: str) -> tuple[Path, str]:
    """The documentation file of widget ``kind`` and its section's anchor."""
    name, anchor, _title = HELP_SECTIONS[kind]
    return _project_root() / name, anchor


def help_url(kind: str):
    """A ``file://`` QUrl of widget ``kind``'s section, or None without the file."""
    from qtpy.QtCore import QUrl

    path, anchor = help_target(kind)
    if not path.is_file():
        return None
    url = QUrl.fromLocalFile(str(path))
    url.setFragment(anchor)
    return url


def open_help(kind: str) -> bool:
    """Open widget ``kind``'s documentation section; False (and a notification naming
    the section) when the file is not installed or nothing opens it."""
    from napari.utils.notifications import show_info
    from qtpy.QtGui import QDesktopServices

    url = help_url(kind)
    if url is not None and QDesktopServices.openUrl(url):
        return True
    name, _anchor, title = HELP_SECTIONS[kind]
    show_info(f"Help: section \u201c{title}\u201d of {name} in the napari-dfct repository.")
    return False


def help_button(kind: str):
    """A small *Help* button that opens widget ``kind``'s documentation section."""
    from magicgui.widgets import PushButton

    button = PushButton(name="help", text="Help", tooltip=tip(kind, "help"))
    button.changed.connect(lambda *_: open_help(kind))
    return button
