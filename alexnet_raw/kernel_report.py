"""Static report of every kernel for sm_80 and sm_90: registers, shared memory, spills, theoretical
occupancy, the SASS instruction mix of the hot loop, and a per-layer roofline for an H100.

    alexnet-raw kernels [--compiler nvrtc|nvcc] [--json FILE] [--no-sass] [--no-roofline]
    python -m alexnet_raw.kernel_report

Registers, shared memory and spills are ptxas's, for exactly the code each GPU backend builds
(gpu_compile.py). Occupancy is computed from each architecture's limits (ARCH_LIMITS) and the block
size the kernel's op launches it with for a representative AlexNet layer (kernel_launches.py).
The hot loop is read from the SASS (nvdisasm). No GPU is needed: this is how the kernels' quality
is visible on machines that have none.

Targets (a miss is flagged): no spills; at least 50% theoretical occupancy on sm_90; FFMA (DFMA for
double) at least 70% of the hot loop's instructions in the conv and GEMM kernels.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys

from . import cli_types, gpu_compile, kernel_sources

OCCUPANCY_TARGET = 0.50  # on sm_90
FMA_SHARE_TARGET = 0.70  # in conv and GEMM kernels
_MATMUL_SOURCE = re.compile(r"conv|gemm|linear")


# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ArchLimits:
    """Per-SM limits that decide theoretical occupancy (CUDA C Programming Guide, table of
    technical specifications per compute capability; the allocation rules of cuda_occupancy.h)."""

    registers_per_sm: int = 65536
    registers_per_block: int = 65536
    register_allocation_unit: int = 256  # registers are allocated per warp in units of 256
    register_sub_partitions: int = 4  # the register file is split over 4 schedulers; warps go round-robin
    warp_allocation_granularity: int = 4  # a block's warps are rounded up to this for the per-block check
    max_registers_per_thread: int = 255
    max_warps_per_sm: int = 64
    max_threads_per_sm: int = 2048
    max_blocks_per_sm: int = 32
    shared_per_sm: int = 164 * 1024  # the largest carve-out available to shared memory
    shared_reserved_per_block: int = 1024  # kept by the system for every resident block
    shared_allocation_unit: int = 128
    max_shared_per_block: int = 163 * 1024  # with opt-in; 48 KB without


ARCH_LIMITS = {
    "sm_80": ArchLimits(shared_per_sm=164 * 1024, max_shared_per_block=163 * 1024),  # A100
    "sm_90": ArchLimits(shared_per_sm=228 * 1024, max_shared_per_block=227 * 1024),  # H100
}


def _round_up(a, b):
    return -(-a // b) * b


def occupancy(arch, threads_per_block: int, registers: int, shared_bytes: int) -> dict:
    """Theoretical occupancy of a kernel: resident warps per SM over the maximum.

    `arch` is a key of ARCH_LIMITS or an ArchLimits; `shared_bytes` is static + dynamic shared
    memory per block. Returns occupancy (0..1), blocks_per_sm, active_warps, the limit imposed by
    each resource, and `limiter` (the resources that bind)."""
    lim = ARCH_LIMITS[arch] if isinstance(arch, str) else arch
    if threads_per_block < 1 or threads_per_block > 1024:
        raise ValueError(f"threads per block must be in [1, 1024], got {threads_per_block}")
    warps = -(-threads_per_block // 32)
    limits = {
        "warps": min(lim.max_warps_per_sm // warps, lim.max_threads_per_sm // threads_per_block),
        "blocks": lim.max_blocks_per_sm,
    }
    regs = max(int(registers), 1)
    per_warp = _round_up(regs * 32, lim.register_allocation_unit)
    if regs > lim.max_registers_per_thread or (
            per_warp * _round_up(warps, lim.warp_allocation_granularity) > lim.registers_per_block):
        limits["registers"] = 0
    else:
        warps_per_partition = (lim.registers_per_sm // lim.register_sub_partitions) // per_warp
        limits["registers"] = warps_per_partition * lim.register_sub_partitions // warps
    if shared_bytes > 0:
        per_block = _round_up(int(shared_bytes) + lim.shared_reserved_per_block, lim.shared_allocation_unit)
        limits["shared"] = 0 if shared_bytes > lim.max_shared_per_block else lim.shared_per_sm // per_block
    blocks = min(limits.values())
    active = blocks * warps
    return {
        "occupancy": active / lim.max_warps_per_sm,
        "blocks_per_sm": blocks,
        "active_warps": active,
        "limits": limits,
        "limiter": sorted(k for k, v in limits.items() if v == blocks),
    }


# --------------------------------------------------------------------------------------------
_LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\s*\(\s*(\d+)[^)]*\)\s*(?:void\s+)?(\w+)\s*\(")


def launch_bounds(source: str):
    """{kernel template name: max threads} from __launch_bounds__(N) in a kernel file."""
    text = kernel_sources.kernel_path(source).read_text(encoding="utf-8")
    return {m.group(2): int(m.group(1)) for m in _LAUNCH_BOUNDS.finditer(text)}


def block_sizes(launches=None):
    """{kernel: (threads per block, shared bytes of dynamic memory, where from)}: the launch the op
    makes for a representative AlexNet layer; for kernels the network never launches,
    __launch_bounds__ if the kernel declares it, else launch.THREADS_PER_BLOCK (an assumption, said so)."""
    from . import kernel_launches, launch as launch_mod

    if launches is None:
        launches, _ = kernel_launches.representative_launches()
    out = {}
    for source in kernel_sources.kernel_files():
        bounds = launch_bounds(source)
        for name in kernel_sources.instantiations(source):
            if name in launches:
                launch, origin = launches[name]
                out[name] = (math.prod(launch.block), launch.shared_bytes, origin)
            elif name.split("<")[0] in bounds:
                out[name] = (bounds[name.split("<")[0]], 0, "__launch_bounds__ (no AlexNet launch recorded)")
            else:
                out[name] = (launch_mod.THREADS_PER_BLOCK, 0,
                             f"assumed {launch_mod.THREADS_PER_BLOCK} threads (no AlexNet launch recorded)")
    return out


def is_matmul_kernel(source: str, kernel: str) -> bool:
    """Conv and GEMM kernels, which the FFMA target applies to (bias reductions excepted)."""
    return bool(_MATMUL_SOURCE.search(source)) and "bias" not in kernel


def collect(compiler: str = "nvrtc", archs=gpu_compile.ARCHITECTURES, sass: bool = True, launches=None):
    """One row per kernel instantiation and architecture."""
    compile_fn = {"nvrtc": gpu_compile.nvrtc_compile, "nvcc": gpu_compile.nvcc_compile}[compiler]
    if launches is None:
        from . import kernel_launches

        launches, _ = kernel_launches.representative_launches()
    launches_used = set(launches)
    blocks = block_sizes(launches)
    rows = []
    for source in kernel_sources.kernel_files():
        for arch in archs:
            build = compile_fn(source, arch)
            functions = gpu_compile.disassemble(build.cubin) if sass else {}
            for name in kernel_sources.instantiations(source):
                r = build.kernels[name]
                threads, dynamic_shared, origin = blocks[name]
                occ = occupancy(arch, threads, r.registers, r.shared_bytes + dynamic_shared)
                row = {"source": source, **dataclasses.asdict(r), "spill_bytes": r.spill_store_bytes + r.spill_load_bytes,
                       "spills": r.spills, "threads_per_block": threads, "dynamic_shared_bytes": dynamic_shared,
                       "block_size_from": origin, "block_size_recorded": name in launches_used, "occupancy": occ["occupancy"], "blocks_per_sm": occ["blocks_per_sm"],
                       "occupancy_limiter": occ["limiter"], "matmul_kernel": is_matmul_kernel(source, name)}
                row.update(_sass_fields(functions.get(name), name) if sass else {})
                row["flags"] = flags(row)
                rows.append(row)
    return rows


def _sass_fields(fn, name):
    if fn is None:
        return {"hot_loop": None, "ffma_share": None, "sass_notes": ["not found in the disassembly"]}
    is_double = "double" in name
    whole = gpu_compile.unexpected_instructions(fn.instructions[: _body_length(fn)], is_double)
    mix = gpu_compile.hot_loop(fn, is_double)
    if mix is None:
        return {"hot_loop": None, "ffma_share": None, "sass_instructions": len(fn.instructions),
                "sass_notes": ["no loop"] + whole}
    return {
        "sass_instructions": len(fn.instructions),
        "hot_loop": {"start": mix.start, "end": mix.end, "instructions": mix.instructions, "fma_opcode": mix.fma_opcode,
                     "fma": mix.fma, "shared_loads": mix.shared_loads, "shared_loads_vector": mix.shared_loads_vector,
                     "global_loads": mix.global_loads, "barriers": mix.barriers, "opcodes": mix.counts},
        "ffma_share": mix.fma_share,
        "sass_notes": [f"hot loop: {n}" for n in mix.unexpected] + [f"kernel: {n}" for n in whole
                                                                     if "local-memory" in n],
    }


def _body_length(fn):
    return sum(1 for i in fn.instructions if i.address < fn.body_end)


def flags(row) -> list:
    """The targets a row misses."""
    out = []
    if row["spills"]:
        out.append("SPILLS")
    if row["arch"] == "sm_90" and row["occupancy"] < OCCUPANCY_TARGET:
        out.append(f"OCC<{OCCUPANCY_TARGET:.0%}")
    if row.get("matmul_kernel") and row.get("ffma_share") is not None and row["ffma_share"] < FMA_SHARE_TARGET:
        out.append(f"FMA<{FMA_SHARE_TARGET:.0%}")
    if row.get("matmul_kernel") and "ffma_share" in row and row["ffma_share"] is None:
        out.append("NO-HOT-LOOP")
    return out


def format_table(rows) -> str:
    head = (f"{'kernel':38s} {'arch':5s} {'regs':>4s} {'smem B':>6s} {'spill B':>7s} {'block':>5s} {'occ':>5s} "
            f"{'limit':9s} {'loop':>4s} {'FMA%':>5s} {'LDS v/all':>9s}  flags / notes")
    lines = [head, "-" * len(head)]
    for r in rows:
        loop = r.get("hot_loop")
        share = "" if r.get("ffma_share") is None else f"{100 * r['ffma_share']:.0f}"
        lds = f"{loop['shared_loads_vector']}/{loop['shared_loads']}" if loop else ""
        notes = " ".join(r["flags"] + [n for n in r.get("sass_notes", []) if n != "no loop"])
        assumed = "" if r["block_size_recorded"] else "*"
        lines.append(
            f"{r['kernel']:38s} {r['arch']:5s} {r['registers']:4d} {r['shared_bytes'] + r['dynamic_shared_bytes']:6d} "
            f"{r['spill_bytes']:7d} {str(r['threads_per_block']) + assumed:>5s} {100 * r['occupancy']:4.0f}% "
            f"{','.join(r['occupancy_limiter'])[:9]:9s} {loop['instructions'] if loop else '':>4} {share:>5s} "
            f"{lds:>9s}  {notes}"
        )
    spilling = sorted({f"{r['kernel']} ({r['arch']})" for r in rows if r["spills"]})
    low_occ = sorted({r["kernel"] for r in rows if r["arch"] == "sm_90" and r["occupancy"] < OCCUPANCY_TARGET})
    low_fma = sorted({f"{r['kernel']} ({r['arch']})" for r in rows if any(f.startswith("FMA<") for f in r["flags"])})
    matmul = sorted({r["kernel"] for r in rows if r.get("matmul_kernel")})
    lines += [
        "",
        "block: threads per block of the op's launch for a representative AlexNet layer (batch 128); "
        "* = no such launch, from __launch_bounds__ or assumed 256",
        "occ: theoretical occupancy (resident warps / 64) from the architecture's limits; limit: what binds it",
        "loop: instructions in the hot loop (the innermost loop with the most FFMA/DFMA); FMA%: their share; "
        "LDS v/all: vectorised (.64/.128) / all shared loads in it",
        "",
        "kernels that spill: " + (", ".join(spilling) if spilling else "none"),
        f"below {OCCUPANCY_TARGET:.0%} theoretical occupancy on sm_90: " + (", ".join(low_occ) if low_occ else "none"),
        f"conv/GEMM kernels below {FMA_SHARE_TARGET:.0%} FMA in the hot loop: "
        + (", ".join(low_fma) if low_fma else ("none" if matmul else "none (no conv/GEMM kernels yet)")),
    ]
    return "\n".join(lines)


def format_markdown(rows, archs=gpu_compile.ARCHITECTURES) -> str:
    """One Markdown row per kernel, the architectures side by side (a/b = sm_80/sm_90)."""
    by_kernel = {}
    for r in rows:
        by_kernel.setdefault(r["kernel"], {})[r["arch"]] = r
    tag = "/".join(a.replace("sm_", "") for a in archs)
    lines = [f"| kernel | regs {tag} | shared B | spills | block | occupancy {tag} | hot loop instr. {tag} | "
             f"FMA % {tag} | vector/all LDS {archs[-1]} | flags |", "|" + "---|" * 10]

    def both(fn):
        return "/".join(fn(by[a]) if a in by else "–" for a in archs)

    for kernel, by in by_kernel.items():
        first = by[archs[0]] if archs[0] in by else next(iter(by.values()))
        loop = lambda r: str(r["hot_loop"]["instructions"]) if r.get("hot_loop") else "–"  # noqa: E731
        share = lambda r: f"{100 * r['ffma_share']:.0f}" if r.get("ffma_share") is not None else "–"  # noqa: E731
        occ = lambda r: f"{100 * r['occupancy']:.0f}%"  # noqa: E731
        last = by.get(archs[-1], {})
        lds = f"{last['hot_loop']['shared_loads_vector']}/{last['hot_loop']['shared_loads']}" if last.get("hot_loop") \
            else "–"
        notes = sorted({f for r in by.values() for f in r["flags"]} | {n for r in by.values()
                                                                     for n in r.get("sass_notes", []) if n != "no loop"})
        lines.append(
            f"| `{kernel}` | {both(lambda r: str(r['registers']))} | "
            f"{both(lambda r: str(r['shared_bytes'] + r['dynamic_shared_bytes']))} | "
            f"{both(lambda r: str(r['spill_bytes']))} | {first['threads_per_block']}{'' if first['block_size_recorded'] else '*'} | "
            f"{both(occ)} | {both(loop)} | {both(share)} | {lds} | "
            f"{'; '.join(notes)} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Roofline for an H100 SXM
H100_SXM = {
    "name": "H100 SXM",
    "fp32_flops": 67e12,  # CUDA-core FP32 peak, ../shared/notes/performance-anchors.md ("~67 TFLOP/s")
    "dram_bytes_per_s": 3.35e12,  # HBM3, NVIDIA's H100 SXM datasheet (not in the project's notes)
}


def gemm_tile(kind):
    """(tile rows over output channels / features, tile columns over output pixels / batch) of the
    kernel a layer kind runs, as its op declares it (attributes TILE_M and TILE_N of
    alexnet_raw.ops.conv2d / alexnet_raw.ops.linear); None if the op does not declare one."""
    import importlib

    module = {"conv": "conv2d", "fc": "linear"}.get(kind)
    if module is None:
        return None
    try:
        ops = importlib.import_module(f"alexnet_raw.ops.{module}")
    except ImportError:
        return None
    m, n = getattr(ops, "TILE_M", None), getattr(ops, "TILE_N", None)
    return (int(m), int(n)) if m and n else None


def roofline(batch: int = 128, networks=None, device=H100_SXM, itemsize: int = 4):
    """Forward pass of each distinct AlexNet layer against the device's FP32 peak and DRAM bandwidth.

    Conv and fc run as a GEMM per group: M = output channels (features), N = batch x output pixels
    (batch), K = input channels x filter area (inputs). With an M x N block tile and no reuse between
    blocks (L2 ignored), DRAM traffic is weights x ceil(N / TILE_N) + input x ceil(M / TILE_M) +
    output: every block column reads the weights, every block row the input (its overlapping
    windows read once per block, from cache). Without a declared tile, the compulsory traffic
    (every tensor once) gives an upper bound on intensity. Pool and norm layers read their input
    and write their output once."""
    from . import kernel_launches

    networks = networks or kernel_launches.NETWORKS
    ridge = device["fp32_flops"] / device["dram_bytes_per_s"]
    rows = []
    for network in networks:
        for case in kernel_launches.network_layers(network):
            x = batch * sum(math.prod(s) for s in case.input_shapes)
            y = batch * math.prod(case.output_shape)
            w = sum(math.prod(s) for s in case.weight_shapes)
            flops = kernel_launches.layer_flops(case, batch)["forward"]
            tile = gemm_tile(case.kind)
            model_seconds = None
            if case.kind in ("conv", "fc"):
                groups = case.spec.groups[0] if case.kind == "conv" else 1
                m = case.output_shape[0] // groups
                n = batch * (math.prod(case.output_shape[1:]) if case.kind == "conv" else 1)
                if case.kind == "conv":  # the tile conv2d's forward picks, and the issue model's time
                    from .ops import conv2d as conv_ops, gemm_tiles
                    dtype = "float32" if itemsize == 4 else "float64"
                    tile = gemm_tiles.choose_by_model(m, n, conv_ops.instantiated_tiles(dtype), groups)
                    model_seconds = sum(gemm_tiles.predicted_seconds(m, n, math.prod(ws[1:]), tile, groups)
                                        for ws in case.weight_shapes)
                if tile:
                    traffic = w * math.ceil(n / tile[1]) + x * math.ceil(m / tile[0]) + y
                    model = f"tile {tile[0]}x{tile[1]}"
                else:
                    traffic, model = w + x + y, "compulsory (no tile declared)"
            else:
                traffic, model = x + y, "compulsory"
                flops = _pointwise_flops(case, y)
            traffic *= itemsize
            intensity = flops / traffic
            attainable = min(device["fp32_flops"], intensity * device["dram_bytes_per_s"])
            rows.append({
                "layer": case.label, "kind": case.kind, "shape": case.describe(), "batch": batch, "flops": flops,
                "dram_bytes": traffic, "traffic_model": model, "intensity": intensity,
                "bound": "compute" if intensity >= ridge else "memory", "attainable_gflops": attainable / 1e9,
                "attainable_fraction_of_peak": attainable / device["fp32_flops"],
                "tile": list(tile) if case.kind in ("conv", "fc") and tile else None,
                "model_seconds": model_seconds,
                "model_fraction_of_peak": flops / model_seconds / device["fp32_flops"] if model_seconds else None,
            })
    return rows


def _pointwise_flops(case, outputs):
    """Rough FLOP of the memory-bound layers: pool = window comparisons; norms = window squares and
    sums plus the power (counted as 4)."""
    s = case.spec
    if case.kind == "pool":
        return outputs * s.size * s.size
    window = s.size if case.kind == "lrn" else s.size * s.size
    return outputs * (2 * window + 6)


def format_roofline(rows, device=H100_SXM) -> str:
    ridge = device["fp32_flops"] / device["dram_bytes_per_s"]
    head = (f"{'layer':34s} {'GFLOP':>7s} {'DRAM MB':>8s} {'FLOP/B':>7s} {'bound':7s} {'GFLOP/s':>8s} {'% peak':>6s} "
            f"{'model us':>9s} {'model %':>7s}  traffic model")
    lines = [
        f"Roofline, forward, {device['name']}: FP32 peak {device['fp32_flops'] / 1e12:.0f} TFLOP/s (CUDA cores), "
        f"DRAM {device['dram_bytes_per_s'] / 1e12:.2f} TB/s, ridge {ridge:.1f} FLOP/B; estimates, not measurements. "
        "'model': the issue model of alexnet_raw/ops/gemm_tiles.py for the conv tile the op picks (a model)",
        head, "-" * len(head)]
    for r in rows:
        model = (f"{r['model_seconds'] * 1e6:9.1f} {100 * r['model_fraction_of_peak']:6.0f}%" if r.get("model_seconds")
                 else f"{'-':>9s} {'-':>7s}")
        lines.append(f"{r['layer']:34s} {r['flops'] / 1e9:7.2f} {r['dram_bytes'] / 1e6:8.1f} {r['intensity']:7.1f} "
                     f"{r['bound']:7s} {r['attainable_gflops']:8.0f} {100 * r['attainable_fraction_of_peak']:5.0f}% "
                     f"{model}  {r['traffic_model']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
PROG = "alexnet-raw kernels"


def build_parser():
    ap = cli_types.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", choices=("nvrtc", "nvcc"), default="nvrtc",
                    help="nvrtc: what the cupy backend builds; nvcc: what the cuda extension builds")
    ap.add_argument("--json", metavar="FILE", type=cli_types.output_file,
                    help="also write the rows as a JSON list (one object per kernel and arch)")
    ap.add_argument("--markdown", metavar="FILE", type=cli_types.output_file,
                    help="also write a Markdown table (one row per kernel)")
    ap.add_argument("--no-sass", action="store_true", help="skip the disassembly (no hot-loop mix)")
    ap.add_argument("--no-roofline", action="store_true", help="skip the per-layer H100 roofline")
    ap.add_argument("--batch", type=cli_types.positive_int, default=128,
                    help="batch size of the roofline (default 128)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from . import kernel_launches

    launches, notes = kernel_launches.representative_launches()
    try:
        rows = collect(args.compiler, sass=not args.no_sass, launches=launches)
    except gpu_compile.GpuCompileError as e:
        return cli_types.fail(PROG, e)
    print(f"compiler: {args.compiler}; registers/shared/spills from ptxas -v, hot loops from nvdisasm; "
          "no GPU needed or used")
    print(format_table(rows))
    for note in notes:
        print(f"note: {note}")
    if not args.no_roofline:
        print()
        print(format_roofline(roofline(args.batch)))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(format_markdown(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
