"""The data step of :func:`napari_dfct.train.fit` for a 3-D model (``dims = 3``).

Training patches are ``patch_depth`` consecutive slices of one scan
(:mod:`napari_dfct.volume3d`); validation predicts every validation run in chunks of
``patch_depth`` slices; the preview is one slice of the chunk around it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..device import autocast as _autocast
from ..volume3d import (
    GroupedVolumePatchSampler,
    check_runs,
    run_namer,
    scan_runs,
    validation_chunks,
)

__all__ = ["build_volume_data", "predict_preview"]


def build_volume_data(run: Any, x_all, y_all) -> None:
    """Step 3 for a 3-D model: the patch sampler over the training runs, the validation
    chunks (``run.x_val``, ``run.y_val``: lists of stacks) and the preview chunk
    (``run.preview_x``, ``run.preview_z``)."""
    config, device, window = run.config, run.device, run.window
    depth = int(config.patch_depth)
    if run.oracle is not None:
        raise ValueError("an oracle directional loss trains 2-D models only (--dims 2)")
    if run.scans is not None:

        def stack(arrays, r: np.ndarray) -> np.ndarray:
            return window.normalize(np.stack([arrays[int(i)] for i in r]))

    else:

        def stack(arrays, r: np.ndarray) -> np.ndarray:
            return window.normalize(arrays[r[0] : r[-1] + 1])

    train_runs = scan_runs(run.train_idx, run.scans)
    val_runs = scan_runs(run.val_idx, run.scans)
    volume = "the training volume" if run.fixed_split is not None else "the volume"
    check_runs(train_runs, depth, run_namer(run.scans, volume))
    run.sampler = GroupedVolumePatchSampler(
        [(stack(x_all, r), stack(y_all, r)) for r in train_runs],
        lambda shape: run.loss_fn.full_spatial_weight(shape, device=device),
        depth=depth,
        patch=config.patch,
        patches_per_slice=config.patches_per_slice,
        augment=config.augment,
        seed=config.seed + 1,
        device=device,
    )
    xs, ys = validation_chunks(
        [stack(x_all, r) for r in val_runs], [stack(y_all, r) for r in val_runs], depth
    )
    run.x_val = [t.to(run.sampler.storage) for t in xs]
    run.y_val = [t.to(run.sampler.storage) for t in ys]
    # the preview: the chunk of (at most) depth slices of its run around the preview slice
    p = int(run.preview_index)
    r = next(r for r in train_runs + val_runs if r[0] <= p <= r[-1])
    start = int(min(max(p - depth // 2, r[0]), max(r[-1] + 1 - depth, r[0])))
    chunk = np.arange(start, min(start + depth, r[-1] + 1))
    run.preview_x = torch.from_numpy(stack(x_all, chunk))
    run.preview_z = p - start
    run.keep = None


@torch.no_grad()
def predict_preview(model, x2d: torch.Tensor, device, amp, channels_last, z=None) -> torch.Tensor:
    """The model's prediction of the preview slice, float32 ``(H, W)`` on the CPU, from
    its input ``(C, H, W)`` (``C`` channels of a 2-D or 2.5-D model); for a 3-D model
    (``z`` given) from the ``(Z, H, W)`` slices around it, of which it is slice ``z``."""
    model.eval()
    xb = x2d.to(device).reshape(1, -1, *x2d.shape[-2:])
    if z is not None:
        xb = xb.unsqueeze(1)
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with _autocast(device, amp):
        pred = model(xb)
    pred = pred.float()[0, 0]
    return (pred if z is None else pred[z]).to("cpu")
