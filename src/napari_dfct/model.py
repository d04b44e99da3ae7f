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

**2.5-D context** (``context = K > 0``): the network sees the ``2K + 1`` neighbouring slices
``z - K .. z + K`` of a scan as input channels, in that order (``in_channels = 2K + 1``,
``out_channels = 1``), and predicts the centre slice ``z``: the residual is added to the
centre channel, ``y = x[:, K] + net(x)``. Only the first conv changes: its weights grow by
``2K * c * 9``, the rest of the network, and its FLOPs but for the first conv's, stay those
of the 2-D model. Which slices are neighbours (reflected at the ends of a scan, never
across two scans) is :mod:`napari_dfct.context`'s rule.

**3-D** (``dims = 3``): the same network on volumes ``(B, 1, Z, H, W)``: 3x3x3
convolutions without bias, ``BatchNorm3d``, max pooling **in-plane only** (kernel
``(1, 2, 2)``: a training patch holds a few slices, 8 by default, so z keeps its
resolution at every level and any ``Z`` is accepted) and trilinear upsampling by
``(1, 2, 2)`` (bilinear in-plane, nothing to interpolate along z), the residual added to the
input, ``y = x + net(x)``. Every 3x3 conv weight becomes 3x3x3: about three times the 2-D
parameters. A 3-D model takes no ``context`` (its input is the volume itself).

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
    "LIMITS",
    "MAX_PARAMETERS",
    "PRESETS",
    "DoubleConv",
    "ResidualUNet",
    "architecture_parameters",
    "build_model",
    "check_architecture",
    "model_config",
    "count_parameters",
]

PRESETS: dict[str, dict] = {
    "paper": {"base_channels": 64, "depth": 4, "bilinear": True},
    "small": {"base_channels": 16, "depth": 4, "bilinear": True},
    "tiny": {"base_channels": 4, "depth": 2, "bilinear": True},
}


#: The accepted range of each integer argument of :class:`ResidualUNet` (inclusive).
LIMITS: dict[str, tuple[int, int]] = {
    "base_channels": (1, 256),
    "depth": (1, 8),
    "in_channels": (1, 64),
    "out_channels": (1, 64),
    "context": (0, 31),
    "dims": (2, 3),
}
#: The most parameters a network may have (800 MB of float32 weights; the paper preset
#: has 31 M): a model file describing more is refused before anything is built.
MAX_PARAMETERS = 200_000_000


def _double_conv_parameters(cin: int, cout: int, kernel: int = 9) -> int:
    # two bias-free convs (``kernel`` weights per channel pair), two BNs
    return kernel * cin * cout + kernel * cout * cout + 4 * cout


def architecture_parameters(
    base_channels: int,
    depth: int,
    in_channels: int = 1,
    out_channels: int = 1,
    bilinear: bool = True,
    dims: int = 2,
) -> int:
    """The number of parameters of ``ResidualUNet(...)`` with these arguments, computed
    without building it (``dims = 3``: 3x3x3 convolutions, (1, 2, 2) transposed convs)."""
    ch = [base_channels * 2**i for i in range(depth + 1)]
    kv = 27 if int(dims) == 3 else 9
    n = _double_conv_parameters(in_channels, ch[0], kv)
    for i in range(depth):
        n += _double_conv_parameters(ch[i], ch[i + 1], kv)  # down
        if bilinear:
            n += _double_conv_parameters(ch[i + 1] + ch[i], ch[i], kv)
        else:  # a 2x2 (1x2x2) transposed conv with bias, then the double conv
            n += 4 * ch[i + 1] * ch[i] + ch[i] + _double_conv_parameters(2 * ch[i], ch[i], kv)
    return n + ch[0] * out_channels + out_channels


