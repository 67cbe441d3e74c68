"""alexnet-raw train: outputs, resume bit-identical to an uninterrupted run (at an epoch boundary
and mid-epoch after Ctrl-C), deferred SIGINT, refused resumes, --help of every new command."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet_raw.training import checkpoint as ck, runlog, train
from alexnet_raw import data
from cifar_files import write_cifar_directory
from train_helpers import run_train

CONVNET_DIR = Path(__file__).resolve().parent.parent / "engine" / "cuda-convnet"  # cuda-convnet's example files

TIMING = {"images_per_second", "seconds"}


def assert_same_state(a, b):
    a, b = ck.load_checkpoint(a), ck.load_checkpoint(b)
    assert a.steps == b.steps and a.training["epoch"] == b.training["epoch"]
    for group in ("weights", "momentum"):
        x, y = getattr(a, group), getattr(b, group)
        assert x.keys() == y.keys()
        for key in x:
            assert np.array_equal(x[key], y[key]), f"{group}/{key} differs"
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in a.training["metrics"]]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING} for r in b.training["metrics"]]
    assert a.training["schedule"] == b.training["schedule"]


@pytest.fixture(scope="module")
def straight(folder_data, tmp_path_factory):
    """Two epochs without interruption (the reference of the resume tests)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert run_train("--data", folder_data, "--epochs", 2, "--batch-size", 8, "--seed", 3, "--lr-steps", 1,
                     "--out", out) == 0
    return out


def test_outputs_metrics_plot_and_kept_checkpoints(straight, capsys):
    records = runlog.read_metrics(straight / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert set(runlog.FIELDS) <= set(r)
        for key in ("train_top1", "test_top1", "test_top5"):
            assert 0.0 <= r[key] <= 1.0
        assert r["test_top5"] == 1.0  # 3 classes: top-5 is top-3
        assert r["images_per_second"] > 0 and r["seconds"] > 0 and np.isfinite(r["train_loss"])
    assert [r["lr_scale"] for r in records] == [1.0, pytest.approx(0.1)]
    assert (straight / "curves.png").read_bytes()[:4] == b"\x89PNG"
    saved = ck.load_checkpoint(straight / ck.FILENAME)
    assert saved.training["epoch"] == 2 and saved.training["step"] == 0 and saved.steps == 2 * 3
    assert saved.training["class_names"] == ["class0", "class1", "class2"]
    assert saved.training["metrics"] == records
    assert sorted(p.name for p in straight.glob("checkpoint-epoch*")) == [
        "checkpoint-epoch1.safetensors", "checkpoint-epoch2.safetensors"]


def test_resume_at_epoch_boundary_is_bit_identical(straight, folder_data, tmp_path):
    out = tmp_path / "run"
    common = ("--data", folder_data, "--batch-size", 8, "--seed", 3)
    assert run_train(*common, "--lr-steps", 1, "--epochs", 1, "--out", out) == 0
    assert run_train("--resume", "--out", out, "--epochs", 2) == 0
    assert_same_state(straight / ck.FILENAME, out / ck.FILENAME)
    assert [r["epoch"] for r in runlog.read_metrics(out / "metrics.jsonl")] == [1, 2]


def test_ctrl_c_mid_epoch_saves_and_resume_is_bit_identical(straight, folder_data, tmp_path, monkeypatch, capsys):
    real = data.Batches
    interrupted = []

    class InterruptedBatches(real):
        def __iter__(self):
            for k, batch in enumerate(super().__iter__()):
                if self.train and self.epoch == 1 and self.start + k == 2 and not interrupted:
                    interrupted.append(k)
                    raise KeyboardInterrupt  # as Ctrl-C while waiting for batch 2 of epoch 2
                yield batch

    monkeypatch.setattr(data, "Batches", InterruptedBatches)
    out = tmp_path / "run"
    status = run_train("--data", folder_data, "--epochs", 2, "--batch-size", 8, "--seed", 3, "--lr-steps", 1,
                       "--out", out)
    assert status == train.EXIT_INTERRUPTED and interrupted
    assert "--resume" in capsys.readouterr().out
    saved = ck.load_checkpoint(out / ck.FILENAME)
    assert (saved.training["epoch"], saved.training["step"], saved.steps) == (1, 2, 5)
    assert saved.training["partial"]["batches"] == 2
    assert run_train("--resume", "--out", out) == 0
    assert_same_state(straight / ck.FILENAME, out / ck.FILENAME)


def test_sigint_during_a_step_is_deferred_until_the_step_ends():
    stop = train.StopRequest()
    finished = []
    with stop.installed():
        with pytest.raises(KeyboardInterrupt):
            with stop.critical():
                os.kill(os.getpid(), signal.SIGINT)
                finished.append("step completed")
        assert finished == ["step completed"] and stop.requested
        stop.requested = False
        with pytest.raises(KeyboardInterrupt):  # outside a step: at once
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_refused_starts_and_resumes(straight, folder_data, tmp_path, capsys):
    assert run_train("--data", folder_data, "--out", straight) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert run_train("--resume", "--out", tmp_path / "nothing") == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert run_train("--resume", "--out", straight, "--batch-size", 16, "--network", "torchvision") == 2
    err = capsys.readouterr().err
    assert "--batch-size 16 (the checkpoint has 8)" in err and "--network torchvision (the checkpoint has mini)" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / ck.FILENAME).write_bytes((straight / ck.FILENAME).read_bytes()[:1000])
    assert run_train("--resume", "--out", broken) == 2
    assert str(broken / ck.FILENAME) in capsys.readouterr().err
    assert run_train("--data", tmp_path / "missing", "--out", tmp_path / "x") == 2
    assert "missing" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export"])
