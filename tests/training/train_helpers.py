"""Helpers of the training tests: a small image-folder dataset, an in-process `alexnet-raw train`."""

import numpy as np

from alexnet_raw.training import train


def write_folder(root, classes=3, per_class=(8, 3), size=12, seed=0):
    """root/train/<class>/*.png and root/test/<class>/*.png: class k's images are noisy colour k."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (classes, 3))
    for split, count in zip(("train", "test"), per_class):
        for k in range(classes):
            directory = root / split / f"class{k}"
            directory.mkdir(parents=True)
            for i in range(count):
                noise = rng.integers(-40, 41, (size, size, 3))
                pixels = np.clip(colours[k] + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(directory / f"{i}.png")
    return root


def run_train(*args):
    """train.main in this process (no progress bar, data built inline), returns its exit status."""
    return train.main([*map(str, args), "--no-progress", "--workers", "0"])


def save_model_checkpoint(path, model, source, stats_images=100):
    """A checkpoint of `model` (untrained is fine) as `alexnet-raw train` writes one for `source`."""
    from alexnet_raw.training import checkpoint as ck
    from alexnet_raw import data

    train_set = data.open_dataset(str(source), "train")
    pre = data.Preprocess(crop_size=model.image_size)
    stats = data.compute_statistics(train_set, pre, max_images=stats_images)
    training = {"epoch": 0, "step": 0, "epochs": 1, "batch_size": 8, "schedule": {"kind": "step"},
                "class_names": list(train_set.class_names), "data": str(source), "image_size": pre.image_size,
                "crop_size": pre.crop_size, "metrics": [], "partial": {}}
    return ck.save_checkpoint(path, model, training, stats.to_dict())
