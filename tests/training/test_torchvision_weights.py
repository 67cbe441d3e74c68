"""torchvision AlexNet weights: a .pth state_dict imported into the `torchvision` network and
exported back round-trips exactly; `alexnet-raw export` and `train --import-torchvision`; errors.

The .pth files are made with torch.nn modules laid out as torchvision.models.alexnet (torchvision
itself is not a dependency): features = Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, MaxPool2d, Conv2d,
ReLU, Conv2d, ReLU, Conv2d, ReLU, MaxPool2d; classifier = Dropout, Linear, ReLU, Dropout, Linear,
ReLU, Linear."""

import numpy as np
import pytest
import torch
from torch import nn

from alexnet_raw import Model
from alexnet_raw.training import checkpoint as ck, torchvision_weights as tvw
from train_helpers import run_train, save_model_checkpoint

# A torchvision-layout network small enough to train in tests: conv1..conv5, fc6..fc8 with one
# input each (what Model.load_torchvision_state_dict needs), 12x12 inputs.
TINY = dict(conv=[(3, 4, 3, 2, 1), (4, 6, 3, 1, 1), (6, 6, 3, 1, 1), (6, 6, 3, 1, 1), (6, 4, 3, 1, 1)],
            image=12, fc=[(4 * 6 * 6, 8), (8, 8)])


def torchvision_like(num_classes, conv, fc):
    """An nn.Module with torchvision AlexNet's parameter names; conv: (in, out, size, stride, pad)."""
    c = [nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in conv]
    features = nn.Sequential(c[0], nn.ReLU(), nn.MaxPool2d(3, 2), c[1], nn.ReLU(), nn.MaxPool2d(3, 2), c[2],
                             nn.ReLU(), c[3], nn.ReLU(), c[4], nn.ReLU(), nn.MaxPool2d(3, 2))
    classifier = nn.Sequential(nn.Dropout(), nn.Linear(*fc[0]), nn.ReLU(), nn.Dropout(), nn.Linear(*fc[1]),
                               nn.ReLU(), nn.Linear(fc[1][1], num_classes))
    module = nn.Module()
    module.features, module.classifier = features, classifier
    return module


ALEXNET = dict(conv=[(3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
                     (256, 256, 3, 1, 1)], fc=[(256 * 6 * 6, 4096), (4096, 4096)])


def tiny_cfg(root):
    layers = ["[data]\ntype=data\ndataIdx=0\nimgSize=12\nchannels=3\n", "[labels]\ntype=data\ndataIdx=1\n"]
    previous = "data"
    for n, (i, o, k, s, p) in enumerate(TINY["conv"], 1):
        layers.append(f"[conv{n}]\ntype=conv\ninputs={previous}\nchannels={i}\nfilters={o}\nfilterSize={k}\n"
                      f"stride={s}\npadding={p}\ninitW=0.1\nneuron=relu\nsizeRule=floor\ngpu=0\n")
        previous = f"conv{n}"
    for n, (_, o) in zip((6, 7), TINY["fc"]):
        layers.append(f"[fc{n}]\ntype=fc\ninputs={previous}\noutputs={o}\ninitW=0.1\nneuron=relu\n")
        previous = f"fc{n}"
    layers += ["[fc8]\ntype=fc\ninputs=fc7\noutputs=3\ninitW=0.1\n", "[probs]\ntype=softmax\ninputs=fc8\n",
               "[logprob]\ntype=cost.logreg\ninputs=labels,probs\n"]
    learn = "".join(f"[{name}]\nepsW=0.01\nepsB=0.02\nmomW=0.9\nmomB=0.9\nwc=0.0005\n\n"
                    for name in [f"conv{n}" for n in range(1, 6)] + ["fc6", "fc7", "fc8"])
    (root / "tiny.cfg").write_text("\n".join(layers))
    (root / "tiny-params.cfg").write_text(learn)
    return root / "tiny.cfg", root / "tiny-params.cfg"


def assert_same_state_dict(a, b):
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_alexnet_pth_round_trips_exactly(tmp_path):
    torch.manual_seed(0)
    state = torchvision_like(10, **ALEXNET).state_dict()
    torch.save(state, tmp_path / "in.pth")
    model = Model.named("torchvision", num_classes=10)
    tvw.import_pth(model, tmp_path / "in.pth")
    ours = model.state_dict()
    assert np.array_equal(ours["conv1.weights.0"], state["features.0.weight"].numpy())
    assert np.array_equal(ours["fc6.weights.0"], state["classifier.1.weight"].numpy())
    assert np.array_equal(ours["fc8.biases"], state["classifier.6.bias"].numpy())
    tvw.export_pth(model, tmp_path / "out.pth")
    assert_same_state_dict(state, torch.load(tmp_path / "out.pth", weights_only=True))


def test_export_command_and_training_from_imported_weights(folder_data, tmp_path, capsys):
    layers, params = tiny_cfg(tmp_path)
    torch.manual_seed(1)
    state = torchvision_like(3, TINY["conv"], TINY["fc"]).state_dict()
    torch.save({"state_dict": state}, tmp_path / "start.pth")  # the wrapped form is accepted too
    model = Model.from_cfg(layers, params, num_classes=3)
    tvw.import_pth(model, tmp_path / "start.pth")
    save_model_checkpoint(tmp_path / "tiny.safetensors", model, folder_data)
    assert tvw.main(["--checkpoint", str(tmp_path / "tiny.safetensors"), str(tmp_path / "out.pth")]) == 0
    assert "num_classes=3" in capsys.readouterr().out
    assert_same_state_dict(state, torch.load(tmp_path / "out.pth", weights_only=True))
    # a run that starts from the .pth: its first checkpoint is one SGD epoch away from those weights
    out = tmp_path / "run"
    assert run_train("--data", folder_data, "--cfg", layers, params, "--import-torchvision",
                     tmp_path / "start.pth", "--epochs", 1, "--batch-size", 24, "--out", out) == 0
    trained = ck.load_checkpoint(out / ck.FILENAME)
    assert trained.steps == 1
    start = model.state_dict()
    assert all(trained.weights[k].shape == start[k].shape for k in start)
    assert not np.array_equal(trained.weights["conv1.weights.0"], start["conv1.weights.0"])


def test_bad_files_and_networks(mini_checkpoint, tmp_path, capsys):
    layers, params = tiny_cfg(tmp_path)
    model = Model.from_cfg(layers, params, num_classes=3)
    before = model.state_dict()
    state = torchvision_like(3, TINY["conv"], TINY["fc"]).state_dict()
    missing = {k: v for k, v in state.items() if k != "classifier.6.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing.pth: not a torchvision AlexNet state_dict: missing "
                                         r"\['classifier.6.bias'\]"):
        tvw.import_pth(model, tmp_path / "missing.pth")
    torch.save({**state, "classifier.6.weight": torch.zeros(5, 8)}, tmp_path / "classes.pth")
    with pytest.raises(ValueError, match=r"classes.pth: .*fc8.weights.0.*shape \(3, 8\), got \(5, 8\)"):
        tvw.import_pth(model, tmp_path / "classes.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth is not a readable PyTorch state_dict file"):
        tvw.import_pth(model, tmp_path / "junk.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="holds a list, expected a state_dict"):
        tvw.import_pth(model, tmp_path / "list.pth")
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())  # failed loads changed nothing
    # the mini network (two towers) has no torchvision layout
    assert tvw.main(["--checkpoint", str(mini_checkpoint), str(tmp_path / "x.pth")]) == 2
    assert "does not have the torchvision layout" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()
