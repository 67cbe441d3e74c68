"""Helpers of the CLI error tests: `alexnet-raw ARGS...` in this process through alexnet_raw.cli.main
(the real dispatch and its guard), what a one-line error looks like, and a trap for heavy work."""

from __future__ import annotations

import importlib
import re

import pytest

from alexnet_raw import cli


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of `alexnet-raw ARGV...` run in this process."""
    capsys.readouterr()
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's errors (and --help) leave through SystemExit
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def parser_of(command):
    return importlib.import_module(cli.COMMANDS[command][0]).build_parser()


def error_line(err, command, parsing=True):
    """The one line of stderr, checked: no traceback, 'alexnet-raw COMMAND: error: ...'. After
    parsing, train, evaluate and predict still print their own 'error: ...' (their handlers' format)."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    prog = f"alexnet-raw {command}" if command else "alexnet-raw"
    pattern = rf"{re.escape(prog)}: error: " if parsing else rf"({re.escape(prog)}: )?error: "
    assert re.match(pattern, lines[0]), f"expected a line starting {prog}: error:, got {lines[0]!r}"
    return lines[0]


class HeavyWork(BaseException):
    """Raised by the trapped entry points: a BaseException, so no handler of a command hides it."""


# Where each command's work starts: none of these may run before its arguments are known good.
HEAVY = (("alexnet_raw.perf.kernel_report", "collect"), ("alexnet_raw.perf.bench.cli", "run_cpu"),
         ("alexnet_raw.perf.bench.cli", "run_gpu"), ("alexnet_raw.training.train", "Run"), ("alexnet_raw.checks.gradcheck", "check_model"),
         ("alexnet_raw.engine.split_report", "load_graph"), ("alexnet_raw.checks.verify", "run"),
         ("alexnet_raw.training.checkpoint", "load_checkpoint"), ("alexnet_raw.engine.model", "Model.named"),
         ("alexnet_raw.engine.model", "Model.from_cfg"))


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Every entry point in HEAVY replaced by one that raises HeavyWork naming itself."""
    for module, path in HEAVY:
        owner = importlib.import_module(module)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)

        def trap(*args, _where=f"{module}.{path}", **kwargs):
            raise HeavyWork(f"{_where} ran before the arguments were refused")

        monkeypatch.setattr(owner, name, trap)
