"""Train a video classifier with non-local blocks (Wang et al., CVPR 2018).

    python tools/train.py experiment=demo                            # CPU demo on data/synthetic
    python tools/train.py experiment=nl_r50_kinetics data.root=/data/kinetics400
    python tools/train.py experiment=nl_r50_kinetics model.nonlocal.pairwise=dot_product
    python tools/train.py -m experiment=paper/table2a data.root=/data/kinetics400  # Table 2a, row by row
    torchrun --nproc_per_node=8 tools/train.py experiment=nl_r50_kinetics          # one node, DDP
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \
        --rdzv_endpoint=HOST:29500 tools/train.py experiment=nl_r50_kinetics        # two nodes
    python tools/train.py experiment=nl_r50_kinetics hydra/launcher=slurm hydra.launcher.gpus_per_node=8 \
        hydra.launcher.tasks_per_node=8                                  # a Slurm job (docs/slurm.md)

The run directory is runs/<experiment name>/<overrides>; running the same command again resumes from
its newest checkpoint; `resume=PATH` resumes from a given one. SIGTERM/SIGINT write a checkpoint and
exit with status 128+signal.
"""
import sys

import hydra

from nlnet.utils.cli import one_line_errors, run_main


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
@one_line_errors()
def main(cfg) -> None:
    from nlnet.engine.train import train  # imported after the config composed: torch takes seconds

    summary = train(cfg)
    if summary["exit_code"]:
        sys.exit(summary["exit_code"])


if __name__ == "__main__":
    run_main(main, path_keys=("resume", "data.root", "data.train.annotations", "data.val.annotations",
                              "data.label_map"))
