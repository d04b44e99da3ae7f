"""A model observer: simulated readers for tests and for planning a study.

The model. On a trial showing slice ``z`` of candidates L (left) and R (right), with the
slice's window ``(lo, hi)`` and the truth T, the observer sees what a reader sees: every
image clipped to the window and scaled to it, ``v(x) = (clip(x, lo, hi) - lo) / (hi - lo)``.
Its error for each side is the RMSE ``e = sqrt(mean((v(X) - v(T))**2))`` inside the body
mask (the whole slice without one), in units of the window's width. It prefers the left
image when

    ``e_R - e_L + noise * eps > 0``,  ``eps ~ N(0, 1)`` independent for every decision,

so ``P(left) = Phi((e_R - e_L) / noise)`` (a probit in the error difference; ``noise = 0``
always picks the smaller error, a tie by a fair coin). Every observer has the same
``noise``; their decisions differ only through ``eps``. Repeated trials are decided afresh,
so an observer is inconsistent on a repeat with probability ``2 p (1 - p)``.

This module imports neither Qt nor napari.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from typing import Any

import numpy as np

from .judgments import answered, append_judgment
from .study import Study, reference_slices

__all__ = ["OBSERVER_PREFIX", "display_errors", "observer_choices", "simulate_readers"]

#: Simulated readers are called ``observer-1``, ``observer-2``, ...
OBSERVER_PREFIX = "observer-"


def display_errors(study: Study, reference: Any = None) -> dict[tuple[str, int], float]:
    """The observer's error of every candidate on every slice: ``{(name, slice): rmse}``
    in units of the slice's window width (the module's model).

    ``reference`` is the truth (a file or an array of the candidates' shape); without it,
    the truth stored in the study. ValueError when there is neither.
    """
    if reference is not None:
        ref = reference_slices(reference, tuple(study.meta["shape"]), study.slices)
        truth = dict(zip(study.slices, ref["stack"]))
        body = dict(zip(study.slices, ref["body"])) if ref["body"] is not None else {}
    elif study.has_reference:
        truth = {s: study.reference(s) for s in study.slices}
        body = {s: study.body(s) for s in study.slices if study.body(s) is not None}
    else:
        raise ValueError(
            f"{study.dir} holds no truth: give a reference (the truth the errors are measured "
            "against), or make the study with one"
        )
    out = {}
    for s in study.slices:
        lo, hi = study.window(s)
        mask = np.asarray(body[s]) != 0 if s in body else np.ones(truth[s].shape, bool)
        t = (np.clip(np.asarray(truth[s], dtype=np.float64), lo, hi) - lo) / (hi - lo)
        for name in study.candidates:
            v = (np.clip(np.asarray(study.image(name, s), np.float64), lo, hi) - lo) / (hi - lo)
            out[(name, s)] = float(np.sqrt(np.mean((v - t)[mask] ** 2)))
    return out


def observer_choices(
    study: Study, errors: dict, readers: int, noise: float, rng: np.random.Generator
) -> np.ndarray:
    """(readers, trials) bool: True where the observer prefers the right image."""
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    if int(readers) < 1:
        raise ValueError(f"readers must be at least 1, got {readers}")
    diff = np.array([errors[(t.right, t.slice)] - errors[(t.left, t.slice)] for t in study.trials])
    eps = rng.standard_normal((int(readers), len(diff)))
    decision = diff[None, :] + noise * eps  # > 0: the left image has the smaller error
    ties = decision == 0
    right = decision < 0
    right[ties] = rng.random(int(ties.sum())) < 0.5
    return right


def simulate_readers(
    study_dir: str | os.PathLike,
    readers: int = 5,
    noise: float = 0.01,
    reference: Any = None,
    seed: int = 0,
) -> int:
    """Let ``readers`` model observers (the module's model) answer every trial they have
    not answered yet, through :func:`~napari_dfct.reader_study.judgments.append_judgment`, as
    readers ``observer-1`` ... ``observer-N``; returns the number of answers written.

    ``noise`` is the decision noise in units of the window's width (a typical error
    difference between a streaky and a clean image is a few hundredths). The same study,
    arguments and seed give the same answers.
    """
    study = Study.open(study_dir)
    errors = display_errors(study, reference)
    rng = np.random.default_rng(int(seed))
    right = observer_choices(study, errors, readers, noise, rng)
    now = _dt.datetime.now(_dt.timezone.utc).astimezone()
    written = 0
    for k in range(int(readers)):
        name = f"{OBSERVER_PREFIX}{k + 1}"
        done = answered(study, name)
        for t in study.trials:
            if t.index in done:
                continue
            choice = "right" if right[k, t.index] else "left"
            append_judgment(study, name, t, choice, 0.0, time=now)
            written += 1
    return written
