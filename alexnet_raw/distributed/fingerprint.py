"""What must be the same on every rank of a data-parallel run, compared at start-up.

A fingerprint holds SHA-256 digests of: the code (every file of the installed package and its
kernel sources), the network files (the layer and params texts the model was built from), the
data (class names, labels and the pixels of a few of its images), the starting weights and
momentum (initialised from the seed, or resumed), and the settings that shape a step (batch size,
shards, seed, dtype, image sizes, epoch and step). check_identical() gathers every rank's and
refuses the run, on every rank, naming the ranks and what differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .world import DistributedError

SAMPLED_IMAGES = 4  # images whose pixels enter the data digest


def _digest(*chunks):
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk if isinstance(chunk, bytes) else str(chunk).encode())
    return h.hexdigest()


def code_digest():
    from ..runtime.kernel_sources import kernel_dir

    package = Path(__file__).resolve().parent.parent
    files = [(f"alexnet_raw/{p.relative_to(package)}", p) for p in sorted(package.rglob("*"))
             if p.suffix in (".py", ".h", ".cu", ".cuh", ".cfg") and "__pycache__" not in p.parts]
    kernels = kernel_dir()
    if not kernels.is_relative_to(package):
        files += [(f"kernels/{p.name}", p) for p in sorted(kernels.iterdir()) if p.is_file()]
    h = hashlib.sha256()
    for name, path in files:
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def data_digest(dataset, image_size):
    labels = np.ascontiguousarray(dataset.labels, dtype=np.int64)
    pixels = [np.ascontiguousarray(dataset.image(i, image_size)).tobytes()
              for i in range(min(SAMPLED_IMAGES, len(dataset)))]
    return _digest(json.dumps(list(dataset.class_names)), labels.tobytes(), *pixels)


def state_digest(model):
    chunks = []
    for device in model.graph.devices:
        block = model.blocks[device]
        for flat in (block.flat_params, block.flat_momentum):
            chunks.append(np.ascontiguousarray(model.devices.to_host(flat)).tobytes())
    return _digest(*chunks)


def fingerprint(model, train_set, test_set, image_size, settings):
    return {"code": code_digest(),
            "network files": _digest(*model.texts),
            "training data": data_digest(train_set, image_size),
            "test data": data_digest(test_set, image_size),
            "weights and momentum": state_digest(model),
            "settings": json.dumps(settings, sort_keys=True)}


def check_identical(world, mine):
    """Every rank's fingerprint equal to rank 0's, else DistributedError (on every rank)."""
    everyone = world.allgather(mine, "the start-up check of code, network files and data")
    reference = everyone[0]
    differences = []
    for rank, theirs in enumerate(everyone[1:], 1):
        for what, value in theirs.items():
            if value != reference.get(what):
                shown = (f"{value} vs rank 0's {reference.get(what)}" if what == "settings"
                         else f"sha256 {value[:12]} vs rank 0's {str(reference.get(what))[:12]}")
                differences.append(f"rank {rank}'s {what} differ from rank 0's ({shown})")
    if differences:
        raise DistributedError("the ranks of this run are not running the same thing: " + "; ".join(differences)
                               + ". Every rank must run the same code with the same network files, data and "
                               "options")
