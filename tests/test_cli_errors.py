"""The CLI says a user's mistake in one line: the cases the hostile-input issue found, the guard of
alexnet_raw.cli (which exceptions are the user's, which a failed run, which a bug), and the real
exit path (`python -P -m alexnet_raw.cli`)."""

import errno
import subprocess
import sys
import types

import pytest

from alexnet_raw.runtime import backends
from alexnet_raw.training import checkpoint, train
from alexnet_raw import cli, cli_types
from alexnet_raw.data.errors import DataError
from alexnet_raw.engine.cfg import CfgError
from alexnet_raw.engine import graph
from alexnet_raw.engine.graph import ShapeError
from cli_checks import error_line, no_heavy_work, parser_of, run_cli  # noqa: F401 (a fixture)

INT32 = "2147483647"

# (argv, what the one line must say); {missing} is a directory that does not exist, {file} a file
REFUSED = [
    (["kernels", "--batch", "0"], f"argument --batch: expected an integer in [1, {INT32}], got '0'"),
    (["kernels", "--json", "{missing}/k.json"], "argument --json: {missing}/k.json: expected a file in an existing "
                                                "directory, but {missing} does not exist"),
    (["kernels", "--markdown", "{missing}/k.md"], "argument --markdown: {missing}/k.md:"),
    (["split", "--png", "{missing}/s.png"], "argument --png: {missing}/s.png:"),
    (["split", "--json", "{file}/s.json"], "argument --json: {file}/s.json: expected a file in an existing "
                                           "directory, but {file} is a file"),
    (["evaluate", "--checkpoint", "c", "--json", "{missing}/e.json"], "argument --json: {missing}/e.json:"),
    (["export", "--checkpoint", "c", "{missing}/o.pth"], "argument OUT.pth: {missing}/o.pth:"),
    (["export", "--checkpoint", "c", "{tmp}"], "expected a file name, got a directory"),
    (["bench", "--out", "{file}"], "argument --out: {file}: expected a directory"),
    (["bench", "--out", "{file}/sub"], "argument --out: {file}/sub: expected a directory path, but {file} is a file"),
    (["bench", "--repeats", "0"], f"argument --repeats: expected an integer in [1, {INT32}], got '0'"),
    (["bench", "--repeats", "-1"], "argument --repeats: expected an integer in [1, "),
    (["bench", "--warmup", "-1"], f"argument --warmup: expected an integer in [0, {INT32}], got '-1'"),
    (["bench", "--batch", "1,0"], "argument --batch: expected comma-separated integers in [1, "),
    (["train", "--keep", "-1"], f"argument --keep: expected an integer in [0, {INT32}], got '-1'"),
    (["train", "--workers", "-1"], "argument --workers: expected an integer in [0, 64], got '-1'"),
    (["train", "--lr-gamma", "0"], "argument --lr-gamma: expected a finite number in (0, 1], got '0'"),
    (["train", "--lr-gamma", "1.5"], "argument --lr-gamma: expected a finite number in (0, 1], got '1.5'"),
    (["train", "--plateau", "2", "--lr-gamma", "1"], "argument --lr-gamma: expected a number in (0, 1) with --plateau"),
    (["train", "--lr-steps", "8,x"], "argument --lr-steps: expected comma-separated integers in [1, "),
    (["train", "--seed", str(2**63)], f"argument --seed: expected an integer in [0, {2**63 - 1}], got '{2**63}'"),
    (["gradcheck", "--threshold", "nan"], "argument --threshold: expected a finite number in (0, inf), got 'nan'"),
    (["gradcheck", "--threshold", "inf"], "argument --threshold: expected a finite number in (0, inf), got 'inf'"),
    (["gradcheck", "--threshold", "0"], "argument --threshold: expected a finite number in (0, inf), got '0'"),
    (["gradcheck", "--seed", "-1"], "argument --seed: expected an integer in [0, "),
    (["evaluate", "--checkpoint", "c", "--batch-size", "0"], "argument --batch-size: expected an integer in [1, "),
    (["predict", "--checkpoint", "c", "--top", "0", "x.png"], "argument --top: expected an integer in [1, "),
    (["split", "--batch-size", "1.5"], "argument --batch-size: expected an integer in [1, "),
    (["train", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["predict", "x.png"], "the following arguments are required: --checkpoint"),
]


@pytest.mark.parametrize("argv, expected", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_a_bad_argument_is_one_line_before_any_work(argv, expected, tmp_path, capsys, no_heavy_work):
    (tmp_path / "file").write_text("not a directory")
    where = {"missing": tmp_path / "missing", "file": tmp_path / "file", "tmp": tmp_path}
    status, out, err = run_cli(capsys, *[a.format(**where) for a in argv])
    assert status == 2, err
    assert expected.format(**where) in error_line(err, argv[0])
    assert out == ""


def test_an_unknown_command_is_one_line(capsys):
    status, _, err = run_cli(capsys, "frobnicate")
    assert status == 2 and "argument command: invalid choice: 'frobnicate'" in error_line(err, None)


def _backend_options():
    found = []
    for command in cli.COMMANDS:
        for action in parser_of(command)._actions:
            if isinstance(action.type, cli_types.BackendName):
                found.append((command, action.option_strings[0], action.type.names))
    return found


BACKEND_OPTIONS = _backend_options()


def test_the_backend_options_are_where_they_should_be():
    assert {(c, o) for c, o, _ in BACKEND_OPTIONS} == {
        ("verify", "--backend"), ("train", "--backend"), ("evaluate", "--backend"), ("predict", "--backend"),
        ("bench", "--cpu-backend")}


@pytest.mark.parametrize("command, option, names", BACKEND_OPTIONS, ids=[f"{c} {o}" for c, o, _ in BACKEND_OPTIONS])
def test_a_backend_that_cannot_run_here_is_refused_with_its_reason(command, option, names, monkeypatch, capsys,
                                                                  no_heavy_work):
    def unavailable(name):
        raise backends.BackendUnavailable(f"{name}: no usable GPU: the CUDA runtime reports no device (test)")

    monkeypatch.setattr(backends, "get_backend", unavailable)
    base = {"evaluate": ["--checkpoint", "c"], "predict": ["--checkpoint", "c", "x.png"]}.get(command, [])
    for name in names:
        status, _, err = run_cli(capsys, command, *base, option, name)
        assert status == 2, err
        assert f"argument {option}: {name}: no usable GPU: the CUDA runtime reports no device (test)" in \
            error_line(err, command)


def test_bench_times_exactly_the_repeats_and_warmup_asked_for(tmp_path, monkeypatch, capsys):
    """--repeats 0 used to run 3 and --repeats -1 run 1; values in range now reach the run as given."""
    from alexnet_raw.perf.bench import cli as bench_cli

    configs = []
    monkeypatch.setattr(bench_cli, "gpu_available", lambda: False)
    monkeypatch.setattr(bench_cli, "run_cpu", lambda config, result: configs.append(config))
    monkeypatch.setattr(bench_cli, "write_outputs",
                        lambda result, out: {k: f"{out}/b.{k}" for k in ("json", "md", "png")})
    for argv, (repeats, warmup) in ((["--repeats", "1", "--warmup", "0"], (1, 0)), (["--repeats", "7"], (7, 1)),
                                    ([], (3, 1)), (["--full"], (5, 1))):
        assert run_cli(capsys, "bench", "--out", tmp_path, "--no-train-step", *argv)[0] == 0
        assert (configs[-1].repeats, configs[-1].warmup) == (repeats, warmup), argv


# -- the guard -----------------------------------------------------------------------------------
@pytest.fixture
def fake_command(monkeypatch):
    """`alexnet-raw fake`: a command whose main raises what the test puts in raised[0]."""
    raised = []

    def main(argv):
        raise raised[0]

    module = types.ModuleType("alexnet_raw_fake_command")
    module.main = main
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fake", (module.__name__, "raises what a test says"))
    return raised


USER_ERRORS = [
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/x"), "/data/x: No such file or directory"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/o.json"), "/root/o.json: Permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp"), "/tmp: Is a directory"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "a" * 300), "File name too long"),
    (cli_types.UserError("--foo: expected bar, got baz"), "--foo: expected bar, got baz"),
    (backends.BackendUnavailable("cuda: no usable GPU"), "cuda: no usable GPU"),
    (CfgError("layers.cfg", "conv1", "stide", "unknown key (did you mean stride?)"), "layers.cfg: [conv1] stide"),
    (ShapeError("conv2 takes 96 channels, got 48"), "conv2 takes 96 channels, got 48"),
    (checkpoint.CheckpointError("c.safetensors: not a checkpoint"), "c.safetensors: not a checkpoint"),
    (DataError("x.png: 12000 x 12000 pixels, more than 64 megapixels"), "x.png: 12000 x 12000 pixels"),
    (train.TrainError("runs/x already holds a checkpoint"), "runs/x already holds a checkpoint"),
]
if hasattr(graph, "MemoryLimitError"):  # refused before allocating: the batch or network asked for
    USER_ERRORS.append((graph.MemoryLimitError("fc6 needs 481 GiB"), "fc6 needs 481 GiB"))


