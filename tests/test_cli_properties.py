"""Generated bad arguments for every `alexnet-raw` command: each is refused with exit status 2 and
one line on stderr, never a traceback; the ones argparse can judge are refused while parsing,
before any work (the heavy entry points are trapped). Every option of every parser is accounted
for: a number, an output path, a backend, a choice, a flag, or one of the inputs listed here, whose
readers are given missing, wrong-kind and garbage files."""

import math
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alexnet_raw import cli, cli_types
from cli_checks import error_line, no_heavy_work, parser_of, run_cli  # noqa: F401 (a fixture)

SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# What each command needs besides the option under test ({tmp}: the test's directory)
BASE = {"evaluate": ["--checkpoint", "c.safetensors"], "predict": ["--checkpoint", "c.safetensors", "x.png"],
        "export": ["--checkpoint", "c.safetensors", "{tmp}/out.pth"]}

# Options that take a path to read or a name: checked by what reads them (which names the file), so
# a missing input is reported the same way whether it comes from the command line or elsewhere
INPUTS = {("train", "--data"), ("train", "--cfg"), ("train", "--import-torchvision"), ("train", "--out"),
          ("evaluate", "--checkpoint"), ("evaluate", "--data"), ("predict", "--checkpoint"), ("predict", "--labels"),
          ("predict", "IMAGE"), ("export", "--checkpoint"), ("gradcheck", "--cfg"), ("split", "--cfg")}
NAMES = {("gradcheck", "--layers"), ("bench", "--layer")}  # layer names, checked against the network
NUMBER_TYPES = (cli_types.Integer, cli_types.Real, cli_types.IntegerList)
PATH_TYPES = (cli_types.OutputFile, cli_types.OutputDir)


def _name(action):
    return action.option_strings[0] if action.option_strings else action.metavar


def _options():
    """(command, option name, action) of every option and positional of every command."""
    return [(command, _name(a), a) for command in cli.COMMANDS for a in parser_of(command)._actions
            if a.dest != "help"]


OPTIONS = _options()
NUMBERS = [(c, n, a.type) for c, n, a in OPTIONS if isinstance(a.type, NUMBER_TYPES)]
OUTPUTS = [(c, n, a.type) for c, n, a in OPTIONS if isinstance(a.type, PATH_TYPES)]


def test_every_option_is_accounted_for():
    """A new option needs a checked type or a place in INPUTS/NAMES; a bare int or float is refused."""
    rest = set()
    for command, name, action in OPTIONS:
        assert action.type not in (int, float), f"{command} {name}: type={action.type.__name__}, use cli_types"
        checked = isinstance(action.type, NUMBER_TYPES + PATH_TYPES + (cli_types.BackendName,))
        if not (checked or action.choices is not None or action.nargs == 0):
            rest.add((command, name))
    assert rest == INPUTS | NAMES
    assert {(c, n) for c, n, _ in NUMBERS} >= {("kernels", "--batch"), ("bench", "--repeats"), ("train", "--keep"),
                                                ("gradcheck", "--threshold"), ("train", "--lr-gamma")}


def _base(command, tmp):
    return [a.format(tmp=tmp) for a in BASE.get(command, [])]


# -- numbers -------------------------------------------------------------------------------------
def _not(parse):
    def refused(text):
        try:
            parse(text)
        except (ValueError, OverflowError):
            return True
        return False

    return refused


# text that Python's own int() / float() refuse: the oracle of "not a number" here
garbage = st.text(max_size=12)
not_int = garbage.filter(_not(lambda t: int(t, 10))) | st.floats().map(repr)
not_float = garbage.filter(_not(float))


