"""The static kernel report's own logic: the occupancy calculator against hand-computed cases, the
SASS hot-loop parser on small kernels compiled here, the launch recorder and the roofline model.
(The whole report over every kernel is run by tests/test_cli.py.)"""

import math
import re

import numpy as np
import pytest

from alexnet_raw.runtime import gpu_compile
from alexnet_raw.perf import layer_cases, kernel_report
from alexnet_raw.ops import conv2d as conv_ops
from alexnet_raw.ops import gemm_tiles
from alexnet_raw.ops import linear as linear_ops
from alexnet_raw.ops import relu as relu_ops


# -- occupancy ---------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize(
    "threads, regs, expected, limiter",
    [
        (256, 32, 1.0, "registers"),  # 1024 regs/warp: 16 warps per sub-partition = 64 warps = 8 blocks
        (256, 128, 0.25, "registers"),  # 4096 regs/warp: 4 per sub-partition = 16 warps = 2 blocks
        (64, 128, 0.25, "registers"),  # 16 warps = 8 blocks of 2 warps
        (1024, 64, 0.5, "registers"),  # 2048 regs/warp: 32 warps = one block of 32 warps
        (32, 40, 0.5, "blocks"),  # registers allow 48 warps, but at most 32 blocks of 1 warp
        (96, 64, 30 / 64, "registers"),  # 32 warps by registers: 10 blocks of 3 warps
        (256, 33, 0.75, "registers"),  # 33 regs round to 40 per thread: 1280/warp, 12 per sub-partition
        (128, 16, 1.0, "warps"),  # 16 blocks of 4 warps fill the 64 warps
    ],
)
def test_occupancy_by_registers_and_warps(arch, threads, regs, expected, limiter):
    occ = kernel_report.occupancy(arch, threads, regs, 0)
    assert occ["occupancy"] == pytest.approx(expected)
    assert limiter in occ["limiter"]


def test_occupancy_limited_by_shared_memory_differs_between_architectures():
    # 48 KB + 1 KB reserved = 50176 B a block: sm_90 holds 233472 // 50176 = 4 blocks, sm_80 167936 // 50176 = 3
    h100 = kernel_report.occupancy("sm_90", 256, 32, 48 * 1024)
    a100 = kernel_report.occupancy("sm_80", 256, 32, 48 * 1024)
    assert (h100["blocks_per_sm"], h100["occupancy"], h100["limiter"]) == (4, 0.5, ["shared"])
    assert (a100["blocks_per_sm"], a100["occupancy"], a100["limiter"]) == (3, 0.375, ["shared"])
    # 100 B rounds with the reserve to 1152 B: 233472 // 1152 = 202 blocks, so not binding
    assert "shared" not in kernel_report.occupancy("sm_90", 256, 32, 100)["limiter"]
    # 20000 B -> 21120 B: sm_80 holds 7 blocks of 2 warps
    assert kernel_report.occupancy("sm_80", 64, 32, 20000)["blocks_per_sm"] == 7


def test_occupancy_zero_when_a_block_cannot_fit():
    assert kernel_report.occupancy("sm_90", 1024, 128, 0)["occupancy"] == 0  # 128 KB of registers a block
    assert kernel_report.occupancy("sm_90", 32, 256, 0)["occupancy"] == 0  # above 255 registers a thread
    with pytest.raises(ValueError, match="threads per block"):
        kernel_report.occupancy("sm_90", 2048, 32, 0)


