"""Train a network from cuda-convnet layer files, the way the 2012 run did, with resumable state.

    alexnet-raw train [--data PATH] [--network NAME | --cfg LAYERS PARAMS] [--epochs N]
                      [--batch-size N] [--seed N] [--out DIR] [--resume]
                      [--lr-steps E1,E2 [--lr-gamma G] | --plateau PATIENCE [--lr-gamma G]]

With no arguments: the `mini` network on the built-in handwritten digits (scikit-learn's, no
download), on the CPU runtime here (a GPU backend when one is present).

Data: "digits", an image-folder tree (DIR/train/<class>/*.JPEG|png and DIR/test/... or val/...)
or CIFAR-10's python batches directory. Training batches: random crops of the network's input
size from images resized to round(crop * 256 / 224), horizontal flips, PCA colour lighting, mean
image subtraction; test batches: the centre crop. Each layer's epsW/epsB/momW/momB/wc come from
the params file, multiplied by the schedule's factor.

Writes, in DIR (default runs/<network>-<data>):
    checkpoint.safetensors          the latest state (weights, momentum, network files, data
                                    statistics, schedule, metrics); written atomically
    checkpoint-epoch<N>.safetensors the last --keep end-of-epoch checkpoints
    train.lock                      held (fcntl.flock) while a train writes DIR; holds its pid
    metrics.jsonl                   one JSON object per epoch: epoch, train_loss, train_top1,
                                    test_top1, test_top5, images_per_second, lr_scale, seconds
    curves.png                      loss and accuracy against epoch

--resume continues from DIR/checkpoint.safetensors exactly where it stopped (mid-epoch
included): with the same seed the final weights are bit-identical to an uninterrupted run's on
the CPU runtime. Ctrl-C saves a checkpoint at the current step and exits with status 130 (a
second Ctrl-C during the save aborts it; the previous checkpoint stays intact); SIGTERM (what Slurm
sends before it kills a job) does the same and exits with status 143 (128 + 15).

One train at a time writes DIR: a second is refused, naming the first's pid. --out is checked for
writability before any data is read. A non-finite loss or parameter stops training with status 1
and an error naming the epoch, the step and the first layer that went non-finite; the checkpoint
on disk stays the last good one.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from . import checkpoint as ck, divergence, rundir, runlog
from .. import cli_types
from .lr_schedules import PlateauSchedule, StepSchedule
from ..engine import param_schedules
from ..distributed import world as world_mod
from ..distributed.world import DEFAULT_TIMEOUT as DEFAULT_PEER_TIMEOUT, TIMEOUT_VARIABLE as PEER_TIMEOUT_VARIABLE

# Defaults of `alexnet-raw train` with no arguments (mini on the digits, a few minutes on 2 cores).
DEFAULT_DATA = "digits"
DEFAULT_NETWORK = "mini"
DEFAULT_EPOCHS = 8
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR_STEPS = (6,)
DEFAULT_LR_GAMMA = 0.1
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM, the status a shell reports for a process SIGTERM ended
EXIT_DIVERGED = 1


class TrainError(Exception):
    """A run cannot start or continue; the message says why and what to do."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (saved at the step boundary), exit status EXIT_TERMINATED."""


def exit_status(interrupt):
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