def check_architecture(**kwargs: Any) -> dict:
    """The :class:`ResidualUNet` arguments ``kwargs``, checked before anything is built.

    Integers within :data:`LIMITS`, booleans for ``bilinear`` and ``zero_init``, equal
    input and output channels (``in_channels = (2 context + 1) * out_channels`` for a
    context model; ``in_channels`` left out is derived), at most :data:`MAX_PARAMETERS`
    parameters; one-line :class:`ValueError` otherwise (unknown names included). Returns
    them normalised.
    """
    unknown = set(kwargs) - set(LIMITS) - {"bilinear", "zero_init"}
    if unknown:
        raise ValueError(f"unknown model arguments: {', '.join(sorted(unknown))}")
    out = dict(kwargs)
    for name, (lo, hi) in LIMITS.items():
        if name not in out:
            continue
        value = out[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if not lo <= int(value) <= hi:
            raise ValueError(f"{name} must be in {lo}..{hi}, got {int(value)}")
        out[name] = int(value)
    for name in ("bilinear", "zero_init"):
        if name in out and not isinstance(out[name], bool):
            raise ValueError(f"{name} must be true or false, got {out[name]!r}")
    k = out.get("context", 0)
    cout = out.get("out_channels", 1)
    if k and out.get("dims", 2) == 3:
        raise ValueError(
            f"a 3-D model (dims 3) sees the volume itself and takes no context; got context {k}"
        )
    if k and "in_channels" not in out:
        out["in_channels"] = (2 * k + 1) * cout
        _, hi = LIMITS["in_channels"]
        if out["in_channels"] > hi:
            raise ValueError(
                f"context {k} needs {out['in_channels']} input channels, at most {hi}"
            )
    cin = out.get("in_channels", 1)
    if k and cin != (2 * k + 1) * cout:
        raise ValueError(
            f"context {k} needs in_channels == (2 x {k} + 1) x out_channels = "
            f"{(2 * k + 1) * cout}, got {cin}"
        )
    if not k and cin != cout:
        raise ValueError(
            f"the global residual needs in_channels == out_channels, got {cin} and {cout}"
        )
    base, depth = out.get("base_channels", 64), out.get("depth", 4)
    n = architecture_parameters(
        base, depth, cin, cout, out.get("bilinear", True), out.get("dims", 2)
    )
    if n > MAX_PARAMETERS:
        raise ValueError(
            f"base_channels {base} with depth {depth} makes a network of "
            f"{n / 1e6:,.0f} M parameters, more than the {MAX_PARAMETERS / 1e6:.0f} M "
            "accepted"
        )
    return out


class DoubleConv(nn.Sequential):
    """(3x3 conv without bias -> BatchNorm2d -> ReLU) x 2; with ``dims = 3``, 3x3x3
    convs and ``BatchNorm3d``."""

    def __init__(self, in_channels: int, out_channels: int, dims: int = 2):
        conv, norm = (nn.Conv3d, nn.BatchNorm3d) if dims == 3 else (nn.Conv2d, nn.BatchNorm2d)
        super().__init__(
            conv(in_channels, out_channels, 3, padding=1, bias=False),
            norm(out_channels),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, 3, padding=1, bias=False),
            norm(out_channels),
            nn.ReLU(inplace=True),
        )


#: The pooling (and upsampling) step of a level: x2 in-plane; a 3-D model keeps z.
_STEP_3D = (1, 2, 2)


class _Down(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, dims: int = 2):
        pool = nn.MaxPool3d(_STEP_3D) if dims == 3 else nn.MaxPool2d(2)
        super().__init__(pool, DoubleConv(in_channels, out_channels, dims))


class _Up(nn.Module):
    def __init__(self, below_channels: int, skip_channels: int, bilinear: bool, dims: int = 2):
        super().__init__()
        self.up: nn.Module
        if bilinear and dims == 3:
            self.up = nn.Upsample(scale_factor=_STEP_3D, mode="trilinear", align_corners=False)
            conv_in = below_channels + skip_channels
        elif bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
            conv_in = below_channels + skip_channels
        elif dims == 3:
            self.up = nn.ConvTranspose3d(
                below_channels, skip_channels, kernel_size=_STEP_3D, stride=_STEP_3D
            )
            conv_in = 2 * skip_channels
        else:
            self.up = nn.ConvTranspose2d(below_channels, skip_channels, kernel_size=2, stride=2)
            conv_in = 2 * skip_channels
        self.conv = DoubleConv(conv_in, skip_channels, dims)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(below)], dim=1))


