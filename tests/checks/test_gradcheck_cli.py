"""alexnet-raw gradcheck: central differences against the engine's backward, on a shipped network
and on cuda-convnet's own 18pct file (which sets no image size: --image-size gives one)."""

from pathlib import Path

from alexnet_raw.checks import gradcheck

CONVNET = Path(__file__).resolve().parent.parent / "engine" / "cuda-convnet"
CFG_18PCT = [str(CONVNET / "layers-18pct.cfg"), str(CONVNET / "layer-params-18pct.cfg")]


def test_gradcheck_of_a_cuda_convnet_file_at_a_given_size(capsys):
    """Every layer with weights is checked; the exit status says whether an entry failed. (The file's
    own initialisation, initW 1e-4 to 1e-2, gives gradients so small beside the loss that rounding,
    and ReLU kinks within the step, fail some entries at the default threshold: the table says so.)"""
    status = gradcheck.main(["--cfg", *CFG_18PCT, "--image-size", "12", "--batch-size", "1", "--samples", "1"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith(("conv", "fc"))]
    assert [r[0] for r in rows] == [f"{layer}.{p}" for layer in ("conv1", "conv2", "conv3", "fc10")
                                    for p in ("weights.0", "biases")]
    failed = sum(r[-1] == "FAIL" for r in rows)
    assert f"{len(rows) - failed} of {len(rows)} entries within 1e-05 relative error" in out
    assert status == (1 if failed else 0)
    assert all(float(r[4]) <= 1e-5 for r in rows if r[-1] != "FAIL")


def test_gradcheck_without_a_size_for_a_file_that_sets_none_asks_for_one(capsys):
    assert gradcheck.main(["--cfg", *CFG_18PCT]) == 2
    assert "sets no image size" in capsys.readouterr().err


def test_gradcheck_of_chosen_layers_of_a_shipped_network(capsys):
    assert gradcheck.main(["--network", "mini", "--layers", "fc10", "--samples", "2", "--batch-size", "1"]) == 0
    out = capsys.readouterr().out
    assert "fc10" in out
    assert gradcheck.main(["--network", "mini", "--layers", "nope"]) == 2
    assert "no layer with weights named ['nope']" in capsys.readouterr().err
