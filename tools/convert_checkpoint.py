"""Convert a published checkpoint into an nlnet checkpoint (docs/checkpoints.md lists every model).

    python tools/convert_checkpoint.py --from caffe2 i3d_nonlocal_8x8_IN_pretrain_400k.pkl i3d_nl_8x8.pt
    python tools/convert_checkpoint.py --from pyslowfast I3D_NLN_8x8_R50.pkl out.pt --arch i3d_nl_r50_8x8
    python tools/convert_checkpoint.py --from caffe2 r50_pretrain_c2_model_iter450450_clean.pkl r50.pth
    python tools/convert_checkpoint.py --list
    python tools/test.py checkpoint=i3d_nl_8x8.pt data.root=/data/kinetics400

The output is a normal nlnet checkpoint: the weights, the config that rebuilds the network and the
source's test pipeline (the composed training config with the model's settings written over it), and
the class names. A 2D ImageNet ResNet becomes a torchvision state dict for ``model.pretrained``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from nlnet.utils.cli import ArgumentParser, run_main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def base_config(data_root: str, run_dir: str) -> dict:
    """The resolved default training config (configs/train.yaml) with ``data.root`` set."""
    from omegaconf import OmegaConf

    from nlnet.config import compose_config

    cfg = compose_config("train", [f"data.root={data_root}"], config_dir=CONFIGS)
    OmegaConf.update(cfg, "run_dir", run_dir)  # ${hydra:...} has no value outside a Hydra run
    return OmegaConf.to_container(cfg, resolve=True)


def write_experiment(conversion, out: str) -> str:
    """``<out dir>/experiment/<out stem>.yaml``: the experiment that fine-tunes the converted model."""
    import yaml

    from nlnet.utils.io import atomic_path

    path = os.path.join(os.path.dirname(out), "experiment", f"{Path(out).stem}.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(f"# @package _global_\n# Fine-tune {os.path.basename(out)} (tools/convert_checkpoint.py, "
                f"{conversion.report.source} {conversion.arch.name}).\n")
        yaml.safe_dump(conversion.experiment(out), f, sort_keys=False, default_flow_style=None, width=120)
    return path


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", help="caffe2 | pyslowfast | mmaction2 | pytorchvideo")
    parser.add_argument("src", nargs="?", help="the published checkpoint file")
    parser.add_argument("out", nargs="?", help="the nlnet checkpoint to write (.pt)")
    parser.add_argument("--arch", help="the source network when the file does not say (see --list)")
    parser.add_argument("--data-root", default="data/kinetics400", help="data.root stored in the checkpoint")
    parser.add_argument("--class-names", help="a file with one class name per line (default: Kinetics-400 "
                        "for 400 classes)")
    parser.add_argument("--no-strict", action="store_true", help="convert even when weights are missing or "
                        "unused (listed in the report)")
    parser.add_argument("--list", action="store_true", help="list the networks of each source and exit")
    args = parser.parse_args()

    from nlnet.models.convert import convert, describe

    if args.list:
        print(describe())
        return
    if not (args.source and args.src and args.out):
        parser.error("--from, SRC and OUT are required (or --list)")
    names = Path(args.class_names).read_text().split("\n") if args.class_names else None
    conversion = convert(args.src, source=args.source, arch=args.arch, strict=not args.no_strict,
                         class_names=[n.strip() for n in names if n.strip()] if names else None)
    out = os.path.abspath(args.out)
    base = None if conversion.arch.image_2d else base_config(args.data_root, os.path.dirname(out))
    conversion.save(out, base_config=base)
    print(conversion.report)
    if conversion.arch.image_2d:
        print(f"wrote {out}: a torchvision ResNet state dict; train with model.pretrained={out}")
        return
    experiment = write_experiment(conversion, out)
    folder, name = os.path.dirname(os.path.dirname(experiment)), Path(experiment).stem
    print(f"wrote {out}\ntest: python tools/test.py checkpoint={out} data.root=<kinetics root>\n"
          f"fine-tune: python tools/train.py --config-dir={folder} experiment={name} data.root=<dataset> "
          "model.net.num_classes=<N>")


if __name__ == "__main__":
    run_main(main)
