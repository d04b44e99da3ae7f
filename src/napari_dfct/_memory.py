"""The host's available memory and byte counts in words, without importing torch.

:func:`host_available_memory` is the one rule for "how much memory may a new allocation on
the host use"; :func:`napari_dfct.device.available_memory` uses it for the CPU (and MPS)
and the readers of :mod:`napari_dfct.io` use it to refuse a file too big to load before
they allocate anything.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["format_bytes", "host_available_memory"]


def _cgroup_free() -> int | None:
    """Memory left under this process's cgroup (v2) limit, or None without one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def host_available_memory() -> int | None:
    """Bytes that new host allocations can use, or None when unknown.

    Linux ``MemAvailable`` (or :mod:`psutil` where installed), capped by a cgroup limit.
    """
    host = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if host is None:
        try:
            import psutil

            host = int(psutil.virtual_memory().available)
        except Exception:  # noqa: BLE001  # pragma: no cover - psutil missing or unsupported
            return None
    group = _cgroup_free()
    return host if group is None else min(host, group)


def format_bytes(n: float) -> str:
    """``n`` bytes in words: ``"512 B"``, ``"3.2 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover
