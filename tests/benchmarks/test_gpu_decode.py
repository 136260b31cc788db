"""The GPU check's decode part: its Markdown section (the part itself runs in the CPU rehearsal,
tests/benchmarks/test_gpu_check.py)."""
from benchmarks.gpu_check.decode import ROWS
from benchmarks.gpu_check.report import decode_section


def test_decode_section_shows_measured_failed_and_skipped_rows_and_the_planes_verdict():
    ok = {"decode_device": "cuda", "color_convert": "device", "workers": 14, "status": "ok", "clips_per_s": 123.4,
          "cpu_s_per_clip": 0.0456, "verdict": "GPU-bound", "factor": 1.5, "decoders": {"cuda": 40}}
    failed = {"decode_device": "cuda", "color_convert": "worker", "workers": 1, "status": "failed",
              "reason": "RuntimeError: no device"}
    skipped = {"decode_device": "cpu", "color_convert": "device", "workers": 14, "status": "skipped",
               "reason": "part budget spent"}
    result = {"clip": {"num_frames": 32, "sampling_rate": 2, "crop_size": 224}, "batch": 8, "videos": 16, "cpus": 16,
              "libnvcuvid": "libnvcuvid.so.1", "hwdevices": ["cuda"], "step_clips_per_s": 80.0, "step_mode": "bf16",
              "planes": {"status": "ok", "identical": False, "differing_frames": 3, "max_abs_diff": 2},
              "item_cpu_ms": {"best_ms": {"worker": 60.0, "device": 40.0, "yuv_to_rgb_on_cpu": 18.0}},
              "rows": [ok, failed, skipped]}
    lines = decode_section(result, {"parts": {}})
    text = "\n".join(lines)
    assert "32x2 clips, 224 crops, batch 8, 16 videos; 16 CPUs; libnvcuvid: libnvcuvid.so.1" in text
    assert "NVDEC planes vs FFmpeg's software planes: 3 frames differ (max |difference| 2)" in text
    assert "color_convert=worker 60.0, device 40.0 (+ yuv_to_rgb on the CPU 18.0)" in text
    assert "| cuda | device | 14 | 123 | 0.046 | GPU-bound | 1.50x | cuda (40) |" in lines
    assert "| cuda | worker | 1 | failed: RuntimeError: no device | - | - | - | - |" in lines
    assert "| cpu | device | 14 | skipped: part budget spent | - | - | - | - |" in lines
    result["planes"] = {"status": "ok", "identical": True}
    assert "software planes: identical on every frame" in "\n".join(decode_section(result, {"parts": {}}))


def test_rows_start_from_the_cpu_baseline_and_cover_every_decoder_and_conversion():
    assert ROWS[0] == ("cpu", "worker", 1)
    assert {(device, convert) for device, convert, _ in ROWS} == {(d, c) for d in ("cpu", "cuda")
                                                                  for c in ("worker", "device")}
