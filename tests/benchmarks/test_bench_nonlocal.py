"""python -m benchmarks.nonlocal_block end to end on a tiny shape (a smoke test; no timing is asserted)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import nonlocal_block as tool
from helpers import ROOT, tool_env


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.nonlocal_block", *args], capture_output=True, text=True,
                          env=tool_env(), cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_bench_nonlocal_table_and_json(tmp_path):
    shape = (1, 8, 2, 4, 4)
    auto, ref = (tool.estimate_bytes(shape, "dot_product", impl, 4) for impl in ("auto", "reference"))
    assert ref > auto  # a limit between the two runs auto and reports the reference as not run
    out = tmp_path / "bench.json"
    proc = run_tool("--shapes", "1,8,2,4,4", "--pairwise", "dot_product", "--repeats", "1", "--json", str(out),
                    "--mem-limit-gb", repr((auto + ref) / 2 / tool.GB))
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 1, 8, 2, 4, 4 | dot_product |")]
    assert len(rows) == 1 and f"not run (needs ~{tool.format_bytes(ref)})" in rows[0], proc.stdout
    report = json.loads(out.read_text())
    results = {r["impl"]: r for r in report["results"]}
    assert results["reference"]["status"] == "skipped" and results["reference"]["estimate_bytes"] == ref
    r = results["auto"]
    assert r["status"] == "ok" and r["median_s"] > 0 and len(r["times_s"]) == 1 and r["peak_bytes"] > 0, r
    assert f"| {r['median_s']:.3f} |" in rows[0]
    assert not out.with_name("bench.json.tmp").exists()


def test_bench_nonlocal_rejects_bad_shape(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tool.main(["--shapes", "2,512,28,28"])
    assert exit_info.value.code == 2 and "--shapes takes B,C,T,H,W" in capsys.readouterr().err
