"""Training stability: the mechanism behind the validation spikes, and the recipes.

The spikes of the paper's protocol come from Adam's *coupled* weight decay acting on conv
weights that feed a BatchNorm: such weights are scale invariant (the network computes the
same function for any positive multiple of them), so the decay regularises nothing and only
shrinks them. The pre-BatchNorm activations shrink with them, the running variances fall
towards BatchNorm's eps, and the running statistics (an average over the last steps) stop
describing the current weights: in eval mode a deep stack of layers then amplifies the
mismatch (``docs/training-stability.md``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_dfct.losses import AmplifiedLoss
from napari_dfct.model import build_model
from napari_dfct.train import (
    RECIPES,
    TrainConfig,
    build_optimizer,
    parameter_groups,
    recalibrate_batchnorm,
    recipe_config,
    run_fit,
    scale_invariant_parameters,
)


def spike_ratio(values, first_epoch: int = 3) -> float:
    """Largest ``values[e] / min(values[1..e])`` over epochs ``e >= first_epoch``."""
    worst, best = 0.0, math.inf
    for e, v in enumerate(values, start=1):
        best = min(best, v)
        if e >= first_epoch:
            worst = max(worst, v / best)
    return worst


def test_spike_ratio_by_hand():
    assert spike_ratio([5.0, 4.0, 3.0, 2.0]) == 1.0
    assert spike_ratio([5.0, 1.0, 2.0, 9.0, 1.5]) == 9.0
    assert spike_ratio([1.0, 100.0, 1.0]) == 1.0  # epoch 2 is before the rule starts


def test_scale_invariant_parameters_are_the_conv_weights_before_batchnorm():
    model = build_model("tiny")
    ids = scale_invariant_parameters(model)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    # every 3x3 conv (bias-free, followed by BatchNorm) is; the 1x1 output conv is not
    assert {id(c.weight) for c in convs if c.kernel_size == (3, 3)} == ids
    out_conv = [c for c in convs if c.kernel_size == (1, 1)]
    assert out_conv and all(id(c.weight) not in ids for c in out_conv)


def test_scale_invariance_holds_in_training_mode():
    """Multiplying those weights by a positive constant leaves the output unchanged."""
    torch.manual_seed(0)
    model = build_model("tiny", zero_init=False).train()
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        before = model(x)
        for p in model.parameters():
            if id(p) in scale_invariant_parameters(model):
                p.mul_(3.0)
        after = model(x)
    # equal up to BatchNorm eps (1e-5 against activation variances of order 1)
    assert float((before - after).abs().max()) < 1e-3 * float(before.abs().max())


@pytest.mark.parametrize("scope", ["all", "no-norm", "no-scale-invariant"])
def test_parameter_groups_partition_the_parameters(scope):
    model = build_model("tiny")
    groups = parameter_groups(model, 0.1, scope)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    si = scale_invariant_parameters(model)
    bn = {
        id(p)
        for m in model.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
        for p in m.parameters()
    }
    if scope == "all":
        assert decayed == set(ids)
    elif scope == "no-norm":
        assert not decayed & bn and si <= decayed
    else:
        assert not decayed & (bn | si) and decayed  # the output conv is still decayed


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_fused_optimiser_steps_as_torchs_plain_one(optimizer, channels_last):
    """build_optimizer's fused kernel against torch's one-tensor-at-a-time Adam/AdamW (an
    independent implementation of the same update): equal to float rounding after a few
    steps on the same gradients, in both memory formats the training uses on the CPU (the
    same gradients: Adam divides a gradient by its running size, so rounding differences
    of near-zero gradients would otherwise grow to the size of a step)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    ours_model = build_model("tiny").to(memory_format=fmt)
    plain_model = build_model("tiny").to(memory_format=fmt)
    plain_model.load_state_dict(ours_model.state_dict())
    start = {k: v.clone() for k, v in ours_model.named_parameters()}
    cfg = TrainConfig(preset="tiny", optimizer=optimizer, weight_decay=0.1, lr=1e-2)
    ours = build_optimizer(ours_model, cfg)
    assert ours.defaults["fused"] is True
    cls = torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam
    plain = cls(parameter_groups(plain_model, 0.1, "all"), lr=1e-2, fused=False, foreach=False)
    for _ in range(3):
        x, y = _smooth_batch(gen)
        x = x.contiguous(memory_format=fmt)
        ours.zero_grad()
        (ours_model(x) - y).square().mean().backward()
        for a, b in zip(ours_model.parameters(), plain_model.parameters()):
            b.grad = a.grad.clone()
        ours.step()
        plain.step()
    for (name, a), b in zip(ours_model.named_parameters(), plain_model.parameters()):
        assert not torch.equal(a, start[name]), name  # the steps moved every parameter
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name


