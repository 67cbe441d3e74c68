"""What every `alexnet-raw` command accepts as an argument, checked once, here, while argparse parses.

A wrong argument is refused before any work starts (no kernel compiled, no dataset read), in
argparse's format on one line, with exit status 2:

    alexnet-raw kernels: error: argument --batch: expected an integer in [1, 2147483647], got '0'

The types (argparse `type=` callables; each keeps its range as attributes, which the CLI tests
read to generate values outside it):

    Integer(lo, hi)      an integer in [lo, hi]
    Real(lo, hi, ...)    a finite float in the interval, ends open or closed
    IntegerList(lo, hi)  comma-separated integers in [lo, hi], e.g. 8,11
    OutputFile           a file the command may write: its directory exists and is writable, the
                         path is not a directory (checked before the work, not after it)
    OutputDir            a directory the command may create or write into
    BackendName(names)   one of `names` that runs on this machine; otherwise the backend's own
                         reason (e.g. "cupy: CuPy is not installed ...")

Input files are not checked here: their readers name the file and what is wrong with it, and the
commands turn that into the same one line (see alexnet_raw/cli.py for which errors are the user's).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

INT32_MAX = 2**31 - 1  # sizes and counts reach the kernels as C ints
SEED_MAX = 2**63 - 1  # what Model and the data order accept (a non-negative int64)
MAX_WORKERS = 64  # background data threads; each holds a batch in memory, more only costs memory
MAX_SHARDS = 30000  # shards of a batch: each is an MPI tag 1000 + s, and MPI guarantees tags up to 32767


class UserError(Exception):
    """A mistake in what the user asked for, said in one line: the command exits 2 without a traceback."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with one-line errors: 'PROG: error: MESSAGE' on stderr, exit status 2.
    (argparse prints the whole usage first; `PROG --help` still does.)"""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def one_line(message) -> str:
    """`message` on one line: a message of several lines (a compiler's output) has them joined with
    '; '; one line is left as it is (a path may end in a space)."""
    lines = [line for line in str(message).splitlines() if line.strip()]
    return lines[0] if len(lines) == 1 else "; ".join(line.strip() for line in lines)


def fail(prog: str, message, status: int = 2) -> int:
    """Print 'PROG: error: MESSAGE' on one line on stderr and return `status` (for `return fail(...)`)."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return status


def _refuse(expected: str, text):
    raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")


# -- numbers -------------------------------------------------------------------------------------
class Integer:
    """An integer in [lo, hi] (decimal; no fractions, no 'nan')."""

    def __init__(self, lo: int, hi: int = INT32_MAX):
        self.lo, self.hi = lo, hi
        self.expected = f"an integer in [{lo}, {hi}]"

    def __call__(self, text):
        try:
            value = int(text, 10)
        except (TypeError, ValueError):
            _refuse(self.expected, text)
        if not self.lo <= value <= self.hi:
            _refuse(self.expected, text)
        return value

    def __repr__(self):
        return f"Integer({self.lo}, {self.hi})"


class Real:
    """A finite float in the interval from lo to hi; lo_open/hi_open exclude the ends."""

    def __init__(self, lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        ends = ("(" if lo_open else "[") + f"{lo:g}, {hi:g}" + (")" if hi_open or hi == math.inf else "]")
        self.expected = f"a finite number in {ends}"

    def __call__(self, text):
        try:
            value = float(text)
        except (TypeError, ValueError):
            _refuse(self.expected, text)
        if not math.isfinite(value) or not self.contains(value):
            _refuse(self.expected, text)
        return value

    def contains(self, value: float) -> bool:
        above = value > self.lo if self.lo_open else value >= self.lo
        below = value < self.hi if self.hi_open else value <= self.hi
        return above and below

    def __repr__(self):
        return f"Real({self.lo}, {self.hi}, lo_open={self.lo_open}, hi_open={self.hi_open})"


class IntegerList:
    """Comma-separated integers in [lo, hi] as a tuple; '' is the empty tuple when allow_empty."""

    def __init__(self, lo: int, hi: int = INT32_MAX, allow_empty: bool = False):
        self.item = Integer(lo, hi)
        self.lo, self.hi, self.allow_empty = lo, hi, allow_empty
        self.expected = f"comma-separated integers in [{lo}, {hi}]" + (" (or '' for none)" if allow_empty else "")

    def __call__(self, text):
        parts = [p.strip() for p in str(text).split(",")]
        if parts == [""] and self.allow_empty:
            return ()
        try:
            return tuple(self.item(p) for p in parts)
        except argparse.ArgumentTypeError:
            _refuse(self.expected, text)

    def __repr__(self):
        return f"IntegerList({self.lo}, {self.hi}, allow_empty={self.allow_empty})"


positive_int = Integer(1)
non_negative_int = Integer(0)
seed = Integer(0, SEED_MAX)
workers = Integer(0, MAX_WORKERS)
shards = Integer(1, MAX_SHARDS)
positive_real = Real(0.0, lo_open=True)
fraction = Real(0.0, 1.0, lo_open=True)  # (0, 1]: a learning-rate factor
positive_int_list = IntegerList(1)


# -- paths ---------------------------------------------------------------------------------------
def _path(text, what):
    """Refuse what no file system can name: '', a NUL byte, a string the file system's encoding
    cannot hold (none of them can come from a shell; they can from a caller in Python)."""
    if not text or "\x00" in text:
        _refuse(what, text)
    try:
        os.fsencode(text)
    except UnicodeError:
        _refuse(what, text)


class _Writable:
    """A path the command will write, checked before any work by alexnet_raw.training.rundir (the one place
    that decides what can be written), as an argparse type."""

    what = "a path"

    def __call__(self, text):
        from .training import rundir

        _path(text, self.what)
        try:
            self.check(rundir, text)
        except rundir.RunDirError as e:  # "<flag> PATH: expected ...": argparse names the flag
            raise argparse.ArgumentTypeError(str(e).strip()) from None
        return text

    def __repr__(self):
        return f"{type(self).__name__}()"


class OutputFile(_Writable):
    """A file the command will write: not a directory, in an existing, writable directory."""

    what = "a file path"

    def check(self, rundir, text):
        rundir.check_output_file(text, "")


class OutputDir(_Writable):
    """A directory the command will write into, created (with its parents) when missing."""

    what = "a directory path"

    def check(self, rundir, text):
        rundir.check_writable(text, "")


output_file = OutputFile()
output_dir = OutputDir()


# -- backends ------------------------------------------------------------------------------------
class BackendName:
    """One of `names` that can run here (alexnet_raw.runtime.backends decides, and says why not)."""

    def __init__(self, names):
        self.names = tuple(names)

    def __call__(self, text):
        if text not in self.names:
            _refuse(f"one of {', '.join(self.names)}", text)
        from .runtime import backends

        try:
            backends.get_backend(text)
        except backends.BackendUnavailable as e:
            raise argparse.ArgumentTypeError(one_line(e)) from None
        return text

    def __repr__(self):
        return f"BackendName({self.names})"


def backend_option(parser, *flags, names=None, **kwargs):
    """Add a --backend style option: `names` (default all) shown as choices, checked by BackendName."""
    from .runtime.backends import ALL_BACKENDS

    names = tuple(names or ALL_BACKENDS)
    return parser.add_argument(*flags, type=BackendName(names), choices=names, **kwargs)
