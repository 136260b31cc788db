"""Models: the non-local block (Eq. 1, Fig. 2) and C2D/I3D ResNet backbones (Table 1)."""
from nlnet.models.inflate import LoadReport, inflate_from_2d, load_finetune
from nlnet.models.nonlocal_block import NonLocalAttention, NonLocalBlock
from nlnet.models.resnet3d import ResNet3d
from nlnet.models import convert  # noqa: E402  (callable: nlnet.models.convert(path, source=...))

__all__ = ["NonLocalBlock", "NonLocalAttention", "ResNet3d", "LoadReport", "inflate_from_2d", "load_finetune",
           "convert"]
