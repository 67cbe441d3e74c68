"""cuda-convnet2's data-parallel replicas (gpu=0,1,...: engine/graph.py and engine/model.py): each
replica computes its rows of the batch with its own copy of the weights, the weight gradients are
summed on replica 0's device in replica order and the updated weights copied back out. A data-
parallel network and the hybrid of Krizhevsky 2014 (conv layers over 4 replicas, fc layers split
over the devices, pass layers joining them) train a float64 step as PyTorch does, train bit-
identically to single_device=True, and count exactly the bytes split_report gives; the rules of
cuda-convnet2 on replica counts are errors naming file, section and key."""

from pathlib import Path

import numpy as np
import pytest

import reference_model
from alexnet_raw import Model
from alexnet_raw.engine import cfg
from alexnet_raw.engine.split_report import load_graph
from cfg_texts import DATA, classifier, conv_of_images

CONVNET2 = Path(__file__).resolve().parent / "cuda-convnet2"

DATA_PARALLEL = DATA + conv_of_images(extra="neuron=relu\ngpu=0,1") + """
[pool1]
type=pool
pool=max
inputs=conv1
sizeX=2
stride=2
[fc1]
type=fc
inputs=pool1
outputs=6
initW=0.2
neuron=relu
[drop1]
type=dropout2
inputs=fc1
[fc2]
type=fc
inputs=drop1
outputs=3
initW=0.2
""" + classifier("fc2")
DATA_PARALLEL_PARAMS = """
[conv1]
epsW=0.1
epsB=0.2
momW=0.9
momB=0.9
wc=0.01
[fc1]
epsW=0.1
epsB=0.2
momW=0.9
momB=0.9
[fc2]
epsW=0.1
epsB=0.2
[drop1]
enable=true
keep=0.6
"""

# Krizhevsky 2014's hybrid in small (layers-imagenet-4gpu-data-model.cfg's plan): convolutions over
# 4 replicas, one fc layer per device on the whole batch, pass layers concatenating the four
HYBRID = DATA + conv_of_images(extra="neuron=relu\ngpu=0,1,2,3") + """
[pool1]
type=pool
pool=max
inputs=conv1
sizeX=2
stride=2
""" + "".join(f"""
[fc{t}]
type=fc
inputs=pool1
outputs=5
initW=0.2
neuron=relu
gpu={d}
[drop{t}]
type=dropout2
inputs=fc{t}
""" for d, t in enumerate("abcd")) + "".join(f"""
[pass{t}]
type=pass
inputs=dropa,dropb,dropc,dropd
gpu={d}
[fcb{t}]
type=fc
inputs=pass{t}
outputs=4
initW=0.2
neuron=relu
""" for d, t in enumerate("abcd")) + """
[join]
type=pass
inputs=fcba,fcbb,fcbc,fcbd
gpu=0
[out]
type=fc
inputs=join
outputs=3
initW=0.2
""" + classifier("out", "gpu=0")
HYBRID_PARAMS = "".join(f"""
[{name}]
epsW=0.1
epsB=0.2
momW=0.9
momB=0.9
wc=0.001
""" for name in ["conv1", *(f"fc{t}" for t in "abcd"), *(f"fcb{t}" for t in "abcd"), "out"]) + "".join(f"""
[drop{t}]
enable=true
keep=0.7
""" for t in "abcd")

NETWORKS = {"data-parallel": (DATA_PARALLEL, DATA_PARALLEL_PARAMS), "hybrid": (HYBRID, HYBRID_PARAMS)}


def model_of(write_cfg, kind, single_device=False, dtype=np.float64):
    lp, pp = write_cfg(*NETWORKS[kind])
    return Model.from_cfg(lp, pp, seed=8, dtype=dtype, image_size=6, single_device=single_device)