@pytest.mark.parametrize("error, expected", USER_ERRORS, ids=[type(e).__name__ for e, _ in USER_ERRORS])
def test_the_users_errors_are_one_line_exit_2(error, expected, fake_command, capsys):
    fake_command.append(error)
    status, _, err = run_cli(capsys, "fake")
    assert status == 2 and expected in error_line(err, "fake")


@pytest.mark.parametrize("error, status, expected", [
    (OSError(errno.ENOSPC, "No space left on device", "/out/bench.json"), 1,
     "/out/bench.json: No space left on device"),
    (OSError(errno.EIO, "Input/output error"), 1, "Input/output error"),
    (checkpoint.CheckpointWriteError("could not write checkpoint c.safetensors: No space left on device"), 1,
     "could not write checkpoint c.safetensors: No space left on device"),
    (MemoryError("Unable to allocate 481. GiB for an array with shape (1000000000, 128)"), 1,
     "out of memory: Unable to allocate 481. GiB"),
    (KeyboardInterrupt(), 130, "interrupted"),
    (cli_types.UserError("first\nsecond"), 2, "first; second"),  # a message of several lines: on one
])
def test_a_failed_run_is_one_line_with_its_status(error, status, expected, fake_command, capsys):
    fake_command.append(error)
    got, _, err = run_cli(capsys, "fake")
    assert got == status and expected in error_line(err, "fake")


