"""``ExtendedNonLocalBlock``, the name under which earlier converters wrote the non-local block with
temporal groups and a BN epsilon into converted configs. Both are now options of
:class:`nlnet.models.NonLocalBlock` (``temporal_groups``, ``norm_eps``); the name stays so that those
configs (and the checkpoints that store them) keep instantiating."""
from nlnet.models.nonlocal_block import NonLocalBlock

ExtendedNonLocalBlock = NonLocalBlock

__all__ = ["ExtendedNonLocalBlock"]
