"""Compute devices: choice, autocast, out-of-memory detection, memory release, cancel checks.

Used by training (:mod:`napari_dfct.train`), inference (:mod:`napari_dfct.infer`) and
checkpoint loading alike, so none of them reaches into another's private helpers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

import torch

__all__ = [
    "autocast",
    "cancel_check",
    "free_memory",
    "is_out_of_memory",
    "resolve_device",
]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA, then MPS, then CPU; check that a named device exists.

    Raises
    ------
    ValueError
        Unknown device name, or CUDA/MPS asked for but not available.
    """
    if isinstance(device, torch.device):
        dev = device
    else:
        name = str(device or "auto").strip().lower()
        if name == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            mps = getattr(torch.backends, "mps", None)
            if mps is not None and mps.is_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ValueError(
                f"unknown device {device!r}: choose auto, cpu, cuda, cuda:N or mps"
            ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was chosen but CUDA is not available on this "
                         "machine; choose the device cpu (or auto)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError("device 'mps' was chosen but MPS is not available on this "
                             "machine; choose the device cpu (or auto)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}: choose auto, cpu, cuda, cuda:N or "
                         "mps")
    return dev


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error (CUDA, MPS or CPU allocation)."""
    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(
        torch.cuda, "OutOfMemoryError", None
    )
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def cancel_check(cancel) -> Callable[[], bool]:
    """A zero-argument callable for a ``threading.Event``, a callable or None (never)."""
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event) or hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise TypeError("cancel must be a threading.Event or a zero-argument callable")


def free_memory(device: torch.device) -> None:
    """Return cached device memory to the driver (CUDA, MPS); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":  # pragma: no cover - macOS only
        with contextlib.suppress(Exception):
            torch.mps.empty_cache()


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA when ``enabled``; a null context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
