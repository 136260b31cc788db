"""python -m benchmarks.export end to end on a tiny case (a smoke test: no timing is asserted)."""
from __future__ import annotations

import json
import subprocess

import pytest

from helpers import PYTHON, tool_env


@pytest.mark.slow
def test_bench_export_table_and_json(tmp_path):
    case = "tiny=model=tiny model.net.base_width=4 model.net.nonlocal_blocks=[[],[1],[],[]] @4x32"
    proc = subprocess.run([PYTHON, "-m", "benchmarks.export", "--case", case, "--formats", "torchscript",
                           "--rounds", "2", "--warmup", "1", "--threads", "1", "--json", str(tmp_path / "b.json")],
                          env=tool_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "tiny: input 1 x 3 x 4 x 32 x 32" in proc.stdout and "1 threads" in proc.stdout
    result, = json.loads((tmp_path / "b.json").read_text())["results"]
    rows = {r["runtime"]: r for r in result["rows"]}
    assert sorted(rows) == ["eager", "torchscript"] and rows["eager"]["ratio_vs_eager"] == 1.0
    assert rows["torchscript"]["max_abs_diff"] <= 1e-4 and rows["torchscript"]["best_ms"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]  # exports went to a temporary folder
