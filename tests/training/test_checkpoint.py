"""Checkpoints: round trip, atomic replacement surviving a crash or a full disk mid-write, and
clear errors for missing, truncated, corrupt or foreign files."""

import errno
import json
import os

import numpy as np
import pytest

from alexnet_raw.training import checkpoint as ck
from alexnet_raw.engine.model import Model


def make_model(seed=0, num_classes=7):
    model = Model.named("mini", seed=seed, num_classes=num_classes)
    rng = np.random.default_rng(seed + 100)
    model.load_momentum_state_dict({k: rng.standard_normal(v.shape) for k, v in model.state_dict().items()})
    model.steps = 17 + seed
    return model


def training_state(epoch=3):
    return {"epoch": epoch, "step": 5, "seed": 0, "batch_size": 32, "class_names": list("abcdefg"),
            "schedule": {"kind": "step", "milestones": [4], "gamma": 0.1}, "metrics": [{"epoch": 1, "x": 0.5}]}


def statistics():
    return {"mean": np.arange(3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4), "eigval": np.ones(3), "count": 12}


def assert_same(model, other):
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key], value)
    for key, value in model.momentum_state_dict().items():
        np.testing.assert_array_equal(other.momentum_state_dict()[key], value)


def test_round_trip_restores_model_and_state(tmp_path):
    model = make_model()
    path = ck.save_checkpoint(tmp_path / ck.FILENAME, model, training_state(), statistics())
    loaded = ck.load_checkpoint(path)
    assert loaded.network_name == "mini" and loaded.num_classes == 7 and loaded.dtype == np.float32
    assert loaded.training == training_state()
    assert loaded.statistics["count"] == 12
    np.testing.assert_array_equal(loaded.statistics["mean"], statistics()["mean"])
    restored = loaded.make_model()
    assert restored.steps == model.steps and restored.network_name == "mini" and restored.num_classes == 7
    assert restored.texts == model.texts
    assert_same(model, restored)
    assert not list(tmp_path.glob("*.tmp"))


def test_crash_before_rename_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / ck.FILENAME
    old = make_model(seed=0)
    ck.save_checkpoint(path, old, training_state(epoch=1))

    def crash(src, dst):
        raise RuntimeError("simulated crash between write and rename")

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ck.save_checkpoint(path, make_model(seed=1), training_state(epoch=2))
    monkeypatch.undo()
    loaded = ck.load_checkpoint(path)
    assert loaded.training["epoch"] == 1
    assert_same(old, loaded.make_model())
    assert not list(tmp_path.glob("*.tmp"))


def test_full_disk_mid_write_gives_clear_error_and_keeps_old(tmp_path, monkeypatch):
    path = tmp_path / ck.FILENAME
    old = make_model(seed=0)
    ck.save_checkpoint(path, old, training_state(epoch=1))
    real_open = open

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return HalfWriter(f) if str(file).endswith(".tmp") and "w" in mode else f

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(ck.CheckpointError, match="No space left.*previous checkpoint there is intact") as info:
        ck.save_checkpoint(path, make_model(seed=1), training_state(epoch=2))
    monkeypatch.undo()
    assert str(path) in str(info.value)
    assert ck.load_checkpoint(path).training["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_keep_copy_survives_replacement(tmp_path):
    path = tmp_path / ck.FILENAME
    first = make_model(seed=0)
    ck.save_checkpoint(path, first, training_state(epoch=1))
    ck.keep_copy(path, tmp_path / "checkpoint-epoch1.safetensors")
    ck.save_checkpoint(path, make_model(seed=1), training_state(epoch=2))
    kept = ck.load_checkpoint(tmp_path / "checkpoint-epoch1.safetensors")
    assert kept.training["epoch"] == 1 and ck.load_checkpoint(path).training["epoch"] == 2
    assert_same(first, kept.make_model())


def test_missing_truncated_corrupt_and_foreign_files_raise_checkpoint_error(tmp_path):
    path = tmp_path / ck.FILENAME
    with pytest.raises(ck.CheckpointError, match="no checkpoint at"):
        ck.load_checkpoint(path)
    ck.save_checkpoint(path, make_model(), training_state())
    data = path.read_bytes()

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ck.CheckpointError, match="truncated.safetensors.*truncated or corrupt"):
        ck.load_checkpoint(truncated)

    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x01\x02")
    with pytest.raises(ck.CheckpointError, match="tiny.safetensors"):
        ck.load_checkpoint(tiny)

    flipped = tmp_path / "flipped.safetensors"
    corrupt = bytearray(data)
    corrupt[-10] ^= 0xFF
    flipped.write_bytes(bytes(corrupt))
    with pytest.raises(ck.CheckpointError, match="flipped.safetensors.*checksum"):
        ck.load_checkpoint(flipped)

    from safetensors.numpy import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(foreign))
    with pytest.raises(ck.CheckpointError, match="foreign.safetensors is not an alexnet_raw checkpoint"):
        ck.load_checkpoint(foreign)

    text = tmp_path / "text.safetensors"
    text.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ck.CheckpointError, match="text.safetensors"):
        ck.load_checkpoint(text)


def test_tensors_of_another_network_are_refused(tmp_path):
    path = tmp_path / ck.FILENAME
    ck.save_checkpoint(path, make_model(num_classes=7), training_state())
    loaded = ck.load_checkpoint(path)
    loaded.num_classes = 5  # as if the stored weights belonged to another classifier
    with pytest.raises(ck.CheckpointError, match="do not fit its own network"):
        loaded.make_model()
