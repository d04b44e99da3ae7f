"""Compute devices: choice, autocast, out-of-memory detection, memory release, cancel checks,
and the memory a new allocation can use.

Used by training (:mod:`napari_dfct.train`), inference (:mod:`napari_dfct.infer`),
checkpoint loading and the simulator's memory check alike, so none of them reaches into
another's private helpers. Importing this module does not import torch (each function
that needs it imports it), so the simulator and the ``dfct`` command's help can check
memory without loading torch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._memory import format_bytes, host_available_memory

if TYPE_CHECKING:
    import torch

__all__ = [
    "DeviceInfo",
    "auto_is_cpu",
    "autocast",
    "available_memory",
    "cancel_check",
    "format_bytes",
    "free_memory",
    "is_out_of_memory",
    "prefers_channels_last",
    "list_devices",
    "resolve_device",
]


@dataclass(frozen=True)
class DeviceInfo:
    """One compute device a run can use (:func:`list_devices`).

    Attributes
    ----------
    name : str
        What :func:`resolve_device` and ``TrainConfig.device`` take: ``"auto"``,
        ``"cpu"``, ``"cuda:0"``, ``"mps"``.
    label : str
        For a choice list: the name, the device's own name and its free memory.
    free_bytes, total_bytes : int or None
        Free and total memory (CUDA: the device's; CPU and MPS: the host's available
        memory, total unknown); None when unknown.
    """

    name: str
    label: str
    free_bytes: int | None = None
    total_bytes: int | None = None


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return mps is not None and bool(mps.is_available())


def list_devices(auto: bool = True) -> list[DeviceInfo]:
    """The devices of this machine: ``auto`` (first, when asked), ``cpu``, every
    ``cuda:N`` with its name and free memory, and ``mps`` where available.

    Reading a CUDA device's free memory creates its CUDA context (a few hundred MB of
    device memory, once per process).
    """
    import torch

    def free_text(free: int | None, total: int | None = None) -> str:
        if free is None:
            return ""
        return (
            f", {format_bytes(free)} free"
            if total is None
            else f", {format_bytes(free)} free of {format_bytes(total)}"
        )

    out: list[DeviceInfo] = []
    if auto:
        best = resolve_device("auto")
        out.append(DeviceInfo("auto", f"auto ({best.type.upper()})"))
    host = available_memory("cpu")
    out.append(DeviceInfo("cpu", f"cpu (host{free_text(host)})", host))
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            name, free, total = f"cuda:{i}", None, None
            try:
                title = torch.cuda.get_device_name(i)
            except Exception:  # noqa: BLE001 # pragma: no cover - driver specific
                title = "CUDA device"
            try:
                free, total = (int(v) for v in torch.cuda.mem_get_info(i))
            except Exception:  # noqa: BLE001 # pragma: no cover - driver specific
                pass
            out.append(DeviceInfo(name, f"{name} ({title}{free_text(free, total)})", free, total))
    if _mps_available():  # pragma: no cover - macOS only
        out.append(
            DeviceInfo(
                "mps", "mps (Apple GPU, shares the host memory" + free_text(host) + ")", host
            )
        )
    return out


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"`` into CUDA, then MPS, then CPU; check that a named device exists.

    Raises
    ------
    ValueError
        Unknown device name, or CUDA/MPS asked for but not available.
    """
    import torch

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
        raise ValueError(
            "device 'cuda' was chosen but CUDA is not available on this "
            "machine; choose the device cpu (or auto)"
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(
                "device 'mps' was chosen but MPS is not available on this "
                "machine; choose the device cpu (or auto)"
            )
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}: choose auto, cpu, cuda, cuda:N or mps")
    return dev


#: Traces of a GPU that CUDA or ROCm could use on Linux (:func:`auto_is_cpu`): the NVIDIA
#: driver's files and device nodes (Jetson's included), WSL's GPU and ROCm's compute node.
_GPU_TRACES = ("proc/driver/nvidia", "dev/nvidiactl", "dev/dxg", "dev/kfd")
_GPU_NODE_PREFIXES = ("nvidia", "nvhost")
#: PCI vendors of GPUs that CUDA (NVIDIA) or ROCm (AMD) drive; class 0x03: a display device.
_GPU_VENDORS = ("0x10de", "0x1002")


