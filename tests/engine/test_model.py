"""The engine (alexnet_raw/engine/model.py) against PyTorch: forward, backward and the update of
whole networks, placement-independent results, counted traffic, state dicts and bad input."""

import numpy as np
import pytest
import torch
import reference_model

from alexnet_raw import Model

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-9, atol=1e-11)}


def batch(model, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, model.input_channels, model.image_size, model.image_size)).astype(model.dtype)
    return x, rng.integers(0, model.num_classes, n)


def assert_dicts_close(ours, ref, dtype, what):
    assert sorted(ours) == sorted(ref)
    for k in ours:
        scale = max(1.0, float(np.abs(ref[k]).max()))
        np.testing.assert_allclose(ours[k], ref[k], rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale,
                                   err_msg=f"{what} {k}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mini_train_step_matches_torch(dtype):
    model = Model.named("mini", seed=3, dtype=dtype)
    x, labels = batch(model, 4)
    state, momentum = model.state_dict(), model.momentum_state_dict()
    # a non-zero momentum, so the update's every term is exercised
    rng = np.random.default_rng(1)
    momentum = {k: (1e-3 * rng.standard_normal(v.shape)).astype(dtype) for k, v in momentum.items()}
    model.load_momentum_state_dict(momentum)
    ref_loss, ref_logits, ref_grads, ref_params, ref_momentum = reference_model.train_step(
        model, state, momentum, x, labels)
    logits = model.forward(x, train=True)
    np.testing.assert_allclose(logits, ref_logits, **TOL[dtype])
    loss = model.backward(labels)
    assert loss == pytest.approx(ref_loss, rel=TOL[dtype]["rtol"])
    assert_dicts_close(model.gradient_dict(), ref_grads, dtype, "gradient")
    model.step()
    assert model.steps == 1
    assert_dicts_close(model.state_dict(), ref_params, dtype, "parameter")
    assert_dicts_close(model.momentum_state_dict(), ref_momentum, dtype, "momentum")


def test_eval_mode_is_the_cfg_test_behaviour():
    model = Model.named("mini", seed=4, dtype=np.float64)
    x, _ = batch(model, 3)
    params = {k: torch.from_numpy(v) for k, v in model.state_dict().items()}
    ref = reference_model.forward(model, params, torch.from_numpy(x), train=False).numpy()
    np.testing.assert_allclose(model.forward(x), ref, **TOL[np.float64])
    probs = model.predict_proba(x)
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(ref), 1).numpy(), rtol=1e-9)
    # dropout masks differ between steps: training outputs change, eval outputs do not
    a = model.forward(x, train=True)
    model.steps += 1
    b = model.forward(x, train=True)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(model.forward(x), model.forward(x))


def test_two_devices_and_one_device_give_bit_identical_training():
    split = Model.named("mini", seed=5)
    single = Model.named("mini", seed=5, single_device=True)
    assert split.graph.devices == [0, 1] and single.graph.devices == [0]
    for step in range(2):
        x, labels = batch(split, 3, seed=step)
        la, _ = split.train_step(x, labels)
        lb, _ = single.train_step(x, labels)
        assert la == lb
    a, b = split.state_dict(), single.state_dict()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)
    assert split.split_report(3)["edges"] and not [e for e in single.split_report(3)["edges"]
                                                  if e["src"] not in ("data", "labels")]


def test_counted_traffic_equals_the_split_report():
    model = Model.named("mini", seed=6)
    x, labels = batch(model, 5)
    model.train_step(x, labels)
    report = model.split_report(5)
    expected = {(e["src"], e["dst_device"]): (e["forward_bytes"], e["backward_bytes"]) for e in report["edges"]}
    counted = {k: (v["forward_bytes"], v["backward_bytes"]) for k, v in model.traffic.items()}
    assert counted == expected
    assert counted[("pool2a", 1)] == (5 * 24 * 4 * 4 * 4,) * 2
    devices = {d["device"]: d for d in report["devices"]}
    assert sum(d["parameters"] for d in devices.values()) == model.parameter_count()
    assert devices[0]["parameter_bytes"] == 4 * devices[0]["parameters"]


