"""The residual U-Net of napari-dfct, standalone: this file needs only PyTorch.

It is shipped inside every bioimage.io model package that ``dfct export`` writes, as the
architecture of the ``pytorch_state_dict`` weights, so the package runs without
napari-dfct installed. It is a copy of what :mod:`napari_dfct.model` needs to rebuild a
trained network (the same modules, names and forward pass, so the same state dict);
``tests/test_export.py`` checks that it gives the same output as the package's model.

Architecture (``base_channels = c``, ``depth = D``; the paper: ``c = 64``, ``D = 4``):
an input block ``DoubleConv(in -> c)``, ``D`` down blocks ``MaxPool2d(2) ->
DoubleConv`` doubling the channels, ``D`` up blocks (bilinear x2 upsampling, the skip
connection concatenated, ``DoubleConv``), a 1x1 output conv and the global residual
``y = x + net(x)``. ``DoubleConv`` = (3x3 conv, no bias -> BatchNorm -> ReLU) x 2. Any
``H, W``: the input is padded to a multiple of ``2**depth`` (reflect padding split evenly
between both sides, replicate when the image is too small to reflect) and the output is
cropped back.

The network works in window-normalised units (the intensity window of the training data
clipped and scaled to [0, 1]); the package's pre- and post-processing map to and from the
input's units.

Source: napari-dfct (BSD-3-Clause), "Structured Loss Amplification for U-Net-based
Human-scale Dark-field CT Streak Reduction" (Frey, Dorosti et al., TUM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DoubleConv", "ResidualUNet"]


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
        Number of down (and up) blocks.
    in_channels, out_channels : int
        Must be equal (the residual adds the input to the output).
    bilinear : bool
        Bilinear upsampling (the paper) or transposed convolutions.
    """

    def __init__(self, base_channels: int = 64, depth: int = 4, in_channels: int = 1,
                 out_channels: int = 1, bilinear: bool = True):
        super().__init__()
        base_channels, depth = int(base_channels), int(depth)
        in_channels, out_channels = int(in_channels), int(out_channels)
        if base_channels < 1 or depth < 1:
            raise ValueError(f"base_channels and depth must be >= 1, got {base_channels}, {depth}")
        if in_channels < 1 or in_channels != out_channels:
            raise ValueError("the global residual needs in_channels == out_channels >= 1, "
                             f"got {in_channels} and {out_channels}")
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

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph == 0 and pw == 0:
            return x, (0, 0, 0, 0)
        top, left = ph // 2, pw // 2
        pad = (left, pw - left, top, ph - top)  # F.pad order: W then H
        mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
        return F.pad(x, pad, mode=mode), pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + net(x)`` for ``x`` of shape ``(B, C, H, W)``, any ``H, W``."""
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
        return x + y[..., top : top + h, left : left + w]