def batch(seed, n=7, dtype=np.float64):  # 7 rows: uneven slices (1 or 2 rows per replica)
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 6, 6)).astype(dtype), rng.integers(0, 3, n)


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_replicated_networks_train_a_step_as_torch(write_cfg, kind):
    model = model_of(write_cfg, kind)
    assert model.graph.nodes["conv1"].count == (2 if kind == "data-parallel" else 4)
    for step in range(2):  # the second step starts from the broadcast weights and the replicas' momentum
        x, labels = batch(step)
        reference_model.assert_train_step_matches(model, x, labels)


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_replicated_networks_train_bit_identically_on_one_device(write_cfg, kind):
    runs = []
    for single in (False, True):
        model = model_of(write_cfg, kind, single_device=single, dtype=np.float32)
        assert model.graph.nodes["conv1"].count == (2 if kind == "data-parallel" else 4)
        losses = [float(model.train_step(*batch(step, dtype=np.float32))[0]) for step in range(3)]
        runs.append((losses, model.state_dict(), model.momentum_state_dict()))
    assert runs[0][0] == runs[1][0]
    for key in runs[0][1]:
        assert runs[0][1][key].tobytes() == runs[1][1][key].tobytes(), key
        assert runs[0][2][key].tobytes() == runs[1][2][key].tobytes(), key


@pytest.mark.parametrize("kind", list(NETWORKS))
def test_counted_traffic_is_the_split_reports(write_cfg, kind):
    model = model_of(write_cfg, kind, dtype=np.float32)
    x, labels = batch(0, dtype=np.float32)
    model.train_step(x, labels)
    report = model.split_report(7)
    expected = {(e["src"], e["dst_device"]): (e["forward_bytes"], e["backward_bytes"]) for e in report["edges"]}
    counted = {k: (v["forward_bytes"], v["backward_bytes"]) for k, v in model.traffic.items()}
    assert counted == expected
    assert model.traffic_kinds == report["bytes_by_kind"]
    counts = model.graph.parameter_counts(model.shapes)
    replicated = {name: model.graph.nodes[name].count for name in counts if model.graph.nodes[name].count > 1}
    assert set(replicated) == ({"conv1", "fc1", "fc2"} if kind == "data-parallel" else {"conv1"})  # gpu= inherited
    assert report["bytes_by_kind"]["gradient_sums"] == report["bytes_by_kind"]["weight_broadcasts"] == sum(
        (r - 1) * counts[name] * 4 for name, r in replicated.items())
    assert report["replicas"]["conv1"] == list(range(replicated["conv1"]))


def test_replica_weights_stay_equal(write_cfg):
    model = model_of(write_cfg, "hybrid", dtype=np.float32)
    model.train_step(*batch(1, dtype=np.float32))
    master = model.state_dict()["conv1.weights.0"]
    for r in range(1, 4):
        assert model.replica_params[("conv1", r)]["conv1.weights.0"].tobytes() == master.tobytes()


@pytest.mark.parametrize("text, old, new, section, key, message", [
    ("data-parallel", "outputs=6\ninitW=0.2\nneuron=relu", "outputs=6\ninitW=0.2\nneuron=relu\ngpu=0,1,2", "fc1", "gpu",
     "3 replicas cannot take input pool1's 2"),
    ("data-parallel", "gpu=0,1", "gpu=0,0", "conv1", "gpu", "distinct devices"),
    ("hybrid", "inputs=dropa,dropb,dropc,dropd\ngpu=0", "inputs=dropa,dropb,dropc,dropd\ngpu=0,1", "passa", "gpu",
     "a pass layer has as many replicas as its inputs (1), got 2"),
    ("hybrid", "[join]\ntype=pass\ninputs=fcba,fcbb,fcbc,fcbd", "[join]\ntype=pass\ninputs=fcba,pool1", "join",
     "inputs", "equal replica counts"),
])
def test_replica_rules_name_file_section_and_key(write_cfg, text, old, new, section, key, message):
    layers, params = NETWORKS[text]
    assert old in layers
    lp, pp = write_cfg(layers.replace(old, new, 1), params)
    with pytest.raises(cfg.CfgError) as e:
        Model.from_cfg(lp, pp, dtype=np.float32, image_size=6)
    assert (e.value.section, e.value.key) == (section, key) and message in str(e.value), str(e.value)