def test_training_lowers_the_loss_on_a_fixed_batch():
    from alexnet_raw import functional as F

    model = Model.named("mini", seed=7)
    x, labels = batch(model, 8)
    before = float(F.cross_entropy(model.forward(x), labels))
    for _ in range(30):
        model.train_step(x, labels)
    after = float(F.cross_entropy(model.forward(x), labels))
    assert after < 0.7 * before, (before, after)


def test_state_dict_round_trip_and_errors():
    a = Model.named("mini", seed=1)
    b = Model.named("mini", seed=2)
    sd = a.state_dict()
    assert set(sd) >= {"conv3a.weights.0", "conv3a.weights.1", "conv3a.biases", "fc10.weights.1"}
    assert sd["conv3a.weights.1"].shape == (32, 24, 3, 3) and sd["fc1a.weights.0"].shape == (64, 96)
    b.load_state_dict(sd)
    x, _ = batch(a, 2)
    np.testing.assert_array_equal(a.forward(x), b.forward(x))
    with pytest.raises(KeyError, match="missing.*conv1a.biases"):
        b.load_state_dict({k: v for k, v in sd.items() if k != "conv1a.biases"})
    with pytest.raises(KeyError, match="unexpected.*ghost"):
        b.load_state_dict({**sd, "ghost": np.zeros(1)})
    with pytest.raises(ValueError, match=r"conv1a.weights.0.*shape \(16, 3, 5, 5\), got \(3, 3\)"):
        b.load_state_dict({**sd, "conv1a.weights.0": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="non-finite"):
        b.load_state_dict({**sd, "fc10.biases": np.full(10, np.nan)})
    np.testing.assert_array_equal(a.forward(x), b.forward(x))  # failed loads changed nothing


def test_seeded_initialisation():
    a, b, c = Model.named("mini", seed=1), Model.named("mini", seed=1), Model.named("mini", seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not np.array_equal(sa["conv1a.weights.0"], sc["conv1a.weights.0"])
    assert np.std(sa["conv1a.weights.0"]) == pytest.approx(0.0025, rel=0.1)  # initW of conv1a in mini.cfg
    assert np.all(sa["conv2a.biases"] == np.float32(0.1)) and np.all(sa["conv1a.biases"] == 0)


def test_bad_input_is_rejected_clearly():
    model = Model.named("mini")
    x, labels = batch(model, 2)
    with pytest.raises(TypeError, match="float32.*got float64"):
        model.forward(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"shape \(N >= 1, 3, H, W\)"):
        model.forward(x[:, :2].copy())
    with pytest.raises(ValueError, match="takes 32x32 images, got 31x31"):
        model.forward(x[:, :, :31, :31].copy())
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        model.forward(bad)
    with pytest.raises(TypeError, match="numpy.ndarray"):
        model.forward(x.tolist())
    with pytest.raises(RuntimeError, match="forward\\(x, train=True\\) first"):
        model.backward(labels)
    model.forward(x, train=True)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\]"):
        model.backward(np.array([0, 10]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        model.backward(np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="integers"):
        model.backward(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="unknown network"):
        Model.named("vgg")
    with pytest.raises(ValueError, match="num_classes"):
        Model.named("mini", num_classes=0)


def test_num_classes_override():
    model = Model.named("mini", num_classes=3)
    assert model.num_classes == 3 and model.state_dict()["fc10.weights.0"].shape == (3, 64)
    x, _ = batch(model, 2)
    assert model.forward(x).shape == (2, 3)


def test_gradient_check_of_the_whole_mini_network_float64():
    from alexnet_raw.checks import gradcheck

    model = Model.named("mini", seed=8, dtype=np.float64)
    x, labels = batch(model, 2)
    rows = gradcheck.check_model(model, x, labels, samples=2)
    assert {r["parameter"] for r in rows} == set(model.parameter_keys())
    worst = max(rows, key=lambda r: r["error"])
    assert worst["error"] < 1e-5, worst
    with pytest.raises(TypeError, match="float64"):
        gradcheck.check_model(Model.named("mini"), x.astype(np.float32), labels)
