"""Loss amplification dock widget: see A_S, A_F and the amplified loss map live.

The widget is a view on :func:`napari_dfct.losses.loss_maps`: it picks an input and a
target image layer, normalises the displayed slice with the training window
(:func:`napari_dfct.data.window_from_percentiles`), and shows

* ``A_S`` - the spatial weight (1 at the border, 2 at the iso-centre),
* ``A_F (fftshift)`` - the frequency weight with DC in the centre for viewing,
* ``A_D (fftshift)`` - with a directional profile: the directional weight of the shown
  slice or patch, estimated from input - target (:mod:`napari_dfct.directional`), DC in
  the centre; its angular part ``G`` is plotted against the spectral angle,
* ``loss map`` - the plain pixel-wise L1/L2 map between input and target,
* ``amplified loss map`` - :meth:`napari_dfct.losses.AmplifiedLoss.loss_map`,

as image layers that are updated in place whenever an option or the slice changes, a
plot of every radial profile as the loss uses it (normalised when the configuration
normalises, :mod:`._weights_profiles`, in a section that folds away) and the effective
scale of the configuration (A_F at DC, mean A_S, mean amplified / mean plain loss).

The maps go under the ROI shapes and points and never take the user's layer selection
(:mod:`._placement`). An invalid combination or input (a refused configuration, layers
of different shapes) is said in a status line inside the widget (and once as a
notification) and the maps and profiles are removed: nothing stale stays on screen. On
a slice that a prediction layer has not filled yet (a NaN placeholder), or a slice with
NaN or infinite values, there are no loss maps: the widget says so and shows the
weights only.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QLabel, QWidget

from . import _help, _layers, _placement, _weights_profiles
from ._choices import (
    FREQUENCY_CHOICES,
    LOSS_CHOICES,
    MODE_CHOICES,
    ORDER_CHOICES,
    PROFILE_CHOICES,
)
from ._layout import Section, scroll_body, settle
from ._plot import PlotCanvas

if TYPE_CHECKING:
    import napari

__all__ = ["WeightsWidget", "LAYER_NAMES"]

#: Names of the layers this widget draws (reused, never piled up).
LAYER_NAMES = {
    "spatial": "A_S",
    "frequency": "A_F (fftshift)",
    "directional": "A_D (fftshift)",
    "loss": "loss map",
    "amplified": "amplified loss map",
}
ROLE = "weights"
#: Colour of the status line (errors and warnings).
_STATUS_COLOR = "#ff8a80"
PATCH = 128
_EXCLUDE = ("weights", "preview")

_SIZE_CHOICES = [(f"patch {PATCH} (centre)", "patch"), ("full slice", "full")]

_DC_PAPER = (
    "Paper mode: mean(Re IFFT(A_F \u00b7 FFT(L))) = A_F(DC) \u00b7 mean(L), so F alone only "
    "rescales the loss, S+F equals S, and F+S is S with A_S filtered by A_F."
)
_DC_SPECTRAL = (
    "Spectral mode: A_F weights the spectrum of the signed error before the pointwise "
    "loss, so F changes the gradient, not only the scale."
)


class WeightsWidget(QWidget):
    """Explore the structured loss amplification on the displayed slice.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose image layers are used and where the maps are drawn.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self._viewer = napari_viewer
        self._busy = False
        self._window_cache: tuple | None = None

        self.form = Container(
            widgets=[
                ComboBox(
                    name="input",
                    label="input",
                    choices=self._layer_choices,
                    nullable=True,
                    tooltip="Single-rotation reconstruction (3-D)",
                ),
                ComboBox(
                    name="target",
                    label="target",
                    choices=self._layer_choices,
                    nullable=True,
                    tooltip="Multi-rotation reconstruction (same shape)",
                ),
                ComboBox(
                    name="spatial",
                    label="spatial",
                    choices=PROFILE_CHOICES,
                    value="linear",
                ),
                ComboBox(
                    name="frequency",
                    label="frequency",
                    choices=FREQUENCY_CHOICES,
                    value="linear",
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
                ComboBox(name="loss", label="loss", choices=LOSS_CHOICES, value="l2"),
                ComboBox(
                    name="mode",
                    label="mode",
                    choices=MODE_CHOICES,
                    value="paper",
                ),
                CheckBox(name="normalize", text="normalise weights to mean 1", value=False),
                ComboBox(
                    name="size",
                    label="size",
                    choices=_SIZE_CHOICES,
                    value="patch",
                    tooltip="A training patch (A_S cropped from the whole slice) or "
                    "the full slice (as in inference)",
                ),
            ],
            labels=True,
        )
        self.form.native.layout().setContentsMargins(0, 0, 0, 0)

        self.plot = PlotCanvas(
            ncols=3,
            xlabel=["radius r", "frequency \u03c1", "angle \u03c6 (\u00b0)"],
            ylabel=["weight", "", "G"],
            title=["A_S radial profile", "A_F radial profile", "A_D angular part"],
            height=2.2,
        )
        self.plot_section = Section("Profiles", self.plot)
        self.status = QLabel()
        self.status.setObjectName("dfct_weights_status")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setStyleSheet(f"color: {_STATUS_COLOR}; font-weight: bold;")
        self.status.hide()
        self._notified: str | None = None
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)  # data in it is escaped
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.info.setObjectName("dfct_weights_info")

        _body, layout = scroll_body(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.status)
        layout.addWidget(self.info)
        layout.addWidget(self.plot_section)
        self.help_button = _help.help_button("weights")
        layout.addWidget(self.help_button.native, 0, Qt.AlignmentFlag.AlignRight)
        _help.add_tips("weights", self.form, [self.plot_section])
        layout.addStretch(1)
        settle(self, self.form)

        # Debounce: many events (dragging the slider) collapse into one update.
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(40)
        self._timer.timeout.connect(self.update_maps)

        self._pick_defaults()
        for w in self.form:
            w.changed.connect(self._schedule)
        self._viewer.dims.events.current_step.connect(self._on_step)
        ev = self._viewer.layers.events
        for name in ("inserted", "removed", "reordered"):
            getattr(ev, name).connect(self.reset_choices)
        self.update_maps()

    # ------------------------------------------------------------------ choices
    def _layer_choices(self, _widget=None):
        return _layers.image_layers(self._viewer, exclude_roles=_EXCLUDE)

    def reset_choices(self, *_args) -> None:
        """Refresh the layer pickers (called by napari when layers change)."""
        if self._busy:
            return
        had = (self.form.input.value, self.form.target.value)
        self.form.reset_choices()
        if self.form.input.value is None or self.form.target.value is None:
            self._pick_defaults()
        if had != (self.form.input.value, self.form.target.value):
            self._schedule()

    def _pick_defaults(self) -> None:
        choices = [layer for _, layer in self._layer_choices()]
        if not choices:
            return
        by_prefix = {}
        for layer in choices:
            low = layer.name.lower()
            for prefix in ("input", "target"):
                if low.startswith(prefix) and prefix not in by_prefix:
                    by_prefix[prefix] = layer
        if self.form.input.value is None:
            self.form.input.value = by_prefix.get("input", choices[0])
        if self.form.target.value is None:
            rest = [c for c in choices if c is not self.form.input.value]
            default = by_prefix.get("target", rest[0] if rest else None)
            if default is not None:
                self.form.target.value = default

    # ------------------------------------------------------------------ config
    def loss_config(self):
        """The :class:`napari_dfct.losses.LossConfig` the form describes
        (:func:`napari_dfct.losses.build_loss_config`, the rule of ``dfct train``)."""
        from napari_dfct.losses import build_loss_config

        f = self.form
        return build_loss_config(
            f.loss.value,
            spatial=f.spatial.value,
            frequency=f.frequency.value,
            directional=f.directional.value,
            order=f.order.value,
            mode=f.mode.value,
            normalize=bool(f.normalize.value),
        )

    # ------------------------------------------------------------------ updates
    def _on_step(self, _event=None) -> None:
        self._schedule()

    def _schedule(self, *_args) -> None:
        self._timer.start()

    def update_maps(self) -> None:
        """Recompute every map and the profiles for the current options and slice.

        A problem (a refused configuration, mismatched shapes) removes the maps and the
        profiles and is said in the status line (and once as a napari notification).
        The user's layer selection is kept.
        """
        if self._busy:
            return
        self._busy = True
        try:
            with _placement.keep_selection(self._viewer):
                try:
                    self._set_status(self._update())
                except ValueError as err:
                    self._fail(f"Loss amplification: {err}")
                except Exception as err:  # noqa: BLE001 - never a traceback in the viewer
                    self._fail(f"Loss amplification failed: {type(err).__name__}: {err}")
        finally:
            self._busy = False

    def _fail(self, message: str) -> None:
        """Remove every map and profile and show ``message`` in the status line (and as
        a notification unless it is the one already notified)."""
        self._remove(*LAYER_NAMES)
        _weights_profiles.clear_profiles(self.plot)
        self._set_info("")
        notified, self._notified = self._notified, message
        self._set_status(message)
        if message != notified:
            show_error(message)

    def _set_status(self, message: str | None) -> None:
        """Show ``message`` in the status line (hide it for None)."""
        if message != self._notified:
            self._notified = None
        self.status.setText(message or "")
        self.status.setVisible(bool(message))

    def _update(self) -> str | None:
        """Draw the maps; return a warning for the status line (or None)."""
        from napari_dfct import losses

        config = self.loss_config()
        inp, tgt = self.form.input.value, self.form.target.value
        if inp is None:  # no image left: no maps of a deleted pair either
            self._remove(*LAYER_NAMES)
            _weights_profiles.clear_profiles(self.plot)
            self._set_info("Add an input and a target image layer to see the maps.")
            return None
        size_mode = self.form.size.value
        patch = PATCH if size_mode == "patch" else None
        v = self._viewer
        notes = []
        pair = tgt is not None and tgt is not inp
        mismatch = pair and tuple(tgt.data.shape) != tuple(inp.data.shape)
        if mismatch:
            raise ValueError(
                f"input {inp.name!r} {tuple(inp.data.shape)} and target {tgt.name!r} "
                f"{tuple(tgt.data.shape)} differ in shape"
            )
        z = _layers.current_index(v, inp)
        unready = [la.name for la in (inp, tgt) if pair and not _layers.slice_ready(la, z)]
        slices = {}
        if pair and not unready:
            slices = {la: np.asarray(_slice(la.data, z), dtype=np.float32) for la in (inp, tgt)}
        warning = _non_finite(slices, z)
        if slices and warning is None:
            window = self._window(inp, tgt)
            x, y = (window.normalize(slices[la]) for la in (inp, tgt))
            maps = losses.loss_maps(x, y, config, patch=patch)
            notes.append(f"slice {z}")
            notes.append(f"window [{window.low:.4g}, {window.high:.4g}]")
        else:
            # the weight maps only: of the input slice, only its shape matters
            maps = losses.loss_maps(
                np.zeros(inp.data.shape[-2:], np.float32), None, config, patch=patch
            )
            if unready:
                notes.append(
                    f"Slice {z} of {', '.join(map(repr, unready))} is not predicted yet "
                    "(Predict: Current slice or Whole volume); the loss maps need it."
                )
            elif warning is None:
                notes.append("Choose a target layer (different from the input) for the loss maps.")
            else:
                notes.append("weights only")

        placement = _layers.spatial_placement(inp, maps.offset)
        weight_limits = (
            min(1.0, float(maps.a_s.min()), float(maps.a_f.min())),
            max(2.0, float(maps.a_s.max()), float(maps.a_f.max())),
        )
        for key, wmap in (("spatial", maps.a_s), ("frequency", maps.a_f)):
            self._draw(key, wmap, weight_limits, "magma", placement)
        self._show_directional(maps, weight_limits, placement)
        for key, data in (("loss", maps.loss), ("amplified", maps.amplified)):
            if data is None:
                self._remove("loss", "amplified")  # never the maps of another slice
                break
            self._draw(key, data, _limits(data), "inferno", placement)
        _weights_profiles.draw_profiles(self.plot, config, inp.data.shape[-2:], maps)
        dc = _DC_PAPER if config.mode == "paper" else _DC_SPECTRAL
        where = "patch (centre)" if size_mode == "patch" else "full slice"
        h, w = maps.shape
        details = " \u00b7 ".join(html.escape(note, quote=False) for note in notes)
        self._set_info(
            f"<b>{config.name}</b> ({config.scheme}, {config.mode} mode) \u00b7 {where} "
            f"{h}\u00d7{w}<br>{details}<br>"
            f"{self._scale_text(config, maps)}<br><i>{dc}</i>"
        )
        return warning

    def _draw(self, key: str, data, limits, colormap: str, placement: dict) -> None:
        """Add or update the layer ``key``: a new one goes under the ROIs."""
        v = self._viewer
        name = LAYER_NAMES[key]
        new = name not in v.layers
        layer = _layers.upsert_image(
            v, name, data, role=ROLE, contrast_limits=limits, colormap=colormap, **placement
        )
        if new:
            _placement.place_below_rois(v, layer)

    def _remove(self, *keys: str) -> None:
        for key in keys:
            if LAYER_NAMES[key] in self._viewer.layers:
                self._viewer.layers.remove(LAYER_NAMES[key])

    def _window(self, inp, tgt):
        from napari_dfct.data import window_from_percentiles

        # a prediction filling its slices in place changes the window: count them too
        key = (
            id(inp),
            id(inp.data),
            len(_layers.missing_slices(inp)),
            id(tgt),
            id(tgt.data),
            len(_layers.missing_slices(tgt)),
        )
        if self._window_cache is None or self._window_cache[0] != key:
            window = window_from_percentiles(
                np.asarray(inp.data, dtype=np.float32), np.asarray(tgt.data, dtype=np.float32)
            )
            self._window_cache = (key, window)
        return self._window_cache[1]

    @staticmethod
    def _scale_text(config, maps) -> str:
        from napari_dfct import losses

        scale = losses.effective_scale(config, maps.shape)
        parts = [
            f"A_F(DC) = {maps.a_f_dc:.3f} \u00b7 mean A_S = {float(maps.a_s.mean()):.3f}",
            (
                f"frequency factor {scale['frequency_factor']:.3f} \u00d7 spatial factor "
                f"{scale['spatial_factor']:.3f} = scale {scale['scale']:.3f}"
            ),
        ]
        if maps.ratio is not None:
            ratio = (
                f"<b>{maps.ratio:.3f}</b>"
                if np.isfinite(maps.ratio)
                else "undefined (the plain loss is 0: input and target agree)"
            )
            parts.append(f"mean amplified / mean plain loss on this slice: {ratio}")
        return "<br>".join(parts)

    def _show_directional(self, maps, limits, placement) -> None:
        """The A_D layer when the configuration has one (removed otherwise)."""
        if maps.a_d is None:
            self._remove("directional")
            return
        limits = (min(limits[0], float(maps.a_d.min())), max(limits[1], float(maps.a_d.max())))
        self._draw("directional", maps.a_d, limits, "magma", placement)

    def _set_info(self, text: str) -> None:
        self.info.setText(text)


# ---------------------------------------------------------------------- helpers
def _slice(data, z: int) -> np.ndarray:
    return np.asarray(data[z] if data.ndim >= 3 else data)


def _non_finite(slices: dict, z: int) -> str | None:
    """The status line for shown slices with NaN or infinite values (None if finite)."""
    for layer, data in slices.items():
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad == 0:
            continue
        what = (
            "has no finite values"
            if bad == data.size
            else f"has {bad} NaN or infinite values of {data.size}"
        )
        return (
            f"Slice {z} of {layer.name!r} {what}: no loss maps (they need finite values on "
            "the slice), the weights only."
        )
    return None


def _limits(img: np.ndarray) -> tuple[float, float]:
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo = min(0.0, float(np.percentile(finite, 0.5)))
    hi = float(np.percentile(finite, 99.5))
    return (lo, hi if hi > lo else lo + 1e-6)
