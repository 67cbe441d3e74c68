"""The package carries what it compiles at run time: kernel sources, the GPU builds' options and the
CPU runtime's headers."""

import ast
import filecmp
import importlib
import re
from pathlib import Path

import alexnet_raw
from alexnet_raw.runtime import kernel_sources

CHECKOUT = Path(__file__).resolve().parents[1]


def test_kernel_sources_ship_with_the_package():
    package = Path(alexnet_raw.__file__).resolve().parent
    kernels = kernel_sources.kernel_dir()
    if package.parent == CHECKOUT:  # a development (editable) install uses the checkout
        assert kernels == CHECKOUT / "kernels"
        return
    assert kernels == package / "kernels_src"
    shipped = sorted(p.name for p in kernels.iterdir())
    expected = sorted(p.name for p in (CHECKOUT / "kernels").iterdir()
                      if p.suffix in (".cu", ".cuh") or p.name == "gpu_options.txt")
    assert shipped == expected
    for name in expected:
        assert filecmp.cmp(kernels / name, CHECKOUT / "kernels" / name, shallow=False), name


def test_runtime_headers_ship_with_the_package():
    include = Path(alexnet_raw.__file__).resolve().parent / "emu" / "include"
    for header in ("cuda_emu.h", "cuda_emu_runtime.h", "cuda_emu_launch.h", "kernel_signature.h"):
        assert (include / header).is_file(), header


def test_every_kernel_file_states_what_it_computes_layout_and_tiling():
    for name in kernel_sources.kernel_files():
        head = (kernel_sources.kernel_dir() / name).read_text().split("\n\n")[0]
        assert head.startswith(f"// {name}:"), f"{name} must open with a header comment naming itself"
        for word in ("Layout", "Tiling", "tests/"):
            assert word in head, f"{name}'s header comment must mention {word}"


ROOT_MODULES = {"__init__.py", "functional.py", "cli.py", "cli_types.py"}
SUBPACKAGES = {"checks", "data", "distributed", "emu", "engine", "ops", "perf", "runtime", "training"}


def test_the_package_root_holds_only_the_public_surface_and_named_folders():
    package = CHECKOUT / "alexnet_raw"
    assert {p.name for p in package.glob("*.py")} == ROOT_MODULES
    folders = {p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == SUBPACKAGES
    for name in SUBPACKAGES:  # each folder says what it holds
        assert (package / name / "__init__.py").read_text().startswith('"""'), name


def _module_level_imports(path, module):
    """alexnet_raw modules imported at module level (not inside functions) by the file at path."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in tree.body:
        for n in ([node] if isinstance(node, (ast.Import, ast.ImportFrom)) else
                  [m for m in ast.walk(node) if isinstance(node, (ast.If, ast.Try))]):
            if isinstance(n, ast.ImportFrom):
                parts = package.split(".")
                base = (".".join(parts[:len(parts) - n.level + 1] + ([n.module] if n.module else []))
                        if n.level else n.module or "")
                for a in n.names:  # a submodule, else a name defined by the module `base`
                    found.add(f"{base}.{a.name}" if (CHECKOUT / Path(*f"{base}.{a.name}".split("."))).with_suffix(".py")
                              .is_file() or (CHECKOUT / Path(*f"{base}.{a.name}".split("."))).is_dir() else base)
            elif isinstance(n, ast.Import):
                found |= {a.name for a in n.names}
    return found


def test_no_import_cycles_at_module_level():
    package = CHECKOUT / "alexnet_raw"
    modules = {}
    for path in package.rglob("*.py"):
        name = ".".join(path.relative_to(CHECKOUT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    edges = {m: {i for i in _module_level_imports(p, m) if i in modules and i != m} for m, p in modules.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges[m]):
            assert state.get(n) != "open", "import cycle: " + " -> ".join(stack[stack.index(n):] + [n])
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(modules):
        if m not in state:
            visit(m)


def test_each_op_module_launches_the_kernel_file_of_its_name():
    from alexnet_raw import ops

    kernels = set(kernel_sources.kernel_files())
    launched = {}
    for path in sorted((CHECKOUT / "alexnet_raw" / "ops").glob("*.py")):
        name = path.stem
        if name.startswith("_") or name in ops.NO_KERNEL:
            continue
        module = importlib.import_module(f"alexnet_raw.ops.{name}")
        assert module.SOURCE == ops.NAMED_APART.get(name, f"{name}.cu"), (name, module.SOURCE)
        tests = re.findall(r"tests/kernels/test_\w+\.py", module.__doc__)  # the docstring names its tests
        assert tests and all((CHECKOUT / t).is_file() for t in tests), (name, tests)
        launched[module.SOURCE] = name
    assert set(launched) == kernels  # every kernel file has its op module, and no module a missing file
