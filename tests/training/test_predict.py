"""alexnet-raw predict: top classes with the probabilities of the test-mode forward pass, class
names from the checkpoint or --labels, and its errors."""

import numpy as np

from alexnet_raw.training import checkpoint as ck, predict
from alexnet_raw import data
from alexnet_raw.training.evaluate import pipeline


def parse(text):
    """{image: [(probability, name), ...]} from predict's output."""
    blocks = {}
    for block in text.strip().split("\n\n"):
        head, *rows = block.splitlines()
        blocks[head] = [(float(r.split()[0]), r.split(maxsplit=1)[1]) for r in rows]
    return blocks


def test_prints_the_top_classes_of_each_image(mini_checkpoint, folder_data, capsys):
    images = [folder_data / "test" / "class1" / "0.png", folder_data / "test" / "class2" / "1.png"]
    assert predict.main(["--checkpoint", str(mini_checkpoint), *map(str, images)]) == 0
    blocks = parse(capsys.readouterr().out)
    assert list(blocks) == [str(p) for p in images]
    saved = ck.load_checkpoint(mini_checkpoint)
    model = saved.make_model()
    pre, stats = pipeline(saved)
    for path in images:
        proba = model.predict_proba(data.load_image(path, pre, stats))[0].astype(np.float64)
        order = np.argsort(-proba, kind="stable")
        assert [name for _, name in blocks[str(path)]] == [f"class{i}" for i in order]  # 3 classes: top-3
        np.testing.assert_allclose([p for p, _ in blocks[str(path)]], proba[order], atol=5e-5)


def test_labels_file_and_top(mini_checkpoint, folder_data, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    image = folder_data / "test" / "class0" / "0.png"
    assert predict.main(["--checkpoint", str(mini_checkpoint), "--labels", str(labels), "--top", "2",
                         str(image)]) == 0
    rows = parse(capsys.readouterr().out)[str(image)]
    assert len(rows) == 2 and {name for _, name in rows} <= {"red", "green", "blue"} and rows[0][0] >= rows[1][0]


def test_top_classes_order_and_ties():
    assert predict.top_classes([0.2, 0.5, 0.2, 0.1], list("abcd"), k=3) == [(0.5, "b"), (0.2, "a"), (0.2, "c")]


def test_bad_input(mini_checkpoint, folder_data, tmp_path, capsys):
    labels = tmp_path / "two.txt"
    labels.write_text("a\nb\n")
    image = folder_data / "test" / "class0" / "0.png"
    assert predict.main(["--checkpoint", str(mini_checkpoint), "--labels", str(labels), str(image)]) == 2
    assert "names 2 classes, the network has 3" in capsys.readouterr().err
    assert predict.main(["--checkpoint", str(tmp_path / "none"), str(image)]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert predict.main(["--checkpoint", str(mini_checkpoint), str(bad), str(image)]) == 1  # the rest still run
    out, err = capsys.readouterr()
    assert str(bad) in err and list(parse(out)) == [str(image)]


def test_a_decompression_bomb_is_named_and_the_other_images_still_run(mini_checkpoint, folder_data, tmp_path, capsys):
    from crafted_files import png_of_zeros

    bomb = png_of_zeros(tmp_path / "bomb.png", 9000, 9000)
    good = folder_data / "test" / "class1" / "0.png"
    assert predict.main(["--checkpoint", str(mini_checkpoint), str(bomb), str(good)]) == 1
    captured = capsys.readouterr()
    assert "bomb.png: 9000 x 9000 pixels (81 megapixels)" in captured.err and str(good) in captured.out


def test_a_binary_labels_file_is_named(mini_checkpoint, folder_data, tmp_path, capsys):
    labels = tmp_path / "labels.bin"
    labels.write_bytes(bytes(range(256)) * 4)
    image = folder_data / "test" / "class1" / "0.png"
    assert predict.main(["--checkpoint", str(mini_checkpoint), "--labels", str(labels), str(image)]) == 2
    err = capsys.readouterr().err
    assert f"{labels}: not a text file of class names (UTF-8, one per line)" in err and "Traceback" not in err
