"""alexnet-raw train when things go wrong: a real Ctrl-C (SIGINT to the process) saves and exits
130, a full disk leaves the previous checkpoint intact, bad network files are named."""

import errno
import os
import signal
import subprocess
import sys
import time

from alexnet_raw.training import checkpoint as ck, runlog, train
from alexnet_raw.engine.model import network_files
from train_helpers import run_train


def test_sigint_saves_a_checkpoint_that_resumes(folder_data, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-P", "-m", "alexnet_raw.cli", "train", "--data", str(folder_data), "--batch-size", "8",
           # more epochs than it can finish before the signal lands (40 took 2 s once: the run had ended)
           "--epochs", "100000", "--workers", "0", "--no-progress", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # a wait, not a timing: the first epoch may include compiling the kernels on a cold cache
        deadline = time.monotonic() + 600
        while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert (out / "metrics.jsonl").exists(), proc.communicate()[1] if proc.poll() is not None else "too slow"
        proc.send_signal(signal.SIGINT)  # Ctrl-C, somewhere in epoch 2 or a later one
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == train.EXIT_INTERRUPTED, (proc.returncode, stdout[-2000:], stderr[-2000:])
    assert "interrupted: saved" in stdout and "--resume" in stdout
    saved = ck.load_checkpoint(out / ck.FILENAME)
    epoch, step = saved.training["epoch"], saved.training["step"]
    assert epoch >= 1 and saved.steps == 3 * epoch + step  # 24 images, batches of 8: 3 steps an epoch
    assert len(runlog.read_metrics(out / "metrics.jsonl")) >= epoch
    assert run_train("--resume", "--out", out, "--epochs", epoch + 1) == 0
    assert [r["epoch"] for r in runlog.read_metrics(out / "metrics.jsonl")] == list(range(1, epoch + 2))


def test_full_disk_keeps_the_previous_checkpoint(folder_data, tmp_path, monkeypatch, capsys):
    real, calls = ck.write_atomic, []

    def full_disk_on_second_save(path, data):
        calls.append(path)
        if len(calls) == 2:
            with open(f"{path}.tmp", "wb") as f:  # part of the file written, then the disk is full
                f.write(data[:100])
            os.unlink(f"{path}.tmp")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, data)

    monkeypatch.setattr(ck, "write_atomic", full_disk_on_second_save)
    out = tmp_path / "run"
    # a disk that gives out is a failed run (1), not a bad argument (2)
    assert run_train("--data", folder_data, "--epochs", 2, "--batch-size", 8, "--keep", 0, "--out", out) == 1
    err = capsys.readouterr().err
    assert f"alexnet-raw train: error: could not write checkpoint {out / ck.FILENAME}: No space left on device" in err
    assert "the previous checkpoint there is intact" in err
    saved = ck.load_checkpoint(out / ck.FILENAME)
    assert (saved.training["epoch"], saved.steps) == (1, 3)
    assert [r["epoch"] for r in runlog.read_metrics(out / "metrics.jsonl")] == [1]
    monkeypatch.setattr(ck, "write_atomic", real)
    assert run_train("--resume", "--out", out) == 0  # space again: the run continues from epoch 1
    assert ck.load_checkpoint(out / ck.FILENAME).training["epoch"] == 2


def test_bad_network_files_are_named(folder_data, tmp_path, capsys):
    good_layers, good_params = network_files("mini")
    broken = tmp_path / "broken.cfg"
    broken.write_text("[data]\ntype=data\nimgSize=32\n\n[conv1a]\ntype=conv\ninputs=data\n")
    for args, expected in ((("--cfg", tmp_path / "nothere.cfg", good_params), "nothere.cfg: no such file"),
                           (("--cfg", broken, good_params), "broken.cfg"),
                           (("--cfg", good_layers, broken), "broken.cfg")):
        assert run_train("--data", folder_data, *args, "--out", tmp_path / "run") == 2
        assert expected in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written
