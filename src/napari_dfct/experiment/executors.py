"""Executors of the grid: this process, a local process pool, or submitit (Slurm).

:func:`run_grid` prepares a grid (:func:`napari_dfct.experiment.layout.prepare_grid`),
skips finished runs, leaves alone runs that another process is training or that an
earlier Slurm submission still holds, and hands the others to an executor:

- ``local``: this process (``jobs == 1``) or a pool of ``jobs`` spawned processes, each
  pinned to one GPU when several exist;
- ``slurm``: one submitit job array (:class:`SlurmOptions`);
- ``submitit-local``: submitit's local executor (the same submission path, on this machine).

Every run goes through :func:`napari_dfct.experiment.run.run_one`, so the executors only
differ in where it runs.

No pool worker outlives the grid: each ends when the grid's process ends, by any signal,
``SIGKILL`` included (:func:`napari_dfct.experiment._procs.die_with_parent`). When the grid
stops early (``SIGINT``/``SIGTERM`` as :class:`GridStopped`, or an error), the queued runs
are cancelled and the running ones stopped (their folders stay incomplete, with an
``error.txt``, and are moved aside or resumed on the next start); finished runs are kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ._procs import GridStopped, die_with_parent
from ._util import atomic_write_json, timestamp
from .layout import LOG_FILE, METRICS_FILE, _move_aside, prepare_grid, prune_aside
from .lock import grid_lock
from .run import _can_resume, run_one, running_elsewhere
from .status import _log, aside_summary, queued_runs

__all__ = [
    "EXECUTORS",
    "GridRunError",
    "GridStopped",
    "SlurmOptions",
    "run_grid",
]

EXECUTORS = ("local", "slurm", "submitit-local")
STOP_GRACE = 10.0
"""Seconds a stopped grid gives its pool workers to end their runs before killing them."""


class GridRunError(RuntimeError):
    """Some runs of a grid failed (the others finished; start the grid again to redo them)."""


# --------------------------------------------------------------------------- options
@dataclasses.dataclass
class SlurmOptions:
    """Resources of each run when the grid goes through submitit.

    Attributes
    ----------
    partition : str or None
        Slurm partition (``None``: the cluster's default).
    gpus_per_job, cpus_per_job : int
        Resources of each array task.
    time : int
        Time limit of each run, in minutes.
    mem : float or None
        Memory per run, in GB (``None``: the cluster's default).
    array_parallelism : int
        At most this many runs at a time.
    folder : str or None
        Where submitit keeps job scripts, pickled calls and logs (default ``OUT/slurm``).
    setup : list of str
        Shell lines run before each job (``module load cuda``, ``source venv/bin/activate``).
    extra : dict
        More submitit Slurm parameters without the ``slurm_`` prefix (``account``, ``qos``,
        ``constraint``, ``exclude``...).
    """

    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    time: int = 240
    mem: float | None = None
    array_parallelism: int = 32
    folder: str | None = None
    setup: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- messages
def _fmt(v, spec=".3g") -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not np.isfinite(v) else format(v, spec)


def _short_error(exc: BaseException) -> str:
    """One line for an exception (submitit's FailedJobError carries a whole traceback)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


def _summary_line(rec: dict) -> str:
    return (
        f"{rec['name']:<22} seed {rec['seed']:<3} CNR {_fmt(rec.get('cnr'))}"
        f"  FWHM {_fmt(rec.get('fwhm'))}  PSNR {_fmt(rec.get('psnr'))}"
        f"  SSIM {_fmt(rec.get('ssim'))}  epochs {rec.get('epochs_run')}"
        f" (best {rec.get('best_epoch')}, {rec.get('stopped')})"
        f"  {_fmt(rec.get('seconds'), '.0f')} s on {rec.get('device')}"
    )


# --------------------------------------------------------------------------- executors
_WORKER = {"in_run": False, "stopping": False}
"""A pool worker's state: inside a run, and whether a stop signal has come."""


def _init_worker(
    gpu_queue, threads: int | None, parent_pid: int | None = None
) -> None:  # pragma: no cover - subprocess
    """Pool initializer: pin this worker to one GPU, bound its CPU threads, end it with
    its parent (:func:`die_with_parent`), leave ``SIGINT`` to the parent (Ctrl-C reaches
    the whole process group; the parent stops the workers) and stop the current run on
    ``SIGTERM`` (:func:`_worker_signal`)."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _worker_signal)
    if gpu_queue is not None:
        try:
            gpu = gpu_queue.get_nowait()
        except Exception:  # noqa: BLE001 - an empty or closed queue: no GPU assigned
            gpu = None
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(int(threads))


def _worker_signal(signum, frame) -> None:  # pragma: no cover - subprocess
    """``SIGTERM`` in a pool worker: stop the current run through an exception (so
    :func:`run_one` writes ``error.txt`` and removes its heartbeat), then end the worker
    (:func:`_pool_run`); between runs, end it at once. Further signals while the run
    cleans up are ignored (the pool sends one to every worker when one of them ends; the
    parent kills a worker that takes too long)."""
    if not _WORKER["in_run"]:
        os._exit(128 + int(signum))
    if not _WORKER["stopping"]:
        _WORKER["stopping"] = True
        # the exception can be lost (raised inside an import or a finalizer that
        # swallows it): end the worker a little later in any case
        timer = threading.Timer(STOP_GRACE / 2, os._exit, args=(128 + int(signum),))
        timer.daemon = True
        timer.start()
        raise GridStopped(signum)


def _pool_run(spec: dict) -> dict:  # pragma: no cover - subprocess
    """:func:`run_one` in a pool worker; a stopped run ends the worker (it takes no
    further run from the queue)."""
    if _WORKER["stopping"]:
        os._exit(128 + int(signal.SIGTERM))
    _WORKER["in_run"] = True
    try:
        return run_one(spec)
    except GridStopped as exc:
        os._exit(exc.exit_status)
    finally:
        _WORKER["in_run"] = False


def _quiet_cancelled_race(manager: threading.Thread | None) -> None:
    """Silence one known race of ``ProcessPoolExecutor`` before Python 3.12: when the
    workers of a stopping pool die, its manager thread sets an exception on the futures
    of queued runs that were already cancelled and dies with ``InvalidStateError`` (a
    traceback on stderr, nothing lost). Only that exception of that thread is dropped."""
    if manager is None or sys.version_info >= (3, 12):
        return
    previous = threading.excepthook

    def hook(args):
        if args.thread is manager and issubclass(args.exc_type, cf.InvalidStateError):
            return
        previous(args)

    threading.excepthook = hook


def _stop_pool(pool: cf.ProcessPoolExecutor, futures, grace: float = STOP_GRACE) -> None:
    """Stop a process pool now: cancel queued runs, ask every worker to stop
    (``SIGTERM``), wait up to ``grace`` seconds, kill those still alive, shut down."""
    _quiet_cancelled_race(getattr(pool, "_executor_manager_thread", None))
    for fut in futures:
        fut.cancel()
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for proc in procs:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            proc.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        with contextlib.suppress(OSError, ValueError, AssertionError, AttributeError):
            if proc.is_alive():
                proc.kill()
                proc.join(5.0)
    pool.shutdown(wait=False, cancel_futures=True)


def _cuda_count(device: str) -> int:
    if not (device == "auto" or device.startswith("cuda")):
        return 0
    if "," not in device and ":" in device:
        return 0  # an explicit device index: leave it alone
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 # pragma: no cover
        return 0


def _visible_gpus(n_gpu: int) -> list[str]:
    """The GPU ids to hand to workers: this process's ``CUDA_VISIBLE_DEVICES`` if set."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [g.strip() for g in env.split(",") if g.strip()] if env else []
    return ids[:n_gpu] if ids else [str(i) for i in range(n_gpu)]


def pool_threads(jobs: int) -> int:
    """CPU threads of each of ``jobs`` pool workers: the cores this process may use (its
    affinity mask, capped by a cgroup CPU quota), shared out; at least one."""
    from .._threads import usable_cores

    return max(1, usable_cores() // max(1, int(jobs)))


def _run_local(specs, jobs, on_done, bar):
    if jobs <= 1:
        for spec in specs:
            label = f"{spec['name']} s{spec['seed']}"

            def callback(ev, label=label):
                if bar is not None:
                    bar.set_postfix_str(
                        f"{label} epoch {ev.epoch}/{ev.epochs} val {ev.val_loss:.4g}", refresh=True
                    )

            try:
                rec = run_one(spec, callback=callback)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - reported, the grid goes on
                on_done(spec, None, exc)
            else:
                on_done(spec, rec, None)
        return
    ctx = mp.get_context("spawn")
    device = str(specs[0].get("device", "auto")) if specs else "auto"
    n_gpu = _cuda_count(device)
    queue = None
    threads = pool_threads(jobs)
    if n_gpu > 1:
        gpus = _visible_gpus(n_gpu)
        queue = ctx.Queue()
        for i in range(jobs):
            queue.put(gpus[i % len(gpus)])
    pool = cf.ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(queue, threads, os.getpid()),
    )
    futures: dict = {}
    try:
        futures = {pool.submit(_pool_run, spec): spec for spec in specs}
        for fut in cf.as_completed(futures):
            spec = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - incl. a worker killed (BrokenProcessPool)
                on_done(spec, None, exc)
            else:
                on_done(spec, rec, None)
    except BaseException:
        # SIGINT/SIGTERM (GridStopped), Ctrl-C or an error of ours: no worker outlives this
        _stop_pool(pool, futures)
        raise
    else:
        pool.shutdown(wait=True)


def _run_submitit(
    specs, cluster, slurm: SlurmOptions, out_dir: Path, wait: bool, on_done, poll: float = 2.0
):
    try:
        import submitit
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(
            "the slurm executor needs submitit: pip install 'napari-dfct[slurm]'"
        ) from exc
    folder = Path(slurm.folder) if slurm.folder else out_dir / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {
        "name": "dfct-grid",
        "timeout_min": int(slurm.time),
        "gpus_per_node": int(slurm.gpus_per_job),
        "cpus_per_task": int(slurm.cpus_per_job),
        "tasks_per_node": 1,
        "nodes": 1,
    }
    if slurm.mem:
        params["mem_gb"] = float(slurm.mem)
    if cluster == "slurm":
        params["slurm_array_parallelism"] = int(slurm.array_parallelism)
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        if slurm.setup:
            params["slurm_setup"] = list(slurm.setup)
        for key, value in (slurm.extra or {}).items():
            params[f"slurm_{key}"] = value
    try:
        executor.update_parameters(**params)
    except (ValueError, TypeError, NameError) as exc:  # submitit: NameError on unknown names
        raise ValueError(f"bad Slurm parameters: {str(exc).splitlines()[0]}") from None
    specs = [
        dict(s, threads=int(slurm.cpus_per_job) if slurm.cpus_per_job else None) for s in specs
    ]
    jobs = executor.map_array(run_one, specs)
    submitted = [
        {"name": s["name"], "seed": s["seed"], "job_id": str(j.job_id)}
        for s, j in zip(specs, jobs)
    ]
    atomic_write_json(
        out_dir / f"submitted-{timestamp()}.json",
        {"executor": cluster, "folder": str(folder), "jobs": submitted},
    )
    for item in submitted:
        _log(out_dir, {"status": "submitted", **item})
    if not wait:
        return jobs
    pending = list(zip(specs, jobs))
    while pending:
        still = []
        for spec, job in pending:
            if not job.done():
                still.append((spec, job))
                continue
            try:
                rec = job.result()
            except Exception as exc:  # noqa: BLE001
                on_done(spec, None, exc)
            else:
                on_done(spec, rec, None)
        pending = still
        if pending:
            time.sleep(poll)
    return jobs


def run_grid(
    train: Any,
    test: Any,
    out_dir: str | os.PathLike,
    configs: Iterable | None = None,
    seeds: Iterable[int] | str = (0,),
    train_config: Any = None,
    executor: str = "local",
    jobs: int = 1,
    *,
    roi: dict | None = None,
    device: str | None = None,
    slurm: SlurmOptions | dict | None = None,
    wait: bool = True,
    report: bool = True,
    progress: bool = True,
    print_fn: Callable[[str], None] | None = None,
    keep_state: bool = False,
    resume: bool = False,
    stale_after: float = 1800.0,
    controls: bool = False,
    test_slices: str | None = None,
) -> Path:
    """Train and evaluate every (configuration, seed) of a grid; skip finished runs.

    Parameters
    ----------
    train : path, (input, target) paths or arrays, or Simulation
        The training pair: a ``dfct simulate`` folder (``input.tif``, ``target.tif``), two
        volume files, two float32 (Z, Y, X) arrays (saved under ``OUT/data/train``), or a
        :class:`napari_dfct.simulate.Simulation`.
    test : path, dict or Simulation
        The held-out test set: a folder with ``input.tif``, ``target.tif``, optional
        ``truth.tif`` and ``meta.json`` (ROIs, line, slice), a dict of such paths, a
        Simulation (saved under ``OUT/data/test``), or a data set of scans (a pairs CSV or
        a folder of scans, e.g. ``dfct simulate --specimens N --slices Z``): every scan is
        predicted from its own volume and its ``test_slices`` are measured
        (:mod:`napari_dfct.experiment.volume_test`).
    out_dir : path
        The grid folder (created; an existing one is continued).
    configs : iterable of LossConfig or names, optional
        Default: the paper's 18 (:func:`make_configs`).
    seeds : iterable of int or str
        ``[0, 1]``, ``"0-9"``...
    train_config : TrainConfig or dict, optional
        Training options shared by every run; ``loss`` and ``seed`` are set per run.
    executor : {"local", "slurm", "submitit-local"}
        ``local``: this process (``jobs == 1``) or a pool of ``jobs`` spawned processes (one
        GPU each when several exist); ``slurm``: a submitit job array; ``submitit-local``:
        submitit's local executor (the same submission path, on this machine).
    jobs : int
        Parallel runs of the local executor.
    roi : dict, optional
        ``signal_center``, ``background_center``, ``line``, ``roi_size``, ``slice``,
        overriding the test set's ``meta.json``.
    device : str, optional
        Device of every run (default: the training config's).
    slurm : SlurmOptions or dict, optional
        Resources for the submitit executors.
    wait : bool
        For submitit executors: wait for the jobs (and report), or return after submission.
    report : bool
        Write the report (:func:`grid_report`) at the end.
    progress : bool
        Show a tqdm progress bar (stderr) and a summary line per finished run.
    print_fn : callable, optional
        Where summary lines go (default: ``tqdm.write`` to stderr).
    keep_state : bool
        Keep each finished run's resume files (the optimizer state: about twice the model's
        size per run, so off by default).
    resume : bool
        A run folder without ``metrics.json`` whose model folder holds a training state
        (saved every 30 s of training) continues from the state's epoch
        (:func:`napari_dfct.train.fit` with ``resume=True``) instead of being moved aside
        and redone. Off by default: an interrupted run is redone from scratch.
    stale_after : float
        Seconds after which an unfinished run folder whose ``running.json`` heartbeat
        stopped counts as dead (see :func:`running_elsewhere`); younger ones are left
        alone, so two grids on one folder never train the same run twice at once.
    controls : bool
        Also train each amplified configuration's scale-matched control (the plain loss
        times the configuration's effective loss scale, e.g. ``l2@1.47``;
        :func:`add_controls`).
    test_slices : str, optional
        With a test data set of scans: the slices of every scan to measure (``"2-3"``,
        ``"3,5"``, ``"all"``, ``"center"``; default each scan's own choice in the data
        set). Part of the grid's settings: a grid started again with others is refused.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        Bad data, options, or an output folder made with other settings, that is a file
        or cannot be written; :class:`~napari_dfct.experiment.lock.GridLocked` (a
        ValueError) when another grid runs on ``out_dir`` (one grid per folder:
        :func:`~napari_dfct.experiment.lock.grid_lock`).
    GridRunError
        Some runs failed (after all the others have finished); they are listed in
        ``OUT/grid-log.jsonl`` and each failed run folder holds an ``error.txt``.
    """
    from tqdm.auto import tqdm

    _check_options(executor, jobs)
    jobs = int(jobs)
    with grid_lock(out_dir) as out_dir:  # one grid per folder (GridLocked otherwise)
        _, specs = prepare_grid(
            train,
            test,
            out_dir,
            configs,
            seeds,
            train_config,
            roi=roi,
            device=device,
            keep_state=keep_state,
            resume=resume,
            controls=controls,
            test_slices=test_slices,
        )
        todo, skipped, busy, unknown = _sort_runs(specs, out_dir, stale_after)
        pruned = _prune_asides(specs, out_dir, busy)

        bar = tqdm(
            total=len(specs) - len(busy),
            initial=skipped,
            desc="grid",
            unit="run",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        say = print_fn or (lambda s: tqdm.write(s, file=sys.stderr))
        if progress:
            _announce(say, out_dir, len(specs), skipped, unknown, busy, pruned)
        failures: list[tuple[dict, BaseException]] = []
        on_done = _on_done(out_dir, failures, bar, say if progress else None)

        try:
            if todo:
                if executor == "local":
                    _run_local(todo, jobs, on_done, bar)
                else:
                    if not isinstance(slurm, SlurmOptions):
                        slurm = SlurmOptions(**(slurm or {}))
                    cluster = "slurm" if executor == "slurm" else "local"
                    _run_submitit(todo, cluster, slurm, out_dir, wait, on_done)
                    if not wait:
                        bar.close()
                        if progress:
                            say(
                                f"submitted {len(todo)} runs; when they have finished, run "
                                f"`dfct grid-report {out_dir}`"
                            )
                        return out_dir
        finally:
            bar.close()
        _finish(out_dir, failures, report)
        return out_dir


def _check_options(executor: str, jobs: Any) -> None:
    """Refuse an unknown executor or fewer than one job (``ValueError``)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    jobs = int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")


def _sort_runs(
    specs: list[dict], out_dir: Path, stale_after: float
) -> tuple[list[dict], int, list[tuple[dict, str]], list[str]]:
    """Sort the runs of a grid into those to do, finished ones and busy ones.

    A finished run (``metrics.json``) is skipped; a run trained elsewhere (a fresh
    heartbeat, :func:`running_elsewhere`) or still queued in Slurm (:func:`queued_runs`) is
    left alone; the folder of any other started run is moved aside unless the run can
    resume. Every decision goes to the grid log.

    Returns
    -------
    todo : list of dict
        The specs to run, in grid order.
    skipped : int
        The number of finished runs.
    busy : list of (spec, reason)
        The runs left alone, with a reason to show.
    unknown : list of str
        Earlier Slurm job ids whose state Slurm did not report.
    """
    unfinished = [
        (s["name"], s["seed"]) for s in specs if not (Path(s["run_dir"]) / METRICS_FILE).is_file()
    ]
    queued, unknown = queued_runs(out_dir, unfinished)
    todo, skipped, busy = [], 0, []
    for spec in specs:
        run_dir = Path(spec["run_dir"])
        if (run_dir / METRICS_FILE).is_file():
            skipped += 1
            _log(out_dir, {"status": "skipped", "name": spec["name"], "seed": spec["seed"]})
            continue
        info = running_elsewhere(run_dir, stale_after)
        q = queued.get((spec["name"], spec["seed"]))
        if info is not None:
            why = (
                f"is being trained elsewhere (host {info.get('host')}, pid "
                f"{info.get('pid')}, last heartbeat {info['age_s']:.0f} s ago)"
            )
            busy.append((spec, why))
            _log(
                out_dir,
                {
                    "status": "running-elsewhere",
                    "name": spec["name"],
                    "seed": spec["seed"],
                    "host": info.get("host"),
                    "pid": info.get("pid"),
                    "heartbeat_age_s": info["age_s"],
                },
            )
            continue
        if q is not None:
            busy.append((spec, f"is {q['state'].lower()} as Slurm job {q['job_id']}"))
            _log(out_dir, {"status": "queued", "name": spec["name"], "seed": spec["seed"], **q})
            continue
        if run_dir.exists() and not _can_resume(spec):
            dest = _move_aside(run_dir)
            _log(
                out_dir,
                {
                    "status": "moved-aside",
                    "name": spec["name"],
                    "seed": spec["seed"],
                    "to": str(dest),
                },
            )
        todo.append(spec)
    return todo, skipped, busy, unknown


def _prune_asides(specs: list[dict], out_dir: Path, busy: list[tuple[dict, str]]) -> int:
    """Remove each run's moved-aside attempts but the newest (:func:`prune_aside`; not
    for runs busy elsewhere), log each removal and return their number."""
    held = {(s["name"], s["seed"]) for s, _ in busy}
    removed = 0
    for spec in specs:
        if (spec["name"], spec["seed"]) in held:
            continue
        for path in prune_aside(spec["run_dir"]):
            removed += 1
            _log(
                out_dir,
                {
                    "status": "removed-aside",
                    "name": spec["name"],
                    "seed": spec["seed"],
                    "path": str(path),
                },
            )
    return removed


def _announce(
    say: Callable[[str], None],
    out_dir: Path,
    n_runs: int,
    skipped: int,
    unknown: list[str],
    busy: list[tuple[dict, str]],
    pruned: int = 0,
) -> None:
    """Say which runs are skipped or left alone before the grid starts, and what the
    moved-aside attempts of interrupted runs hold."""
    if skipped:
        say(f"{skipped} of {n_runs} runs already finished in {out_dir}: skipped")
    if unknown:
        say(
            f"could not ask Slurm about {len(unknown)} earlier job(s) (e.g. {unknown[0]}); if "
            "they are still queued, their runs will be trained twice"
        )
    for spec, why in busy:
        say(f"{spec['name']} seed {spec['seed']} {why}: left alone")
    aside = aside_summary(out_dir)
    if aside["count"] or pruned:
        say(
            f"{aside['count']} moved-aside attempt(s) of interrupted runs kept, the newest "
            f"of each run ({aside['bytes'] / 1e6:.1f} MB"
            + (f"; {pruned} older one(s) removed" if pruned else "")
            + f"); remove them with: rm -r {aside['pattern']}"
        )


def _on_done(out_dir: Path, failures: list, bar, say: Callable[[str], None] | None):
    """The callback of the executors for every finished run: log it, collect a failure
    in ``failures``, say a summary line (unless ``say`` is None) and advance ``bar``."""

    def on_done(spec, rec, exc):
        if exc is not None:
            failures.append((spec, exc))
            _log(
                out_dir,
                {
                    "status": "failed",
                    "name": spec["name"],
                    "seed": spec["seed"],
                    "error": _short_error(exc),
                },
            )
            if say is not None:
                say(
                    f"{spec['name']:<22} seed {spec['seed']:<3} FAILED: {_short_error(exc)} "
                    f"(see {Path(spec['run_dir']) / 'error.txt'})"
                )
        else:
            _log(
                out_dir,
                {
                    "status": rec.get("status", "trained"),
                    "name": rec["name"],
                    "seed": rec["seed"],
                    "cnr": rec.get("cnr"),
                    "fwhm": rec.get("fwhm"),
                    "epochs_run": rec.get("epochs_run"),
                    "seconds": rec.get("seconds"),
                },
            )
            if say is not None:
                say(_summary_line(rec))
        bar.update(1)

    return on_done


def _finish(out_dir: Path, failures: list[tuple[dict, BaseException]], report: bool) -> None:
    """Write the report (if asked), then raise :class:`GridRunError` if runs failed."""
    if report:
        from .report import grid_report

        grid_report(out_dir)
    if failures:
        names = ", ".join(f"{s['name']} seed {s['seed']}" for s, _ in failures)
        raise GridRunError(
            f"{len(failures)} run(s) failed: {names} (see {out_dir / LOG_FILE}); "
            "start the grid again to redo them"
        )
