"""Export a checkpoint's network for deployment (TorchScript, ONNX or torch.export's ExportedProgram),
with a JSON sidecar holding its input pipeline and class names.

    python tools/export.py checkpoint=runs/demo/checkpoints/checkpoint_0000300.pt format=onnx out=demo.onnx check=true
    python tools/export.py checkpoint=PATH format=exported_program dynamic_batch=true
    python tools/export.py checkpoint=PATH format=torchscript batch_size=30

Every option: configs/export.yaml; formats and their limits: docs/deploy.md. Exit status 1 when
``check=true`` finds a difference above ``tolerance``, 2 on a configuration error.
"""
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from nlnet.utils.cli import one_line_errors, run_main


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
@one_line_errors()
def main(cfg: DictConfig) -> None:
    options = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # an unset ??? key: one line
    from nlnet.inference.commands import run_export  # torch: after Hydra has parsed the command line

    sys.exit(run_export(**options))


if __name__ == "__main__":
    run_main(main, path_keys=("checkpoint", "out"))
