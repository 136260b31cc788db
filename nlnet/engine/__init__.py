"""Training engine: a small loop with hooks (``trainer``, ``hooks/``), DDP helpers, the run folder, and
the composition roots the tools call: ``train.train`` and ``test.test``."""
