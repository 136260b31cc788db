"""The one-command GPU check (``scripts/gpu_check.sh``) and the measurements it runs.

Each part of the check (machine, CUDA-marked tests, non-local block, train steps, pytorchvideo side
by side, data loader, a resumed torchrun) is a function ``run(settings, recorder)`` in this package,
run in its own process with its own time budget by :mod:`nlnet.bench.check`. ``--cpu-rehearsal``
runs every part on the CPU with tiny shapes, so the check is known to work before GPU time is spent.
Nothing here reads a config: ``tools/gpu_check.py`` composes the configs the parts need and hands
them over as plain containers.
pytorchvideo is imported only by the benchmarks (its models here, its Kinetics dataset in
``tools/bench_data.py``) and by model conversion, never by the library's data pipeline.
"""
