"""Fixtures of the training tests."""

import pytest

from alexnet_raw import Model
from train_helpers import save_model_checkpoint, write_folder


@pytest.fixture(scope="session")
def folder_data(tmp_path_factory):
    """3 classes of noisy single-colour 12x12 PNGs: 8 per class to train on, 3 to test."""
    return write_folder(tmp_path_factory.mktemp("folder"))


@pytest.fixture(scope="session")
def mini_checkpoint(folder_data, tmp_path_factory):
    """An untrained mini network (3 classes) saved as a training checkpoint on folder_data."""
    model = Model.named("mini", seed=7, num_classes=3)
    return save_model_checkpoint(tmp_path_factory.mktemp("mini") / "checkpoint.safetensors", model, folder_data)