def out_of_range(t):
    if isinstance(t, cli_types.Integer):
        return st.integers(max_value=t.lo - 1).map(str) | st.integers(min_value=t.hi + 1).map(str) | not_int
    if isinstance(t, cli_types.Real):
        below = st.floats(max_value=t.lo, exclude_max=not t.lo_open, allow_nan=False)
        above = st.floats(min_value=t.hi, exclude_min=not t.hi_open, allow_nan=False) if t.hi < math.inf else \
            st.just(math.inf)
        return st.one_of(below, above, st.sampled_from([math.nan, math.inf, -math.inf])).map(repr) | not_float
    good = st.integers(t.lo, t.hi).map(str)
    bad = out_of_range(t.item) | st.just("")
    return st.tuples(st.lists(good, max_size=3), bad, st.lists(good, max_size=3)).map(
        lambda p: ",".join(p[0] + [p[1]] + p[2])).filter(lambda text: text or not t.allow_empty)


def in_range(t):
    if isinstance(t, cli_types.Integer):
        return st.integers(t.lo, t.hi)
    if isinstance(t, cli_types.Real):
        return st.floats(t.lo, min(t.hi, 1e300), exclude_min=t.lo_open, exclude_max=t.hi_open)
    return st.lists(st.integers(t.lo, t.hi), min_size=1, max_size=4).map(tuple)


@settings(max_examples=150, **SETTINGS)
@given(case=st.sampled_from(NUMBERS).flatmap(lambda n: st.tuples(st.just(n), out_of_range(n[2]))))
def test_a_number_out_of_range_is_refused_while_parsing(case, tmp_path, capsys, no_heavy_work):
    (command, option, kind), text = case
    status, out, err = run_cli(capsys, command, f"{option}={text}", *_base(command, tmp_path))
    assert status == 2 and out == ""
    assert error_line(err, command) == f"alexnet-raw {command}: error: argument {option}: expected {kind.expected}, " \
                                       f"got {text!r}"


@settings(max_examples=100, **SETTINGS)
@given(case=st.sampled_from(NUMBERS).flatmap(lambda n: st.tuples(st.just(n), in_range(n[2]))))
def test_a_number_in_range_is_kept_as_given(case, tmp_path):
    """Nothing is silently replaced (bench --repeats 0 used to run 3)."""
    (command, option, kind), value = case
    text = ",".join(map(str, value)) if isinstance(value, tuple) else repr(value)
    args = parser_of(command).parse_args([f"{option}={text}", *_base(command, tmp_path)])
    assert getattr(args, option.lstrip("-").replace("-", "_")) == value


# -- output paths --------------------------------------------------------------------------------
file_names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cc", "Cs"),
                                   blacklist_characters="/"), min_size=1, max_size=30).filter(lambda n: n not in (".", ".."))
KINDS = {cli_types.OutputFile: ("missing directory", "under a file", "a directory", "empty"),
         cli_types.OutputDir: ("a file", "under a file", "empty")}
if os.geteuid() != 0:  # root may write anywhere
    KINDS = {k: v + ("unwritable directory",) for k, v in KINDS.items()}


def _bad_output(tmp, kind, name):
    if kind == "empty":
        return ""
    if kind == "missing directory":
        return os.path.join(tmp, "missing", name)
    if kind in ("a file", "under a file"):
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
            f.write("a file")
        return path if kind == "a file" else os.path.join(path, "x")
    if kind == "a directory":
        os.makedirs(os.path.join(tmp, name), exist_ok=True)
        return os.path.join(tmp, name)
    locked = os.path.join(tmp, "locked")
    os.makedirs(locked, exist_ok=True)
    os.chmod(locked, 0o500)
    return os.path.join(locked, name)


@settings(max_examples=60, **SETTINGS)
@given(case=st.sampled_from(OUTPUTS).flatmap(lambda o: st.tuples(st.just(o),
                                                                   st.sampled_from(KINDS[type(o[2])]))),
       name=file_names)