def _smooth_batch(gen):
    y = torch.nn.functional.avg_pool2d(torch.rand(8, 1, 40, 40, generator=gen), 9, 1)
    return y + 0.2 * torch.randn(y.shape, generator=gen), y


def _train_steps(steps: int = 150, **overrides):
    """``steps`` Adam steps (the paper's optimiser unless overridden) of the tiny model on
    random 32x32 crops of smooth images plus noise; returns the model, the loss and the
    batch generator."""
    torch.manual_seed(0)
    cfg = recipe_config("paper", preset="tiny", **overrides)
    model = build_model("tiny")
    opt = build_optimizer(model, cfg)
    loss_fn = AmplifiedLoss("l2")
    gen = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(steps):
        x, y = _smooth_batch(gen)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, loss_fn, gen


def _weight_norm_ratio_and_min_var(**overrides):
    torch.manual_seed(0)
    start_model = build_model("tiny")
    si0 = scale_invariant_parameters(start_model)
    start = math.sqrt(
        sum(float((p.detach() ** 2).sum()) for p in start_model.parameters() if id(p) in si0)
    )
    model, _, _ = _train_steps(150, **overrides)
    si = scale_invariant_parameters(model)
    norm = math.sqrt(
        sum(float((p.detach() ** 2).sum()) for p in model.parameters() if id(p) in si)
    )
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    return norm / start, min(float(m.running_var.min()) for m in bns), bns[0].eps


@pytest.mark.slow
def test_coupled_decay_shrinks_scale_invariant_weights_towards_batchnorm_eps():
    """Link 1: coupled decay shrinks the scale-invariant weights (it cannot regularise
    them) and the running variances fall towards BatchNorm's eps."""
    ratio, min_var, eps = _weight_norm_ratio_and_min_var()
    assert ratio < 0.6
    assert min_var < 10 * eps
    # the decay scope that skips those weights keeps them (a measured alternative)
    ratio, min_var, eps = _weight_norm_ratio_and_min_var(decay_scope="no-scale-invariant")
    assert ratio > 0.9
    assert min_var > 10 * eps


def _val_losses(model, loss_fn, gen, n_batches: int = 16):
    """Validation losses of ``n_batches`` held-out batches (arrays, one value per batch):
    with batch statistics, with the running statistics, and with the running statistics
    re-estimated on the current weights (once, after the first two were taken)."""
    batches = [_smooth_batch(gen) for _ in range(n_batches)]
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def losses(batch_statistics: bool) -> np.ndarray:
        out = []
        with torch.no_grad():
            for xv, yv in batches:
                model.train(batch_statistics)
                for m in bns:  # batch statistics, running ones untouched
                    m.track_running_stats = not batch_statistics
                out.append(float(loss_fn(model(xv), yv)))
                for m in bns:
                    m.track_running_stats = True
        model.eval()
        return np.array(out)

    batch_stats, running = losses(True), losses(False)
    with torch.no_grad():
        recalibrate_batchnorm(model, [_smooth_batch(gen)[0] for _ in range(8)])
    return batch_stats, running, losses(False)


def _interval(diff: np.ndarray, z: float = 3.0) -> tuple[float, float]:
    """Mean of paired differences -/+ ``z`` standard errors (their batch-to-batch spread)."""
    se = float(diff.std(ddof=1)) / math.sqrt(len(diff))
    return float(diff.mean()) - z * se, float(diff.mean()) + z * se


@pytest.mark.slow
def test_stale_running_statistics_inflate_the_validation_loss_and_recalibration_fixes_it():
    """Link 2, the cause of the spikes: with the same weights, eval mode with the moving
    averages scores worse than batch statistics; statistics re-estimated on the current
    weights (the stable recipe) score like batch statistics.

    Each margin comes from the spread of the paired per-batch differences (16 held-out
    batches, 3 standard errors), not from one machine's value: the size of the inflation
    differs between CPUs (its ratio was 1.3 on one x86_64 machine and 1.4 on another)."""
    model, loss_fn, gen = _train_steps(300)
    batch_stats, running, recalibrated = _val_losses(model, loss_fn, gen)
    inflation_low, _ = _interval(running - batch_stats)
    assert inflation_low > 0  # the running statistics score worse, beyond the batch noise
    # recalibration removes it: better than the running statistics beyond the noise, and
    # what remains against batch statistics is a small part of the inflation
    assert _interval(running - recalibrated)[0] > 0
    low, high = _interval(recalibrated - batch_stats)
    assert max(abs(low), abs(high)) < inflation_low / 3


