"""Progress within an epoch: batch reports from :func:`~napari_dfct.train.fit`, with an
estimate of the time left, measured on the run itself.

:class:`BatchTicker` is called after every optimiser step; it reads the clock (no device
synchronisation, nothing that slows a step) and hands a :class:`BatchProgress` to the
caller's ``on_batch`` at most every :data:`BATCH_INTERVAL` seconds (the first batch of
every epoch always: the first sign of life of a run).

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["BATCH_INTERVAL", "BatchProgress", "BatchTicker", "format_duration"]

#: Shortest interval, in seconds, between two batch reports.
BATCH_INTERVAL = 0.5


@dataclass(frozen=True)
class BatchProgress:
    """Where a training run stands within an epoch.

    Attributes
    ----------
    epoch, epochs : int
        The epoch being trained (1-based, counting epochs before a resume) and the limit.
    batch, batches : int
        Optimiser steps done in this epoch, and per epoch.
    seconds : float
        Seconds since this epoch began.
    remaining : float
        Estimated seconds until the last epoch ends (``epochs``; early stopping may end
        the run sooner): the rest of this epoch at its measured seconds per batch, then
        the epochs left at the measured time of a whole epoch (training, validation and
        saving; before the first epoch ends, its training steps only).
    """

    epoch: int
    epochs: int
    batch: int
    batches: int
    seconds: float
    remaining: float

    @property
    def fraction(self) -> float:
        """The run's progress, 0 to 1 (finished epochs and this epoch's batches)."""
        return min(1.0, (self.epoch - 1 + self.batch / max(self.batches, 1)) / self.epochs)


class BatchTicker:
    """Report :class:`BatchProgress` of a run to ``on_batch``, at most every ``interval``
    seconds; :meth:`start_epoch` before an epoch's first step, :meth:`step` after each."""

    def __init__(
        self, on_batch: Callable[[BatchProgress], Any], interval: float = BATCH_INTERVAL
    ) -> None:
        self.on_batch = on_batch
        self.interval = float(interval)
        self.clock = time.perf_counter
        self.began: float | None = None  # this epoch's start
        self.overhead = 0.0  # validation and saving of the last whole epoch, measured
        self.train_seconds = 0.0  # the last epoch's training steps
        self.last = -float("inf")
        self.epoch = self.epochs = self.batch = self.batches = 0

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        """An epoch (1-based) of ``batches`` steps begins; ``epochs``: the run's limit."""
        now = self.clock()
        if self.began is not None and self.batch == self.batches:  # the last one finished
            self.overhead = max(0.0, now - self.began - self.train_seconds)
        self.began, self.batch, self.last = now, 0, -float("inf")
        self.epoch, self.epochs, self.batches = int(epoch), int(epochs), max(int(batches), 1)

    def step(self) -> None:
        """One optimiser step is done: report it when the interval has passed."""
        self.batch += 1
        now = self.clock()
        assert self.began is not None  # start_epoch came first
        seconds = now - self.began
        if self.batch == self.batches:
            self.train_seconds = seconds
        if now - self.last < self.interval and self.batch < self.batches:
            return
        self.last = now
        per_batch = seconds / self.batch
        this_epoch = per_batch * (self.batches - self.batch) + self.overhead
        later = (self.epochs - self.epoch) * (per_batch * self.batches + self.overhead)
        self.on_batch(
            BatchProgress(
                epoch=self.epoch,
                epochs=self.epochs,
                batch=self.batch,
                batches=self.batches,
                seconds=seconds,
                remaining=max(0.0, this_epoch + later),
            )
        )


def format_duration(seconds: float) -> str:
    """A rounded duration for people: ``"40 s"``, ``"3 min"``, ``"1 h 05 min"``."""
    s = max(0, int(round(seconds)))
    if s < 90:
        return f"{s} s"
    minutes = int(round(s / 60))
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
