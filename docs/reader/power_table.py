"""The power table of docs/reader-study.md: how many readers x trials separate two
candidates, for the model observer (napari_dfct.reader_study.observer).

    python docs/reader/power_table.py

Two candidates A and B whose errors against the truth (RMSE in units of the window's width)
differ by ``delta``; every observer decides with noise ``sigma``, so it prefers the better
one with probability ``Phi(delta / sigma)``. A study of R readers x T trials of the pair is
simulated REPS times with the observer's own decision function
(:func:`~napari_dfct.reader_study.observer.observer_choices`), and the pair counts as separated
when the report's pooled exact sign test gives p < 0.05 (two-sided). Each power is checked
against the exact binomial power (the script stops when they differ by more than 0.03).

Writes docs/data/reader/power.csv. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy.stats import binom, binomtest

from napari_dfct.reader_study.observer import observer_choices
from napari_dfct.reader_study.study import Trial

OUT = Path(__file__).resolve().parents[1] / "data" / "reader" / "power.csv"
RATIOS = (0.1, 0.2, 0.3, 0.5)  # delta / sigma
READERS = (1, 3, 5, 10)
TRIALS = (10, 20, 50)  # trials of the pair per reader
REPS = 2000
SIGMA = 0.01  # the decision noise (window widths); only delta / sigma matters
ALPHA = 0.05


def _rejects(n: int) -> np.ndarray:
    """k in 0..n: whether the two-sided exact sign test rejects at ALPHA."""
    return np.array([binomtest(k, n, 0.5).pvalue < ALPHA for k in range(n + 1)])


def power(
    ratio: float, readers: int, trials: int, rng: np.random.Generator
) -> tuple[float, float]:
    """(simulated, exact) power of the pooled sign test."""
    delta = ratio * SIGMA
    # sides alternate, as a study balances them
    study = SimpleNamespace(
        trials=[Trial(i, 0, *(("A", "B") if i % 2 else ("B", "A")), None) for i in range(trials)]
    )
    errors = {("A", 0): 0.0, ("B", 0): delta}
    rejects = _rejects(readers * trials)
    hits = 0
    for _ in range(REPS):
        right = observer_choices(study, errors, readers, SIGMA, rng)
        wins_a = sum(int(np.sum(right[:, t.index] == (t.right == "A"))) for t in study.trials)
        hits += bool(rejects[wins_a])
    p = 0.5 * (1 + math.erf(ratio / math.sqrt(2)))
    n = readers * trials
    exact = float(np.sum(binom.pmf(np.arange(n + 1), n, p) * rejects))
    return hits / REPS, exact


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for ratio in RATIOS:
        for readers in READERS:
            for trials in TRIALS:
                sim, exact = power(ratio, readers, trials, rng)
                if abs(sim - exact) > 0.03:
                    raise SystemExit(f"simulated {sim:.3f} vs exact {exact:.3f}: check the model")
                rows.append(
                    {
                        "delta_over_noise": ratio,
                        "p_prefer_better": round(0.5 * (1 + math.erf(ratio / math.sqrt(2))), 3),
                        "readers": readers,
                        "trials_per_reader": trials,
                        "judgments": readers * trials,
                        "power": round(sim, 3),
                        "power_exact": round(exact, 3),
                    }
                )
                print(rows[-1], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