def test_a_batch_smaller_than_the_replicas_is_refused(write_cfg):
    model = model_of(write_cfg, "hybrid", dtype=np.float32)
    with pytest.raises(ValueError, match="layers of 4 data-parallel replicas.*at least 4 images, got 3"):
        model.forward(batch(0, n=3, dtype=np.float32)[0])


@pytest.mark.parametrize("name, replicated, count", [("2gpu-data", "conv1", 2), ("4gpu-data-model", "conv5", 4)])
def test_cuda_convnet2s_replicated_files_report_their_traffic(name, replicated, count):
    files = tuple(CONVNET2 / f"{kind}-imagenet-{name}.cfg" for kind in ("layers", "layer-params"))
    g, _ = load_graph(cfg_files=files)
    report = g.split_report(128, 224)
    assert report["replicas"][replicated] == list(range(count))
    kinds = report["bytes_by_kind"]
    conv = sum(n for layer, n in g.parameter_counts(g.shapes(224)).items() if layer.startswith("conv"))
    assert kinds["gradient_sums"] >= (count - 1) * conv * 4 and kinds["weight_broadcasts"] == kinds["gradient_sums"]
    assert kinds["activations"] > 0


@pytest.mark.parametrize("name", ["2gpu-data", "4gpu-data-model"])
def test_cuda_convnet2s_replicated_files_train_as_torch_and_as_one_device(name):
    """The files themselves at their data's 224 x 224, with 4 images (one per replica of the hybrid)."""
    files = tuple(CONVNET2 / f"{kind}-imagenet-{name}.cfg" for kind in ("layers", "layer-params"))
    model = Model.from_cfg(*files, seed=3, dtype=np.float64, image_size=224)
    rng = np.random.default_rng(2)
    x, labels = rng.standard_normal((4, 3, 224, 224)), rng.integers(0, model.num_classes, 4)
    reference_model.assert_train_step_matches(model, x, labels, progress=0.3)
    runs = []
    for single in (False, True):
        model = Model.from_cfg(*files, seed=3, dtype=np.float32, image_size=224, single_device=single)
        loss, _ = model.train_step(x.astype(np.float32), labels)
        runs.append((float(loss), model.state_dict()))
    assert runs[0][0] == runs[1][0]
    assert all(runs[0][1][k].tobytes() == runs[1][1][k].tobytes() for k in runs[0][1])


@pytest.mark.parametrize("gpus, backend, overlap", [(2, "cupy", False), (4, "cuda", True), (1, "cupy", True)])
def test_the_hybrid_on_simulated_gpus_is_bit_identical_to_the_cpu_runtime(write_cfg, gpus, backend, overlap):
    """The replicas' GPU path on the CuPy stand-in: rows copied between GPUs, gathered on the
    destination, gradients sent back, weight gradients summed and weights broadcast, all queued on
    streams; logical devices 0-3 on gpus physical ones (d % gpus), as towers are placed."""
    from gpu_paths import strict_standin

    def train(model):
        losses = [float(model.train_step(*batch(step))[0]) for step in range(2)]
        return losses, model.state_dict(), dict(model.traffic_kinds)

    cpu = train(model_of(write_cfg, "hybrid"))
    with strict_standin(gpus, seed=gpus):
        lp, pp = write_cfg(*NETWORKS["hybrid"])
        model = Model.from_cfg(lp, pp, seed=8, dtype=np.float64, image_size=6, backend=backend,
                               overlap_transfers=overlap)
        assert model.devices.on_gpu and model.devices.physical == {d: d % gpus for d in range(4)}
        gpu = train(model)
    assert gpu[0] == cpu[0] and gpu[2] == cpu[2]
    assert all(gpu[1][k].tobytes() == cpu[1][k].tobytes() for k in cpu[1])
