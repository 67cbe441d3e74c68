"""Training checkpoints: one safetensors file holding everything a run needs to continue exactly.

Tensors:   weights/<layer>.weights.<i>, weights/<layer>.biases   the parameters (model dtype)
           momentum/<same keys>                                  cuda-convnet's `inc` buffers
           accumulated/<keys of layers with updatePeriod > 1>    their gradients summed since
                                                                 their last update
           statistics/<name>                                     array-valued data statistics
                                                                 (the mean image, PCA eigenvectors)
Metadata (safetensors stores strings):
           format          "alexnet_raw.training.checkpoint/1"
           network_name    shipped network name, or "" for --cfg files
           layers_cfg, params_cfg   the full texts of the network's cuda-convnet files
           dtype, num_classes, steps (model.steps: the dropout streams continue from it), seed
           training        JSON: epoch, step (batches done in that epoch), batch_size, schedule
                           state, class names, data source, image and crop sizes, metrics so
                           far, the partial epoch's running sums
           statistics      JSON: the non-array part of the data statistics
           sha256          digest of every tensor's name, dtype, shape and bytes, in name order
                           (safetensors has no checksum of its own; this catches flipped bytes)

save_checkpoint writes DIR/<name>.tmp, flushes and fsyncs it, renames it over the target with
os.replace (atomic on POSIX and Windows) and fsyncs the directory, so a crash or a full disk at any
moment leaves either the old checkpoint or the new one, never a torn file. load_checkpoint raises
CheckpointError naming the file for anything it cannot trust.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

FORMAT = "alexnet_raw.training.checkpoint/1"
FILENAME = "checkpoint.safetensors"


class CheckpointError(Exception):
    """A checkpoint cannot be written, read or used; the message names the file."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (disk full, I/O error): the run failed, not its arguments."""


