"""Choices the loss forms of the Train and Loss amplification widgets share."""

from __future__ import annotations

__all__ = ["FREQUENCY_CHOICES", "PROFILE_CHOICES"]

#: ``(label, value)`` of the weight profiles (:data:`napari_dfct.weights.PROFILES`).
PROFILE_CHOICES = [("none", "none"), ("linear", "linear"), ("non-linear", "nonlinear")]
#: The frequency (and directional) profiles: those and the ``sqrt`` of version 0.1.
FREQUENCY_CHOICES = PROFILE_CHOICES + [("sqrt (0.1)", "sqrt")]
