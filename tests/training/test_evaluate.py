"""alexnet-raw evaluate: ten-view evaluation equals the mean of ten separate forward passes'
softmax, centre-crop accuracy, the command's output and its errors."""

import json

import numpy as np
import pytest

from alexnet_raw.training import checkpoint as ck, evaluate
from alexnet_raw import data


def softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def topk_hits(proba, labels, k):
    """Images whose true class has fewer than k classes scoring strictly higher."""
    true = proba[np.arange(len(labels)), labels]
    return int(((proba > true[:, None]).sum(axis=1) < k).sum())


@pytest.fixture(scope="module")
def setup(mini_checkpoint, folder_data):
    saved = ck.load_checkpoint(mini_checkpoint)
    model = saved.make_model()
    pre, stats = evaluate.pipeline(saved)
    return model, pre, stats, data.open_dataset(str(folder_data), "test")


def test_ten_views_equal_the_mean_of_ten_separate_softmaxes(setup):
    model, pre, stats, ds = setup
    full = np.stack([pre.full(ds.image(i), stats) for i in range(len(ds))])  # (N, 3, S, S) mean-subtracted
    labels, c = ds.labels, pre.crop_size
    views = []
    for top, left in data.view_offsets(pre.image_size, c):
        crop = full[:, :, top:top + c, left:left + c]
        views += [crop, crop[..., ::-1]]
    # one forward pass per view, softmax in float64, then the mean of the ten
    expected = np.mean([softmax(model.forward(np.ascontiguousarray(v), train=False)) for v in views], axis=0)

    got = np.concatenate([evaluate.ten_view_proba(model, views)
                          for views, _ in data.view_batches(ds, 4, pre, stats, workers=0)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    top1, top2 = evaluate.evaluate_ten_views(model, data.view_batches(ds, 4, pre, stats, workers=0), k=2)
    assert top1 == topk_hits(expected, labels, 1) / len(ds)
    assert top2 == topk_hits(expected, labels, 2) / len(ds)


def test_centre_crop_accuracy(setup):
    model, pre, stats, ds = setup
    proba, labels = [], []
    for i in range(len(ds)):
        image, label = ds.image(i), int(ds.labels[i])
        proba.append(softmax(model.forward(pre.test_input(image, stats)[None], train=False))[0])
        labels.append(label)
    proba, labels = np.array(proba), np.array(labels)
    top1, top2 = evaluate.evaluate_centre(model, data.Batches(ds, 5, pre, stats, train=False, workers=0), k=2)
    assert (top1, top2) == (topk_hits(proba, labels, 1) / len(ds), topk_hits(proba, labels, 2) / len(ds))


def test_command_prints_and_writes_both_evaluations(mini_checkpoint, folder_data, tmp_path, capsys, setup):
    out = tmp_path / "results.json"
    assert evaluate.main(["--checkpoint", str(mini_checkpoint), "--data", str(folder_data), "--workers", "0",
                          "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "centre crop: top-1" in text and "ten views:   top-1" in text and "9 images, 3 classes" in text
    results = json.loads(out.read_text())
    assert results["k"] == 3 and set(results) >= {"centre", "ten_views"}
    model, pre, stats, ds = setup
    top1, top3 = evaluate.evaluate_centre(model, data.Batches(ds, 64, pre, stats, train=False, workers=0), k=3)
    assert results["centre"] == {"top1": top1, "top3": top3} and top3 == 1.0
    assert f"top-1 {top1:.4f}" in text


def test_bad_input_names_what_was_expected(mini_checkpoint, folder_data, tmp_path, capsys):
    def run(*args):
        return evaluate.main(["--workers", "0", *map(str, args)])

    assert run("--checkpoint", tmp_path / "none.safetensors") == 2
    assert "no checkpoint at" in capsys.readouterr().err
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(mini_checkpoint.read_bytes()[:-100])
    assert run("--checkpoint", torn) == 2
    assert f"{torn} is not a readable safetensors file" in capsys.readouterr().err
    assert run("--checkpoint", mini_checkpoint, "--data", tmp_path / "missing") == 2
    assert "missing" in capsys.readouterr().err
    from train_helpers import write_folder

    other = write_folder(tmp_path / "other", classes=4, per_class=(1, 1))
    assert run("--checkpoint", mini_checkpoint, "--data", other) == 2
    assert "4 classes) does not have the classes the checkpoint was trained on (3 classes)" in capsys.readouterr().err
