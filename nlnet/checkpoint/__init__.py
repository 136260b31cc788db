"""Checkpoints: crash-proof files (``files``), where a model's weights come from (``weights``) and the
one way back from a checkpoint file to a network (``restore``)."""