@pytest.mark.parametrize("error", [ValueError("operands could not be broadcast"), RuntimeError("x"), KeyError("k"),
                                   TypeError("t"), ZeroDivisionError("division by zero"), AssertionError()])
def test_a_bug_keeps_its_traceback(error, fake_command):
    """A bare ValueError is a bug until shown otherwise (inside the program NumPy raises them)."""
    fake_command.append(error)
    with pytest.raises(type(error)):
        cli.main(["fake"])


def test_a_runtime_failure_of_a_real_command_is_exit_1(tmp_path, monkeypatch, capsys):
    from alexnet_raw.engine import split_report as split

    def full_disk(g, report, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(split, "draw", full_disk)
    status, _, err = run_cli(capsys, "split", "--png", tmp_path / "s.png")
    assert status == 1 and f"{tmp_path / 's.png'}: No space left on device" in error_line(err, "split")


def test_every_command_still_prints_its_help(capsys):
    for command in cli.COMMANDS:
        status, out, err = run_cli(capsys, command, "--help")
        assert status == 0 and out.startswith(f"usage: alexnet-raw {command}") and err == "", command


# -- the real exit path --------------------------------------------------------------------------
def cli_process(*args, code=None):
    command = [sys.executable, "-P"] + (["-c", code] if code else ["-m", "alexnet_raw.cli"])
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("argv, status, expected", [
    (["kernels", "--batch", "0"], 2, "alexnet-raw kernels: error: argument --batch: expected an integer in [1, "),
    (["split", "--cfg", "{tmp}/nothere.cfg", "{tmp}/nothere.params"], 2,
     "alexnet-raw split: error: {tmp}/nothere.cfg: no such file"),
    (["bench", "--repeats", "0"], 2, "alexnet-raw bench: error: argument --repeats: expected an integer in [1, "),
])
def test_the_process_exits_with_one_line(argv, status, expected, tmp_path):
    out = cli_process(*[a.format(tmp=tmp_path) for a in argv])
    assert out.returncode == status, out.stderr
    assert out.stderr.splitlines() == [out.stderr.strip()] and out.stderr.startswith(expected.format(tmp=tmp_path))
    assert out.stdout == ""


def test_train_on_a_gpu_backend_without_one_is_one_line():
    from gpu_paths import REAL_GPUS

    if REAL_GPUS:
        pytest.skip("this machine has a GPU: the in-process test covers the refusal")
    out = cli_process("train", "--backend", "cupy")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("alexnet-raw train: error: argument --backend: cupy: ")
    assert "CuPy is not installed" in out.stderr or "no usable GPU" in out.stderr


def test_a_bug_in_the_process_shows_its_traceback():
    code = ("import sys, types; from alexnet_raw import cli; m = types.ModuleType('fake'); "
            "m.main = lambda argv: 1 / 0; sys.modules['fake'] = m; cli.COMMANDS['fake'] = ('fake', ''); "
            "sys.exit(cli.main(['fake']))")
    out = cli_process(code=code)
    assert out.returncode == 1 and "Traceback" in out.stderr and "ZeroDivisionError" in out.stderr


def test_the_heavy_work_trap_springs_on_good_arguments(capsys, no_heavy_work):
    """The refusals above prove 'before any work' only if the trap catches work when it starts."""
    from cli_checks import HeavyWork

    for argv in (["kernels", "--batch", "1"], ["gradcheck"], ["train", "--keep", "0"]):
        with pytest.raises(HeavyWork):
            cli.main(argv)
