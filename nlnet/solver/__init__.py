"""The solver: optimiser with its parameter groups (``optim``) and learning-rate schedules scaled to
the batch (``schedule``)."""
