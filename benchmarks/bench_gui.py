"""How fluid the viewer stays while models train and predict: event-loop gaps, as a user
feels them, and the GUI's training throughput relative to ``dfct train``.

A real viewer (``xvfb-run -a`` on a machine without a display) holds the napari sample
(16 slices of 256x256). A 10 ms ``QTimer`` records when the Qt event loop gets to run;
a gap between two ticks longer than 10 ms is time the viewer could not react (drag, scroll,
repaint). Four phases, each measured on the same viewer:

1. ``idle``: nothing running;
2. ``train``: the Train widget trains preset ``small`` on the sample (patch 64, batch 8,
   4 patches per slice) for ``--train-seconds`` and at least three epochs, then *Stop*;
3. ``predict``: the Predict widget's *Whole volume* with the model just trained,
   repeated until the phase has lasted 5 s (``--quick``) or 10 s, so that its p99 rests
   on enough ticks (one run of the sample takes about 1.5 s); the first run adds the
   prediction layer, the others fill it again;
4. ``drag``: the Measure widget with five image layers (truth, target, input, the
   training preview, the prediction) while the signal ROI is moved by scripted
   ``set_data`` events at 60 Hz, along a smooth path of new sub-pixel positions (none
   repeats, as in a hand's drag, so no cached measurement is reused). The same drag
   runs first with no widget of this package listening, as a baseline.

Three baselines measure napari's own work in the same run and are printed but not part
of the last line: ``add a layer (napari)`` (one 256x256 image layer added: what the first
Start click and the first predicted slice each do), ``repaint a label (napari)`` (a
docked label's text changed at 20 Hz: the cost of any repaint in napari's window) and
``drag (napari alone)``.

For each phase the script prints the worst gap, the 99th percentile and the median (ms).
Then it trains the same settings with ``dfct train`` in a subprocess and prints the GUI's
training throughput (patches/s over the epochs after the first) relative to the CLI's.
The last line reads ``worst gap N ms, p99 M ms, throughput ratio R`` (N and M: the largest
over the phases).

Usage::

    xvfb-run -a python benchmarks/bench_gui.py --quick        # about 2 minutes
    xvfb-run -a python benchmarks/bench_gui.py --json out.json
    PYTHONPATH=OLD/src xvfb-run -a python benchmarks/bench_gui.py --quick  # an earlier
        # version of the package (OLD: e.g. ``git archive REV src | tar -x -C OLD``)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SETTINGS = {
    "preset": "small",
    "batch_size": 8,
    "patch": 64,
    "patches_per_slice": 4,
    "device": "cpu",
}


def gap_stats(ticks: list[float], t0: float, t1: float) -> dict:
    """Gaps (ms) between consecutive ticks inside ``[t0, t1]``, the ends included."""
    inside = [t for t in ticks if t0 <= t <= t1]
    edges = np.concatenate([[t0], inside, [t1]])
    d = np.diff(edges) * 1000.0
    k = int(np.argmax(d))
    slow = sorted((float(edges[i] - t0), float(d[i])) for i in np.argsort(d)[-5:])
    return {
        "worst_ms": float(d.max()),
        "p99_ms": float(np.percentile(d, 99)),
        "median_ms": float(np.median(d)),
        "ticks": len(inside),
        "seconds": float(t1 - t0),
        "worst_at_s": float(edges[k] - t0),
        "slowest": [[round(a, 2), round(b, 1)] for a, b in slow],
    }


def run_loop(app, seconds: float, until=None, poll_ms: int = 20) -> None:
    """Run the real Qt event loop for ``seconds`` or until ``until()`` is true."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    end = time.perf_counter() + seconds
    check = QTimer()
    check.setInterval(poll_ms)
    check.timeout.connect(
        lambda: (
            loop.quit()
            if (time.perf_counter() >= end or (until is not None and until()))
            else None
        )
    )
    check.start()
    loop.exec()
    check.stop()


def throughput(history: list[dict], batch: int) -> float:
    """Training patches per second over the epochs after the first (warm-up)."""
    rows = [h for h in history if int(h.get("epoch", 0)) > 1 and h.get("seconds")]
    if not rows:
        return float("nan")
    patches = sum(int(h.get("steps") or 0) * batch for h in rows)
    return patches / sum(float(h["seconds"]) for h in rows)


