"""The `alexnet-raw` command.

    alexnet-raw verify     every kernel against PyTorch, pass/fail table with the largest errors
    alexnet-raw kernels    registers, shared memory and spills of every kernel for sm_80 and sm_90
    alexnet-raw gradcheck  float64 central-difference checks of the engine's gradients
    alexnet-raw split      placement of a network on devices and the bytes crossing between them
    alexnet-raw bench      every AlexNet layer and a training step against PyTorch (CPU figures without a GPU)
    alexnet-raw train      train a network (default: mini on the built-in digits), checkpoints, metrics, plot
    alexnet-raw evaluate   top-1/top-5 of a checkpoint, centre crop and the original's ten views
    alexnet-raw predict    the top-5 classes of image files
    alexnet-raw export     a torchvision network's checkpoint as a torchvision AlexNet .pth
"""

from __future__ import annotations

import argparse
import sys

COMMANDS = {
    "verify": ("alexnet_raw.verify", "run every kernel against PyTorch and print a pass/fail table"),
    "kernels": ("alexnet_raw.kernel_report", "static report of every kernel for sm_80 and sm_90 (no GPU needed)"),
    "gradcheck": ("alexnet_raw.gradcheck", "float64 gradient checks of a network's layers against central differences"),
    "split": ("alexnet_raw.split", "placement of a network's layers on devices and the traffic between them"),
    "bench": ("alexnet_raw.bench", "time every AlexNet layer and a training step against PyTorch (cuDNN on a GPU)"),
    "train": ("alexnet_raw.train", "train a network (default: mini on the built-in digits) with checkpoints and resume"),
    "evaluate": ("alexnet_raw.evaluate", "top-1/top-5 of a checkpoint: centre crop and the original's ten views"),
    "predict": ("alexnet_raw.predict", "top-5 classes with probabilities for image files, from a checkpoint"),
    "export": ("alexnet_raw.torchvision_weights", "write a torchvision network's checkpoint as a torchvision .pth"),
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="alexnet-raw",
        description="AlexNet from hand-written CUDA kernels, on GPUs and on the CPU runtime.",
        epilog="Run 'alexnet-raw COMMAND --help' for a command's options.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    import importlib

    module = importlib.import_module(COMMANDS[args.command][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
