"""Shared pieces of the widget tests: a Train widget docked with tiny settings, a click."""

from __future__ import annotations

#: Settings every widget test trains with (a tiny model on the CPU); each test file adds
#: its own epochs, patience, patch and output folder. The run name and device are set
#: after the output folder, as a user would fill the form.
TINY_TRAINING = dict(preset="tiny", batch_size=4)
LAST = dict(run_name="run", device="cpu")


def train_widget(viewer, **settings):
    """A Train widget docked in ``viewer``, its fields set to :data:`TINY_TRAINING`,
    ``settings`` and :data:`LAST` (no settings: the widget's own defaults)."""
    from napari_dfct.widgets.train import TrainWidget

    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    if settings:
        last = {k: settings.pop(k, v) for k, v in LAST.items()}
        for name, value in {**TINY_TRAINING, **settings, **last}.items():
            getattr(widget.fields, name).value = value
    return widget


def click(qtbot, button) -> None:
    from qtpy.QtCore import Qt

    qtbot.mouseClick(button.native, Qt.MouseButton.LeftButton)
