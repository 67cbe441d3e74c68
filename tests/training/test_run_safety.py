"""Runs are never lost or falsely reported (the hostile-input issue): one writer per run directory
(a second is refused, naming the holder's pid; a killed holder never blocks), --out checked before
any work, divergence stops with the epoch, step and layer and keeps the last good checkpoint,
metrics.jsonl is strict JSON, SIGTERM is saved like Ctrl-C, crafted checkpoints are refused."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from alexnet_raw.training import checkpoint as ck, evaluate, rundir, runlog, train
from alexnet_raw.engine.model import Model, network_files
from train_helpers import run_train

TRAIN = (sys.executable, "-P", "-m", "alexnet_raw.cli", "train")


def strict_json(line):
    """json.loads that refuses NaN, Infinity and -Infinity (which Python's json accepts)."""
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(line, parse_constant=refuse)


def strict_metrics(path):
    with open(path, encoding="utf-8") as f:
        return [strict_json(line) for line in f]


def wait_for(predicate, proc, what):
    deadline = time.monotonic() + 600  # a wait, not a timing: a cold kernel cache compiles first
    while not predicate() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not predicate():
        proc.kill()
        raise AssertionError(f"never saw {what}: {proc.communicate()[1]}")


# -- one writer per run directory ---------------------------------------------------------------
def test_a_held_run_directory_is_refused_naming_the_holder_and_a_killed_holder_never_blocks(folder_data, tmp_path,
                                                                                             capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-P", "-c", "import sys, time; from alexnet_raw.training.rundir import RunLock; "
                               "lock = RunLock(sys.argv[1]); lock.acquire(); print('held', flush=True); time.sleep(600)", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n", holder.stderr.read()
        assert run_train("--data", folder_data, "--batch-size", 8, "--epochs", 1, "--out", out) == 2
        err = capsys.readouterr().err
        assert f"--out {out} is in use by another alexnet-raw train (pid {holder.pid}" in err
        assert len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in out.iterdir()) == [rundir.LOCK_NAME]  # nothing of the holder's touched
    finally:
        holder.kill()  # SIGKILL: the lock file stays, with the dead holder's pid in it
        holder.wait()
    assert (out / rundir.LOCK_NAME).read_text().strip() == str(holder.pid)
    assert run_train("--data", folder_data, "--batch-size", 8, "--epochs", 1, "--out", out) == 0
    lock = rundir.RunLock(out)
    lock.acquire()  # released when train returned
    lock.release()


# -- --out checked before any work ------------------------------------------------------------
@pytest.mark.parametrize("case", ["existing file", "parent is a file", "read-only directory"])
def test_an_unusable_out_is_refused_before_the_data_is_read(case, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    if case == "existing file":
        out, expected = blocker, "expected a directory (or a path to create one at), got an existing file"
    elif case == "parent is a file":
        out, expected = blocker / "run", f"expected a directory path, but {blocker} is a file"
    else:
        if os.geteuid() == 0:
            pytest.skip("running as root: a read-only mode does not stop root's writes (the cases above do)")
        out, expected = tmp_path / "ro" / "run", "expected a writable directory, but "
        out.parent.mkdir(mode=0o555)
    for resume in ((), ("--resume",)):
        # --data names nothing: had it been read first, the error would be about the data
        try:
            status = run_train("--data", tmp_path / "no-data-here", *resume, "--out", out)
        except SystemExit as e:  # refused by the argument parser (the same check, from alexnet_raw.training.rundir)
            status = e.code
        err = capsys.readouterr().err
        assert status == 2 and "--out" in err and f"{out}: {expected}" in err and "no-data-here" not in err, err
        assert len(err.strip().splitlines()) == 1


# -- divergence ---------------------------------------------------------------------------------
def test_a_diverging_learning_rate_stops_with_epoch_step_and_layer_and_writes_no_checkpoint(folder_data, tmp_path,
                                                                                            capsys):
    layers, params = network_files("mini")
    hot = tmp_path / "hot-params.cfg"  # every epsW 1e20: finite in float32, diverges within a few steps
    hot.write_text("\n".join("epsW=1e20" if line.startswith("epsW=") else line
                             for line in open(params, encoding="utf-8").read().splitlines()))
    out = tmp_path / "run"
    assert run_train("--data", folder_data, "--cfg", layers, hot, "--batch-size", 8, "--epochs", 2,
                     "--out", out) == train.EXIT_DIVERGED == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("alexnet-raw train: error: training diverged at epoch 1, step "), err
    assert "the first layer with non-finite weights, biases or gradients is " in err
    assert "no checkpoint was written" in err
    assert not (out / ck.FILENAME).exists() and not (out / "metrics.jsonl").exists()


def test_non_finite_parameters_stop_training_and_keep_the_last_good_checkpoint(folder_data, tmp_path, monkeypatch,
                                                                                capsys):
    real_step = Model.step

    def poisoned_step(model, epoch=0, progress=0.0):  # conv1a's biases go NaN in step 5 (epoch 2, step 2)
        real_step(model, epoch, progress)
        if model.steps == 5:
            for block in model.blocks.values():
                if "conv1a.biases" in block.params:
                    block.params["conv1a.biases"][0] = np.nan

    out = tmp_path / "run"
    monkeypatch.setattr(Model, "step", poisoned_step)
    assert run_train("--data", folder_data, "--batch-size", 8, "--epochs", 3, "--keep", 0, "--out", out) == 1
    err = capsys.readouterr().err
    assert ("error: training diverged at epoch 2, step 2: the loss is finite but the parameters are not; the first "
            "layer with non-finite weights, biases or gradients is conv1a (conv1a.biases: 1 NaN and 0 infinite of its "
            ) in err, err
    assert f"the last good checkpoint {out / ck.FILENAME} (after epoch 1) is kept" in err
    saved = ck.load_checkpoint(out / ck.FILENAME)
    assert (saved.training["epoch"], saved.training["step"], saved.steps) == (1, 0, 3)
    assert all(np.isfinite(v).all() for v in saved.weights.values())
    assert [r["epoch"] for r in strict_metrics(out / "metrics.jsonl")] == [1]
    monkeypatch.undo()
    assert run_train("--resume", "--out", out) == 0  # the kept checkpoint continues
    assert ck.load_checkpoint(out / ck.FILENAME).training["epoch"] == 3


def test_a_non_finite_state_never_replaces_a_checkpoint(tmp_path):
    path = tmp_path / ck.FILENAME
    model = Model.named("mini", seed=0, num_classes=3)
    ck.save_checkpoint(path, model, {"epoch": 1})
    before = path.read_bytes()
    for block in model.blocks.values():
        block.momentum[next(iter(block.momentum))][...] = np.inf
    with pytest.raises(ck.CheckpointError, match=rf"refusing to write checkpoint {path}: momentum/\S+ holds "
                                                 r"non-finite values \(the previous checkpoint there is kept\)"):
        ck.save_checkpoint(path, model, {"epoch": 2})
    assert path.read_bytes() == before


# -- metrics.jsonl --------------------------------------------------------------------------------
def test_metrics_lines_are_strict_json_even_for_non_finite_values(tmp_path):
    path = tmp_path / "metrics.jsonl"
    record = {f: 0.5 for f in runlog.FIELDS} | {"epoch": 1, "train_loss": float("nan"), "seconds": float("inf"),
                                                "lr_scale": np.float64(-np.inf)}
    runlog.append_metrics(path, record)
    runlog.append_metrics(path, record | {"epoch": 2, "train_loss": 0.25, "seconds": 1.0, "lr_scale": 1.0})
    for rewrite in (False, True):
        if rewrite:
            runlog.write_metrics(path, runlog.read_metrics(path))
        first, second = strict_metrics(path)
        assert (first["train_loss"], first["seconds"], first["lr_scale"], first["test_top1"]) == (None, None, None, 0.5)
        assert first["non_finite"] == {"train_loss": "nan", "seconds": "inf", "lr_scale": "-inf"}
        assert second["train_loss"] == 0.25 and "non_finite" not in second
    with pytest.raises(ValueError):  # deeper than one level: refused, never written as a bare NaN
        runlog.append_metrics(path, record | {"extra": [float("nan")]})
    assert len(strict_metrics(path)) == 2


# -- SIGTERM ------------------------------------------------------------------------------------
def test_sigterm_during_a_step_is_deferred_and_exits_like_ctrl_c_with_143():
    stop = train.StopRequest()
    finished = []
    with stop.installed():
        with pytest.raises(train.Terminated) as info:
            with stop.critical():
                os.kill(os.getpid(), signal.SIGTERM)
                finished.append("step completed")
        assert finished == ["step completed"] and train.exit_status(info.value) == train.EXIT_TERMINATED == 143
        assert isinstance(info.value, KeyboardInterrupt)  # so every Ctrl-C path saves it the same way
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sigterm_mid_training_saves_a_checkpoint_that_resumes(folder_data, tmp_path, capsys):
    out = tmp_path / "run"
    # more epochs than it can finish before the signal lands
    proc = subprocess.Popen([*TRAIN, "--data", str(folder_data), "--batch-size", "8", "--epochs", "100000",
                             "--workers", "0", "--no-progress", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "metrics.jsonl").exists(), proc, "the first epoch's metrics")
        # meanwhile a second train into the same directory is refused, naming the first
        assert run_train("--resume", "--out", out) == 2
        assert f"in use by another alexnet-raw train (pid {proc.pid}" in capsys.readouterr().err
        proc.send_signal(signal.SIGTERM)  # what Slurm sends before it kills the job
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == train.EXIT_TERMINATED, (proc.returncode, stdout[-2000:], stderr[-2000:])
    assert "terminated (SIGTERM): saved" in stdout and "--resume" in stdout
    saved = ck.load_checkpoint(out / ck.FILENAME)
    epoch, step = saved.training["epoch"], saved.training["step"]
    assert epoch >= 1 and saved.steps == 3 * epoch + step  # 24 images in batches of 8: 3 steps an epoch
    assert run_train("--resume", "--out", out, "--epochs", epoch + 1) == 0
    assert [r["epoch"] for r in strict_metrics(out / "metrics.jsonl")] == list(range(1, epoch + 2))


# -- crafted checkpoints ----------------------------------------------------------------------------
class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted(path, source, **metadata):
    """The checkpoint at `source` with some metadata replaced (the checksum covers tensors only)."""
    from safetensors.numpy import load, save

    data = source.read_bytes()
    header = ck._metadata(data) | metadata
    path.write_bytes(save(load(data), metadata=header))
    return path


def test_a_pickled_payload_as_a_checkpoint_runs_nothing_and_is_named(folder_data, tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Payload(marker)))
    assert evaluate.main(["--checkpoint", str(evil)]) == 2
    assert f"{evil} is not a readable safetensors file" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ck.FILENAME).write_bytes(evil.read_bytes())
    assert run_train("--resume", "--out", tmp_path / "run") == 2
    assert str(tmp_path / "run" / ck.FILENAME) in capsys.readouterr().err
    assert not marker.exists(), "the pickle's payload ran"


