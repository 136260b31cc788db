"""The one-command GPU check (``scripts/gpu_check.sh``, ``python -m benchmarks.gpu_check``).

Each part of the check (machine, CUDA-marked tests, non-local block, train steps, pytorchvideo side
by side, data loader, a resumed torchrun) is a function ``run(settings, recorder)`` listed in
:mod:`benchmarks.gpu_check.parts`, run in its own process with its own time budget by
:mod:`benchmarks.gpu_check.conductor`. ``--cpu-rehearsal`` runs every part on the CPU with tiny
shapes, so the check is known to work before GPU time is spent. The parts read no config:
``__main__`` composes the configs they need and hands them over as plain containers.
"""
