"""The device choice of the Train and Predict widgets: ``auto`` first, then every device
of this machine with its name and free memory (:func:`napari_dfct.device.list_devices`)."""

from __future__ import annotations

from typing import Any


def device_choices(*_: Any) -> list[tuple[str, str]]:
    """``(label, name)`` pairs for a magicgui ``ComboBox``; the value is the device name.

    Callable with the widget as argument, so ``reset_choices`` refreshes the free memory.
    """
    from napari_dfct.device import list_devices

    return [(d.label, d.name) for d in list_devices()]
