"""The alexnet-raw command: help, the kernel report and verify."""

import json
import subprocess
import sys

import pytest


def cli(*args):
    return subprocess.run([sys.executable, "-P", "-m", "alexnet_raw.cli", *args], capture_output=True, text=True)


def test_help_lists_commands():
    out = cli("--help")
    assert out.returncode == 0
    for command in ("verify", "kernels", "bench"):
        assert command in out.stdout


def test_unknown_command_fails_clearly():
    out = cli("frobnicate")
    assert out.returncode != 0 and "invalid choice" in out.stderr


def test_kernel_report_lists_every_kernel_for_both_architectures(tmp_path):
    from alexnet_raw.perf import kernel_report
    from alexnet_raw.runtime import kernel_sources

    out = cli("kernels", "--json", str(tmp_path / "k.json"))
    assert out.returncode == 0, out.stderr
    rows = json.loads((tmp_path / "k.json").read_text())
    # a kernel that spills is named in the report (and explained, below); none of those AlexNet's
    # layers get touches local memory in its hot loop on sm_90, the H100 the targets are set on
    spilling = {r["kernel"] for r in rows if r["spills"]}
    assert ("kernels that spill: none" in out.stdout) == (not spilling)
    assert not [r["kernel"] for r in rows if kernel_report.is_alexnet_kernel(r) and r["arch"] == "sm_90"
                and "HOT-LOOP" in r["flags"]]
    names = {n for f in kernel_sources.kernel_files() for n in kernel_sources.instantiations(f)}
    for arch in ("sm_80", "sm_90"):
        assert {r["kernel"] for r in rows if r["arch"] == arch} == names
    assert all(r["registers"] > 0 for r in rows)
    fields = {"kernel", "arch", "registers", "shared_bytes", "spill_bytes", "occupancy", "ffma_share", "flags",
              "threads_per_block", "block_size_from", "hot_loop"}
    for r in rows:
        assert fields <= set(r), sorted(fields - set(r))
        assert 0 < r["occupancy"] <= 1
        assert r["ffma_share"] is None or 0 <= r["ffma_share"] <= 1
        assert (r["hot_loop"] is None) == (r["ffma_share"] is None)
    assert any(r["hot_loop"] for r in rows)
    assert "theoretical occupancy on sm_90" in out.stdout and "Roofline, forward, H100 SXM" in out.stdout
    # the versions of the tools the report was made with, on stdout and in every row
    from alexnet_raw.runtime import gpu_compile

    tools = gpu_compile.tool_versions("nvrtc")
    assert set(tools) == {"nvrtc", "nvdisasm"} and "missing" not in str(tools)
    assert f"tools: nvrtc {tools['nvrtc']}, nvdisasm {tools['nvdisasm']}" in out.stdout
    assert all(r["tools"] == tools for r in rows)
    # the targets section: every kernel AlexNet's layers get, every miss with its reason
    assert "Targets of the float conv/GEMM kernels AlexNet's layers get at batch 128" in out.stdout
    assert "NOT EXPLAINED" not in out.stdout
    for r in rows:
        for flag in r["flags"]:
            if kernel_report.is_alexnet_kernel(r) or flag == "SPILLS":
                assert kernel_report.miss_reason(r["kernel"], flag), (r["kernel"], r["arch"], flag)


def test_kernel_report_of_the_nvcc_build_matches_the_installed_extension(tmp_path):
    """--compiler nvcc compiles a file as CMakeLists.txt does for the _cuda extension: the registers
    and shared memory ptxas reports are those of the installed binary's kernels (cuobjdump)."""
    import importlib

    from alexnet_raw.runtime import gpu_compile, kernel_sources

    if gpu_compile.nvcc_path() is None:
        pytest.skip("no nvcc on this machine")
    out = cli("kernels", "--compiler", "nvcc", "--source", "relu.cu", "--source", "dropout.cu", "--no-roofline",
              "--json", str(tmp_path / "k.json"))
    assert out.returncode == 0, out.stderr
    assert "tools: nvcc " in out.stdout and "Targets of" not in out.stdout  # no conv2d.cu/gemm.cu: no targets
    rows = json.loads((tmp_path / "k.json").read_text())
    expected = {n for f in ("relu.cu", "dropout.cu") for n in kernel_sources.instantiations(f)}
    shipped = gpu_compile.binary_kernels(importlib.import_module("alexnet_raw._cuda").__file__)
    for arch in gpu_compile.ARCHITECTURES:
        mine = {r["kernel"]: r for r in rows if r["arch"] == arch}
        assert set(mine) == expected
        for name, r in mine.items():
            registers, _, shared, _ = shipped[arch][name]
            assert (r["registers"], r["shared_bytes"]) == (registers, shared), (arch, name)
    bad = cli("kernels", "--source", "nonexistent.cu")
    assert bad.returncode == 2 and "nonexistent.cu" in bad.stderr and "relu.cu" in bad.stderr


def test_verify_passes_on_both_cpu_paths():
    for backend in ("emu", "emu_ext"):
        out = cli("verify", "--backend", backend)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "0 failed" in out.stdout and f"'{backend}' backend" in out.stdout


@pytest.mark.parametrize("backend", ["cupy", "cuda"])
def test_verify_passes_on_the_gpu_paths_of_the_stand_in(backend, capsys):
    from alexnet_raw.checks import verify
    from gpu_paths import strict_standin

    with strict_standin(1):
        assert verify.main(["--backend", backend]) == 0
    out = capsys.readouterr().out
    assert f"'{backend}' backend (GPU 0: NVIDIA H100" in out and "stand-in" in out
    assert f"{2 * len(verify.CHECKS)} passed, 0 failed" in out


def test_verify_on_a_gpu_backend_without_a_gpu_says_what_is_missing():
    out = cli("verify", "--backend", "cupy")
    assert out.returncode == 2 and "cupy:" in out.stderr and ("CuPy is not installed" in out.stderr
                                                               or "no usable GPU" in out.stderr)
