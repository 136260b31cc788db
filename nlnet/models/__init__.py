"""Models: the non-local block (Eq. 1, Fig. 2) and C2D/I3D ResNet backbones (Table 1), built by name
(``c2d_r50``, ``nl_i3d_r50``, ...) or from a config node (``build_model``). Published checkpoints:
``nlnet.models.convert`` (imported on use)."""
from nlnet.models.builder import (
    MODELS,
    build_model,
    c2d_r50,
    c2d_r101,
    i3d_r50,
    i3d_r101,
    nl_c2d_r50,
    nl_c2d_r101,
    nl_i3d_r50,
    nl_i3d_r101,
)
from nlnet.models.inflate import LoadReport, inflate_from_2d, load_finetune
from nlnet.models.nonlocal_block import NonLocalAttention, NonLocalBlock
from nlnet.models.resnet3d import ResNet3d

__all__ = ["NonLocalBlock", "NonLocalAttention", "ResNet3d", "LoadReport", "inflate_from_2d", "load_finetune",
           "build_model", "MODELS", "c2d_r50", "i3d_r50", "nl_c2d_r50", "nl_i3d_r50", "c2d_r101", "i3d_r101",
           "nl_c2d_r101", "nl_i3d_r101"]
