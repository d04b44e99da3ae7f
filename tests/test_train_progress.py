"""Progress within an epoch: fit's batch reports, in process and in a child process, and
the ticker's throttling and time-left estimate on a controlled clock."""

from __future__ import annotations

import pytest

from napari_dfct.train.progress import BatchProgress, BatchTicker, format_duration


def _config(**kw):
    from napari_dfct.train import TrainConfig

    base = dict(
        preset="tiny",
        epochs=2,
        batch_size=4,
        patch=32,
        patches_per_slice=8,  # 3 training slices x 8 = 24 patches: 6 batches per epoch
        device="cpu",
        bn_recalibrate=0,
    )
    return TrainConfig(**{**base, **kw})


def test_fit_reports_batches_before_each_epoch_ends(pair):
    from napari_dfct.train import EpochEvent, fit

    seen: list = []
    gen = fit(*pair, _config(), preview=False, on_batch=seen.append)
    while True:
        try:
            seen.append(next(gen))
        except StopIteration:
            break
    epochs = [e for e in seen if isinstance(e, EpochEvent)]
    assert [e.epoch for e in epochs] == [1, 2]
    first = seen.index(epochs[0])
    before = seen[:first]
    # the first report comes after the first step, long before the epoch ends
    assert before and all(isinstance(p, BatchProgress) for p in before)
    assert (before[0].epoch, before[0].batch, before[0].batches) == (1, 1, 6)
    assert before[-1].batch == before[-1].batches == epochs[0].steps  # the epoch's last
    for p in seen:
        if isinstance(p, BatchProgress):
            assert p.epochs == 2 and 1 <= p.batch <= p.batches and p.remaining >= 0
    # the second epoch's reports count its own batches
    second = [p for p in seen[first + 1 :] if isinstance(p, BatchProgress)]
    assert second[0].epoch == 2 and second[0].batch == 1
    assert second[-1].remaining < second[0].remaining  # validation and saving are left


def test_fit_without_on_batch_is_unchanged(pair):
    """Reports or not, the same run: same losses (the ticker only reads the clock)."""
    from napari_dfct.train import run_fit

    a = run_fit(*pair, _config(epochs=1), preview=False)
    b = run_fit(*pair, _config(epochs=1), preview=False, on_batch=lambda p: None)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]


@pytest.mark.slow
def test_child_process_yields_batch_reports(pair, tmp_path):
    from napari_dfct.train import EpochEvent
    from napari_dfct.train.process import fit_in_process

    items = list(
        fit_in_process(
            *pair, _config(epochs=1), tmp_path / "a", preview=False, batches=True, threads=1
        )
    )
    assert isinstance(items[0], BatchProgress) and items[0].batch == 1
    assert isinstance(items[-1], EpochEvent)
    quiet = list(fit_in_process(*pair, _config(epochs=1), tmp_path / "b", preview=False))
    assert all(isinstance(e, EpochEvent) for e in quiet)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_ticker_throttles_and_estimates_time_left():
    seen: list[BatchProgress] = []
    ticker = BatchTicker(seen.append, interval=0.5)
    ticker.clock = clock = _Clock()
    ticker.start_epoch(1, 3, batches=10)
    for _ in range(10):  # 0.1 s per step
        clock.now += 0.1
        ticker.step()
    # the first step, then every 0.5 s, and the epoch's last step
    assert [p.batch for p in seen] == [1, 6, 10]
    # after one step: 9 steps of this epoch and 2 epochs of 10 steps left, at 0.1 s each
    assert seen[0].remaining == pytest.approx(0.9 + 2.0)
    assert seen[-1].remaining == pytest.approx(2.0)
    assert seen[0].fraction == pytest.approx(0.1 / 3)
    clock.now += 0.4  # validation and saving: measured once the next epoch begins
    seen.clear()
    ticker.start_epoch(2, 3, batches=10)
    clock.now += 0.1
    ticker.step()
    assert seen[0].epoch == 2 and seen[0].batch == 1
    # this epoch: 9 steps + 0.4 s; the last epoch: 10 steps + 0.4 s
    assert seen[0].remaining == pytest.approx(0.9 + 0.4 + 1.0 + 0.4)


def test_format_duration():
    assert format_duration(40.2) == "40 s"
    assert format_duration(200) == "3 min"
    assert format_duration(3900) == "1 h 05 min"
    assert format_duration(-1) == "0 s"
