"""Model folders: safetensors weights + JSON metadata, complete or absent at every instant.

A model folder holds

``model.safetensors``
    the weights (``safetensors.torch``), the best model of a training run; its metadata
    names the epoch they come from;
``config.json``
    everything needed to rebuild and use the model: architecture kwargs (``"model"``),
    preset, loss configuration, intensity window, training parameters, package and torch
    versions, creation time, best epoch;
``history.json``, ``history.csv``
    one record per finished epoch (losses, learning rate, best so far, seconds), as JSON
    and as a table with the same numbers, both rewritten after every epoch;
``tensorboard/`` (optional)
    TensorBoard event files (``TrainConfig.tensorboard``), created after the first save;
``training-state.safetensors`` (optional)
    what resuming needs, in **one** file: the *current* weights, the best weights (when
    they differ), optimizer tensors, scheduler, epoch, early-stopping counters and RNG
    states (tensors as tensors, the rest as a JSON index in the file's metadata), so the
    parts of a state can never come from different epochs;
``training-state.json`` (with it)
    a readable summary of that state (epoch, best epoch), written after it and removed
    before it; resuming never reads it. Folders written before the single-file state
    kept the index there, and are still read.

Crash safety. The first save of a training run writes every file into a hidden sibling
folder (``.<name>.partial-<host>-<pid>-<hex>``) and renames it into place, so the folder
appears complete or not at all; a sibling left by a killed process is removed by the next
run (:func:`clean_stale`). Later saves replace one file at a time, each through
:func:`napari_dfct._files.atomic_write`, in the order weights, config, history, state: a
folder killed between two of them still loads (the weights and the config describe the
same architecture) and resumes from the last complete state. :func:`check_new_run_dir`
says up front whether a new run may be written to a folder.

Nothing is ever pickled and nothing is read with ``torch.load``: loading a folder from an
untrusted source cannot run code.

The package: :mod:`~napari_dfct.checkpoint._base` (file names, errors, reading),
:mod:`~napari_dfct.checkpoint.state` (the resume state), :mod:`~napari_dfct.checkpoint.save`
(saving, checks for new runs, cleaning) and :mod:`~napari_dfct.checkpoint.load` (loading,
describing).
"""

from .._files import write_json
from ._base import (
    CONFIG_FILE,
    FORMAT_VERSION,
    HISTORY_CSV_FILE,
    HISTORY_FILE,
    RUN_FILES,
    STATE_FILE,
    STATE_FORMAT_VERSION,
    STATE_TENSORS_FILE,
    TENSORBOARD_DIR,
    WEIGHTS_FILE,
    CheckpointError,
    is_model_dir,
)
from .load import LoadedModel, describe_model, load_config, load_history, load_model
from .save import (
    check_new_run_dir,
    check_writable,
    clean_stale,
    history_csv,
    new_run_dir,
    save_checkpoint,
    save_run,
    write_history,
)
from .state import (
    delete_training_state,
    has_training_state,
    load_training_state,
    save_training_state,
    training_state_epoch,
    training_state_summary,
    weights_epoch,
)

#: The package's one atomic JSON writer (:func:`napari_dfct._files.write_json`).
atomic_write_json = write_json

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "HISTORY_CSV_FILE",
    "HISTORY_FILE",
    "RUN_FILES",
    "STATE_FILE",
    "STATE_FORMAT_VERSION",
    "STATE_TENSORS_FILE",
    "TENSORBOARD_DIR",
    "WEIGHTS_FILE",
    "CheckpointError",
    "LoadedModel",
    "atomic_write_json",
    "check_new_run_dir",
    "check_writable",
    "clean_stale",
    "delete_training_state",
    "describe_model",
    "has_training_state",
    "history_csv",
    "is_model_dir",
    "load_config",
    "load_history",
    "load_model",
    "load_training_state",
    "new_run_dir",
    "save_checkpoint",
    "save_run",
    "save_training_state",
    "training_state_epoch",
    "training_state_summary",
    "weights_epoch",
    "write_history",
]
