"""nlnet's benchmarks: speed and memory side by side with pytorchvideo, and the one-command GPU check.

Not installed with nlnet: run them from the repository root, e.g. ``python -m benchmarks.nonlocal_block``
(docs/benchmarks.md lists every command and the figures measured with it).

    common.py          threads, timing, peak memory, autocast (shared by all)
    table.py           the Markdown table writer
    nonlocal_block.py  the non-local block, auto vs reference impl
    model.py           backbones vs pytorchvideo's I3D R50; the GPU check's train steps
    data.py            the data pipeline vs pytorchvideo's Kinetics dataset
    decode_resize.py   FFmpeg-side vs torchvision-side resizing of decoded frames
    export.py          TorchScript / ONNX / ExportedProgram latency vs eager
    gpu_check/         the one-command GPU check (scripts/gpu_check.sh)

pytorchvideo is imported only here (its models, its Kinetics dataset) and by model conversion, never
by the library's data pipeline.
"""
