"""The words of a bioimage.io package: its description, README and configuration block."""

from __future__ import annotations

import math
from typing import Any

from ..checkpoint.load import _scheme_text
from .volume import config_patch_depth, z_plan

PAPER = (
    "Frey D., Dorosti T. et al. Structured Loss Amplification for U-Net-based "
    "Human-scale Dark-field CT Streak Reduction. Technical University of Munich."
)
SOURCE_URL = "https://github.com/napari-dfct/napari-dfct"

_TRAIN_KEYS = (
    "recipe",
    "select",
    "preset",
    "epochs",
    "patience",
    "batch_size",
    "patch",
    "patches_per_slice",
    "lr",
    "weight_decay",
    "optimizer",
    "step_size",
    "gamma",
    "val_fraction",
    "augment",
    "seed",
    "bn_recalibration",
)


def loss_text(cfg: dict) -> str:
    """``l2+s+f-nonlinear (S+F; paper mode)`` for a saved model config."""
    loss = cfg.get("loss") or {}
    name = cfg.get("name") or loss.get("name") or "?"
    text = f"{name} ({_scheme_text(loss)}; {loss.get('mode', 'paper')} mode"
    if loss.get("normalize"):
        text += ", normalised weights"
    scale = loss.get("scale", 1.0)
    if scale not in (None, 1, 1.0):
        text += f", scale {float(scale):g}"
    return text + ")"


def input_channel_names(context: int) -> list[str]:
    """The input channels of the package of a context-``K`` model: ``dark_field`` for a
    2-D model; else the ``2K + 1`` slices :func:`napari_dfct.context.slice_names` in
    the spelling bioimage.io accepts (Python identifiers): ``z_minus_1, z, z_plus_1``."""
    from ..context import slice_names

    if not int(context):
        return ["dark_field"]
    return [n.replace("-", "_minus_").replace("+", "_plus_") for n in slice_names(context)]


def _context(cfg: dict) -> int:
    """The model's context ``K`` (0: 2-D, or saved before context existed)."""
    return int((cfg.get("model") or {}).get("context", 0) or 0)


def _slices_text(k: int, depth: int = 0) -> str:
    """``2-D slices``, ``2.5-D: each slice from its 3 neighbouring slices`` or ``3-D``."""
    if depth:
        return f"3-D: volumes, trained on patches of {depth} consecutive slices"
    if not k:
        return "2-D slices"
    return f"2.5-D: each slice from the {2 * k + 1} neighbouring slices z-{k} .. z+{k}"


def _input_text(k: int, multiple: int, smallest: int, depth: int = 0) -> str:
    """The README's paragraph on the input tensor."""
    sizes = (
        f"in this package y and x are multiples of {multiple} of at least {smallest}, while "
        "the network itself takes any size and pads internally"
    )
    if depth:
        return (
            "The input is a volume of consecutive single-rotation dark-field CT slices of one "
            "scan (axes `batch, channel, z, y, x`, one channel, float32; z at least "
            f"{depth} slices, the depth of the training patches, and any number above: the "
            f"network pools in-plane only; {sizes})."
        )
    if not k:
        return (
            "The input is one single-rotation dark-field CT slice (axes `batch, channel, y, x`, "
            f"one channel, float32; {sizes})."
        )
    names = ", ".join(f"`{n}`" for n in input_channel_names(k))
    return (
        f"The input is {2 * k + 1} neighbouring single-rotation dark-field CT slices of one "
        f"scan, z-{k} .. z+{k}, as the channels of one tensor (axes `batch, channel, y, x`, "
        f"channels {names} in that order, float32; {sizes}): to reduce the streaks of slice "
        f"z, stack slices z-{k} .. z+{k} of its own scan; at the first and last slices of a "
        "scan, take the missing neighbours reflected about the end slice without repeating "
        "it (NumPy's `reflect` padding: slice -1 is slice 1), as napari-dfct does in "
        "training and prediction. The intensity window applies to every channel alike."
    )


def tensor_words(k: int, depth: int) -> tuple[str, str]:
    """The descriptions of the input and output tensors (at most 128 characters each)."""
    units = ", in the input's units"
    if depth:
        return f"consecutive slices of one single-rotation DFCT scan (z, y, x){units}", (
            f"streak-reduced slices (z, y, x){units}"
        )
    scan = f"slices z-{k}..z+{k} of one single-rotation DFCT scan as channels (slice z in "
    inp = f"{scan}the middle){units}" if k else f"single-rotation DFCT slice{units}"
    return inp, f"streak-reduced slice{units}"


