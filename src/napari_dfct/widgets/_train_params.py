"""The Train widget's training options, generated from :class:`napari_dfct.train.TrainConfig`.

Every option field of :class:`~napari_dfct.train.TrainConfig` (help text in its metadata,
:func:`napari_dfct.train.config.option_fields`: the fields that are also ``dfct train``
flags) gets a form field, its help text as tooltip: a combo box for a field with choices,
a check box for a bool, a spin box for an int or a float (limits from the field's bounds),
a line of text otherwise. A new option appears in the form, in :func:`fill` (a recipe
change, a resumed run) and in :func:`read` (the form's values) without further edits here.
What is written here is presentation only: a few labels, the learning rate as text (its
values span decades), spin-box steps, and the model's dimensionality as a choice of words
placed before its context (:data:`_NAMED`, :data:`_BEFORE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

__all__ = ["fill", "option_widgets", "read"]

#: Labels that say more than the field's name (others: the name with spaces).
_LABELS = {
    "preset": "model preset",
    "lr": "learning rate",
    "val_fraction": "validation fraction",
    "select": "select by",
    "step_size": "LR step (epochs)",
    "gamma": "LR factor",
    "bn_recalibrate": "BatchNorm batches",
    "context": "context (2.5-D)",
    "dims": "dimensions",
    "patch_depth": "patch depth (3-D)",
}
#: What a tooltip adds to the option's help in the viewer.
_MORE = {
    "context": " In the viewer: an image layer or a volume file is one scan; a data set "
    "reads every slice's neighbours from its own scan. The Data tab's summary says "
    "what the context costs in memory.",
    "dims": " In the viewer: an image layer or a volume file is one scan (a 3-D model's "
    "validation slices are its last ones, one block); the 'model, memory' line below "
    "says what the model sees and the memory a training step needs.",
    "patch_depth": " In the viewer: the training slices of a layer or file, and of every "
    "scan of a data set, must hold this many consecutive slices.",
}
#: Numeric options offered as a choice of words (the values stay the option's).
_NAMED: dict[str, list[tuple[str, Any]]] = {
    "dims": [("2-D / 2.5-D (slices)", 2), ("3-D (volume)", 3)],
}
#: Options placed before another one in the form (``{option: the one it precedes}``).
_BEFORE = {"dims": "context"}
#: Numbers shown as text.
_TEXT = ("lr",)
#: Spin-box limits and steps beyond the field's bounds.
_SPIN: dict[str, dict[str, Any]] = {
    "patch": {"min": 8, "step": 8},
    "weight_decay": {"max": 10.0, "step": 0.01},
    "val_fraction": {"min": 0.01, "max": 0.99, "step": 0.05},
}
_INT_MAX = 1_000_000
_FLOAT_MAX = 1e6
_FLOAT_STEP = 0.01


def _fields() -> tuple[Field, ...]:
    from napari_dfct.train.config import option_fields

    return option_fields()


def _label(f: Field) -> str:
    return _LABELS.get(f.name, f.name.replace("_", " "))


def _is_text(f: Field) -> bool:
    return f.name in _TEXT or type(f.default) not in (bool, int, float)


def _limits(f: Field) -> dict:
    """Spin-box ``min``, ``max`` and ``step`` of a numeric field."""
    meta, integer = f.metadata, type(f.default) is int
    step = 1 if integer else _FLOAT_STEP
    low = meta.get("min", meta["above"] + step if "above" in meta else 0)
    high = meta.get(
        "max", meta["below"] - step if "below" in meta else (_INT_MAX if integer else _FLOAT_MAX)
    )
    return {"min": low, "max": high, "step": step, **_SPIN.get(f.name, {})}


def option_widgets() -> list:
    """One form field per TrainConfig option, in field order, holding its default."""
    out = []
    for f in _fields():
        meta = f.metadata
        tip = meta["help"][:1].upper() + meta["help"][1:] + _MORE.get(f.name, "")
        common: dict[str, Any] = {"name": f.name, "tooltip": tip}
        w: Any
        if "choices" in meta or f.name in _NAMED:
            choices = _NAMED.get(f.name) or list(meta["choices"])
            w = ComboBox(label=_label(f), choices=choices, **common)
        elif type(f.default) is bool:
            w = CheckBox(text=_label(f), **common)
        elif _is_text(f):
            w = LineEdit(label=_label(f), **common)
        elif type(f.default) is int:
            w = SpinBox(label=_label(f), **_limits(f), **common)
        else:
            w = FloatSpinBox(label=_label(f), **_limits(f), **common)
        _set(w, f, f.default)
        out.append(w)
    for name, before in _BEFORE.items():
        moved = next(w for w in out if w.name == name)
        out.remove(moved)
        out.insert(next(i for i, w in enumerate(out) if w.name == before), moved)
    return out


def _kind(f: Field) -> Any:
    """The type of an option's default (int, float, str, bool)."""
    return type(f.default)


def _set(widget, f: Field, value) -> None:
    if _is_text(f):
        widget.value = f"{value:g}" if isinstance(value, float) else str(value)
    elif "choices" in f.metadata or type(f.default) is bool:
        widget.value = value
    else:
        widget.value = _kind(f)(value)


def fill(form, values: Mapping) -> None:
    """Set every option field of ``form`` (by name) that ``values`` holds."""
    for f in _fields():
        if f.name in values:
            _set(getattr(form, f.name), f, values[f.name])


def read(form) -> dict:
    """The option values of ``form`` as :class:`TrainConfig` keyword arguments.

    Raises
    ------
    ValueError
        A text field that is not a value of the field's type (one line).
    """
    out = {}
    for f in _fields():
        value = getattr(form, f.name).value
        if _is_text(f) and type(f.default) is not str:
            text = str(value).strip()
            try:
                value = _kind(f)(text)
            except ValueError:
                raise ValueError(f"{_label(f)} {text!r} is not a number") from None
        elif "choices" not in f.metadata:
            value = _kind(f)(value)
        out[f.name] = value
    return out
