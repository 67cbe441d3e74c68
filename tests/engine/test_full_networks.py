"""The full-size networks against PyTorch: krizhevsky2012 (run #145, two towers, batch 2) through
several training steps, and torchvision weights giving torchvision's logits."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
import reference_model
from reference_model import close  # the tolerance policy of whole networks

from alexnet_raw import Model


def test_krizhevsky2012_float32_logits_match_torch():
    model = Model.named("krizhevsky2012", seed=12)
    x = np.random.default_rng(2).standard_normal((2, 3, 224, 224)).astype(np.float32)
    params = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    ref = reference_model.forward(model, params, torch.from_numpy(x), train=False).numpy()
    close(model.forward(x), ref, "float32 logits", np.float32)


def test_krizhevsky2012_training_steps_match_torch():
    model = Model.named("krizhevsky2012", seed=11, dtype=np.float64)
    rng = np.random.default_rng(0)
    state, momentum = model.state_dict(), model.momentum_state_dict()
    initial_conv1 = state["conv1a.weights.0"].copy()
    assert sum(v.size for v in state.values()) == 60_965_224
    for step in range(2):
        x = rng.standard_normal((2, 3, 224, 224))
        labels = rng.integers(0, 1000, 2)
        ref_loss, ref_logits, ref_grads, ref_params, ref_momentum = reference_model.train_step(
            model, state, momentum, x, labels)
        logits = model.forward(x, train=True)
        close(logits, ref_logits, f"logits, step {step}")
        loss = model.backward(labels)
        assert loss == pytest.approx(ref_loss, rel=1e-12)
        grads = model.gradient_dict()
        for key in ref_grads:
            close(grads[key], ref_grads[key], f"gradient {key}, step {step}")
        model.step()
        state, momentum = model.state_dict(), model.momentum_state_dict()
        for key in ref_params:
            close(state[key], ref_params[key], f"parameter {key} after step {step}")
            close(momentum[key], ref_momentum[key], f"momentum {key} after step {step}")
    # conv1 has epsW=0 in the #145 params file: frozen, as in the original
    assert np.array_equal(state["conv1a.weights.0"], initial_conv1)


def torchvision_alexnet(sd, x):
    """torchvision.models.alexnet's forward in eval mode, written from its definition."""
    def conv(x, i, stride=1, padding=0):
        return torch.relu(TF.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], stride, padding))

    x = TF.max_pool2d(conv(x, 0, 4, 2), 3, 2)
    x = TF.max_pool2d(conv(x, 3, 1, 2), 3, 2)
    x = conv(conv(conv(x, 6, 1, 1), 8, 1, 1), 10, 1, 1)
    x = TF.adaptive_avg_pool2d(TF.max_pool2d(x, 3, 2), (6, 6)).flatten(1)
    x = torch.relu(TF.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"]))
    x = torch.relu(TF.linear(x, sd["classifier.4.weight"], sd["classifier.4.bias"]))
    return TF.linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


def torchvision_state_dict(seed):
    g = torch.Generator().manual_seed(seed)
    shapes = {"features.0": (64, 3, 11, 11), "features.3": (192, 64, 5, 5), "features.6": (384, 192, 3, 3),
              "features.8": (256, 384, 3, 3), "features.10": (256, 256, 3, 3), "classifier.1": (4096, 9216),
              "classifier.4": (4096, 4096), "classifier.6": (1000, 4096)}
    sd = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        sd[f"{name}.weight"] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        sd[f"{name}.bias"] = torch.randn(shape[0], generator=g) * 0.1
    return sd


def test_torchvision_weights_give_torchvision_logits_and_round_trip():
    sd = torchvision_state_dict(3)
    model = Model.named("torchvision")
    model.load_torchvision_state_dict(sd)
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    ref = torchvision_alexnet(sd, torch.from_numpy(x)).numpy()
    close(model.forward(x), ref, "torchvision logits", np.float32)
    back = model.torchvision_state_dict()
    assert sorted(back) == sorted(sd)
    assert all(np.array_equal(back[k], sd[k].numpy()) for k in sd)
    with pytest.raises(KeyError, match="missing.*features.0.bias"):
        model.load_torchvision_state_dict({k: v for k, v in sd.items() if k != "features.0.bias"})
    with pytest.raises(ValueError, match="torchvision layout"):
        Model.named("mini").load_torchvision_state_dict(sd)