@dataclasses.dataclass
class Checkpoint:
    path: Path
    network_name: str | None
    layers_text: str
    params_text: str
    dtype: np.dtype
    num_classes: int
    steps: int
    seed: int
    weights: dict
    momentum: dict
    statistics: dict
    training: dict
    input_size: int | None = None  # the side of the images the network was built for
    accumulated: dict = dataclasses.field(default_factory=dict)  # updatePeriod > 1: gradients since the last update

    def make_model(self, backend=None, single_device=False):
        """A Model of the stored network holding the stored weights, momentum and step count."""
        from ..engine.model import Model

        try:
            model = Model.from_cfg_text(self.layers_text, self.params_text, seed=self.seed,
                                        single_device=single_device, backend=backend, dtype=self.dtype,
                                        num_classes=self.num_classes, source=str(self.path),
                                        image_size=self.input_size)
            model.load_state_dict(self.weights)
            model.load_momentum_state_dict(self.momentum)
            model.load_accumulated_state_dict(self.accumulated)
        except (KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{self.path}: its tensors do not fit its own network: {e}") from e
        model.network_name = self.network_name
        model.steps = self.steps
        return model


# --------------------------------------------------------------------------------------------
def _digest(tensors):
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = tensors[name]
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _split_statistics(statistics):
    arrays, rest = {}, {}
    for key, value in (statistics or {}).items():
        if isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            rest[key] = value
    return arrays, rest


def encode(model, training, statistics=None):
    """(tensors, metadata) of a checkpoint of `model` with the given training state."""
    tensors = {}
    for key, value in model.state_dict().items():
        tensors[f"weights/{key}"] = np.ascontiguousarray(value)
    for key, value in model.momentum_state_dict().items():
        tensors[f"momentum/{key}"] = np.ascontiguousarray(value)
    for key, value in model.accumulated_state_dict().items():
        tensors[f"accumulated/{key}"] = np.ascontiguousarray(value)
    arrays, rest = _split_statistics(statistics)
    for key, value in arrays.items():
        tensors[f"statistics/{key}"] = np.ascontiguousarray(value)
    layers_text, params_text = model.texts
    metadata = {
        "format": FORMAT,
        "network_name": model.network_name or "",
        "layers_cfg": layers_text,
        "params_cfg": params_text,
        "dtype": np.dtype(model.dtype).name,
        "num_classes": str(int(model.num_classes)),
        "input_size": str(int(model.image_size)),
        "steps": str(int(model.steps)),
        "seed": str(int(model.seed)),
        "training": json.dumps(training, allow_nan=True),
        "statistics": json.dumps(rest),
        "sha256": _digest(tensors),
    }
    return tensors, metadata


def _fsync_dir(directory):
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path, data: bytes):
    """Write bytes to `path` so that a crash leaves either the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def save_checkpoint(path, model, training, statistics=None):
    """Atomically write a checkpoint of `model` (weights, momentum, texts) and `training` state."""
    from safetensors.numpy import save

    path = Path(path)
    tensors, metadata = encode(model, training, statistics)
    _refuse_non_finite(path, tensors)
    data = save(tensors, metadata=metadata)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
    except OSError as e:
        old = " (the previous checkpoint there is intact)" if path.exists() else ""
        raise CheckpointWriteError(f"could not write checkpoint {path}: {e.strerror or e}{old}") from e
    return path


def _first_non_finite(tensors):
    """The name of the first tensor holding a NaN or an infinity, or None (every tensor of a
    checkpoint, weights, momentum and statistics alike, is finite)."""
    for name in sorted(tensors):
        value = tensors[name]
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            return name
    return None


def _refuse_non_finite(path, tensors):
    """A non-finite state never replaces a checkpoint: CheckpointError naming the tensor."""
    name = _first_non_finite(tensors)
    if name is not None:
        raise CheckpointError(f"refusing to write checkpoint {path}: {name} holds non-finite values "
                              "(the previous checkpoint there is kept)")


def keep_copy(path, copy_path):
    """Keep the checkpoint at `path` also as `copy_path` (a hard link when possible: no extra
    space until `path` is replaced). Atomic like save_checkpoint."""
    path, copy_path = Path(path), Path(copy_path)
    tmp = copy_path.with_name(copy_path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        try:
            os.link(path, tmp)
        except OSError:
            write_atomic(tmp, path.read_bytes())
        os.replace(tmp, copy_path)
        _fsync_dir(copy_path.parent)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CheckpointWriteError(f"could not keep checkpoint {path} as {copy_path}: {e.strerror or e}") from e


# --------------------------------------------------------------------------------------------
def load_checkpoint(path) -> Checkpoint:
    """Read and verify a checkpoint; CheckpointError (naming the file) when it cannot be trusted."""
    from safetensors.numpy import load

    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}") from e
    try:
        metadata = _metadata(data)
        tensors = load(data)
    except Exception as e:  # safetensors raises its own error types for torn or foreign files
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an alexnet_raw checkpoint (format {metadata.get('format')!r}, "
                              f"expected {FORMAT!r})")
    missing = [k for k in ("layers_cfg", "params_cfg", "dtype", "num_classes", "steps", "seed", "training",
                           "statistics", "sha256")
               if k not in metadata]
    if missing:
        raise CheckpointError(f"{path}: checkpoint metadata lacks {missing}")
    if _digest(tensors) != metadata["sha256"]:
        raise CheckpointError(f"{path}: tensor data does not match its checksum (corrupt file)")
    bad = _first_non_finite(tensors)
    if bad is not None:  # the checksum is no signature: a crafted file can carry a matching one
        raise CheckpointError(f"{path}: tensor {bad!r} holds non-finite values; expected the finite state "
                              "alexnet-raw train writes")
    try:
        training = json.loads(metadata["training"])
        statistics = json.loads(metadata["statistics"])
        dtype = np.dtype(metadata["dtype"])
        num_classes, steps, seed = (int(metadata[k]) for k in ("num_classes", "steps", "seed"))
        input_size = int(metadata["input_size"]) if metadata.get("input_size") else None
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable checkpoint metadata: {e}") from e
    _check_training(path, training, statistics, num_classes)
    if input_size is None:  # older checkpoints: the crop the trainer recorded, else the file's imgSize
        input_size = training.get("crop_size")
    if input_size is not None and input_size < 1:
        raise CheckpointError(f"{path}: input_size {input_size} is not a positive image side")
    groups = {"weights": {}, "momentum": {}, "accumulated": {}, "statistics": {}}
    for name, value in tensors.items():
        group, _, key = name.partition("/")
        if group not in groups or not key:
            raise CheckpointError(f"{path}: unexpected tensor {name!r}")
        groups[group][key] = value
    statistics.update(groups["statistics"])
    return Checkpoint(path, metadata.get("network_name") or None, metadata["layers_cfg"], metadata["params_cfg"],
                      dtype, num_classes, steps, seed, groups["weights"], groups["momentum"], statistics, training,
                      input_size, groups["accumulated"])


def _metadata(data: bytes) -> dict:
    """The __metadata__ of a safetensors byte string (8-byte little-endian header length, JSON)."""
    if len(data) < 8:
        raise ValueError(f"file of {len(data)} bytes is too short for a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError(f"header of {n} bytes runs past the end of the {len(data)}-byte file")
    header = json.loads(data[8:8 + n])
    return header.get("__metadata__") or {}


# The types of the training-state fields train, evaluate and predict read (present ones are
# checked, so a crafted file gives a CheckpointError, not a TypeError deep inside a command).
_TRAINING_FIELDS = {"epoch": int, "step": int, "epochs": int, "batch_size": int, "image_size": int,
                    "crop_size": int, "data": str, "class_names": list, "metrics": list, "partial": dict,
                    "schedule": dict}
_AT_LEAST_ONE = ("epochs", "batch_size", "image_size", "crop_size")


def _check_training(path, training, statistics, num_classes):
    for name, value in (("training", training), ("statistics", statistics)):
        if not isinstance(value, dict):
            raise CheckpointError(f"{path}: checkpoint metadata {name!r} must be a JSON object, got "
                                  f"{type(value).__name__}")
    for key, kind in _TRAINING_FIELDS.items():
        if key not in training:
            continue
        value = training[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheckpointError(f"{path}: training field {key!r} must be {kind.__name__}, got {value!r:.80}")
        if kind is int and value < (1 if key in _AT_LEAST_ONE else 0):
            raise CheckpointError(f"{path}: training field {key!r} must be >= {1 if key in _AT_LEAST_ONE else 0}, "
                                  f"got {value}")
    names = training.get("class_names")
    if names is not None and (len(names) != num_classes or not all(isinstance(n, str) for n in names)):
        raise CheckpointError(f"{path}: training field 'class_names' must be {num_classes} strings (the network's "
                              f"classes), got {names!r:.80}")


def require_training(saved, keys):
    """CheckpointError naming the checkpoint unless its training state has all of `keys`."""
    missing = [k for k in keys if k not in saved.training]
    if missing:
        raise CheckpointError(f"{saved.path}: checkpoint training state lacks {missing}; expected a checkpoint "
                              "written by alexnet-raw train")