def description_text(cfg: dict, n_params: int) -> str:
    """The package's one-paragraph description (bioimage.io ``description``)."""
    train = cfg.get("train") or {}
    window = cfg.get("window") or {}
    return (
        "Residual U-Net that reduces streaks in single-rotation X-ray dark-field CT (DFCT) "
        f"reconstructions ({_slices_text(_context(cfg), config_patch_depth(cfg))}), preset {cfg.get('preset', '?')} "
        f"({n_params / 1e6:.2f} M parameters), trained against multi-rotation targets with "
        f"the loss {loss_text(cfg)} in the {train.get('recipe', 'paper')} recipe; intensity "
        f"window [{float(window.get('low', math.nan)):.6g}, "
        f"{float(window.get('high', math.nan)):.6g}] in the input's units. Exported by "
        "napari-dfct."
    )


def config_block(cfg: dict, sample_source: str) -> dict[str, Any]:
    """The ``config.napari_dfct`` entry: the model's loss, window, training recipe and
    parameters, data and selection, as napari-dfct saved them."""
    keep = (
        "name",
        "preset",
        "model",
        "loss",
        "window",
        "train",
        "best_epoch",
        "best_val_loss",
        "epochs_run",
        "data_shape",
        "dataset",
        "created",
        "versions",
    )
    block = {k: cfg[k] for k in keep if k in cfg}
    block["test_tensor_source"] = sample_source
    return block


def _what_it_does(arch: dict, k: int, depth: int, halo: int, smallest: int) -> str:
    """The README's "What it does": the input, the output and its halo, the network."""
    residual = "input + correction" if not k else f"centre slice z (channel {k}) + correction"
    ops = "bilinear upsampling"
    if depth:
        ops = (
            "3x3x3 convolutions, max pooling and trilinear upsampling by (1, 2, 2) (in-plane "
            "only: z keeps its resolution at every level)"
        )
    return f"""{_input_text(k, 2 ** int(arch.get("depth", 4)), smallest, depth)} The
output is the streak-reduced {"volume" if depth else "slice (z)"} in the same units, of the
input's size; its halo of {halo} pixels is the network's receptive radius: a tool that
predicts a large slice in tiles should crop that much from every tile's inner edges. The
network is a {3 if depth else 2}-D residual U-Net (output = {residual}) with
{arch.get("depth", "?")} down and up blocks (the paper: four), {ops}, batch
normalisation, ReLU, {arch.get("base_channels", "?")} channels at the first level (the paper:
64), doubling at every level.
"""


def _volume_text(depth: int) -> str:
    """The README's section on a 3-D model's z axis (empty for 2-D and 2.5-D models)."""
    if not depth:
        return ""
    inner, ends = z_plan(depth)
    if ends:
        halo = (
            f"The output declares a z halo of {ends} slices: a tool that predicts a volume "
            f"in blocks along z should crop that many slices from every block's faces. "
        )
        test = (
            f"{inner} consecutive slices of one scan with {ends} slices reflected at each "
            f"end ({depth} in all); its test output without its {ends} end slices on either "
            f"side is napari-dfct's prediction of those {inner} slices"
        )
        extended = (
            f", the volume first extended by {ends} slices reflected at each end (slice -1 "
            "is slice 1: NumPy's `reflect` padding)"
        )
    else:
        halo, extended = "", ""
        test = f"{depth} consecutive slices of one scan; its test output is napari-dfct's "
        test += "prediction of them"
    return f"""
## Volumes: z-chunks

napari-dfct predicts a volume in z-chunks of {depth} slices (the depth of the training
patches) that overlap by {depth // 2} slices and are blended along z{extended}, so that
every slice sits inside a chunk as the middle slices of a training patch do. {halo}The
test input is one such chunk: {test} (`napari_dfct.predict`).
"""


def _volume_limits(depth: int) -> str:
    """The README's line on what a 3-D package does not describe (empty for 2-D)."""
    if not depth:
        return ""
    return (
        "\n\nNot in this 3-D package: napari-dfct's blending of overlapping z-chunks and the "
        "reflection at a volume's ends are no bioimage.io operations, so a bioimage.io tool "
        "runs the network on the volume or blocks it is given (zero padding at their z "
        "faces) and its output near those faces differs from `dfct predict`'s."
    )