# -- SASS ----------------------------------------------------------------------------------------
SASS_PROGRAM = r"""
template <typename T>
__global__ void fma_loop(T* out, const T* a, int n) {
  T acc[8];
  for (int j = 0; j < 8; ++j) acc[j] = T(threadIdx.x + j);
  const T x = a[threadIdx.x], y = a[threadIdx.x + 1];
#pragma unroll 1
  for (int i = 0; i < n; ++i) {
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[j] = acc[j] * x + y;  // 8 FMAs, a counter and a branch
  }
  T s = 0;
  for (int j = 0; j < 8; ++j) s += acc[j];
  out[threadIdx.x] = s;
}

__global__ void division_loop(int* out, const int* a, int n, int d) {
  int s = 0;
#pragma unroll 1
  for (int i = threadIdx.x; i < n; i += blockDim.x) s += a[i] / (d + i);  // divisor varies: not hoisted
  out[threadIdx.x] = s;
}

__global__ void local_array(float* out, const int* idx, int n) {
  float buf[64];
  for (int i = 0; i < 64; ++i) buf[i] = out[i];
#pragma unroll 1
  for (int i = 0; i < n; ++i) buf[idx[i] & 63] += 1.0f;  // dynamic index: local memory
  out[threadIdx.x] = buf[threadIdx.x & 63];
}

__global__ void no_loop(float* out) { out[threadIdx.x] = 1.0f; }
"""
SASS_NAMES = ("fma_loop<float>", "fma_loop<double>", "division_loop", "local_array", "no_loop")


@pytest.fixture(scope="module")
def sass():
    build = gpu_compile.nvrtc_compile_text(SASS_PROGRAM, SASS_NAMES, "sm_90")
    return gpu_compile.disassemble(build.cubin)


def test_disassembly_names_every_kernel(sass):
    assert set(sass) == set(SASS_NAMES)
    assert all(fn.instructions for fn in sass.values())


@pytest.mark.parametrize("name, opcode", [("fma_loop<float>", "FFMA"), ("fma_loop<double>", "DFMA")])
def test_hot_loop_of_an_fma_loop_is_mostly_fma(sass, name, opcode):
    mix = gpu_compile.hot_loop(sass[name], is_double="double" in name)
    assert mix.fma_opcode == opcode and mix.fma >= 8
    assert mix.fma_share >= 0.6, mix.counts
    assert mix.unexpected == []


def test_hot_loop_flags_integer_division_and_local_memory(sass):
    div = gpu_compile.hot_loop(sass["division_loop"], False)
    assert div.fma == 0 and any("integer division" in n for n in div.unexpected), div.counts
    local = gpu_compile.hot_loop(sass["local_array"], False)
    assert any("local-memory" in n for n in local.unexpected), local.counts


def test_kernel_without_loop_has_no_hot_loop(sass):
    assert gpu_compile.hot_loop(sass["no_loop"], False) is None


def test_sass_parser_on_a_hand_written_listing():
    text = """
.text._Z1kv:
_Z1kv:
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_1:
        /*0010*/                   FFMA R2, R3, R4, R2 ;
        /*0020*/                   LDS.128 R4, [R0] ;
        /*0030*/                   LDS R8, [R0+0x10] ;
        /*0040*/               @P0 BRA `(.L_x_1) ;
        /*0050*/                   EXIT ;
.L_x_2:
        /*0060*/                   BRA `(.L_x_2);
"""
    fn = gpu_compile.parse_sass(text)["_Z1kv"]
    assert fn.loops() == [(0x10, 0x40)]  # the padding `BRA self` is not a loop
    mix = gpu_compile.hot_loop(fn, False)
    assert (mix.instructions, mix.fma, mix.shared_loads, mix.shared_loads_vector) == (4, 1, 2, 1)
    assert mix.fma_share == 0.25


# -- launches and flags ----------------------------------------------------------------------------
def test_recording_captures_the_ops_own_launches_without_running_them():
    x = np.empty((128, 96, 55, 55), np.float32)
    with layer_cases.recording() as launches:
        from alexnet_raw import functional as F

        F.relu(x)
    assert len(launches) == 1
    expected = relu_ops.forward_launch(x, x)
    assert (launches[0].kernel, launches[0].grid, launches[0].block) == (expected.kernel, expected.grid, expected.block)


def test_recording_raises_what_an_op_raises_and_ends_with_its_block():
    from alexnet_raw import functional as F
    from alexnet_raw.runtime import backends

    with pytest.raises((TypeError, ValueError), match="int32"):
        with layer_cases.recording():
            F.relu(np.empty((2, 3), np.int32))  # refused as outside the block, not swallowed
    assert backends.backend_for(np.empty(1)).name != "record"


