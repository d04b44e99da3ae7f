"""The residual U-Net of the paper and its presets.

Architecture (``base_channels = c``, ``depth = D``; the paper: ``c = 64``, ``D = 4``)

* encoder: an input block ``DoubleConv(in -> c)`` and ``D`` down blocks
  ``MaxPool2d(2) -> DoubleConv(c 2^(i-1) -> c 2^i)``: channels double at every level,
  64 -> 128 -> 256 -> 512 -> **1024** at the deepest level for the paper preset;
* ``DoubleConv`` = (3x3 conv, no bias -> BatchNorm -> ReLU) x 2;
* decoder: ``D`` up blocks; each upsamples bilinearly (x2, ``align_corners=False``), which
  keeps the channel count, concatenates the skip connection and applies
  ``DoubleConv(c 2^(i+1) + c 2^i -> c 2^i)``;
* a 1x1 output conv ``c -> out`` and the **global residual**: ``y = x + net(x)``.

The paper states that channels double from 64 to 1024 at the deepest level, so the
bottleneck keeps 1024 channels. (The widespread bilinear U-Net implementation halves the
bottleneck to 512 so that the up path mirrors a transposed-conv U-Net; we follow the paper.)
With ``bilinear=False`` the up blocks use a 2x2 transposed conv ``c 2^(i+1) -> c 2^i``
and ``DoubleConv(2 c 2^i -> c 2^i)``.

Any ``H, W`` is accepted: the input is padded to a multiple of ``2**depth`` (reflect
padding, split evenly between both sides; replicate padding when the image is too small to
reflect) and the output is cropped back.

The output conv is zero-initialised by default (``zero_init=True``): the untrained model
is the identity, ``y = x`` exactly, which is the natural start of a residual denoiser
(it begins at the input's quality and learns a correction). The output conv receives
gradients from the first step; the layers below do from the second step on.

All operations are memory-format agnostic, so ``model.to(memory_format=torch.channels_last)``
works.

This module imports only PyTorch, and must stay so: a bioimage.io export ships its source
as the package's standalone architecture file (``dfct_unet.py``; tested where napari-dfct
cannot be imported).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PRESETS",
    "DoubleConv",
    "ResidualUNet",
    "build_model",
    "model_config",
    "count_parameters",
]

PRESETS: dict[str, dict] = {
    "paper": {"base_channels": 64, "depth": 4, "bilinear": True},
    "small": {"base_channels": 16, "depth": 4, "bilinear": True},
    "tiny": {"base_channels": 4, "depth": 2, "bilinear": True},
}


class DoubleConv(nn.Sequential):
    """(3x3 conv without bias -> BatchNorm2d -> ReLU) x 2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class _Down(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))


class _Up(nn.Module):
    def __init__(self, below_channels: int, skip_channels: int, bilinear: bool):
        super().__init__()
        self.up: nn.Module
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            conv_in = below_channels + skip_channels
        else:
            self.up = nn.ConvTranspose2d(below_channels, skip_channels, kernel_size=2, stride=2)
            conv_in = 2 * skip_channels
        self.conv = DoubleConv(conv_in, skip_channels)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(below)], dim=1))


class ResidualUNet(nn.Module):
    """2-D U-Net with a global residual connection, ``y = x + net(x)``.

    Parameters
    ----------
    base_channels : int
        Channels of the first level; level ``i`` has ``base_channels * 2**i``.
    depth : int
        Number of down (and up) blocks; the deepest level has
        ``base_channels * 2**depth`` channels.
    in_channels, out_channels : int
        Must be equal (the residual adds the input to the output).
    bilinear : bool
        Bilinear upsampling (the paper) or transposed convolutions.
    zero_init : bool
        Zero the output conv so the untrained model is the identity.
    """

    def __init__(
        self,
        base_channels: int = 64,
        depth: int = 4,
        in_channels: int = 1,
        out_channels: int = 1,
        bilinear: bool = True,
        zero_init: bool = True,
    ):
        super().__init__()
        base_channels, depth = int(base_channels), int(depth)
        in_channels, out_channels = int(in_channels), int(out_channels)
        if base_channels < 1 or depth < 1:
            raise ValueError(f"base_channels and depth must be >= 1, got {base_channels}, {depth}")
        if in_channels < 1 or in_channels != out_channels:
            raise ValueError(
                "the global residual needs in_channels == out_channels >= 1, got "
                f"{in_channels} and {out_channels}"
            )
        self.base_channels = base_channels
        self.depth = depth
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.bilinear = bool(bilinear)
        ch = [base_channels * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, ch[0])
        self.downs = nn.ModuleList(_Down(ch[i], ch[i + 1]) for i in range(depth))
        self.ups = nn.ModuleList(
            _Up(ch[i + 1], ch[i], self.bilinear) for i in reversed(range(depth))
        )
        self.outc = nn.Conv2d(ch[0], out_channels, kernel_size=1)
        if zero_init:
            nn.init.zeros_(self.outc.weight)
            if self.outc.bias is not None:
                nn.init.zeros_(self.outc.bias)

    @property
    def multiple(self) -> int:
        """Input sizes are padded internally to a multiple of this (``2**depth``)."""
        return 2**self.depth

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph == 0 and pw == 0:
            return x, (0, 0, 0, 0)
        top, left = ph // 2, pw // 2
        pad = (left, pw - left, top, ph - top)  # F.pad order: W then H
        mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
        return F.pad(x, pad, mode=mode), pad

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The correction ``net(x)`` (same shape as ``x``)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected a (B, {self.in_channels}, H, W) tensor, got shape {tuple(x.shape)}"
            )
        h, w = x.shape[-2:]
        xp, (left, _, top, _) = self._pad(x)
        skips = [self.inc(xp)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        y = self.outc(y)
        return y[..., top : top + h, left : left + w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + net(x)`` for ``x`` of shape ``(B, C, H, W)``, any ``H, W``."""
        return x + self.residual(x)


def build_model(preset: str = "paper", **overrides: Any) -> ResidualUNet:
    """Build a :class:`ResidualUNet` from a preset, with keyword overrides.

    Parameters
    ----------
    preset : {"paper", "small", "tiny"}
        ``paper``: base 64, depth 4 (64 -> 1024); ``small``: base 16, depth 4;
        ``tiny``: base 4, depth 2 (for tests and quick demos).
    **overrides
        Any :class:`ResidualUNet` argument, e.g. ``base_channels=32``.
        ``build_model(**model_config(m))`` rebuilds ``m``'s architecture.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    kwargs = dict(PRESETS[preset])
    kwargs.update(overrides)
    valid = {"base_channels", "depth", "in_channels", "out_channels", "bilinear", "zero_init"}
    unknown = set(kwargs) - valid
    if unknown:
        raise ValueError(f"unknown model arguments: {', '.join(sorted(unknown))}")
    return ResidualUNet(**kwargs)


def model_config(model: nn.Module) -> dict:
    """JSON-able keyword arguments that rebuild ``model``'s architecture
    (``ResidualUNet(**cfg)`` or ``build_model(**cfg)``)."""
    if not isinstance(model, ResidualUNet):
        raise ValueError(f"expected a ResidualUNet, got {type(model).__name__}")
    return {
        "base_channels": model.base_channels,
        "depth": model.depth,
        "in_channels": model.in_channels,
        "out_channels": model.out_channels,
        "bilinear": model.bilinear,
    }


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; BatchNorm running statistics are buffers, not
    parameters, and are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