def readme_text(
    cfg: dict,
    n_params: int,
    sample_source: str,
    arch_file: str,
    weights_file: str,
    halo: int,
    smallest: int,
) -> str:
    """The package's README (bioimage.io ``documentation``), in Markdown."""
    train = cfg.get("train") or {}
    window = cfg.get("window") or {}
    low, high = float(window.get("low", math.nan)), float(window.get("high", math.nan))
    arch = cfg.get("model") or {}
    rows = "\n".join(f"| {k} | {train[k]} |" for k in _TRAIN_KEYS if k in train)
    best = cfg.get("best_val_loss")
    best_text = f"{float(best):.6g}" if isinstance(best, int | float) else "?"
    data = cfg.get("dataset") or {}
    shape = cfg.get("data_shape")
    if data.get("scans"):
        data_text = (
            f"{len(data['scans'])} scans ({len(data.get('slices', []))} slices); "
            f"validation scans: {', '.join(data.get('val_scans', [])) or '?'}"
        )
    elif shape:
        data_text = f"one volume of {' x '.join(str(s) for s in shape)} (slices x rows x cols)"
    else:
        data_text = "not recorded"
    k, depth = _context(cfg), config_patch_depth(cfg)
    keys = ("base_channels", "depth", "in_channels", "out_channels", "bilinear", "context", "dims")
    kwargs = {key: arch[key] for key in keys if key in arch}
    shape = "(1, 1, Z, H, W)" if depth else f"(1, {2 * k + 1}, H, W)"
    return f"""# {cfg.get("name", "napari-dfct model")}: DFCT streak reduction

{description_text(cfg, n_params)}

## What it does

{_what_it_does(arch, k, depth, halo, smallest)}
{_volume_text(depth)}
## Intensity window (pre- and post-processing)

Input and target were clipped to the window [{low:.6g}, {high:.6g}] and scaled to [0, 1]
for training. The package does the same:

* pre-processing: `clip` (min {low:.6g}, max {high:.6g}), then `scale_linear`
  (gain 1/{high - low:.6g}, offset {-low / (high - low):.6g});
* post-processing: `scale_linear` (gain {high - low:.6g}, offset {low:.6g}) back to the
  input's units (no clipping: values outside the window stay outside).

## Loss and training

Loss: {loss_text(cfg)}. The loss is a pixel-wise L1/L2 map amplified spatially (A_S,
towards the iso-centre) and/or in frequency (A_F, towards high frequencies), as in the
paper; in its `paper` mode a frequency weight alone only rescales the loss (the mean of
the inverse FFT keeps only the DC bin), in `spectral` mode it weights the spectrum of the
error. Best epoch {cfg.get("best_epoch", "?")} of {cfg.get("epochs_run", "?")}
(validation loss {best_text}, selected by the {train.get("select", "amplified")}
validation loss). Training data: {data_text}.

| parameter | value |
| --- | --- |
{rows}

The full configuration is in `config.napari_dfct` of `rdf.yaml`.

## Test tensors and cover

Test input: {sample_source}. The cover shows it (left) and the model's output (right),
both displayed in the intensity window{" (the central slice)" if depth else ""}.

## Use without napari-dfct

```python
import numpy as np, torch
from {arch_file[:-3]} import ResidualUNet

net = ResidualUNet(**{kwargs})
net.load_state_dict(torch.load("{weights_file}", weights_only=True))
net.eval()
low, high = {low!r}, {high!r}  # the intensity window
x = np.load("test_input.npy")  # {shape}, input units
xn = (np.clip(x, low, high) - low) / (high - low)
with torch.no_grad():
    y = net(torch.from_numpy(xn.astype(np.float32))).numpy() * (high - low) + low
```

With napari-dfct: `dfct predict` and the napari plugin use the original model folder.

## Validation

The package's test: `test_output.npy` is this model's output on `test_input.npy`, computed
by napari-dfct through the same pre-processing, network and post-processing
(`bioimageio test` reproduces it). That checks the package, not the model's quality: judge
the model on held-out scans with CNR (lung vs air ROI) and FWHM of the air-tissue edge, as
the paper does (`dfct measure`, the napari plugin's Measure widget).

## Limitations

The model is as good as its training data: a model trained on simulated slices (napari-dfct's
phantom) is a demonstration, not a tool for real scans. Compare models on held-out scans
with CNR and FWHM (and, where a truth exists, error-based metrics): a higher CNR from
smoothing real texture is not a gain.{_volume_limits(depth)}

## Citation

{PAPER}

Code: napari-dfct ({SOURCE_URL}), BSD-3-Clause.
"""
