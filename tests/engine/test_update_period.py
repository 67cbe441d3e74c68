"""cuda-convnet2's updatePeriod (engine/model.py's step): a layer with updatePeriod = P is updated
after every P-th minibatch with the mean of the P minibatches' gradients (facts from
cuda-convnet2's layer.cu: updateWeights when the passes done are a multiple of the period, the
gradient scaled by 1 / (period x minibatch size) and accumulated in between); its weights and
momentum stay as they are in between; the accumulated gradients travel in checkpoints."""

import numpy as np
import pytest

from alexnet_raw import Model
from alexnet_raw.engine import cfg
from alexnet_raw.training import checkpoint
from cfg_texts import DATA, classifier, conv_of_images

LAYERS = DATA + conv_of_images() + """
[fc1]
type=fc
inputs=conv1
outputs=5
initW=0.1
""" + classifier("fc1")
PARAMS = """
[conv1]
epsW=0.1
epsB=0.2
momW=0.9
momB=0.9
wc=0.01
updatePeriod={conv_period}
[fc1]
epsW=0.1
epsB=0.2
momW=0.5
momB=0.5
wc=0.001
updatePeriod={fc_period}
"""


def model_of(write_cfg, conv_period, fc_period, dtype=np.float64):
    lp, pp = write_cfg(LAYERS, PARAMS.format(conv_period=conv_period, fc_period=fc_period))
    return Model.from_cfg(lp, pp, seed=7, dtype=dtype, image_size=6)


def batches(count, n=3, dtype=np.float64):
    rng = np.random.default_rng(11)
    return [(rng.standard_normal((n, 3, 6, 6)).astype(dtype), rng.integers(0, 5, n)) for _ in range(count)]


def test_a_period_of_two_is_one_update_with_the_mean_of_two_minibatches(write_cfg):
    # every layer at period 2: nothing moves after the first minibatch, and the update after the second
    # is the one step on both minibatches at once (the mean gradient of 2N images, same parameters)
    accumulating, plain = model_of(write_cfg, 2, 2), model_of(write_cfg, 1, 0)
    assert [plain.learn[n].update_period for n in ("conv1", "fc1")] == [1, 1]
    (x1, y1), (x2, y2) = batches(2)
    start, start_momentum = accumulating.state_dict(), accumulating.momentum_state_dict()
    accumulating.train_step(x1, y1)
    for key, value in accumulating.state_dict().items():
        np.testing.assert_array_equal(value, start[key])
        np.testing.assert_array_equal(accumulating.momentum_state_dict()[key], start_momentum[key])
    accumulating.train_step(x2, y2)
    plain.train_step(np.concatenate([x1, x2]), np.concatenate([y1, y2]))
    for key, value in plain.state_dict().items():
        np.testing.assert_allclose(accumulating.state_dict()[key], value, rtol=1e-12, atol=1e-15, err_msg=key)
        np.testing.assert_allclose(accumulating.momentum_state_dict()[key], plain.momentum_state_dict()[key],
                                   rtol=1e-12, atol=1e-15, err_msg=key)
        assert not np.array_equal(value, start[key]), key


def test_layers_of_different_periods_update_on_their_own_steps(write_cfg):
    model = model_of(write_cfg, 1, 3)
    data = batches(6)
    history = []
    for x, y in data:
        model.train_step(x, y)
        history.append(model.state_dict())
    conv_moved = [not np.array_equal(a["conv1.weights.0"], b["conv1.weights.0"]) for a, b in zip(history, history[1:])]
    fc_moved = [not np.array_equal(a["fc1.weights.0"], b["fc1.weights.0"]) for a, b in zip(history, history[1:])]
    assert conv_moved == [True] * 5
    assert fc_moved == [False, True, False, False, True]  # steps 2, 3 | 4, 5, 6: updates after the 3rd and 6th


def test_accumulated_gradients_survive_a_checkpoint(write_cfg, tmp_path):
    data = batches(5)
    straight = model_of(write_cfg, 2, 3)
    for x, y in data:
        straight.train_step(x, y)
    first = model_of(write_cfg, 2, 3)
    for x, y in data[:2]:  # mid-period for fc1 (2 of 3 minibatches summed)
        first.train_step(x, y)
    assert set(first.accumulated_state_dict()) == {"conv1.weights.0", "conv1.biases", "fc1.weights.0", "fc1.biases"}
    training = {"epoch": 0, "step": 2, "batch_size": 3, "class_names": list("abcde"), "schedule": {}, "metrics": []}
    path = checkpoint.save_checkpoint(tmp_path / "mid.safetensors", first, training)
    resumed = checkpoint.load_checkpoint(path).make_model()
    assert resumed.steps == 2
    for x, y in data[2:]:
        resumed.train_step(x, y)
    for key, value in straight.state_dict().items():
        assert value.tobytes() == resumed.state_dict()[key].tobytes(), key


def test_update_period_must_be_a_count(write_cfg):
    lp, pp = write_cfg(LAYERS, PARAMS.format(conv_period=-1, fc_period=1))
    with pytest.raises(cfg.CfgError, match=r"\[conv1\] updatePeriod: must be >= 0, got -1"):
        Model.from_cfg(lp, pp, dtype=np.float64, image_size=6)
    lp, pp = write_cfg(LAYERS, PARAMS.format(conv_period=1.5, fc_period=1))
    with pytest.raises(cfg.CfgError, match=r"\[conv1\] updatePeriod: expected an integer, got '1.5'"):
        Model.from_cfg(lp, pp, dtype=np.float64, image_size=6)


def test_accumulated_state_is_checked(write_cfg):
    model = model_of(write_cfg, 2, 1)
    with pytest.raises(KeyError, match="missing"):
        model.load_accumulated_state_dict({})
    state = model.accumulated_state_dict()
    state["conv1.biases"] = np.full(4, np.nan)
    with pytest.raises(ValueError, match="finite"):
        model.load_accumulated_state_dict(state)
