"""torchvision AlexNet weights in and out of the `torchvision` network.

    alexnet-raw export --checkpoint FILE OUT.pth     a checkpoint's weights as a torchvision state_dict
    alexnet-raw train --network torchvision --import-torchvision FILE.pth ...   start from .pth weights

The `torchvision` network (engine/networks/torchvision.cfg) is torchvision.models.alexnet layer for
layer, so a state_dict maps name for name (engine.model.TORCHVISION_KEYS): features.0 -> conv1, ...,
classifier.6 -> fc8. Reading .pth files needs PyTorch (torch.load with weights_only=True: tensors
only, no pickled code is run).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def _torch():
    try:
        import torch
    except ImportError:
        raise RuntimeError("reading and writing .pth files needs PyTorch: pip install torch "
                           "(the CPU build is enough)") from None
    return torch


def read_pth(path):
    """A .pth state_dict as {name: numpy array}; accepts a bare state_dict or {'state_dict': ...}."""
    torch = _torch()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such .pth file: {path}") from None
    except Exception as e:  # torch raises pickle and zip errors of several types
        raise ValueError(f"{path} is not a readable PyTorch state_dict file: {e}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state_dict (dict of tensors)")
    return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in state.items()}


def import_pth(model, path):
    """Load a torchvision AlexNet .pth into `model` (the torchvision network; matching classifier size)."""
    try:
        model.load_torchvision_state_dict(read_pth(path))
    except KeyError as e:
        raise ValueError(f"{path}: {e.args[0] if e.args else e}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def export_pth(model, path):
    """Write `model`'s weights as a torchvision AlexNet state_dict (float32 tensors) to `path`."""
    torch = _torch()
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
             for k, v in model.torchvision_state_dict().items()}
    torch.save(state, path)
    return path


PROG = "alexnet-raw export"


def build_parser():
    from .. import cli_types

    ap = cli_types.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--checkpoint", required=True, help="a checkpoint of the torchvision network")
    ap.add_argument("out", metavar="OUT.pth", type=cli_types.output_file)
    return ap


def main(argv=None) -> int:
    from . import checkpoint as ck
    from .. import cli_types

    args = build_parser().parse_args(argv)
    try:
        model = ck.load_checkpoint(args.checkpoint).make_model()
        export_pth(model, args.out)
    except (ck.CheckpointError, ValueError, RuntimeError) as e:
        return cli_types.fail(PROG, e)
    print(f"wrote {args.out} (torchvision.models.alexnet(num_classes={model.num_classes}).load_state_dict(...))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
