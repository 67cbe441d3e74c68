"""The reference layer files not trained elsewhere in the tests (#145: test_full_networks.py;
cuda-convnet2's files: test_dropout_layers.py, test_local_layers.py, test_replicas.py) each train a
float64 step as the PyTorch model composed from torch ops: every gradient, updated parameter and
momentum, at their data's size: cuda-convnet's CIFAR file at its 24 x 24 crops, the 2012 ImageNet
runs at 224 x 224 (10 to 20 s each on the CPU runtime)."""

from pathlib import Path

import numpy as np
import pytest

import reference_model
from alexnet_raw import Model
from reference_runs import reference_files

CONVNET = Path(__file__).resolve().parent / "cuda-convnet"
FILES = {
    "18pct": ((CONVNET / "layers-18pct.cfg", CONVNET / "layer-params-18pct.cfg"), 24),
    **{run: (reference_files(run), 224) for run in ("145-half", "147", "148", "150")},
}


@pytest.mark.parametrize("name", list(FILES))
def test_reference_file_trains_a_float64_step_as_torch(name):
    files, size = FILES[name]
    model = Model.from_cfg(*files, seed=5, dtype=np.float64, image_size=size)
    rng = np.random.default_rng(6)
    x, labels = rng.standard_normal((2, 3, size, size)), rng.integers(0, model.num_classes, 2)
    reference_model.assert_train_step_matches(model, x, labels)
