"""Write the docs/models.md table: parameters and GFLOPs of every C2D / I3D x {0, 1, 5, 10} NL blocks x
pairwise function variant, ResNet-50 and ResNet-101, built from configs/model.

Counts use nlnet.utils.flops (fvcore, eval mode, one multiply-add = one FLOP). A variant's count is
its backbone's count (a traced model without NL blocks) plus the counts of its NL blocks, each traced
on the feature map of the stage it sits in. FLOPs are additive over modules, so this equals tracing
the whole model; the script checks that on three I3D R50 5-block variants before writing. NL blocks are
counted as run (impl=auto) and in their materialised reference form.

--paper writes the other table of docs/models.md: every experiment of configs/experiment/paper (the
rows of the paper's Tables 2 and 3) with its parameters and GFLOPs of one training clip, each model
traced whole (nlnet.paper.tables.clip_cost, the figures tools/paper_table.py prints).

    python tools/model_table.py --out docs/models.md
    python tools/model_table.py --paper --out docs/models.md
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from nlnet.config import compose_config, instantiate
from nlnet.paper.tables import clip_cost
from nlnet.utils.flops import model_cost

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
PAIRWISE = ("gaussian", "embedded_gaussian", "dot_product", "concatenation")
STEM_8X8 = ["model.net.stem_stride=[1,2,2]", "model.net.pool1_kernel=[1,3,3]", "model.net.pool1_stride=[1,2,2]"]
# (name, frames, size, overrides turning the 32x2 model configs into this convention)
CONVENTIONS = (("8x8", 8, 256, STEM_8X8), ("32x2", 32, 224, []))
# NL placements (Sec. 4.1): 1 block right before the last residual block of res4; 5 blocks to every other
# block of res3 and res4; 10 blocks to every block of res3 and res4. ResNet-101: 1 block before res4's last
# block, 5 where the official code puts them (res4 [6, 13, 20]), 10 as configs/experiment/paper/table2c
# (their costs equal those of any placement with as many blocks per stage).
CHECKS = {"embedded_gaussian": "auto", "dot_product": "reference", "concatenation": "auto"}
PLACEMENTS = {
    50: {0: [[], [], [], []], 1: [[], [], [4], []], 5: [[], [1, 3], [1, 3, 5], []],
         10: [[], [0, 1, 2, 3], [0, 1, 2, 3, 4, 5], []]},
    101: {0: [[], [], [], []], 1: [[], [], [21], []], 5: [[], [1, 3], [6, 13, 20], []],
          10: [[], [0, 1, 2, 3], [2, 6, 9, 13, 16, 20], []]},
}


def compose_model(name: str, overrides: list[str]):
    return compose_config("model_info", [f"model={name}", *overrides], config_dir=CONFIGS)


def backbone_cost(cfg, frames: int, size: int) -> tuple[int, int, dict[str, tuple[int, ...]]]:
    """(params, flops, stage -> feature shape) of the model without NL blocks."""
    model = instantiate(cfg.model.net)
    shapes: dict[str, tuple[int, ...]] = {}
    def record(stage: str):
        def hook(module, inputs, output) -> None:
            shapes.setdefault(stage, tuple(output.shape))
        return hook

    for stage in model.stage_names:
        model.get_submodule(f"{stage}.block0").register_forward_hook(record(stage))
    report = model_cost(model, torch.zeros(1, 3, frames, size, size), parts=[])
    return report.total_params, report.total_flops, shapes


def block_cost(cfg, pairwise: str, shape: tuple[int, ...], impl: str) -> tuple[int, int]:
    """(params, flops) of one NL block with the config's options on a feature map of ``shape``.

    The materialised concatenation block needs a (2C', N, N') tensor (8.6 GB at res3 of an 8x256x256
    clip), so its reference count is the fast path's count plus the difference of the two forms,
    3C'NN' - (N + N')C' (checked against a measured reference count by :func:`check_concatenation`).
    """
    layer = instantiate(cfg.model["nonlocal"], pairwise=pairwise, impl=impl)
    block = layer(shape[1])
    if pairwise == "concatenation" and impl == "reference":
        params, flops = block_cost(cfg, pairwise, shape, "auto")
        return params, flops + concatenation_difference(block, shape)
    report = model_cost(block, torch.zeros(shape), parts=[])
    return report.total_params, report.total_flops


def concatenation_difference(block, shape: tuple[int, ...]) -> int:
    """Reference minus fast FLOPs of a concatenation block: w_f over (2C', N, N') and (N, N') x (N', C')
    instead of the projections a = w_theta^T theta (N x C') and b = w_phi^T phi (N' x C')."""
    n = shape[2] * shape[3] * shape[4]
    n_keys = math.prod(block.key_grid(shape[2:]))  # the block's own pooling rule
    c = block.inter_channels
    return shape[0] * (3 * c * n * n_keys - (n + n_keys) * c)


def check_concatenation(cfg) -> None:
    """The concatenation reference count used above equals the measured one on a small feature map."""
    shape = (1, 64, 2, 8, 8)
    measured = model_cost(instantiate(cfg.model["nonlocal"], pairwise="concatenation", impl="reference")(64),
                          torch.zeros(shape), parts=[]).total_flops
    assert block_cost(cfg, "concatenation", shape, "reference")[1] == measured


def full_cost(name: str, overrides: list[str], frames: int, size: int, impl: str) -> tuple[int, int]:
    cfg = compose_model(name, overrides)
    model = instantiate(cfg.model.net)
    report = model_cost(model, torch.zeros(1, 3, frames, size, size), parts=[],
                        nonlocal_names=model.nonlocal_names(), nonlocal_impl=impl)
    return report.total_params, report.total_flops


def paper_table() -> str:
    """Markdown: every paper experiment (table order, then row order) with params and GFLOPs of one
    training clip (T x 224 x 224, NL blocks in their materialised form)."""
    lines = ["| experiment | table | row | frames | params | params (M) | GFLOPs, T x 224² |",
             "|---|---|---|---|---|---|---|"]
    costs: dict[tuple, tuple[int, float]] = {}
    tables = sorted(p.stem for p in (CONFIGS / "experiment" / "paper").glob("table*.yaml"))
    for table in sorted(tables, key=lambda t: (t[5], t)):  # table2a..table2g, then table3
        rows = compose_config("train", [f"experiment=paper/{table}"], config_dir=CONFIGS,
                              return_hydra_config=True).hydra.sweeper.params["+experiment/paper@_global_"]
        for row in (r.strip() for r in rows.split(",")):
            cfg = compose_config("model_info", [f"experiment=paper/{row}"], config_dir=CONFIGS)
            frames, size = int(cfg.data.num_frames), int(cfg.data.train.crop_size)
            key = (OmegaConf.to_yaml(cfg.model.net, resolve=True), frames, size)
            if key not in costs:
                costs[key] = clip_cost(instantiate(cfg.model.net), frames=frames, size=size)
                print(f"counted paper/{row}", file=sys.stderr, flush=True)
            params, gflops = costs[key]
            lines.append(f"| paper/{row} | {cfg.paper.table} | {cfg.paper.row} | {frames} | {params} | "
                         f"{params / 1e6:.2f} | {gflops:.2f} |")
    return "\n".join(lines)


def write_between(path: Path, marker: str, table: str) -> None:
    """Replace the text between ``<!-- {marker} begin -->`` and ``... end -->`` in ``path`` (or append)."""
    text = path.read_text() if path.exists() else ""
    begin, end = f"<!-- {marker} begin -->", f"<!-- {marker} end -->"
    if begin in text and end in text:
        text = text[:text.index(begin) + len(begin)] + "\n" + table + "\n" + text[text.index(end):]
    else:
        text = text + f"\n{begin}\n{table}\n{end}\n"
    path.write_text(text)


def variants_table(*, check: bool) -> str:
    """Markdown: every C2D / I3D x {0, 1, 5, 10} NL blocks x pairwise variant, R50 and R101."""
    rows = []  # (depth, arch, blocks, pairwise, params, {(convention, impl): flops})
    checks = []
    for depth in (50, 101):
        for arch in ("c2d", "i3d"):
            name = f"{arch}_r{depth}"
            per_conv = {}
            for conv, frames, size, overrides in CONVENTIONS:
                cfg = compose_model(name, overrides)
                params, flops, shapes = backbone_cost(cfg, frames, size)
                blocks = {(p, s, impl): block_cost(cfg, p, shapes[s], impl)
                          for p in PAIRWISE for s in ("res3", "res4") for impl in ("auto", "reference")}
                per_conv[conv] = (params, flops, blocks)
                print(f"counted {name} {conv}", file=sys.stderr, flush=True)
            for count, placement in PLACEMENTS[depth].items():
                for pairwise in (PAIRWISE if count else ("-",)):
                    n3, n4 = len(placement[1]), len(placement[2])
                    flops, params = {}, None
                    for conv, (p0, f0, blocks) in per_conv.items():
                        for impl in ("auto", "reference"):
                            extra = [blocks[(pairwise, "res3", impl)]] * n3 + [blocks[(pairwise, "res4", impl)]] * n4 \
                                if count else []
                            flops[(conv, impl)] = f0 + sum(f for _, f in extra)
                            params = p0 + sum(p for p, _ in extra)
                    rows.append((depth, arch, count, pairwise, params, flops, placement))
                    if (arch, depth, count) == ("i3d", 50, 5) and pairwise in CHECKS and check:
                        checks.append((rows[-1], CHECKS[pairwise]))

    check_concatenation(compose_model("c2d_r50", []))
    for (depth, arch, count, pairwise, params, flops, placement), impl in checks:
        conv, frames, size, overrides = CONVENTIONS[0]
        nl = [f"model.net.nonlocal_blocks={placement}".replace(" ", ""), f"model.nonlocal.pairwise={pairwise}"]
        got = full_cost(f"{arch}_r{depth}", [*overrides, *nl], frames, size, impl)
        assert got == (params, flops[(conv, impl)]), (arch, depth, pairwise, impl, got, params, flops)
        print(f"checked {arch} r{depth} {count} NL {pairwise} {impl}: whole-model trace equals the sum",
              file=sys.stderr)

    lines = ["| depth | backbone | NL blocks | pairwise | params (M) | GFLOPs 8x8, 8x256² | "
             "GFLOPs 8x8, reference NL | GFLOPs 32x2, 32x224² | GFLOPs 32x2, reference NL |",
             "|---|---|---|---|---|---|---|---|---|"]
    for depth, arch, count, pairwise, params, flops, _ in rows:
        lines.append(f"| R{depth} | {arch.upper()} | {count} | {pairwise} | {params / 1e6:.2f} | "
                     f"{flops[('8x8', 'auto')] / 1e9:.2f} | {flops[('8x8', 'reference')] / 1e9:.2f} | "
                     f"{flops[('32x2', 'auto')] / 1e9:.2f} | {flops[('32x2', 'reference')] / 1e9:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the markdown table here (default: print)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip verifying a few variants against whole-model traces")
    parser.add_argument("--paper", action="store_true", help="the table of the paper experiments instead")
    args = parser.parse_args()
    table = paper_table() if args.paper else variants_table(check=args.check)
    if args.out:
        write_between(args.out, "paper rows" if args.paper else "model table", table)
    print(table)


if __name__ == "__main__":
    main()