def cli_throughput(work: Path, inp: np.ndarray, tgt: np.ndarray, epochs: int) -> float:
    from napari_dfct.io import write_volume

    a = write_volume(work / "input.tif", inp)
    b = write_volume(work / "target.tif", tgt)
    out = work / "cli-model"
    cmd = [
        sys.executable,
        "-m",
        "napari_dfct",
        "train",
        "--input",
        str(a),
        "--target",
        str(b),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--patience",
        str(epochs + 1),
        "--preset",
        SETTINGS["preset"],
        "--batch-size",
        str(SETTINGS["batch_size"]),
        "--patch",
        str(SETTINGS["patch"]),
        "--patches-per-slice",
        str(SETTINGS["patches_per_slice"]),
        "--device",
        SETTINGS["device"],
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    history = json.loads((out / "history.json").read_text())
    return throughput(history, SETTINGS["batch_size"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short phases (about 2 minutes)")
    ap.add_argument("--train-seconds", type=float, default=None)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="experiment: torch threads of the GUI's training job (default: the "
        "widget's choice, every core of the affinity mask)",
    )
    args = ap.parse_args(argv)
    if args.threads:
        from napari_dfct.widgets import _workers

        _workers.training_threads = lambda device, n=args.threads: n
    idle_s, drag_s, predict_s = (3.0, 4.0, 5.0) if args.quick else (10.0, 10.0, 10.0)
    train_s = args.train_seconds or (20.0 if args.quick else 40.0)

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication, QLabel

    from napari_dfct._sample_data import make_sample_data
    from napari_dfct.widgets.measure import ROI_LAYER_NAME, MeasureWidget
    from napari_dfct.widgets.predict import PredictWidget
    from napari_dfct.widgets.train import TrainWidget

    work = Path(tempfile.mkdtemp(prefix="dfct-bench-gui-"))
    viewer = napari.Viewer(show=True)
    for data, kw, kind in make_sample_data():
        getattr(viewer, f"add_{kind}")(data, **kw)
    app = QApplication.instance()
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train")
    predict = PredictWidget(viewer)
    viewer.window.add_dock_widget(predict, name="Predict")
    for name, value in {
        **SETTINGS,
        "epochs": 10_000,
        "patience": 10_000,
        "save_under": str(work),
        "run_name": "gui-model",
    }.items():
        getattr(train.fields, name).value = value
    run_loop(app, 2.0)  # let the viewer settle (first paint, warm-up imports)

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    phases: dict[str, dict] = {}

    t0 = time.perf_counter()
    run_loop(app, idle_s)
    phases["idle"] = gap_stats(ticks, t0, time.perf_counter())

    # a baseline for the first Start click and the first predicted slice, which each add
    # a layer: napari's own cost of adding one 256x256 image layer (and its first paint)
    t0 = time.perf_counter()
    QTimer.singleShot(
        0, lambda: viewer.add_image(np.zeros((256, 256), np.float32), name="baseline layer")
    )
    run_loop(app, 1.0)
    baseline = {"add a layer (napari)": gap_stats(ticks, t0, time.perf_counter())}
    viewer.layers.remove("baseline layer")
    run_loop(app, 1.0)
    # and the cost of any repaint in napari's window: a docked label changes its text at
    # 20 Hz (under software OpenGL the whole window is composed again for each change)
    label = QLabel("0")
    viewer.window.add_dock_widget(label, name="baseline label", area="left")
    run_loop(app, 0.5)
    n = {"k": 0}

    def relabel():
        n["k"] += 1
        label.setText(str(n["k"]))

    tick20 = QTimer()
    tick20.setInterval(50)
    tick20.timeout.connect(relabel)
    t0 = time.perf_counter()
    tick20.start()
    run_loop(app, 2.0)
    tick20.stop()
    baseline["repaint a label (napari)"] = gap_stats(ticks, t0, time.perf_counter())
    viewer.window.remove_dock_widget(label)
    run_loop(app, 0.5)

    t0 = time.perf_counter()
    train.start_button.native.click()
    run_loop(app, train_s)  # at least this long, and at least three epochs (throughput)
    run_loop(app, 10 * train_s, until=lambda: len(train._history) >= 3)
    train.stop()
    run_loop(app, 300.0, until=lambda: not train.is_running)
    phases["train"] = gap_stats(ticks, t0, time.perf_counter())
    history = json.loads((work / "gui-model" / "history.json").read_text())
    gui_rate = throughput(history, SETTINGS["batch_size"])

    predict.fields.model.value = (work / "gui-model").resolve()
    predict.fields.image.value = viewer.layers["input (1 rotation)"]
    predict.fields.device.value = "cpu"
    t0 = time.perf_counter()
    predict_runs = 0
    while predict_runs == 0 or time.perf_counter() - t0 < predict_s:
        predict.volume_button.native.click()  # the first run adds the layer, later reuse it
        run_loop(app, 0.2)
        run_loop(app, 300.0, until=lambda: not predict.is_running)
        predict_runs += 1
    phases["predict"] = gap_stats(ticks, t0, time.perf_counter())

    rois = viewer.layers[ROI_LAYER_NAME]
    base = [np.asarray(d, float).copy() for d in rois.data]
    step = {"k": 0}

    def move():
        step["k"] += 1
        shifted = [b.copy() for b in base]
        # the signal square along a smooth path of new (sub-pixel) positions, as a hand
        # drags it: no position repeats, so no cache of a measurement is ever reused
        k = step["k"]
        shifted[0] = shifted[0] + [6.0 * np.sin(0.1 * k), 6.0 * np.sin(0.0713 * k)]
        rois.data = shifted

    def drag() -> dict:
        mover = QTimer()
        mover.setInterval(16)
        mover.timeout.connect(move)
        t0 = time.perf_counter()
        mover.start()
        run_loop(app, drag_s)
        mover.stop()
        out = gap_stats(ticks, t0, time.perf_counter())
        rois.data = base
        run_loop(app, 0.5)
        return out

    # the baseline: the same drag with no widget of this package listening (napari's
    # own work: the shapes update, the canvas repaint and the window's composition)
    baseline["drag (napari alone)"] = drag()
    measure = MeasureWidget(viewer)
    viewer.window.add_dock_widget(measure, name="Measure")
    run_loop(app, 1.0)
    n_images = sum(1 for ly in viewer.layers if ly._type_string == "image")
    phases["drag"] = drag()
    timer.stop()

    epochs = max(2, min(4, len(history)))
    cli_rate = cli_throughput(
        work,
        viewer.layers["input (1 rotation)"].data,
        viewer.layers["target (20 rotations)"].data,
        epochs,
    )
    ratio = gui_rate / cli_rate if cli_rate > 0 else float("nan")
    viewer.close()

    print(
        f"{'phase':20s} {'worst':>8s} {'p99':>8s} {'median':>8s} {'ticks':>6s} {'s':>6s}"
        "  five slowest gaps (s into the phase: ms)"
    )
    for name, p in {**phases, **baseline}.items():
        slow = ", ".join(f"{a:.1f}: {b:.0f}" for a, b in p["slowest"])
        print(
            f"{name:20s} {p['worst_ms']:8.1f} {p['p99_ms']:8.1f} {p['median_ms']:8.1f} "
            f"{p['ticks']:6d} {p['seconds']:6.1f}  {slow}"
        )
    print(
        f"drag: {n_images} image layers measured; prediction: {predict_runs} whole-volume "
        f"runs; training: {len(history)} epochs in the GUI, {gui_rate:.1f} patches/s; "
        f"dfct train {cli_rate:.1f} patches/s"
    )
    worst = max(p["worst_ms"] for p in phases.values())
    p99 = max(p["p99_ms"] for p in phases.values())
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "phases": phases,
                    "baseline": baseline,
                    "gui_patches_per_s": gui_rate,
                    "cli_patches_per_s": cli_rate,
                    "throughput_ratio": ratio,
                    "settings": SETTINGS,
                },
                indent=1,
            )
        )
    print(f"worst gap {worst:.0f} ms, p99 {p99:.0f} ms, throughput ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
