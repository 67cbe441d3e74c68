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

import contextlib
import errno
import importlib
import os
import sys

from . import cli_types

COMMANDS = {
    "verify": ("alexnet_raw.checks.verify", "run every kernel against PyTorch and print a pass/fail table"),
    "kernels": ("alexnet_raw.perf.kernel_report", "static report of every kernel for sm_80 and sm_90 (no GPU needed)"),
    "gradcheck": ("alexnet_raw.checks.gradcheck", "float64 gradient checks of a network's layers against central differences"),
    "split": ("alexnet_raw.engine.split_report", "placement of a network's layers on devices and the traffic between them"),
    "bench": ("alexnet_raw.perf.bench", "time every AlexNet layer and a training step against PyTorch (cuDNN on a GPU)"),
    "train": ("alexnet_raw.training.train", "train a network (default: mini on the built-in digits) with checkpoints and resume"),
    "evaluate": ("alexnet_raw.training.evaluate", "top-1/top-5 of a checkpoint: centre crop and the original's ten views"),
    "predict": ("alexnet_raw.training.predict", "top-5 classes with probabilities for image files, from a checkpoint"),
    "export": ("alexnet_raw.training.torchvision_weights", "write a torchvision network's checkpoint as a torchvision .pth"),
}


# Which exceptions escaping a command are the user's, which are a run that failed, and which are bugs.
# The user's (one line, exit 2): UserError; BackendUnavailable (a backend this machine lacks); the
# errors the readers of the user's files raise, each naming the file (CfgError: layer and params
# files, ShapeError: a network whose layers do not fit together, MemoryLimitError: a network or a
# batch too big for its device, refused before allocating, CheckpointError, DataError: datasets
# and images, TrainError: a run refused, RunDirError: a run directory or output file that cannot
# be used); and the OSErrors that mean a path the user gave
# is missing, of the wrong kind, too long or not theirs to use (_PATH_ERRNOS).
# A run that failed (one line, exit 1): CheckpointWriteError, any other OSError (disk full, I/O
# error) and MemoryError: the machine gave out, neither the arguments nor the program are wrong.
# Ctrl-C: exit 130.
# Everything else shows its traceback, a bare ValueError or RuntimeError included: inside the
# program a ValueError comes from NumPy as often as from an argument, and a KernelError or a
# GpuCompileError is a fault of our kernels; hiding their tracebacks would hide the bug.
_USER_ERRORS = (("alexnet_raw.cli_types", "UserError"), ("alexnet_raw.runtime.backends", "BackendUnavailable"),
                ("alexnet_raw.engine.cfg", "CfgError"), ("alexnet_raw.engine.graph", "ShapeError"),
                ("alexnet_raw.engine.graph", "MemoryLimitError"),
                ("alexnet_raw.training.checkpoint", "CheckpointError"), ("alexnet_raw.data.errors", "DataError"),
                ("alexnet_raw.training.train", "TrainError"), ("alexnet_raw.training.rundir", "RunDirError"))
_FAILED_ERRORS = (("alexnet_raw.training.checkpoint", "CheckpointWriteError"),)
_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EEXIST, errno.ENAMETOOLONG,
                errno.ELOOP, errno.EROFS}
EXIT_USER, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


def exit_status(error: BaseException):
    """EXIT_USER or EXIT_FAILED for an exception that is not a bug (see above), else None."""
    # an exception can only be an instance of a class whose module was imported: look there, so
    # that a failure in one command does not import every other command's modules
    failed = tuple(c for m, name in _FAILED_ERRORS if (c := getattr(sys.modules.get(m), name, None)) is not None)
    if isinstance(error, failed):
        return EXIT_FAILED
    user = tuple(c for m, name in _USER_ERRORS if (c := getattr(sys.modules.get(m), name, None)) is not None)
    if isinstance(error, user) or isinstance(error, OSError) and error.errno in _PATH_ERRNOS:
        return EXIT_USER
    if isinstance(error, (OSError, MemoryError)):
        return EXIT_FAILED
    return None


def describe(error: BaseException) -> str:
    """The one line shown for `error`: an OSError as 'FILE: reason', out of memory said as such."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        names = f"{error.filename} -> {error.filename2}" if error.filename2 is not None else f"{error.filename}"
        return f"{names}: {error.strerror}"
    if isinstance(error, MemoryError):
        return f"out of memory: {error}" if str(error) else "out of memory"
    return str(error) or type(error).__name__


def run_command(command: str, argv) -> int:
    """`alexnet-raw COMMAND ARGV...` in this process: the command's exit status, with the errors
    that are not bugs said on one line (argparse's own errors exit through SystemExit as usual)."""
    prog = f"alexnet-raw {command}"
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return module.main(list(argv))
    except KeyboardInterrupt:
        return cli_types.fail(prog, "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # the reader of stdout went away (| head): nothing more to say to anyone
        with contextlib.suppress(OSError, ValueError):  # and nothing for Python to flush there at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as e:
        status = exit_status(e)
        if status is None:
            raise
        return cli_types.fail(prog, describe(e), status)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = cli_types.ArgumentParser(
        prog="alexnet-raw",
        description="AlexNet from hand-written CUDA kernels, on GPUs and on the CPU runtime.",
        epilog="Run 'alexnet-raw COMMAND --help' for a command's options.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()))
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    return run_command(args.command, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
