"""What a training run needs: memory, checked before anything is allocated, and time per
epoch, measured on its first optimiser steps."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import torch

from ..device import available_memory, format_bytes
from .config import TrainConfig

__all__ = [
    "EpochEstimate",
    "OutOfMemory",
    "StepTimer",
    "activation_bytes",
    "check_memory",
    "memory_estimate",
    "oom_message",
]


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the message names a smaller batch size to try."""


@dataclass
class EpochEstimate:
    """How long an epoch takes: timed on the first optimiser steps of a :func:`fit` call.

    Attributes
    ----------
    seconds_per_step : float
        One optimiser step (the second one: the first also warms up), data sampling
        included.
    steps : int
        Optimiser steps per epoch.
    seconds : float
        One epoch: the training steps, then the forward-only passes (BatchNorm
        re-estimation batches, validation slices), each from the timed step's seconds
        per patch (the forward pass's, for forward-only work).
    epochs : int
        Epochs this call has left to run (the current one included).
    device : str
        The device type (``"cpu"``, ``"cuda"``, ``"mps"``).
    preset : str
        The model preset.
    """

    seconds_per_step: float
    steps: int
    seconds: float
    epochs: int
    device: str
    preset: str


class StepTimer:
    """Times the first optimiser steps of a :func:`~napari_dfct.train.fit` call and
    reports an :class:`EpochEstimate` to ``run.on_estimate`` once (the second step's
    times: the first one also warms up)."""

    def __init__(self, run) -> None:
        self.run = run
        config = run.config
        self.total = run.sampler.steps_per_epoch(config.batch_size)
        self.samples = run.sampler.samples_per_epoch
        stacks = run.x_val if isinstance(run.x_val, list) else [run.x_val]
        pixels = sum(int(t[:, 0].numel()) for t in stacks)  # (N, C, H, W), any sizes
        # forward-only work per epoch, in patches: re-estimation batches, validation
        self.forward_patches = (
            int(config.bn_recalibrate) * int(config.batch_size) + pixels / int(config.patch) ** 2
        )
        self.last = time.perf_counter()
        self.forward = 0.0
        self.done = 0

    def _now(self) -> float:
        if self.run.device.type == "cuda":
            torch.cuda.synchronize(self.run.device)
        return time.perf_counter()

    def forward_done(self) -> None:
        """Mark the end of a step's forward pass."""
        self.forward = self._now() - self.last

    def step(self, batch: int) -> bool:
        """Mark the end of a step of ``batch`` patches; True once the estimate has been
        reported."""
        run = self.run
        now = self._now()
        per_step, self.last = now - self.last, now
        self.done += 1
        if self.done < min(2, self.total):
            return False
        seconds = (per_step * self.samples + self.forward * self.forward_patches) / batch
        report, run.on_estimate = run.on_estimate, None
        report(
            EpochEstimate(
                seconds_per_step=per_step,
                steps=self.total,
                seconds=seconds,
                epochs=int(run.config.epochs) - run.epoch,
                device=run.device.type,
                preset=run.config.preset,
            )
        )
        return True


def activation_bytes(config: TrainConfig) -> tuple[int, int]:
    """Bytes of one training sample's activations (every layer's output on one patch,
    float32: what autograd keeps at least) and of the parameters.

    Every layer's output of the U-Net has ``H / 2**l x W / 2**l`` pixels per channel at
    its level ``l`` once the input is padded to the network's multiple ``m``, so the count
    on a patch of ``P`` pixels is the count on an ``m x m`` patch times ``(P' / m)**2``,
    ``P'`` the padded patch (a 3-D model's Z is not pooled and is counted as it is). The
    ``m x m`` count runs the network once on the CPU (the random state kept) and is
    remembered per architecture, so the estimate costs milliseconds after the first."""
    args = tuple(sorted(config.model_args().items()))
    depth = int(config.patch_depth) if int(config.dims) == 3 else 0
    unit, params, m = _unit_activations(config.preset, args, depth)
    side = -(-int(config.patch) // m) * m  # the patch as the network pads it
    return unit * (side // m) ** 2, params


@functools.lru_cache(maxsize=32)
def _unit_activations(preset: str, args: tuple, depth: int) -> tuple[int, int, int]:
    """Bytes of the layer outputs on one ``m x m`` patch (``depth`` slices for a 3-D
    model), of the parameters, and ``m`` (the network's multiple)."""
    from ..model import build_model

    total = 0

    def count(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * 4

    with torch.random.fork_rng(devices=[]):  # building draws initial weights: keep the state
        model = build_model(preset, **dict(args))
    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if not any(True for _ in m.children())
    ]
    m = int(model.multiple)
    try:
        model.eval()  # the same layer outputs as in training, without touching statistics
        with torch.no_grad():
            model(torch.zeros(1, model.in_channels, *([depth] if depth else []), m, m))
    finally:
        for h in hooks:
            h.remove()
    return total, sum(p.numel() for p in model.parameters()) * 4, m


def memory_estimate(config: TrainConfig) -> tuple[int, int, int] | None:
    """``(need, per_patch, fixed)``: the bytes a training step of ``config`` needs at
    least, the activations of one patch (:func:`activation_bytes`: a 3-D model's patch of
    ``patch_depth`` slices, a context model's ``2K + 1`` input slices) and the fixed part
    (weights, gradients and the optimiser's two moments: four times the parameters);
    ``need = fixed + batch_size * per_patch``. None where the model has an operation
    that cannot be run for the count (no estimate)."""
    try:
        per_patch, params = activation_bytes(config)
    except Exception:  # noqa: BLE001 - a network the count cannot run: no estimate
        return None
    fixed = 4 * params
    return fixed + per_patch * int(config.batch_size), per_patch, fixed


def check_memory(config: TrainConfig, device: torch.device) -> None:
    """Refuse a batch whose activations cannot fit in the memory ``device`` has
    available, before anything is allocated (:class:`OutOfMemory`; the estimate is
    :func:`memory_estimate`)."""
    device = torch.device(device)
    free = available_memory(device)
    if free is None:
        return
    estimate = memory_estimate(config)
    if estimate is None:
        return
    need, per_sample, fixed = estimate
    if need > free:
        fits = max(0, (free - fixed) // max(per_sample, 1))
        hint = f"try batch size {fits}" if fits >= 1 else "try a smaller patch or preset"
        raise OutOfMemory(
            f"batch size {config.batch_size} with {_patch_words(config)} patches "
            f"(preset {config.preset!r}) needs at least {format_bytes(need)} of "
            f"{device.type.upper()} memory, more than the {format_bytes(free)} "
            f"available; {hint}"
        )


def _patch_words(config: TrainConfig) -> str:
    """``"128x128"``, or ``"8x128x128"`` for a 3-D model's patches."""
    side = f"{config.patch}x{config.patch}"
    return f"{config.patch_depth}x{side}" if int(config.dims) == 3 else side


def oom_message(config: TrainConfig, device: torch.device) -> str:
    """The one line of a training step that ran out of device memory."""
    c = config
    return (
        f"out of {device.type.upper()} memory at batch size {c.batch_size} with "
        f"{_patch_words(c)} patches (preset {c.preset!r}); try batch size "
        f"{max(1, c.batch_size // 2)}"
    )