def test_an_output_path_that_cannot_be_written_is_refused_while_parsing(case, name, tmp_path, capsys, no_heavy_work):
    (command, option, _), kind = case
    tmp = tempfile.mkdtemp(dir=tmp_path)
    path = _bad_output(tmp, kind, name)
    argv = [command, *_base(command, tmp_path)]
    if option.startswith("-"):
        argv.append(f"{option}={path}")
    else:  # export's OUT.pth: the positional replaced
        argv[-1] = path
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and out == "", (kind, err)
    line = error_line(err, command)
    assert line.startswith(f"alexnet-raw {command}: error: argument {option}: ") and "expected" in line, kind


# -- unknown options, garbage --------------------------------------------------------------------
def _unknown_for(command):
    known = [s for a in parser_of(command)._actions for s in a.option_strings]
    names = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="-_"), min_size=1,
                    max_size=20).map(lambda n: "--" + n)
    return names.filter(lambda opt: not any(k.startswith(opt) for k in known))  # argparse takes abbreviations


@settings(max_examples=60, **SETTINGS)
@given(case=st.sampled_from(sorted(cli.COMMANDS)).flatmap(lambda c: st.tuples(st.just(c), _unknown_for(c))))
def test_an_unknown_option_is_refused(case, tmp_path, capsys, no_heavy_work):
    command, option = case
    status, _, err = run_cli(capsys, command, *_base(command, tmp_path), option)
    assert status == 2 and f"unrecognized arguments: {option}" in error_line(err, command)


printable = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20)


@settings(max_examples=60, **SETTINGS)
@given(command=st.sampled_from(sorted(set(cli.COMMANDS) - {"predict"})),  # predict takes any number of images
       word=printable.filter(lambda t: not t.startswith("-")))
def test_a_stray_word_is_refused(command, word, tmp_path, capsys, no_heavy_work):
    status, _, err = run_cli(capsys, command, *_base(command, tmp_path), word)
    assert status == 2 and f"unrecognized arguments: {word}" in error_line(err, command)


@settings(max_examples=40, **SETTINGS)
@given(word=printable.filter(lambda t: t not in cli.COMMANDS and not t.startswith("-h") and not "--help".startswith(t)))
def test_a_command_that_does_not_exist_is_refused(word, capsys):
    status, _, err = run_cli(capsys, word)
    assert status == 2 and "error: " in error_line(err, None)


# -- inputs: missing, of the wrong kind, garbage -------------------------------------------------
# (command line with {x} the input under test, {tmp} the example's directory); each runs until its
# reader refuses the input, a fraction of a second
READERS = [
    ["evaluate", "--checkpoint", "{x}", "--workers", "0"],
    ["predict", "--checkpoint", "{x}", "{tmp}/image.png"],
    ["export", "--checkpoint", "{x}", "{tmp}/out.pth"],
    ["gradcheck", "--cfg", "{x}", "{x}"],
    ["split", "--cfg", "{x}", "{x}", "--png", "{tmp}/s.png"],
    ["train", "--data", "{x}", "--out", "{tmp}/run", "--workers", "0", "--no-progress"],
]


def _bad_input(tmp, kind, name, content):
    path = os.path.join(tmp, name)
    if kind == "a directory":
        os.makedirs(path)
    elif kind == "garbage":
        with open(path, "wb") as f:
            f.write(content)
    return path


@pytest.mark.parametrize("kind", ["missing", "a directory", "garbage"])
@pytest.mark.parametrize("argv", READERS, ids=[a[0] for a in READERS])
@settings(max_examples=4, **SETTINGS)
@given(name=file_names, content=st.binary(max_size=200))
def test_an_input_that_cannot_be_read_is_one_line_naming_it(argv, kind, name, content, tmp_path, capsys):
    tmp = tempfile.mkdtemp(dir=tmp_path)
    path = _bad_input(tmp, kind, name, content)
    status, out, err = run_cli(capsys, *[a.format(x=path, tmp=tmp) for a in argv])
    assert status == 2, (kind, err)
    assert path in error_line(err, argv[0], parsing=False), (kind, err)
