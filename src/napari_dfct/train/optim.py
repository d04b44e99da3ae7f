"""Optimiser parameter groups and BatchNorm statistics (``docs/training-stability.md``)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .config import TrainConfig

__all__ = [
    "build_optimizer",
    "parameter_groups",
    "recalibrate_batchnorm",
    "scale_invariant_parameters",
]


def scale_invariant_parameters(model: torch.nn.Module) -> set[int]:
    """``id`` of every conv weight whose output goes straight into a BatchNorm.

    Such a weight (a bias-free conv followed by BatchNorm in one ``nn.Sequential``) is
    *scale invariant*: the network's output does not change when it is multiplied by a
    positive constant (in training mode, and in eval mode once the running statistics have
    caught up).
    """
    ids: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, torch.nn.Sequential):
            kids = list(mod.children())
            for a, b in zip(kids, kids[1:]):
                if (
                    isinstance(a, torch.nn.modules.conv._ConvNd)
                    and a.bias is None
                    and isinstance(b, torch.nn.modules.batchnorm._BatchNorm)
                ):
                    ids.add(id(a.weight))
    return ids


def parameter_groups(model: torch.nn.Module, weight_decay: float, scope: str) -> list[dict]:
    """Optimizer parameter groups: which parameters weight decay applies to.

    ``scope``: ``"all"`` (every parameter, as ``Adam(model.parameters(), weight_decay=...)``),
    ``"no-norm"`` (not BatchNorm gamma/beta nor biases), ``"no-scale-invariant"`` (not
    those, nor the conv weights that feed a BatchNorm).
    """
    if scope == "all":
        return [
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "weight_decay": weight_decay,
            }
        ]
    skip: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            skip.update(id(p) for p in mod.parameters(recurse=False))
        bias = getattr(mod, "bias", None)
        if isinstance(bias, torch.nn.Parameter):
            skip.add(id(bias))
    if scope == "no-scale-invariant":
        skip |= scale_invariant_parameters(model)
    elif scope != "no-norm":
        raise ValueError(f"unknown weight-decay scope {scope!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in skip], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0},
    ]


#: Devices whose parameters take torch's fused Adam/AdamW kernel: one pass over each
#: parameter's memory instead of about ten (on one CPU core and the ``small`` preset, an
#: optimiser step of 5 ms instead of 11-16 ms: ``benchmarks/bench_train.py``). Its
#: arithmetic is Adam's; only the rounding of the last bits differs.
FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam (or AdamW, ``cfg.optimizer``) over :func:`parameter_groups`, fused where the
    parameters' device and dtype allow (:data:`FUSED_DEVICES`, floating point)."""
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_scope)
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(
        p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params
    )
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-estimate every BatchNorm's running statistics on the current weights.

    The running mean and variance are reset and replaced by the plain average over
    ``batches`` (an iterable of input tensors, (B, 1, P, P)), in training mode and without
    gradients; the model is left in eval mode. Returns the number of batches used.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    n = 0
    try:
        for xb in batches:
            model(xb)
            n += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    return n