def test_help(command):
    out = subprocess.run([sys.executable, "-P", "-m", "alexnet_raw.cli", command, "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert f"alexnet-raw {command}" in out.stdout and "--checkpoint" in out.stdout or command == "train"
    if command == "train":
        for flag in ("--data", "--network", "--cfg", "--epochs", "--batch-size", "--seed", "--resume", "--out"):
            assert flag in out.stdout


def test_no_arguments_means_mini_on_the_digits(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = train.Run(train.build_parser().parse_args([]))
    assert (run.model.network_name, run.source, run.epochs, run.batch_size) == (
        "mini", "digits", train.DEFAULT_EPOCHS, train.DEFAULT_BATCH_SIZE)
    assert str(run.out) == os.path.join("runs", "mini-digits")
    assert (len(run.train_set), len(run.test_set), len(run.class_names)) == (1438, 359, 10)
    assert run.schedule.factor(train.DEFAULT_LR_STEPS[0]) == 0.1
    assert not (tmp_path / "runs").exists()  # nothing written before training starts


CIFAR_18PCT = [CONVNET_DIR / "layers-18pct.cfg", CONVNET_DIR / "layer-params-18pct.cfg"]


def test_cuda_convnets_18pct_files_train_on_cifar_at_the_datas_size(tmp_path, capsys):
    """`alexnet-raw train --cfg layers-18pct.cfg layer-params-18pct.cfg --data cifar-10-batches-py`
    with cuda-convnet's own files, unedited: the network takes the data's 32 x 32 images (the file
    sets no size); --image-size 24 gives random 24 x 24 crops of them, as cuda-convnet's cropped
    CIFAR provider."""
    source = tmp_path / "cifar-10-batches-py"
    write_cifar_directory(source, np.random.default_rng(0), train_sizes=(6, 6, 6, 6, 6), test_size=6)
    common = ["--cfg", *CIFAR_18PCT, "--data", source, "--epochs", "1", "--batch-size", "10", "--stats-images", "30"]
    assert run_train(*common, "--out", tmp_path / "a") == 0, capsys.readouterr().err
    saved = ck.load_checkpoint(tmp_path / "a" / ck.FILENAME)
    assert saved.input_size == 32 and saved.steps == 3
    assert (saved.training["image_size"], saved.training["crop_size"]) == (32, 32)
    assert saved.weights["fc10.weights.0"].shape == (10, 64 * 4 * 4)
    assert run_train(*common, "--image-size", "24", "--out", tmp_path / "b") == 0, capsys.readouterr().err
    saved = ck.load_checkpoint(tmp_path / "b" / ck.FILENAME)
    assert saved.input_size == 24 and (saved.training["image_size"], saved.training["crop_size"]) == (32, 24)
    assert saved.weights["fc10.weights.0"].shape == (10, 64 * 3 * 3)
    capsys.readouterr()
    # --resume keeps the stored size; another one is refused
    assert run_train("--resume", "--out", tmp_path / "b", "--image-size", "32") == 2
    assert "--image-size 32 (the checkpoint has 24)" in capsys.readouterr().err
    # a size the network cannot take names the layer; nothing is written
    assert run_train(*common, "--image-size", "2", "--out", tmp_path / "c") == 2
    err = capsys.readouterr().err
    assert "--image-size gives 2x2 inputs" in err and "[pool" in err
    assert not (tmp_path / "c" / ck.FILENAME).exists()


def test_a_network_without_a_size_on_images_of_many_sizes_asks_for_one(tmp_path, capsys):
    from train_helpers import write_folder

    root = write_folder(tmp_path / "mixed", classes=2, per_class=(2, 1), size=12)
    from PIL import Image

    Image.new("RGB", (20, 14)).save(root / "train" / "class0" / "odd.png")
    common = ["--cfg", *CIFAR_18PCT, "--data", root, "--epochs", "1", "--batch-size", "2"]
    assert run_train(*common, "--out", tmp_path / "a") == 2
    err = capsys.readouterr().err
    assert "sets no image size" in err and "differ in size: pass --image-size N" in err
    assert run_train(*common, "--image-size", "32", "--out", tmp_path / "b") == 0, capsys.readouterr().err
    assert ck.load_checkpoint(tmp_path / "b" / ck.FILENAME).input_size == 32
    # a network with imgSize takes only its own
    assert run_train("--network", "mini", "--data", root, "--epochs", "1", "--image-size", "24",
                     "--out", tmp_path / "m") == 2
    assert "takes 32x32 images (its imgSize)" in capsys.readouterr().err


def test_training_follows_the_params_files_schedules(tmp_path, capsys, monkeypatch):
    """cuda-convnet2's dexp/linear schedules in the params file: step k of K takes progress k / K,
    the trainer's own step schedule stays at 1, and --lr-steps (which would multiply them) is refused."""
    from alexnet_raw import Model

    source = tmp_path / "cifar-10-batches-py"
    write_cifar_directory(source, np.random.default_rng(0), train_sizes=(4, 4, 4, 4, 4), test_size=4)
    params = tmp_path / "params.cfg"
    params.write_text(CIFAR_18PCT[1].read_text().replace(
        "[conv1]\nepsW=0.001\n", "[conv1]\nepsW=dexp[base=0.001;tgtFactor=100;numSteps=2]\n", 1))
    assert "dexp" in params.read_text()
    seen = []
    real_step = Model.step

    def recording_step(self, epoch=0, progress=0.0):
        seen.append((epoch, progress, self.lr_scale(epoch), self.learn["conv1"].rates(progress)[0][0]))
        return real_step(self, epoch, progress)

    monkeypatch.setattr(Model, "step", recording_step)
    common = ["--cfg", CIFAR_18PCT[0], params, "--data", source, "--batch-size", "10", "--stats-images", "20"]
    assert run_train(*common, "--epochs", "2", "--out", tmp_path / "a") == 0, capsys.readouterr().err
    assert [round(p, 12) for _, p, _, _ in seen] == [0.0, 0.25, 0.5, 0.75]  # 2 epochs of 2 steps
    assert [e for e, _, _, _ in seen] == [0, 0, 1, 1] and all(scale == 1.0 for _, _, scale, _ in seen)
    assert [r for _, _, _, r in seen] == [0.001, 0.001, 0.001, 0.001 / 100]  # the second half: base / 100
    capsys.readouterr()
    assert run_train(*common, "--lr-steps", "1", "--out", tmp_path / "b") == 2
    assert "schedules its learning rates itself" in capsys.readouterr().err
