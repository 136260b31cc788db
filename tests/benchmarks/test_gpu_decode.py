"""The GPU check's decode part, rehearsed on the CPU (NVDEC rows show the CPU fallback and its reason)."""
import json

import pytest
import torch

from benchmarks.gpu_decode import ROWS, run_decode


@pytest.mark.slow
def test_cpu_rehearsal_measures_every_setting_and_says_which_decoder_ran(tmp_path):
    result = run_decode(tmp_path, 240.0, True, step_clips_per_s=1.0)
    assert json.loads((tmp_path / "gpu_decode.json").read_text()) == json.loads(json.dumps(result))
    rows = result["rows"]
    assert [(r["decode_device"], r["color_convert"]) for r in rows] == [row[:2] for row in ROWS]
    assert all(r["status"] == "ok" for r in rows), rows
    assert all(r["clips_per_s"] > 0 and r["cpu_s_per_clip"] > 0 for r in rows)
    assert all(r["verdict"] in ("GPU-bound", "data-bound") and r["factor"] >= 1 for r in rows)
    assert all(r["clip_shape"] == [3, 4, 24, 24] for r in rows)  # RGB in the model's input either way
    assert list(result)[0] == "summary" and len(result["summary"]) == len(rows)
    assert all(" clips/s, " in line and ("GPU-bound" in line or "data-bound" in line) for line in result["summary"])
    assert set(result["item_cpu_ms"]["best_ms"]) == {"worker", "device", "yuv_to_rgb_on_cpu"}
    for row in rows:
        decoders = set(row["decoders"])
        if row["decode_device"] == "cpu":
            assert decoders == {"cpu"}
        elif result["libnvcuvid"] and torch.cuda.is_available():
            assert decoders == {"cuda"}
        else:
            assert len(decoders) == 1 and decoders.pop().startswith("cpu (data.decode_device=cuda: ")
    planes = result["planes"]
    assert planes["status"] == "skipped" or planes["identical"], planes