def test_recalibrate_batchnorm_is_the_plain_average_of_batch_statistics():
    torch.manual_seed(0)
    model = build_model("tiny", zero_init=False)
    batches = [torch.randn(4, 1, 16, 16) + k for k in range(3)]
    used = recalibrate_batchnorm(model, batches)
    assert used == 3 and not model.training
    first = model.inc[1]  # the first BatchNorm sees conv(x) directly
    with torch.no_grad():
        means = [model.inc[0](b).mean((0, 2, 3)) for b in batches]
    assert torch.allclose(first.running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert first.momentum == 0.1  # restored


def test_recipes_are_named_and_saved(tmp_path):
    from napari_dfct.checkpoint import load_config

    assert {"paper", "stable"} <= set(RECIPES)
    paper = recipe_config("paper")
    # the paper recipe is the paper's protocol (shared/PAPER.md)
    assert (
        paper.optimizer,
        paper.lr,
        paper.weight_decay,
        paper.batch_size,
        paper.patch,
        paper.step_size,
        paper.gamma,
        paper.patience,
        paper.epochs,
        paper.val_fraction,
    ) == ("adam", 1e-3, 0.1, 32, 128, 3, 0.9, 20, 100, 0.2)
    assert paper.decay_scope == "all" and paper.bn_recalibrate == 0
    # the stable recipe differs from the paper's in the BatchNorm statistics alone
    stable = recipe_config("stable")
    diff = {k for k, v in stable.to_dict().items() if paper.to_dict()[k] != v}
    assert diff == {"recipe", "bn_recalibrate"} and stable.bn_recalibrate > 0
    assert TrainConfig().recipe == "stable"
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_config("fast")
    rng = np.random.default_rng(0)
    y = rng.random((4, 32, 32), dtype=np.float32)
    res = run_fit(
        y + 0.1,
        y,
        recipe_config("paper", preset="tiny", epochs=1, batch_size=4, patch=16, device="cpu"),
        tmp_path / "m",
        preview=False,
    )
    assert load_config(res.model_dir)["train"]["recipe"] == "paper"


def test_history_records_both_validation_losses_and_selects_the_plain_one(tmp_path):
    from napari_dfct.checkpoint import load_history

    rng = np.random.default_rng(0)
    y = rng.random((5, 32, 32), dtype=np.float32)
    cfg = recipe_config(
        "stable",
        loss="l2+s-nonlinear",
        preset="tiny",
        epochs=3,
        batch_size=4,
        patch=16,
        device="cpu",
    )
    res = run_fit(
        y + 0.2 * rng.random(y.shape, dtype=np.float32), y, cfg, tmp_path / "m", preview=False
    )
    hist = load_history(res.model_dir)
    assert len(hist) == 3
    for h in hist:
        # A_S >= 1 everywhere (and > 1 inside), so the amplified loss exceeds the plain one
        assert h["val_amplified"] > h["val_plain"] > 0
        assert h["val_loss"] == h["val_plain"]
    assert res.best_val_loss == min(h["val_plain"] for h in hist)

    cfg.select = "amplified"
    res2 = run_fit(y + 0.2, y, cfg, tmp_path / "a", preview=False)
    assert all(h["val_loss"] == h["val_amplified"] for h in res2.history)


def test_loss_scale_multiplies_the_loss():
    torch.manual_seed(0)
    p, t = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    plain = AmplifiedLoss("l2")(p, t)
    scaled = AmplifiedLoss("l2@1.47")(p, t)
    assert float(scaled) == pytest.approx(1.47 * float(plain), rel=1e-6)


@pytest.fixture(scope="module")
def eight_slices():
    from napari_dfct.simulate import simulate_dfct

    return simulate_dfct(n_slices=8, size=64, n_views=96, rotations=4, seed=3)


@pytest.mark.slow
def test_stable_recipe_changes_the_validation_statistics_only(eight_slices):
    """The paper recipe with the same seed follows the same weight trajectory (identical
    training losses: re-estimating BatchNorm statistics does not touch the updates); only
    the statistics used for validation differ.

    Whether a 15-epoch toy run shows a validation spike is not asserted: on this 8-slice
    set with 2 validation slices it depends on the machine (spike ratios of the stable
    recipe from 1.5 to 4.3 over 3 seeds and 2 learning rates on one x86_64 machine, below
    3 on another); the spike rule is measured at the demo's scale over 8 seeds
    (docs/training-stability.md).
    """
    sim = eight_slices
    kw = dict(
        preset="small",
        epochs=15,
        patience=15,
        batch_size=8,
        patch=32,
        patches_per_slice=8,
        lr=3e-3,
        seed=0,
        device="cpu",
    )
    stable = run_fit(sim.input, sim.target, recipe_config("stable", **kw), preview=False)
    val = [h["val_loss"] for h in stable.history]
    assert len(val) == 15 and all(np.isfinite(val))
    paper = run_fit(sim.input, sim.target, recipe_config("paper", **kw), preview=False)
    assert [h["val_loss"] for h in paper.history] != val
    assert [h["train_loss"] for h in paper.history] == [h["train_loss"] for h in stable.history]
