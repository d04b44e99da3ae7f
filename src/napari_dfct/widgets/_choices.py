"""Choices the loss forms of the Train and Loss amplification widgets share.

The values are :mod:`napari_dfct.loss_config`'s (``LOSSES``, ``ORDERS``, ``MODES``,
:data:`napari_dfct.weights.PROFILES`; tests/test_loss_rule.py checks that they match);
written out so that opening a widget does not import torch.
"""

from __future__ import annotations

__all__ = [
    "FREQUENCY_CHOICES",
    "LOSS_CHOICES",
    "MODE_CHOICES",
    "ORDER_CHOICES",
    "PROFILE_CHOICES",
]

#: ``(label, value)`` of the weight profiles (:data:`napari_dfct.weights.PROFILES`).
PROFILE_CHOICES = [("none", "none"), ("linear", "linear"), ("non-linear", "nonlinear")]
#: The frequency (and directional) profiles: those and the ``sqrt`` of version 0.1.
FREQUENCY_CHOICES = PROFILE_CHOICES + [("sqrt (0.1)", "sqrt")]
#: ``(label, value)`` of the pixel losses.
LOSS_CHOICES = [("L1", "l1"), ("L2", "l2")]
#: ``(label, value)`` of the order of two weights.
ORDER_CHOICES = [("S then F/D (S+F, S+D)", "sf"), ("F/D then S (F+S, D+S)", "fs")]
#: ``(label, value)`` of the frequency-weighting modes.
MODE_CHOICES = [("paper", "paper"), ("spectral", "spectral")]