# --------------------------------------------------------------------------------------------
class StopRequest:
    """Ctrl-C and SIGTERM handling: outside a training step SIGINT raises KeyboardInterrupt (SIGTERM
    Terminated) at once; during a step (parameters half updated) it is deferred until the step is
    complete, so the state saved is always the state after a whole number of steps."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, always_defer=False):
        self.requested = False
        self.signum = None  # the latest of SIGNALS received
        self._in_step = False
        # always_defer: never raise from the handler, only note the request (a run over several
        # processes: the ranks agree at a step boundary to stop together, alexnet_raw.distributed)
        self.always_defer = always_defer
        self.agreed = False  # set by alexnet_raw.distributed when the ranks agreed to stop
        self._previous = {}

    def interrupt(self):
        return Terminated() if self.signum == signal.SIGTERM else KeyboardInterrupt()

    def _handler(self, signum, frame):
        self.signum = signum
        if self._in_step or self.always_defer:
            self.requested = True
        else:
            raise self.interrupt()

    @contextlib.contextmanager
    def installed(self):
        main = threading.current_thread() is threading.main_thread()
        if main:
            self._previous = {s: signal.signal(s, self._handler) for s in self.SIGNALS}
        try:
            yield self
        finally:
            if main:
                for s, previous in self._previous.items():
                    signal.signal(s, previous)

    @contextlib.contextmanager
    def critical(self):
        """A training step or the end-of-epoch bookkeeping: not interrupted half way."""
        self._in_step = True
        try:
            yield
        finally:
            self._in_step = False
        if self.requested and not self.always_defer:
            raise self.interrupt()


# --------------------------------------------------------------------------------------------
def _data_name(source):
    if source == DEFAULT_DATA:
        return source
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).resolve().name) or "data"


def _network_choice(args):
    return args.network or (None if args.cfg else DEFAULT_NETWORK)


def _out_dir(args):
    if args.out:
        return Path(args.out)
    if args.resume:
        raise TrainError("--resume needs --out DIR (the directory of the run to continue)")
    name = _network_choice(args) or Path(args.cfg[0]).stem
    return Path("runs") / f"{name}-{_data_name(args.data or DEFAULT_DATA)}"


def _source_for_record(source):
    return source if source == DEFAULT_DATA else str(Path(source).resolve())


def build_parser():
    from .. import cli_types
    from ..engine.model import NETWORKS

    ap = cli_types.ArgumentParser(prog="alexnet-raw train", description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--data", default=None, help=f'"digits", an image-folder tree or a CIFAR-10 directory '
                                                 f'(default {DEFAULT_DATA})')
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--network", choices=sorted(NETWORKS), default=None,
                       help=f"shipped network (default {DEFAULT_NETWORK})")
    which.add_argument("--cfg", nargs=2, metavar=("LAYERS", "PARAMS"), help="cuda-convnet layer and params files")
    ap.add_argument("--image-size", type=cli_types.positive_int, default=None, metavar="N",
                    help="side of the network's square input images, for a layer file that sets none (cuda-convnet's "
                         "set none; default: the data's own size where all its images have one, as CIFAR-10's 32)")
    ap.add_argument("--epochs", type=cli_types.positive_int, default=None,
                    help=f"epochs in all (default {DEFAULT_EPOCHS}; with --resume: the checkpoint's)")
    ap.add_argument("--batch-size", type=cli_types.positive_int, default=None, help=f"default {DEFAULT_BATCH_SIZE}")
    ap.add_argument("--seed", type=cli_types.seed, default=None,
                    help="weights, data order, augmentation, dropout (default 0)")
    ap.add_argument("--out", default=None, help="run directory (default runs/<network>-<data>)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    schedule = ap.add_mutually_exclusive_group()
    schedule.add_argument("--lr-steps", type=cli_types.IntegerList(1, allow_empty=True), default=None,
                          metavar="E1,E2",
                          help="multiply every learning rate by --lr-gamma after these epochs "
                               f"(default {','.join(map(str, DEFAULT_LR_STEPS))}; '' for none)")
    schedule.add_argument("--plateau", type=cli_types.positive_int, default=None, metavar="PATIENCE",
                          help="multiply by --lr-gamma when test error has not improved for PATIENCE epochs")
    ap.add_argument("--lr-gamma", type=cli_types.fraction, default=None,
                    help=f"in (0, 1], below 1 with --plateau (default {DEFAULT_LR_GAMMA})")
    ap.add_argument("--workers", type=cli_types.workers, default=2,
                    help=f"background data workers, 0 to {cli_types.MAX_WORKERS} (default 2)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default=None, help="default float32")
    cli_types.backend_option(ap, "--backend", default=None,
                             help="default: a GPU backend when there is a GPU, else the CPU runtime (emu)")
    ap.add_argument("--stats-images", type=cli_types.positive_int, default=10000,
                    help="training images sampled for the mean image and PCA lighting (default 10000)")
    ap.add_argument("--keep", type=cli_types.non_negative_int, default=2,
                    help="end-of-epoch checkpoints kept beside the latest (default 2)")
    ap.add_argument("--import-torchvision", metavar="FILE.pth", default=None,
                    help="start from a torchvision AlexNet state_dict (with --network torchvision)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (one line per epoch)")
    ap.add_argument("--shards", type=cli_types.shards, default=None, metavar="S",
                    help="compute every batch as S shards whose gradients are summed in shard order (default: the "
                         "number of processes, with --resume the checkpoint's); on the CPU runtime any number of "
                         "processes up to S trains bit-identically with the same S")
    ap.add_argument("--peer-timeout", type=cli_types.positive_real, default=None, metavar="SECONDS",
                    help=f"under MPI: how long a rank waits for another before it stops every rank (default "
                         f"{DEFAULT_PEER_TIMEOUT:g}, or ${PEER_TIMEOUT_VARIABLE})")
    return ap


# --------------------------------------------------------------------------------------------
class Run:
    """Everything a training run holds; `training_state()` is what its checkpoint stores."""

    def __init__(self, args, world=None):
        from .. import data

        self.data_module = data
        self.args = args
        # the processes of this run: one (MPI never imported), or the ranks an MPI launcher started;
        # rank 0 alone writes the run directory (checkpoints, metrics, curves) and prints
        self.world = world if world is not None else world_mod.current(args.peer_timeout)
        self.writer = self.world.rank == 0
        if self.world.size > 1:  # on GPUs: this rank's devices after those of the ranks before it on its node
            from ..engine.devices import set_process_slot

            set_process_slot(self.world.local_rank)
        self.out = _out_dir(args)
        self.lock = rundir.RunLock(self.out)
        if self.writer:
            rundir.check_writable(self.out)  # before any data is read or the network built
            if self.out.is_dir():
                self.lock.acquire()  # a new directory is locked by run_training once it creates it
        self.resumed = None
        self.saved_at = None  # (epoch, step) of the last checkpoint this run wrote or resumed from
        try:
            if args.resume:
                self._resume(args)
            else:
                self._start(args)
        except BaseException:
            self.lock.release()
            raise
        self.checkpoint_path = self.out / ck.FILENAME
        self.model.lr_scale = self.schedule.factor
        try:
            self._distribute()
        except BaseException:
            self.lock.release()
            raise

    def _distribute(self):
        """The shards of every batch over the processes (alexnet_raw.distributed), and the start-up
        check that every rank runs the same code, network files, data and settings."""
        from ..distributed import fingerprint
        from ..distributed.shards import ShardPlan
        from ..distributed.step import ShardedStep

        world = self.world
        if self.shards < world.size:
            stored = " (the checkpoint's; pass --shards to change it)" if self.resumed and not self.args.shards else ""
            raise TrainError(f"{self.shards} shard{'s' if self.shards > 1 else ''}{stored} cannot be spread over "
                             f"{world.size} processes: pass --shards N with N >= {world.size}")
        if self.batch_size < self.shards:
            raise TrainError(f"--batch-size {self.batch_size} cannot be cut into {self.shards} shards: expected a "
                             f"batch size of at least {self.shards}")
        self.plan = ShardPlan(self.shards, world.size, world.rank)
        self.sharded_steps = 0  # steps of the current epoch in this session (metrics: bytes per step)
        self.sharded = ShardedStep(self.model, world, self.plan) if self.shards > 1 or world.size > 1 else None
        if world.size > 1:
            settings = {"batch_size": self.batch_size, "shards": self.shards, "seed": self.seed,
                        "dtype": self.model.dtype.name, "image_size": self.image_size, "crop_size": self.crop_size,
                        "epochs": self.epochs, "epoch": self.epoch, "step": self.step, "steps": self.model.steps,
                        "schedule": self.schedule.state_dict()}
            fingerprint.check_identical(world, fingerprint.fingerprint(self.model, self.train_set, self.test_set,
                                                                       self.image_size, settings))

    # -- set-up ----------------------------------------------------------------------------
    def _open_data(self, source):
        data = self.data_module
        self.train_set = data.open_dataset(source, "train")
        self.test_set = data.open_dataset(source, "test")
        if list(self.train_set.class_names) != list(self.test_set.class_names):
            raise TrainError(f"{source}: the train and test splits name different classes")

    def _start(self, args):
        from ..engine.model import Model

        self.source = args.data or DEFAULT_DATA
        network = _network_choice(args)
        if (self.out / ck.FILENAME).exists():
            raise TrainError(f"{self.out} already holds a checkpoint: pass --resume to continue it, or choose "
                             "another --out")
        self.seed = 0 if args.seed is None else args.seed
        self.epochs = args.epochs or DEFAULT_EPOCHS
        self.batch_size = args.batch_size or DEFAULT_BATCH_SIZE
        self._open_data(self.source)
        self.class_names = list(self.train_set.class_names)
        dtype = np.dtype(args.dtype or "float32")
        n = len(self.class_names)
        if args.cfg:
            self.model = Model.from_cfg(*args.cfg, seed=self.seed, backend=args.backend, dtype=dtype, num_classes=n)
        else:
            self.model = Model.named(network, seed=self.seed, backend=args.backend, dtype=dtype, num_classes=n)
        if self.model.scheduled and (args.lr_steps is not None or args.plateau is not None
                                     or args.lr_gamma is not None):
            raise TrainError(f"{args.cfg[1] if args.cfg else network}: the params file schedules its learning "
                             "rates itself (linear/exp/dexp epsW or epsB); --lr-steps, --plateau and "
                             "--lr-gamma would multiply them: drop them")
        self._size_model(args.image_size)
        if args.import_torchvision:
            from .torchvision_weights import import_pth

            import_pth(self.model, args.import_torchvision)
        self.crop_size = self.model.image_size
        # the stored size the crops are taken from: the data's own where it has one at least as
        # large (CIFAR-10's 32: whole images for a 32 network, random 24 x 24 crops for a 24 one, as
        # cuda-convnet's CIFAR providers), else the 256/224 ratio of ImageNet's recipe
        native = self.train_set.native_size
        self.image_size = native if native is not None and native >= self.crop_size else \
            round(self.crop_size * 256 / 224)
        self.pre = self.data_module.Preprocess(self.image_size, self.crop_size)
        self.statistics = self.data_module.compute_statistics(self.train_set, self.pre, max_images=args.stats_images)
        gamma = DEFAULT_LR_GAMMA if args.lr_gamma is None else args.lr_gamma
        if self.model.scheduled:  # the params file's own schedules (cuda-convnet2's linear/exp/dexp) rule
            self.schedule = StepSchedule([], gamma)  # a factor of 1 throughout
        elif args.plateau:
            self.schedule = PlateauSchedule(patience=args.plateau, gamma=gamma)
        else:
            self.schedule = StepSchedule(DEFAULT_LR_STEPS if args.lr_steps is None else args.lr_steps, gamma)
        self.epoch, self.step, self.metrics = 0, 0, []
        self.partial = _empty_partial()
        self.shards = args.shards or self.world.size

    def _size_model(self, requested):
        """The network's input size: its files' (imgSize, a shipped network's), else --image-size,
        else the data's own size (cuda-convnet took it from the data provider)."""
        from ..engine.graph import ShapeError

        m = self.model
        if m.sized:
            if requested is not None and requested != m.image_size:
                raise TrainError(f"{m.source} takes {m.image_size}x{m.image_size} images (its imgSize); drop "
                                 f"--image-size {requested} or use a layer file without imgSize")
            return
        size = requested if requested is not None else self.train_set.native_size
        if size is None:
            raise TrainError(f"{m.source} sets no image size (no imgSize on its data layer) and the images of "
                             f"{self.source} differ in size: pass --image-size N")
        try:
            m.size_to(size)
        except (ShapeError, ValueError) as e:
            how = "--image-size" if requested is not None else f"the images of {self.source}"
            raise TrainError(f"{how} gives {size}x{size} inputs, which the network does not take: {e}") from None

    def _resume(self, args):
        from .lr_schedules import from_state

        path = self.out / ck.FILENAME
        if not path.exists():
            raise TrainError(f"nothing to resume: {path} does not exist")
        saved = ck.load_checkpoint(path)
        ck.require_training(saved, ("data", "batch_size", "epochs", "class_names", "image_size", "crop_size",
                                    "schedule", "epoch", "step", "metrics", "partial"))
        t = saved.training
        conflicts = []
        for flag, given, stored in (("--data", args.data and _source_for_record(args.data), t["data"]),
                                    ("--network", args.network, saved.network_name),
                                    ("--batch-size", args.batch_size, t["batch_size"]),
                                    ("--seed", args.seed, saved.seed),
                                    ("--dtype", args.dtype, saved.dtype.name),
                                    ("--image-size", args.image_size, saved.input_size)):
            if given is not None and given != stored:
                conflicts.append(f"{flag} {given} (the checkpoint has {stored})")
        if args.cfg:
            conflicts.append("--cfg (the checkpoint holds its own network files)")
        if args.import_torchvision:
            conflicts.append("--import-torchvision (only when starting a run)")
        if args.lr_steps is not None or args.plateau is not None or args.lr_gamma is not None:
            conflicts.append("a schedule option (the checkpoint holds the schedule's state)")
        if conflicts:
            raise TrainError(f"{path}: --resume continues the stored run; drop " + "; ".join(conflicts))
        self.resumed = path
        self.source = t["data"]
        self.seed = saved.seed
        self.batch_size = int(t["batch_size"])
        self.epochs = args.epochs or int(t["epochs"])
        self._open_data(self.source)
        self.class_names = list(t["class_names"])
        if list(self.train_set.class_names) != self.class_names:
            raise TrainError(f"{path}: the data at {self.source} now has other classes than the checkpoint")
        self.model = saved.make_model(backend=args.backend)
        self.image_size, self.crop_size = int(t["image_size"]), int(t["crop_size"])
        self.pre = self.data_module.Preprocess(self.image_size, self.crop_size)
        self.statistics = self.data_module.Statistics.from_dict(saved.statistics)
        self.schedule = from_state(t["schedule"])
        self.epoch, self.step, self.metrics = int(t["epoch"]), int(t["step"]), list(t["metrics"])
        self.partial = dict(t["partial"])
        self.saved_at = (self.epoch, self.step)
        # the shards the run computes its batches as (1 for runs written before they were recorded):
        # kept on any number of processes, so that resuming elsewhere continues bit-identically
        self.shards = args.shards or int(t.get("shards", 1))

    # -- state -----------------------------------------------------------------------------
    def training_state(self):
        return {"epoch": self.epoch, "step": self.step, "epochs": self.epochs, "batch_size": self.batch_size,
                "schedule": self.schedule.state_dict(), "class_names": self.class_names,
                "data": _source_for_record(self.source), "image_size": self.image_size, "crop_size": self.crop_size,
                "metrics": self.metrics, "partial": self.partial, "shards": self.shards,
                "processes": self.world.size}

    def save(self):
        """The checkpoint, written by rank 0 (every rank holds the same state)."""
        if self.writer:
            ck.save_checkpoint(self.checkpoint_path, self.model, self.training_state(), self.statistics.to_dict())
        self.saved_at = (self.epoch, self.step)

    def last_good_checkpoint(self):
        """Where the state on disk stands, for an error that stops the run without saving."""
        if self.saved_at is None:
            return "no checkpoint was written"
        epoch, step = self.saved_at
        where = f"after epoch {epoch}" if step == 0 else f"at epoch {epoch + 1}, batch {step}"
        return f"the last good checkpoint {self.checkpoint_path} ({where}) is kept"

    def keep_epoch_copy(self, keep):
        if keep <= 0 or not self.writer:
            return
        ck.keep_copy(self.checkpoint_path, self.out / f"checkpoint-epoch{self.epoch}.safetensors")
        for old in self.out.glob("checkpoint-epoch*.safetensors"):
            m = re.fullmatch(r"checkpoint-epoch(\d+)\.safetensors", old.name)
            if m and int(m.group(1)) <= self.epoch - keep:
                old.unlink()

    # -- batches ---------------------------------------------------------------------------
    def train_batches(self, epoch, start):
        return self.data_module.Batches(self.train_set, self.batch_size, self.pre, self.statistics, train=True,
                                        seed=self.seed, epoch=epoch, start=start, workers=self.args.workers)

    def test_batches(self):
        return self.data_module.Batches(self.test_set, self.batch_size, self.pre, self.statistics, train=False,
                                        seed=self.seed, epoch=0, start=0, workers=self.args.workers)

    def network_label(self):
        return self.model.network_name or Path(self.model.source).stem

    def describe(self):
        m = self.model
        name = self.network_label()
        return (f"{name}: {m.parameter_count():,} parameters, {m.image_size}x{m.image_size} inputs, "
                f"{m.dtype.name}, backend {m.devices.backend}; data {self.source}: {len(self.train_set)} train / "
                f"{len(self.test_set)} test images, {len(self.class_names)} classes; batch {self.batch_size}, "
                f"seed {self.seed}; {self.world.describe()}, {self.shards} shard{'s' if self.shards > 1 else ''} "
                f"per batch; out {self.out}")

    def distribution_record(self):
        """What metrics.jsonl says of the processes: their number, the batch's shards, the bytes of
        the gradient summed across shards per step (measured: what was handed to the sum) and the
        gradient bytes each rank sent per step (null where NCCL sends them)."""
        if self.sharded is None:
            return {"processes": 1, "shards": 1, "allreduce_bytes_per_step": 0, "sent_bytes_per_step": [0]}
        steps = max(self.sharded_steps, 1)
        reduced, sent = self.sharded.counters()
        sent = self.world.allgather(None if sent is None else sent // steps, "the traffic count")
        return {"processes": self.world.size, "shards": self.shards, "allreduce_bytes_per_step": reduced // steps,
                "sent_bytes_per_step": None if None in sent else sent}


def _silent(*args, **kwargs):
    pass


def _empty_partial():
    return {"loss_sum": 0.0, "correct": 0, "seen": 0, "batches": 0, "seconds": 0.0}


# --------------------------------------------------------------------------------------------
def _host_logits_correct(model, logits, labels):
    """Top-1 hits of a training batch's logits (the cost layer's device) against host labels."""
    from .evaluate import count_correct

    return count_correct(model, logits, labels, 1)[0]


class EpochTally:
    """An epoch's running sums (run.partial, which checkpoints keep) and its progress bar (rank 0's
    only: `show`); add() inside a step's critical section, shown() after it. images/s counts the
    wait for data too."""

    def __init__(self, run, total, show=True):
        from tqdm import tqdm

        self.run, self.p = run, run.partial
        self.bar = tqdm(total=total, initial=run.step, desc=f"epoch {run.epoch + 1}/{run.epochs}", unit="batch",
                        disable=not show, leave=False, dynamic_ncols=True, file=sys.stderr)
        self.session_images, self.started = 0, time.perf_counter()
        self.last = self.now = self.started

    def add(self, loss, correct, seen):
        p, self.now, self.seen = self.p, time.perf_counter(), seen
        p["loss_sum"] += loss
        p["correct"] += correct
        p["seen"] += seen
        p["batches"] += 1
        p["seconds"] += self.now - self.last
        self.run.step += 1

    def shown(self):
        p = self.p
        self.last = self.now
        self.session_images += self.seen
        rate = self.session_images / max(self.now - self.started, 1e-9)
        self.bar.set_postfix_str(f"loss {p['loss_sum'] / p['batches']:.3f}, acc {p['correct'] / p['seen']:.3f}, "
                                 f"{rate:.0f} img/s", refresh=False)
        self.bar.update(1)

    def close(self, batches):
        """The bar, and the epoch's batches (their background workers)."""
        self.bar.close()
        close = getattr(batches, "close", None)
        if close:
            close()


def train_epoch(run, stop, progress=True):
    """The rest of epoch run.epoch from batch run.step; updates run.partial as it goes."""
    model, epoch = run.model, run.epoch
    batches = run.train_batches(epoch, run.step)
    tally = EpochTally(run, len(batches), show=progress)
    try:
        for x, labels in batches:
            if x.dtype != model.dtype:
                x = x.astype(model.dtype)
            with stop.critical():
                done = epoch * len(batches) + run.step  # steps of the run before this one
                loss, logits = model.train_step(x, labels, epoch=epoch,
                                                progress=param_schedules.progress(done, run.epochs * len(batches)))
                loss = float(loss)  # on a GPU: the step's wait, for the progress bar and the check
                divergence.check_step(model, loss, epoch + 1, run.step + 1)  # what it checks: divergence.py
                tally.add(loss, _host_logits_correct(model, logits, labels), len(labels))
            tally.shown()
    finally:
        tally.close(batches)


def evaluate_test(run):
    from .evaluate import evaluate_centre

    return evaluate_centre(run.model, run.test_batches())


def run_training(run, progress=True, keep=2, log=print):
    """Train until run.epochs; returns 0, or EXIT_INTERRUPTED (EXIT_TERMINATED) after saving on
    Ctrl-C (SIGTERM). NonFiniteError when training diverges (nothing is saved then). Over several
    processes every rank runs this; rank 0 alone writes and logs."""
    from ..distributed import training as sharded_training

    if not run.writer:
        log = _silent
    if run.writer:
        run.out.mkdir(parents=True, exist_ok=True)
        run.lock.acquire()
    metrics_path, curves_path = run.out / "metrics.jsonl", run.out / "curves.png"
    if run.resumed:
        if run.writer:
            runlog.write_metrics(metrics_path, run.metrics)  # exactly what the checkpoint knows
        log(f"resuming {run.resumed} at epoch {run.epoch + 1}, batch {run.step}")
    log(run.describe())
    # over several processes a signal is only noted, and the ranks agree at a step boundary to stop
    stop = StopRequest(always_defer=run.world.size > 1)
    with stop.installed():
        try:
            while run.epoch < run.epochs:
                epoch_started = time.perf_counter()
                lr_scale = float(run.schedule.factor(run.epoch))
                if run.sharded is None:
                    train_epoch(run, stop, progress)
                    top1, top5 = evaluate_test(run)
                else:
                    sharded_training.train_epoch(run, stop, progress)
                    top1, top5 = sharded_training.evaluate(run, stop)
                p = run.partial
                with stop.critical():
                    record = {"epoch": run.epoch + 1, "train_loss": p["loss_sum"] / max(p["batches"], 1),
                              "train_top1": p["correct"] / max(p["seen"], 1), "test_top1": top1,
                              "test_top5": top5, "images_per_second": p["seen"] / max(p["seconds"], 1e-9),
                              "lr_scale": lr_scale, "seconds": time.perf_counter() - epoch_started,
                              **run.distribution_record()}
                    run.schedule.observe(run.epoch, 1.0 - top1)
                    run.metrics.append(record)
                    run.epoch, run.step, run.partial = run.epoch + 1, 0, _empty_partial()
                run.save()
                run.keep_epoch_copy(keep)
                if run.writer:
                    runlog.append_metrics(metrics_path, record)
                    runlog.plot_curves(run.metrics, curves_path,
                                       title=f"{run.network_label()} on {_data_name(run.source)}")
                log(f"epoch {record['epoch']}/{run.epochs}: loss {record['train_loss']:.4f}, train top-1 "
                    f"{record['train_top1']:.4f}, test top-1 {top1:.4f}, top-5 {top5:.4f}, "
                    f"{record['images_per_second']:.0f} img/s, lr x{lr_scale:g}, {record['seconds']:.1f} s")
                if stop.agreed:  # the ranks agreed, at the evaluation's exchange, to stop here
                    raise stop.interrupt()
        except KeyboardInterrupt as e:
            run.save()
            what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
            log(f"\n{what}: saved {run.checkpoint_path} at epoch {run.epoch + 1}, batch {run.step}; "
                f"continue with: alexnet-raw train --resume --out {run.out}")
            return exit_status(e)
        except divergence.NonFiniteError as e:
            raise divergence.NonFiniteError(f"{e}; {run.last_good_checkpoint()}; lower the learning rates "
                                            "(epsW, epsB) or check the data") from None
    if run.metrics:
        last = run.metrics[-1]
        log(f"done: test top-1 {last['test_top1']:.4f}, top-5 {last['test_top5']:.4f}; wrote {run.checkpoint_path}, "
            f"{metrics_path}, {curves_path}")
    return 0


PROG = "alexnet-raw train"


ABORT_GRACE_SECONDS = 1.0  # a failing rank waits this long before it ends the job (MPI_Abort)


def main(argv=None) -> int:
    ap = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    if args.plateau is not None and args.lr_gamma == 1.0:
        ap.error("argument --lr-gamma: expected a number in (0, 1) with --plateau (1 would never lower the "
                 "rate), got '1'")
    from ..distributed import supervisor

    if world_mod.launched_size() > 1 and not supervisor.is_supervised_child():
        # one of several ranks: the training runs in a child process, so that if it is killed this
        # process can say so while the others stop (distributed/supervisor.py)
        return supervisor.supervise(argv, args.peer_timeout, PROG)
    try:
        world = world_mod.current(args.peer_timeout)
    except world_mod.DistributedError as e:
        return cli_types.fail(PROG, e, 2)
    if world.size == 1:
        return _train(args, world, PROG)
    # one of several ranks: a failure here (a rank that cannot go on, or that another left waiting)
    # ends every rank through the launcher, after a moment for the others to say theirs
    try:
        status = _train(args, world, f"{PROG} (rank {world.rank})")
    except BaseException:
        traceback.print_exc()
        status = 1
    if status not in (0, EXIT_INTERRUPTED, EXIT_TERMINATED):
        time.sleep(ABORT_GRACE_SECONDS)
        world.abort(status)
    return status


def _train(args, world, prog) -> int:
    try:
        run = Run(args, world)
        try:
            return run_training(run, progress=not args.no_progress, keep=args.keep)
        finally:
            run.lock.release()
    except ck.CheckpointWriteError as e:  # the disk gave out mid-run: the run failed
        return cli_types.fail(prog, e, 1)
    except world_mod.PeerTimeout as e:  # another rank died or hangs
        return cli_types.fail(prog, e, 1)
    except (TrainError, ck.CheckpointError, rundir.RunDirError, world_mod.DistributedError) as e:
        return cli_types.fail(prog, e, 2)
    except divergence.NonFiniteError as e:
        return cli_types.fail(prog, e, EXIT_DIVERGED)
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        return cli_types.fail(prog, e, 2)
    except OSError as e:  # a write failing mid-run (the directory was checked before it started)
        return cli_types.fail(prog, e, 1)
    except KeyboardInterrupt as e:  # before training started, or a second Ctrl-C/SIGTERM while saving
        print("\ninterrupted; any checkpoint written before is intact", file=sys.stderr)
        return exit_status(e)


if __name__ == "__main__":
    sys.exit(main())
