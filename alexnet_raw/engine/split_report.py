"""Where each layer of a network runs and what crosses between devices per training step.

    alexnet-raw split [--network NAME | --cfg LAYERS PARAMS] [--batch-size N] [--png FILE] [--json FILE]
                      [--processes N [--shards S]]

Prints the placement of every layer (data-parallel replica r > 0 of a layer as name[r]), a table of
the cross-device copies of one training step (bytes forward and backward on each edge; an edge fed
by several replicas lists their devices), the replicas' weight-gradient sums and weight broadcasts,
and memory per device, and draws the towers and their cross-device edges as a PNG (each layer at
its replica 0). With --processes N (data parallelism across N MPI processes, each holding the
whole placement: `mpirun -n N alexnet-raw train`), also the gradient all-reduced per step and the
bytes each rank sends for it (S shards, default N: alexnet_raw/distributed/shards.py). Needs no
kernels and no GPU: the numbers come from the layer file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import cli_types
from . import cfg, graph as graph_mod
from .model import NETWORKS, network_files, network_image_size


def load_graph(network=None, cfg_files=None, single_device=False):
    """(graph, the input size the files or the shipped network give, or None)."""
    layers_path, params_path = cfg_files if cfg_files else network_files(network or "krizhevsky2012")
    layers = cfg.read_layers(layers_path)
    cfg.read_params(params_path, layers)  # checks the pair belongs together
    g = graph_mod.Graph(layers, str(layers_path), single_device)
    return g, (g.default_image_size() if cfg_files else network_image_size(network or "krizhevsky2012", layers))


def _mib(n):
    return f"{n / 2**20:10.2f}"


def format_report(g, report) -> str:
    lines = [f"network {g.source}: {len(g.devices)} device(s), batch {report['batch_size']}, "
             f"{report['image_size']}x{report['image_size']} images", ""]
    for d in g.devices:  # a data-parallel replica r > 0 of a layer shows as name[r]
        names = [n + (f"[{r}]" if r else "") for n in g.order for r, dev in enumerate(g.nodes[n].replicas) if dev == d]
        lines.append(f"device {d}: {', '.join(names)}")
    if report.get("replicas"):
        lines.append("data-parallel replicas: " + ", ".join(
            f"{n} on {','.join(map(str, devs))}" for n, devs in report["replicas"].items()))
    lines += ["", f"{'edge':40s} {'devices':>9s} {'forward MiB':>12s} {'backward MiB':>12s}"]
    total_f = total_b = 0
    for e in report["edges"]:
        what = f"{e['src']} -> {e['dst']}"
        src = e["src_device"] if not isinstance(e["src_device"], list) else ",".join(map(str, e["src_device"]))
        lines.append(f"{what:40s} {str(src) + '->' + str(e['dst_device']):>9s} "
                     f"{_mib(e['forward_bytes']):>12s} {_mib(e['backward_bytes']):>12s}")
        total_f += e["forward_bytes"]
        total_b += e["backward_bytes"]
    lines.append(f"{'total per step':40s} {'':9s} {_mib(total_f):>12s} {_mib(total_b):>12s}")
    kinds = report.get("bytes_by_kind", {})
    if kinds.get("gradient_sums") or kinds.get("weight_broadcasts"):
        lines.append(f"{'replicas: weight gradients summed':40s} {'':9s} {_mib(kinds['gradient_sums']):>12s}")
        lines.append(f"{'replicas: updated weights sent out':40s} {'':9s} {_mib(kinds['weight_broadcasts']):>12s}")
    lines.append(f"{'all copies of a step':40s} {'':9s} {_mib(sum(kinds.values())):>12s}")
    lines += ["", f"{'device':>6s} {'parameters':>12s} {'replica copies':>15s} {'param MiB':>10s} {'activation MiB':>15s}"]
    for d in report["devices"]:
        lines.append(f"{d['device']:>6} {d['parameters']:>12,d} {d.get('replica_parameters', 0):>15,d} "
                     f"{_mib(d['parameter_bytes'])} {_mib(d['activation_bytes']):>15s}")
    lines.append("(parameter gradients and momentum take as much again as the parameters, each)")
    dist = report.get("distributed", {"processes": 1, "shards": 1})
    if dist["processes"] > 1 or dist["shards"] > 1:
        lines += ["", f"across {dist['processes']} process(es), {dist['shards']} shard(s) per batch: the gradient "
                      f"summed per step {_mib(dist['allreduce_bytes_per_step']).strip()} MiB; sent per rank (MiB): "
                  + ", ".join(f"rank {r} {_mib(b).strip()}" for r, b in enumerate(dist["sent_bytes_per_step"]))]
    return "\n".join(lines)


def draw(g, report, path):
    """Towers side by side (one column per device, the host's data on the left), layers top to
    bottom in file order, cross-device edges in red labelled with their forward MiB per step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = {graph_mod.HOST: 0, **{d: i + 1 for i, d in enumerate(g.devices)}}
    depth = {}
    for name in g.order:
        spec = g.nodes[name].spec
        depth[name] = 0 if not spec.inputs else 1 + max(depth[i] for i in spec.inputs)
    rows = max(depth.values()) + 1
    fig, ax = plt.subplots(figsize=(3 + 2.6 * len(columns), 0.55 * rows + 1.5))
    pos = {}
    slot = {}
    for name in g.order:
        col = columns[g.nodes[name].device]
        key = (col, depth[name])
        k = slot.get(key, 0)
        slot[key] = k + 1
        pos[name] = (col * 2.6 + 0.9 * k, -depth[name])
    crossing = {(e["src"], e["dst_device"]): e["forward_bytes"] for e in report["edges"]}
    for name in g.order:
        for i in g.nodes[name].spec.inputs:
            (x0, y0), (x1, y1) = pos[i], pos[name]
            cross = g.nodes[i].device != g.nodes[name].device and g.nodes[i].device != graph_mod.HOST
            ax.annotate("", (x1, y1 + 0.18), (x0, y0 - 0.18),
                        arrowprops=dict(arrowstyle="->", color="red" if cross else "0.6", lw=1.4 if cross else 0.8))
            if cross:
                mib = crossing.get((i, g.nodes[name].device), 0) / 2**20
                ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{mib:.1f} MiB", color="red", fontsize=7, ha="center")
    for name, (x, y) in pos.items():
        ax.text(x, y, f"{name}\n{g.nodes[name].spec.type}", ha="center", va="center", fontsize=7,
                bbox=dict(boxstyle="round", fc="white", ec="0.3"))
    for device, col in columns.items():
        ax.text(col * 2.6, 1, "host" if device == graph_mod.HOST else f"device {device}", ha="center",
                fontweight="bold")
    ax.set_xlim(-1.2, 2.6 * len(columns))
    ax.set_ylim(-rows, 1.6)
    ax.axis("off")
    ax.set_title(f"{Path(g.source).name}: placement and cross-device traffic per step (batch {report['batch_size']})")
    fig.tight_layout()
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    tmp.replace(path)


PROG = "alexnet-raw split"


def build_parser():
    ap = cli_types.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--network", choices=sorted(NETWORKS), help="a shipped network (default krizhevsky2012)")
    which.add_argument("--cfg", nargs=2, metavar=("LAYERS", "PARAMS"), help="cuda-convnet layer and params files")
    ap.add_argument("--batch-size", type=cli_types.positive_int, default=128,
                    help="images per step (default 128, as run #145)")
    ap.add_argument("--image-size", type=cli_types.positive_int, default=None,
                    help="side of the square input images (default: the data layer's imgSize, or the shipped "
                         "network's; required for a layer file that sets none, as cuda-convnet's do)")
    ap.add_argument("--single-device", action="store_true", help="place every layer on device 0")
    ap.add_argument("--png", type=cli_types.output_file, default=None,
                    help="diagram file (default split-<network>.png)")
    ap.add_argument("--json", type=cli_types.output_file, default=None, help="also write the report as JSON")
    ap.add_argument("--processes", type=cli_types.positive_int, default=1,
                    help="MPI processes training the network data-parallel, each with this placement (default 1)")
    ap.add_argument("--shards", type=cli_types.shards, default=None,
                    help="shards per batch (default: --processes; at least --processes)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        g, size = load_graph(args.network, args.cfg, args.single_device)
        size = args.image_size or size
        if size is None:
            return cli_types.fail(PROG, f"{args.cfg[0]} sets no image size (no imgSize on its data layer, as in "
                                        "cuda-convnet's files, where the data provider gives it): pass --image-size N")
        shards = args.shards or args.processes
        if shards < args.processes:
            return cli_types.fail(PROG, f"--shards {shards} cannot be spread over --processes {args.processes}: "
                                        f"expected at least {args.processes} shards")
        report = g.split_report(args.batch_size, size, processes=args.processes, shards=shards)
    except (cfg.CfgError, graph_mod.ShapeError) as e:
        return cli_types.fail(PROG, e)
    print(format_report(g, report))
    png = args.png or f"split-{args.network or (Path(args.cfg[0]).stem if args.cfg else 'krizhevsky2012')}.png"
    draw(g, report, png)
    print(f"\ndiagram written to {png}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0
