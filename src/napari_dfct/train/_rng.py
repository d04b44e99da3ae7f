"""The random-number state of a training run (patch sampler, torch, NumPy, CUDA), saved
with the resume state and restored on resume."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data import PatchSampler


def _rng_state(sampler: PatchSampler) -> dict:
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "sampler": sampler.get_state(),
        "torch_cpu": torch.get_rng_state().tolist(),
        "numpy": {
            "name": np_state[0],
            "keys": np_state[1].tolist(),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch_cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict, sampler: PatchSampler) -> None:
    sampler.set_state(state["sampler"])
    torch.set_rng_state(torch.tensor(state["torch_cpu"], dtype=torch.uint8))
    ns = state["numpy"]
    np.random.set_state(
        (
            ns["name"],
            np.asarray(ns["keys"], dtype=np.uint32),
            ns["pos"],
            ns["has_gauss"],
            ns["cached_gaussian"],
        )
    )
    cuda = state.get("torch_cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in cuda])
