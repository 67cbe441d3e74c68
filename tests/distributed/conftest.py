"""Fixtures of the tests of training over MPI processes."""

import numpy as np
import pytest

from cifar_files import write_cifar_directory


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    """A CIFAR-10 python directory of 36 training images (3 batches of 12) and 8 test images."""
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_directory(root, np.random.default_rng(5), train_sizes=(8, 8, 8, 8, 4), test_size=8)
    return root
