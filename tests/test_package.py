"""The package carries what it compiles at run time: kernel sources, the GPU builds' options and the
CPU runtime's headers."""

import filecmp
from pathlib import Path

import alexnet_raw
from alexnet_raw import kernel_sources

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
