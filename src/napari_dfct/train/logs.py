"""Training logs outside the model's own files: TensorBoard event files.

``history.json`` and ``history.csv`` are written with every epoch by
:mod:`napari_dfct.checkpoint`; this module adds the optional TensorBoard log
(``TrainConfig.tensorboard``): the losses, the learning rate and a preview image per epoch,
in ``<model folder>/tensorboard``. It needs the ``tensorboard`` package (the
``[tensorboard]`` extra); :func:`check_tensorboard` says so before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TENSORBOARD_HINT", "TensorBoardLog", "check_tensorboard"]

#: What to install for ``--tensorboard``.
TENSORBOARD_HINT = "pip install 'napari-dfct[tensorboard]' (or pip install tensorboard)"

#: The scalars logged per epoch: TensorBoard tag -> :class:`EpochEvent` attribute.
SCALARS = {
    "loss/train": "train_loss",
    "loss/val": "val_loss",
    "loss/val_plain": "val_plain",
    "loss/val_amplified": "val_amplified",
    "loss/best_val": "best_val_loss",
    "lr": "lr",
    "time/epoch_seconds": "seconds",
}


def check_tensorboard() -> None:
    """Raise :class:`ValueError` (one line) unless TensorBoard logging can work."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            f"TensorBoard logging needs the tensorboard package ({exc}); {TENSORBOARD_HINT}"
        ) from None


class TensorBoardLog:
    """TensorBoard event files for one training run, opened on the first logged epoch.

    Parameters
    ----------
    log_dir : path
        The folder of the event files (created when the first epoch is logged, so a
        model folder that is created atomically at its first save is not touched before).
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer: SummaryWriter | None = None

    def log(self, event: Any, preview: np.ndarray | None = None, index: int | None = None) -> None:
        """Log one :class:`~napari_dfct.train.EpochEvent`; ``preview`` is the prediction
        of slice ``index`` in the window's [0, 1] scale (clipped), shown as an image."""
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # a resumed run hides what a killed run logged after its saved epoch
            self.writer = SummaryWriter(str(self.log_dir), purge_step=int(event.epoch))
        writer = self.writer
        step = int(event.epoch)
        for tag, name in SCALARS.items():
            value = float(getattr(event, name))
            if np.isfinite(value):
                writer.add_scalar(tag, value, step)
        if preview is not None:
            img = np.clip(np.asarray(preview, dtype=np.float32), 0.0, 1.0)
            tag = "preview" if index is None else f"preview/slice_{int(index)}"
            writer.add_image(tag, img[None], step, dataformats="CHW")
        writer.flush()

    def close(self) -> None:
        """Flush and close the event files (idempotent)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
