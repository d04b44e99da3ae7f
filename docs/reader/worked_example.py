"""The worked example of docs/reader-study.md: a reader study on the simulator with model
observers.

    python docs/reader/worked_example.py [WORK_DIR] [--epochs N]

1. simulates a training set (12 independent specimens, 128x128, seed 0) and a test volume
   (4 slices of one acquisition, 128x128, seed 1000) with ``dfct simulate``;
2. trains two models with ``dfct train --recipe quick`` for a few epochs (default 4): the
   L2 baseline ``l2`` and the amplified ``l2+s+f-nonlinear``;
3. predicts the test volume with both;
4. makes a study of the input, the two predictions and the target on the 4 test slices
   (every pair on every slice, 10 % repeated), with the test truth stored;
5. lets 5 model observers answer every trial (noise 0.01 of the window's width);
6. writes the report to docs/data/reader/worked-example.txt and .json.

About 10 minutes on 2 CPU cores; WORK_DIR (default /tmp/dfct-reader-example) keeps the
data, the models and the study, and finished steps are reused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "data" / "reader"
MODELS = {"l2": ["--loss", "l2"], "amplified": ["--loss", "l2+s+f-nonlinear"]}


def dfct(*args: str) -> str:
    cmd = [sys.executable, "-m", "napari_dfct", *args]
    print("$ dfct", " ".join(args), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(res.stderr)
    return res.stdout


def main(argv: list[str]) -> None:
    epochs = "4"
    if "--epochs" in argv:
        k = argv.index("--epochs")
        epochs = argv[k + 1]
        del argv[k : k + 2]
    work = Path(argv[0] if argv else "/tmp/dfct-reader-example")
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "train" / "input.tif").is_file():
        dfct("simulate", str(work / "train"), "--specimens", "12", "--size", "128", "--quiet")
    if not (work / "test" / "input.tif").is_file():
        dfct("simulate", str(work / "test"), "--slices", "4", "--size", "128", "--seed", "1000",
             "--quiet")  # fmt: skip
    images = {"input": work / "test" / "input.tif"}
    for name, loss in MODELS.items():
        model = work / "models" / name
        if not (model / "model.safetensors").is_file():
            dfct("train", "--data", str(work / "train"), "--out", str(model), *loss,
                 "--recipe", "quick", "--epochs", epochs, "--seed", "0", "--no-progress")  # fmt: skip
        pred = work / f"pred-{name}.tif"
        if not pred.is_file():
            dfct("predict", "--model", str(model), "--input", str(images["input"]),
                 "--out", str(pred))  # fmt: skip
        images[name] = pred
    images["target"] = work / "test" / "target.tif"
    study = work / "study"
    if not (study / "study.json").is_file():
        dfct("reader-study", "make", str(study),
             *[a for n, p in images.items() for a in ("--image", f"{n}={p}")],
             "--slices", "all", "--seed", "0", "--reference", str(work / "test" / "truth.tif"))  # fmt: skip
    if not (study / "judgments.csv").is_file():
        dfct("reader-study", "simulate", str(study), "--readers", "5", "--noise", "0.01")
    text = dfct("reader-study", "report", str(study))
    result = json.loads(dfct("reader-study", "report", str(study), "--json"))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "worked-example.txt").write_text(text.replace(str(work), "WORK_DIR"))
    result["study"] = "WORK_DIR/study"
    (OUT / "worked-example.json").write_text(json.dumps(result, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