def test_every_layer_of_the_shipped_networks_records():
    found = layer_cases.representative_launches(batch=2)  # raises if any op fails on a layer
    assert any(k.startswith("conv2d_forward") for k in found) and any(k.startswith("gemm") for k in found)


def test_block_sizes_cover_every_kernel_and_say_where_they_come_from():
    from alexnet_raw.runtime import kernel_sources

    blocks = kernel_report.block_sizes()
    names = {n for f in kernel_sources.kernel_files() for n in kernel_sources.instantiations(f)}
    assert set(blocks) == names
    assert blocks["relu_forward<float>"][0] == 256 and "batch 128" in blocks["relu_forward<float>"][2]


def test_flags_name_each_missed_target():
    row = {"arch": "sm_90", "spills": True, "occupancy": 0.25, "matmul_kernel": True, "ffma_share": 0.5}
    assert kernel_report.flags(row) == ["SPILLS", "OCC<50%", "FMA<70%"]
    ok = {"arch": "sm_90", "spills": False, "occupancy": 0.5, "matmul_kernel": True, "ffma_share": 0.8}
    assert kernel_report.flags(ok) == []
    assert kernel_report.flags({**ok, "arch": "sm_80", "occupancy": 0.25}) == []  # the target is on sm_90
    assert kernel_report.flags({**ok, "matmul_kernel": False, "ffma_share": 0.1}) == []