class ResidualUNet(nn.Module):
    """2-D U-Net with a global residual connection, ``y = x + net(x)`` (``context`` 0), a
    3-D one on volumes (``dims = 3``), or
    a 2.5-D one, ``y = x[:, K] + net(x)`` (``context = K``: ``2K + 1`` slices in).

    Parameters
    ----------
    base_channels : int
        Channels of the first level; level ``i`` has ``base_channels * 2**i``.
    depth : int
        Number of down (and up) blocks; the deepest level has
        ``base_channels * 2**depth`` channels.
    in_channels, out_channels : int
        Equal for a 2-D model (the residual adds the input to the output);
        ``in_channels = (2 context + 1) * out_channels`` with context (None: derived).
    bilinear : bool
        Bilinear upsampling (the paper) or transposed convolutions.
    zero_init : bool
        Zero the output conv so the untrained model is the identity.
    context : int
        ``K``: the input holds the slices ``z - K .. z + K`` as channel groups of
        ``out_channels`` (0: a 2-D model); the residual is added to the centre group.
    dims : {2, 3}
        2: slices ``(B, C, H, W)``; 3: volumes ``(B, C, Z, H, W)`` (3-D convolutions,
        in-plane pooling; no context).
    """

    def __init__(
        self,
        base_channels: int = 64,
        depth: int = 4,
        in_channels: int | None = None,
        out_channels: int = 1,
        bilinear: bool = True,
        zero_init: bool = True,
        context: int = 0,
        dims: int = 2,
    ):
        super().__init__()
        args: dict[str, Any] = {"in_channels": in_channels} if in_channels is not None else {}
        if in_channels is None and not context:
            args["in_channels"] = out_channels
        checked = check_architecture(
            base_channels=base_channels,
            depth=depth,
            out_channels=out_channels,
            bilinear=bool(bilinear),
            context=context,
            dims=dims,
            **args,
        )
        base_channels, depth = checked["base_channels"], checked["depth"]
        in_channels, out_channels = checked["in_channels"], checked["out_channels"]
        self.base_channels = base_channels
        self.depth = depth
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.context = checked["context"]
        self.dims = d = checked["dims"]
        #: A 3-D model's training depth: the z-chunks it predicts in (set by training
        #: and loading; None: the default depth).
        self.patch_depth: int | None = None
        self.bilinear = bool(bilinear)
        ch = [base_channels * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, ch[0], d)
        self.downs = nn.ModuleList(_Down(ch[i], ch[i + 1], d) for i in range(depth))
        self.ups = nn.ModuleList(
            _Up(ch[i + 1], ch[i], self.bilinear, d) for i in reversed(range(depth))
        )
        self.outc = (nn.Conv3d if d == 3 else nn.Conv2d)(ch[0], out_channels, kernel_size=1)
        if zero_init:
            nn.init.zeros_(self.outc.weight)
            if self.outc.bias is not None:
                nn.init.zeros_(self.outc.bias)

    @property
    def multiple(self) -> int:
        """Input sizes (H, W) are padded internally to a multiple of this (``2**depth``;
        a 3-D model's Z is not pooled and takes any size)."""
        return 2**self.depth

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        # This module is exported as a standalone file (dfct export): it imports nothing
        # of the package, so the padding rule of napari_dfct._tiling.model_padding is
        # written here again (tests/test_model.py checks that the two pad alike).
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph == 0 and pw == 0:
            return x, (0, 0, 0, 0)
        top, left = ph // 2, pw // 2
        pad = (left, pw - left, top, ph - top)  # F.pad order: W then H
        mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
        # a volume (B, C, Z, H, W): non-constant padding of 5-D tensors names all three axes
        return F.pad(x, pad + (0, 0) * (x.ndim == 5), mode=mode), pad

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The correction ``net(x)`` (same shape as ``x``)."""
        if x.ndim != self.dims + 2 or x.shape[1] != self.in_channels:
            axes = "Z, H, W" if self.dims == 3 else "H, W"
            raise ValueError(
                f"expected a (B, {self.in_channels}, {axes}) tensor, got shape {tuple(x.shape)}"
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

    def centre(self, x: torch.Tensor) -> torch.Tensor:
        """The channels of the predicted slice: ``x`` itself for a 2-D model, the centre
        group ``x[:, K * out : (K + 1) * out]`` for context ``K``."""
        if not self.context:
            return x
        c = self.context * self.out_channels
        return x[:, c : c + self.out_channels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + net(x)`` for ``x`` of shape ``(B, C, H, W)``, any ``H, W``; with context
        ``K``, ``x[:, K] + net(x)``, of shape ``(B, out_channels, H, W)``; a 3-D model
        takes and returns ``(B, C, Z, H, W)``, any ``Z``."""
        return self.centre(x) + self.residual(x)


def build_model(preset: str = "paper", **overrides: Any) -> ResidualUNet:
    """Build a :class:`ResidualUNet` from a preset, with keyword overrides.

    Parameters
    ----------
    preset : {"paper", "small", "tiny"}
        ``paper``: base 64, depth 4 (64 -> 1024); ``small``: base 16, depth 4;
        ``tiny``: base 4, depth 2 (for tests and quick demos).
    **overrides
        Any :class:`ResidualUNet` argument, e.g. ``base_channels=32``, ``context=K``
        (a 2.5-D model of ``2K + 1`` input slices) or ``dims=3`` (a 3-D model).
        ``build_model(**model_config(m))`` rebuilds ``m``'s architecture.

    Raises
    ------
    ValueError
        An unknown preset, or arguments that :func:`check_architecture` refuses (checked
        before anything is built).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return ResidualUNet(**check_architecture(**{**PRESETS[preset], **overrides}))


def model_config(model: nn.Module) -> dict:
    """JSON-able keyword arguments that rebuild ``model``'s architecture
    (``ResidualUNet(**cfg)`` or ``build_model(**cfg)``).

    ``context`` is recorded for a context model only and ``dims`` for a 3-D model only:
    a 2-D model's arguments are those of models saved before either existed, which load
    as 2-D (context 0, dims 2)."""
    if not isinstance(model, ResidualUNet):
        raise ValueError(f"expected a ResidualUNet, got {type(model).__name__}")
    cfg = {
        "base_channels": model.base_channels,
        "depth": model.depth,
        "in_channels": model.in_channels,
        "out_channels": model.out_channels,
        "bilinear": model.bilinear,
    }
    if model.context:
        cfg["context"] = model.context
    if model.dims == 3:
        cfg["dims"] = 3
    return cfg


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters; BatchNorm running statistics are buffers, not
    parameters, and are not counted."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
