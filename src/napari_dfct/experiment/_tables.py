"""What the grid's tables and figures share: the metrics' labels and formats, Markdown and
CSV writers, number formatting and the headless matplotlib (no science here)."""

from __future__ import annotations

import csv
import io as _io
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["METRICS", "csv_text", "md_table", "num", "plt"]

#: Metrics summarised per configuration (key in metrics.json, label, format, higher is better).
METRICS = {
    "cnr": ("CNR", ".2f", True),
    "fwhm": ("FWHM (px)", ".2f", False),
    "error_cnr": ("error CNR", ".2f", True),
    "psnr": ("PSNR (dB) vs truth", ".2f", True),
    "ssim": ("SSIM vs truth", ".3f", True),
    "psnr_body": ("PSNR (dB) in the body", ".2f", True),
    "ssim_body": ("SSIM in the body", ".3f", True),
    "rmse_body": ("RMSE in the body", ".3g", False),
    "psnr_target": ("PSNR (dB) vs target", ".2f", True),
    "ssim_target": ("SSIM vs target", ".3f", True),
}


def num(v: float, fmt: str) -> str:
    """``v`` formatted, ``n/a`` when not finite."""
    return "n/a" if not math.isfinite(v) else format(v, fmt)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (first column left-aligned, the others right-aligned)."""

    def esc(s):
        return str(s).replace("|", "\\|")

    lines = [
        "| " + " | ".join(esc(h) for h in header) + " |",
        "| " + " | ".join("---" if i == 0 else "---:" for i in range(len(header))) + " |",
    ]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """CSV text; non-finite floats are empty cells."""
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow(["" if (isinstance(v, float) and not math.isfinite(v)) else v for v in row])
    return buf.getvalue()


def plt():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    return pyplot