# -- roofline ------------------------------------------------------------------------------------
def test_roofline_traffic_model_for_a_tiled_fc_layer():
    rows = {r["layer"]: r for r in kernel_report.roofline(batch=128, networks=["torchvision"])}
    fc7 = rows["torchvision/fc7"]
    m, n, k = 128, 4096, 4096  # y = x W^T: M = batch, N = features out, K = features in
    tile = linear_ops.model_tile(m, n, k, np.float32)
    assert fc7["tile"] == list(tile) and fc7["traffic_model"] == f"tile {tile[0]}x{tile[1]} v{tile[2]}"
    traffic = 4 * (n * k * math.ceil(m / tile[0]) + m * k * math.ceil(n / tile[1]) + m * n)
    assert fc7["dram_bytes"] == traffic and fc7["flops"] == 2 * m * n * k
    assert fc7["intensity"] == pytest.approx(2 * m * n * k / traffic)
    peak, bw = kernel_report.H100_SXM["fp32_flops"], kernel_report.H100_SXM["dram_bytes_per_s"]
    assert fc7["attainable_gflops"] == pytest.approx(min(peak, fc7["intensity"] * bw) / 1e9)
    table = gemm_tiles.GEMM_ISSUE_PER_FMA  # the model's time with K split as the op splits it
    _, ranges, _ = linear_ops.model_plan(m, n, k, np.float32)
    assert fc7["model_seconds"] == pytest.approx(gemm_tiles.planned_seconds(m, n, k, tile, 1, table, ranges))
    assert fc7["model_waves"] == -(-(-(-m // tile[0])) * (-(-n // tile[1])) * ranges // gemm_tiles.MODEL_SMS)
    assert set(fc7["model_by_version"]) == {1, 2, 3, 4}
    pool = rows["torchvision/pool1"]
    assert pool["bound"] == "memory" and pool["dram_bytes"] == 4 * 128 * 64 * (55 * 55 + 27 * 27)
    # a conv layer: the tile conv2d's forward picks by the issue model, and the model's time
    conv2 = rows["torchvision/conv2"]
    m, n, k = 192, 128 * 27 * 27, 64 * 5 * 5
    tile = conv_ops.model_tile(m, n, np.float32)
    assert conv2["tile"] == list(tile) and conv2["traffic_model"] == f"tile {tile[0]}x{tile[1]} v{tile[2]}"
    assert conv2["model_seconds"] == pytest.approx(gemm_tiles.predicted_seconds(m, n, k, tile))
    assert conv2["model_fraction_of_peak"] == pytest.approx(2 * m * n * k / conv2["model_seconds"] / peak)
    assert 0 < conv2["model_fraction_of_peak"] < 1


def test_the_issue_models_instructions_per_fma_are_what_the_sass_says():
    # gemm_tiles.CONV_ISSUE_PER_FMA is measured from conv2d.cu's sm_90 SASS: it must follow the kernels
    build = gpu_compile.nvrtc_compile("conv2d.cu", "sm_90")
    functions = gpu_compile.disassemble(build.cubin)
    measured = {}
    for name, fn in functions.items():
        m = re.match(r"conv2d_(forward|backward_input|backward_weight)<float, (\d+), (\d+), (\d)>", name)
        if m:
            mix = gpu_compile.hot_loop(fn, False)
            measured[(m.group(1), tuple(int(v) for v in m.group(2, 3, 4)))] = mix.instructions / mix.fma
    assert set(gemm_tiles.CONV_ISSUE_PER_FMA) == set(conv_ops.instantiated_tiles(np.float32))
    # the kernels the automatic choice leaves out for spilling are exactly the float ones whose hot
    # loop touches local memory
    def spilling_in_hot_loop(functions):
        return {n for n, fn in functions.items() if "<float" in n and "sum" not in n
                and any("local-memory" in u for u in gpu_compile.hot_loop(fn, False).unexpected)}

    spilling = spilling_in_hot_loop(functions)
    assert spilling == {f"conv2d_{product}<float, {t.rows}, {t.columns}, {t.version}>"
                        for product, tiles in conv_ops.SPILLING.items() for t in tiles}
    for tile, per_fma in gemm_tiles.CONV_ISSUE_PER_FMA.items():
        assert measured[("forward", tile)] == pytest.approx(per_fma, rel=0.02), (tile, measured)
        for product in ("backward_input", "backward_weight"):
            assert measured[(product, tile)] == pytest.approx(per_fma, rel=0.06), (tile, product, measured)
    # and gemm.cu's table, from its forward product <.., false, true>; the other transpositions near it
    build = gpu_compile.nvrtc_compile("gemm.cu", "sm_90")
    functions = gpu_compile.disassemble(build.cubin)
    spilling = spilling_in_hot_loop(functions)
    assert spilling == {f"gemm<float, {t.rows}, {t.columns}, {str(ta).lower()}, {str(tb).lower()}, {t.version}>"
                        for (ta, tb), tiles in linear_ops.SPILLING.items() for t in tiles}
    measured = {}
    for name, fn in functions.items():
        m = re.match(r"gemm<float, (\d+), (\d+), (true|false), (true|false), (\d)>", name)
        if m:
            mix = gpu_compile.hot_loop(fn, False)
            measured[((int(m.group(1)), int(m.group(2)), int(m.group(5))), m.group(3), m.group(4))] = \
                mix.instructions / mix.fma
    assert set(gemm_tiles.GEMM_ISSUE_PER_FMA) == set(linear_ops.instantiated_tiles(np.float32))
    for tile, per_fma in gemm_tiles.GEMM_ISSUE_PER_FMA.items():
        assert measured[(tile, "false", "true")] == pytest.approx(per_fma, rel=0.02), (tile, measured)
        for ta, tb in (("false", "false"), ("true", "false")):
            assert measured[(tile, ta, tb)] == pytest.approx(per_fma, rel=0.12), (tile, ta, tb, measured)


def test_markdown_table_puts_the_architectures_side_by_side():
    def row(arch, regs, occ, share, flags):
        return {"kernel": "k<float>", "arch": arch, "registers": regs, "shared_bytes": 1024, "dynamic_shared_bytes": 0,
                "spill_bytes": 0, "threads_per_block": 256, "block_size_recorded": True, "occupancy": occ,
                "hot_loop": {"instructions": 40, "shared_loads": 4, "shared_loads_vector": 3}, "ffma_share": share,
                "flags": flags, "sass_notes": []}

    md = kernel_report.format_markdown([row("sm_80", 64, 0.5, 0.8, []), row("sm_90", 72, 0.375, 0.75, ["OCC<50%"])])
    assert md.splitlines()[2] == ("| `k<float>` | 64/72 | 1024/1024 | 0/0 | 256 | 50%/38% | 40/40 | 80/75 | 3/4 "
                                  "| OCC<50% |")
