"""Placement, shapes and cross-device traffic of a network (alexnet_raw/engine/graph.py)."""

import math

import pytest
from reference_runs import RUNS, reference_files

from alexnet_raw.engine import cfg, graph
from alexnet_raw.engine.model import network_files


def load(run):
    return graph.Graph(cfg.read_layers(reference_files(run)[0]), run)


def test_145_shapes_parameters_and_placement():
    g = load("145")
    s = g.shapes(224)
    assert s["conv1a"] == (48, 55, 55) and s["pool1a"] == (48, 27, 27)
    assert s["pool2b"] == (128, 13, 13) and s["conv3a"] == (192, 13, 13) and s["pool3a"] == (128, 6, 6)
    assert s["fc1000"] == (1000,)
    weights = g.weight_shapes(s)
    assert weights["conv3a"][0] == [(192, 128, 3, 3), (192, 128, 3, 3)]
    assert weights["fc2048a"][0] == [(2048, 4608), (2048, 4608)]
    total = sum(sum(math.prod(w) for w in ws) + b[0] for ws, b in weights.values())
    assert round(total / 1e6, 1) == 61.0
    assert g.devices == [0, 1]
    assert g.nodes["rnorm1b"].device == 1 and g.nodes["fc1000"].device == 0 and g.nodes["data"].device == "host"


def test_145_cross_device_edges_match_the_notes():
    g = load("145")
    crossing = {(p, d) for p, d, _ in g.transfers() if g.nodes[p].device != "host"}
    assert crossing == {("pool2a", 1), ("pool2b", 0), ("pool3a", 1), ("pool3b", 0), ("hs1a", 1), ("hs1b", 0),
                        ("hs2b", 0)}
    report = g.split_report(128, 224)  # run #145: 224 x 224 crops (the file sets no size)
    edge = next(e for e in report["edges"] if e["src"] == "pool2a")
    assert edge["dst"] == "conv3b" and edge["forward_bytes"] == edge["backward_bytes"] == 128 * 128 * 13 * 13 * 4
    data = [e for e in report["edges"] if e["src"] == "data"]
    assert {e["dst_device"] for e in data} == {0, 1} and all(e["backward_bytes"] == 0 for e in data)
    assert all(e["forward_bytes"] == 128 * 3 * 224 * 224 * 4 for e in data)
    per_device = {d["device"]: d for d in report["devices"]}
    assert per_device[0]["parameters"] > per_device[1]["parameters"]  # fc1000 lives on device 0
    assert per_device[0]["parameters"] + per_device[1]["parameters"] == sum(
        sum(math.prod(w) for w in ws) + b[0] for ws, b in g.weight_shapes(g.shapes(224)).values())


def test_150_has_no_traffic_between_towers_and_single_device_none():
    g = load("150")
    assert all(g.nodes[p].device == "host" or d == g.nodes[p].device or p.startswith("hs2") or p.startswith("fc")
               for p, d, _ in g.transfers())
    single = graph.Graph(cfg.read_layers(reference_files("145")[0]), "145", single_device=True)
    assert single.devices == [0]
    assert all(single.nodes[p].device == "host" for p, _, _ in single.transfers())


@pytest.mark.parametrize("run", RUNS)
def test_every_run_builds(run):
    g = load(run)
    s = g.shapes(224)
    assert s[g.logits] == (1000,)


def test_output_size_rules():
    # conv1 of #145: 224, 11x11, stride 4, no padding -> 55 (ceil) or 54 (floor)
    assert graph.conv_output_size(224, 11, 4, 0, "ceil") == 55
    assert graph.conv_output_size(224, 11, 4, 0, "floor") == 54
    # torchvision's conv1 (padding 2) under the cfg's ceil rule gives 56, under floor 55
    assert graph.conv_output_size(224, 11, 4, 2, "ceil") == 56
    assert graph.conv_output_size(224, 11, 4, 2, "floor") == 55
    assert graph.pool_output_size(55, 3, 2, "ceil") == 27 and graph.pool_output_size(13, 3, 2, "ceil") == 6
    assert graph.pool_output_size(56, 3, 2, "ceil") == 28 and graph.pool_output_size(56, 3, 2, "floor") == 27
    with pytest.raises(graph.ShapeError, match="does not fit"):
        graph.conv_output_size(5, 11, 4, 2, "floor")


def test_shipped_networks():
    tv = graph.Graph(cfg.read_layers(network_files("torchvision")[0]), "torchvision")
    s = tv.shapes(224)
    assert s["conv1"] == (64, 55, 55) and s["pool3"] == (256, 6, 6)
    total = sum(sum(math.prod(w) for w in ws) + b[0] for ws, b in tv.weight_shapes(s).values())
    assert total == 61_100_840  # torchvision.models.alexnet's parameter count
    mini = graph.Graph(cfg.read_layers(network_files("mini")[0]), "mini")
    assert mini.devices == [0, 1] and mini.default_image_size() == 32
    crossing = {p for p, d, _ in mini.transfers() if mini.nodes[p].device != "host"}
    assert crossing == {"pool2a", "pool2b", "pool3a", "pool3b", "hs1a", "hs1b", "hs2b"}


def test_too_small_input_names_the_layer():
    g = load("145")
    with pytest.raises(graph.ShapeError, match=r"\[conv1a\].*input images 8x8"):
        g.shapes(8)
