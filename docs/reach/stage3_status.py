"""Which seeds of the stage-3 grid are complete: one row per seed of ``grid.json`` with the
number of its configurations (controls included) that finished, whether all did, and the
finished runs' wall times.

Usage: python docs/reach/stage3_status.py GRID_DIR [OUT.csv]
(the copy in docs/data/reach/stage3/ is a grid folder of the runs' small files).
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path


def status(grid: Path) -> list[dict]:
    settings = json.loads((grid / "grid.json").read_text())
    names = list(settings["configs"])
    rows = []
    for seed in settings["seeds"]:
        seconds = []
        for name in names:
            metrics = grid / "runs" / name / f"seed-{seed}" / "metrics.json"
            if metrics.is_file():
                seconds.append(float(json.loads(metrics.read_text())["seconds"]))
        rows.append(
            {
                "seed": seed,
                "configurations": len(names),
                "finished": len(seconds),
                "complete": len(seconds) == len(names),
                "seconds_min": round(min(seconds), 1) if seconds else "",
                "seconds_median": round(statistics.median(seconds), 1) if seconds else "",
                "seconds_max": round(max(seconds), 1) if seconds else "",
            }
        )
    return rows


def main(argv: list[str]) -> None:
    rows = status(Path(argv[1]))
    out = open(argv[2], "w", newline="") if len(argv) > 2 else sys.stdout  # noqa: SIM115
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    if out is not sys.stdout:
        out.close()


if __name__ == "__main__":
    main(sys.argv)
