"""Training and evaluation engine: a small loop with hooks, crash-proof checkpoints, DDP helpers and
multi-view evaluation. ``launch.train`` / ``launch.test`` are the composition roots the tools call."""
