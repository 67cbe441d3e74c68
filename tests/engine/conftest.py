import shutil
from pathlib import Path

import pytest


@pytest.fixture
def write_cfg(tmp_path):
    """write_cfg(layers_text, params_text) -> (layers_path, params_path) in tmp_path."""

    def write(layers, params=""):
        lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
        lp.write_text(layers)
        pp.write_text(params)
        return lp, pp

    return write


@pytest.fixture
def copy_network(tmp_path):
    def copy(name):
        from alexnet_raw.engine.model import network_files

        lp, pp = network_files(name)
        return Path(shutil.copy(lp, tmp_path / lp.name)), Path(shutil.copy(pp, tmp_path / pp.name))

    return copy
