"""The Train widget's progress bar: batches within the epoch and the time left.

Batch reports (:class:`napari_dfct.train.progress.BatchProgress`, at most every 0.5 s from
the training process) move the bar within an epoch and write
``epoch 3/100 · batch 5/12 · about 4 min left`` on it; an epoch's event writes the time
left from that epoch's measured seconds. The bar never moves back: a late epoch event
does not undo a newer batch report.
"""

from __future__ import annotations

from napari_dfct.train.progress import BatchProgress, format_duration

from . import _workers

__all__ = ["batch_text", "epoch_text", "reset", "show_batch", "show_epoch"]


def batch_text(p: BatchProgress) -> str:
    """``epoch 3/100 · batch 5/12 · about 4 min left``."""
    return (
        f"epoch {p.epoch}/{p.epochs} \u00b7 batch {p.batch}/{p.batches} \u00b7 "
        f"about {format_duration(p.remaining)} left"
    )


def epoch_text(event) -> str:
    """After an epoch: ``epoch 3/100 done · about 40 min left`` (the epochs left at this
    epoch's measured seconds; early stopping may end the run sooner)."""
    left = max(0, int(event.epochs) - int(event.epoch)) * float(event.seconds)
    return (
        f"epoch {event.epoch}/{event.epochs} done \u00b7 at most about "
        f"{format_duration(left)} left"
    )


def _shown(progress) -> float:
    bar = progress.native
    return bar.value() / max(bar.maximum(), 1)


def _set(progress, value: int, maximum: int, text: str) -> None:
    _workers.set_progress(progress, value, maximum)
    progress.native.setTextVisible(True)
    progress.native.setFormat(text)


def show_batch(progress, p: BatchProgress) -> None:
    """Show a batch report on the bar (its value counts batches of the whole run)."""
    total = max(p.epochs * p.batches, 1)
    done = min(total, (p.epoch - 1) * p.batches + p.batch)
    if done / total < _shown(progress):
        return
    _set(progress, done, total, batch_text(p))


def show_epoch(progress, event) -> None:
    """Show a finished epoch (``EpochEvent``) on the bar."""
    epochs = max(int(event.epochs), 1)
    done = min(int(event.epoch), epochs)
    if done / epochs < _shown(progress):
        return  # a batch of a later epoch is shown already
    _set(progress, done, epochs, epoch_text(event))


def reset(progress, epochs: int) -> None:
    """An empty bar for a run of ``epochs`` epochs, until its first batch report."""
    _set(progress, 0, max(int(epochs), 1), "starting\u2026")
