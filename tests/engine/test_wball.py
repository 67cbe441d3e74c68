"""cuda-convnet2's wball (engine/model.py's step) and the cost's coeff: after an update, each filter of a conv layer and
each output of an fc layer is scaled to norm wball (HardWeightConstraintOperator), each filter at
each position of a local layer down to it where longer (kNormalizeLCWeights); weights with a base
epsW of 0 are left alone. A network with all three trains a float64 step as the torch reference.
The cost's coeff weights the loss and its gradient."""

import numpy as np
import pytest

import reference_model
from alexnet_raw import Model
from cfg_texts import DATA, classifier, conv_of_images

LAYERS = DATA + conv_of_images() + """
[local2]
type=local
inputs=conv1
channels=4
filters=5
filterSize=3
stride=2
initW=0.15
neuron=relu
[fc3]
type=fc
inputs=local2,conv1
outputs=3
initW=0.3,0.3
""" + classifier("fc3")
PARAMS = """
[conv1]
epsW=0.1
epsB=0.1
momW=0.9
wball=0.7
[local2]
epsW=0.1
epsB=0.1
wball=0.9
[fc3]
epsW=0.1,0
epsB=0.1
wball=0.5,0.5
"""


def test_wball_bounds_filters_after_the_update_as_torch(write_cfg):
    lp, pp = write_cfg(LAYERS, PARAMS)
    model = Model.from_cfg(lp, pp, seed=2, dtype=np.float64, image_size=7)
    assert model.learn["fc3"].wball == [0.5, 0.5] and model.learn["fc3"].norm_bound(1) is None  # epsW 0: kept
    before = model.state_dict()
    rng = np.random.default_rng(3)
    x, labels = rng.standard_normal((3, 3, 7, 7)), rng.integers(0, 3, 3)
    reference_model.assert_train_step_matches(model, x, labels)
    state = model.state_dict()
    np.testing.assert_allclose(np.linalg.norm(state["conv1.weights.0"].reshape(4, -1), axis=1), 0.7, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(state["fc3.weights.0"], axis=1), 0.5, rtol=1e-12)
    local = np.linalg.norm(state["local2.weights.0"].reshape(3 * 3 * 5, -1), axis=1)
    clipped = np.isclose(local, 0.9, rtol=1e-12)
    assert local.max() <= 0.9 * (1 + 1e-12) and clipped.any() and (local < 0.85).any()  # a maximum, not a sphere
    np.testing.assert_array_equal(state["fc3.weights.1"], before["fc3.weights.1"])


def test_the_costs_coeff_weights_loss_and_gradients_as_torch(write_cfg):
    lp, pp = write_cfg(LAYERS, PARAMS + "[logprob]\ncoeff=0.25\n")
    model = Model.from_cfg(lp, pp, seed=2, dtype=np.float64, image_size=7)
    plain = Model.from_cfg(*write_cfg(LAYERS, PARAMS), seed=2, dtype=np.float64, image_size=7)
    rng = np.random.default_rng(5)
    x, labels = rng.standard_normal((2, 3, 7, 7)), rng.integers(0, 3, 2)
    model.forward(x, train=True)
    plain.forward(x, train=True)
    assert float(model.backward(labels)) == pytest.approx(0.25 * float(plain.backward(labels)), rel=1e-14)
    for key, g in plain.gradient_dict().items():
        np.testing.assert_allclose(model.gradient_dict()[key], 0.25 * g, rtol=1e-13, atol=1e-300)
    model = Model.from_cfg(lp, pp, seed=2, dtype=np.float64, image_size=7)
    reference_model.assert_train_step_matches(model, x, labels)