@pytest.mark.parametrize("training, expected", [
    ("[1, 2]", "checkpoint metadata 'training' must be a JSON object, got list"),
    ('{"image_size": "32"}', "training field 'image_size' must be int, got '32'"),
    ('{"crop_size": 0}', "training field 'crop_size' must be >= 1, got 0"),
    ('{"epoch": true}', "training field 'epoch' must be int, got True"),
    ('{"class_names": ["a", 2, "c"]}', "training field 'class_names' must be 3 strings"),
    ('{"class_names": "abc"}', "training field 'class_names' must be list"),
])
def test_crafted_checkpoint_metadata_is_refused_naming_the_file(mini_checkpoint, tmp_path, training, expected):
    path = crafted(tmp_path / "crafted.safetensors", mini_checkpoint, training=training)
    with pytest.raises(ck.CheckpointError) as info:
        ck.load_checkpoint(path)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


def test_a_checkpoint_lacking_training_fields_is_refused_by_every_reader(mini_checkpoint, folder_data, tmp_path,
                                                                         capsys):
    (tmp_path / "run").mkdir()
    path = crafted(tmp_path / "run" / ck.FILENAME, mini_checkpoint, training=json.dumps({"epoch": 0}))
    assert evaluate.main(["--checkpoint", str(path), "--data", str(folder_data)]) == 2
    assert f"{path}: checkpoint training state lacks ['image_size', 'crop_size']" in capsys.readouterr().err
    assert run_train("--resume", "--out", path.parent) == 2
    assert f"{path}: checkpoint training state lacks ['data', 'batch_size'" in capsys.readouterr().err


@pytest.mark.parametrize("tensor", ["statistics/eigenvectors", "momentum/fc2a.biases"])
def test_crafted_non_finite_tensors_with_a_matching_checksum_are_refused(mini_checkpoint, tmp_path, tensor):
    from safetensors.numpy import load, save

    data = mini_checkpoint.read_bytes()
    tensors = load(data)
    tensors[tensor] = np.full_like(tensors[tensor], np.nan)
    path = tmp_path / "crafted.safetensors"  # the checksum recomputed: it guards against flipped bits only
    path.write_bytes(save(tensors, metadata=ck._metadata(data) | {"sha256": ck._digest(tensors)}))
    with pytest.raises(ck.CheckpointError, match=rf"crafted.safetensors: tensor '{tensor}' holds non-finite values"):
        ck.load_checkpoint(path)