def _torch_build_has_gpu() -> bool | None:
    """Whether the installed torch was built with CUDA or ROCm, read from its
    ``torch/version.py`` without importing it; None when that cannot be told."""
    import ast
    import importlib.util
    from pathlib import Path

    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.origin:
            return None
        tree = ast.parse((Path(spec.origin).parent / "version.py").read_text("utf-8"))
    except (OSError, ValueError, SyntaxError, ImportError):
        return None
    found: dict[str, object] = {}
    for node in tree.body:
        target: ast.expr | None = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            found[target.id] = value.value
    if "cuda" not in found or "hip" not in found:
        return None
    return found["cuda"] is not None or found["hip"] is not None


def _gpu_traces(root: str = "/") -> bool:
    """Whether this Linux machine shows any trace of a GPU that torch could use (see
    :data:`_GPU_TRACES`, :data:`_GPU_VENDORS`); True when the PCI devices cannot be
    listed (unsure)."""
    import os
    from pathlib import Path

    base = Path(root)
    if any((base / p).exists() for p in _GPU_TRACES):
        return True
    try:
        nodes = os.listdir(base / "dev")
    except OSError:
        nodes = []
    if any(n.startswith(_GPU_NODE_PREFIXES) for n in nodes):
        return True
    try:
        devices = list((base / "sys/bus/pci/devices").iterdir())
    except OSError:
        return True
    for dev in devices:
        try:
            vendor = (dev / "vendor").read_text().strip().lower()
            cls = (dev / "class").read_text().strip().lower()
        except OSError:
            continue
        if vendor in _GPU_VENDORS and cls.startswith("0x03"):
            return True
    return False


def auto_is_cpu(root: str = "/") -> bool:
    """Whether :func:`resolve_device` would turn ``"auto"`` into the CPU, told without
    importing torch (cheap: a few small files); False whenever that is not certain.

    True when torch is loaded and picks the CPU; else, not on macOS (MPS), when the
    installed torch was built without CUDA and ROCm (its ``torch/version.py``), or, on
    Linux, when the machine shows no trace of a GPU: no NVIDIA driver (``/proc/driver/
    nvidia``, ``/dev/nvidia*``, ``/dev/nvhost*``), no WSL GPU (``/dev/dxg``), no ROCm
    node (``/dev/kfd``) and no NVIDIA or AMD display device on the PCI bus. ``root``: the
    file system's root (for tests).
    """
    import sys

    if "torch" in sys.modules:
        return resolve_device("auto").type == "cpu"
    if sys.platform == "darwin":
        return False
    gpu_build = _torch_build_has_gpu()
    if gpu_build is False:
        return True
    return sys.platform.startswith("linux") and not _gpu_traces(root)


def prefers_channels_last(device: torch.device) -> bool:
    """Whether networks run in channels-last memory format on ``device`` (inference and
    training): on CUDA, and on the CPU, where it measured 1.4-2x faster for the U-Nets
    (``benchmarks/bench_infer.py``, docs/performance.md "CPU"); not on MPS."""
    return device.type in ("cuda", "cpu")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a device out-of-memory error (CUDA, MPS or CPU allocation)."""
    import torch

    oom_type = getattr(torch, "OutOfMemoryError", None) or getattr(
        torch.cuda, "OutOfMemoryError", None
    )
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def cancel_check(cancel: threading.Event | Callable[[], Any] | None) -> Callable[[], bool]:
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
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":  # pragma: no cover - macOS only
        with contextlib.suppress(Exception):
            torch.mps.empty_cache()


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``enabled``; a null context elsewhere."""
    if enabled and device.type == "cuda":
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------- memory
def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes that new allocations on ``device`` can use, or None when unknown.

    CUDA: the device's free memory. CPU (and MPS, which shares it): the host's available
    memory (:func:`napari_dfct._memory.host_available_memory`: Linux ``MemAvailable``, or
    :mod:`psutil` where installed, capped by a cgroup limit). Only a CUDA device imports
    torch.
    """
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0].strip().lower()
    if kind == "cuda":
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free)
        except Exception:  # noqa: BLE001  # pragma: no cover - driver specific
            return None
    return host_available_memory()
