"""The pure pieces of the GPU check's parts: MFU, the loader verdict, modes, peaks, budgets, pytest outcomes."""
import pytest

from benchmarks.gpu_check import settings as S
from benchmarks.gpu_check.cuda_tests import outcomes, outcomes_from_output
from benchmarks.gpu_check.loader import fastest_step, verdict, write_bench_list
from benchmarks.gpu_check.machine import dense_bf16_peak
from benchmarks.gpu_check.parts import PARTS
from benchmarks.model import mfu, parse_mode, train_rows


def test_mfu_counts_forward_backward_flops_against_the_peak():
    # 28.54 G multiply-adds per clip (I3D R50, 8x224^2) at 1000 clips/s: 6 x 28.54e9 x 1000 = 171 TFLOP/s
    assert mfu(28.54e9, 1000.0, 989.5e12) == pytest.approx(171.24e12 / 989.5e12)
    assert mfu(28.54e9, 1000.0, None) is None


@pytest.mark.parametrize("loader, step, want", [
    (100.0, 400.0, {"verdict": "data-bound", "factor": 4.0}),
    (600.0, 200.0, {"verdict": "GPU-bound", "factor": 3.0}),
    (0.0, 10.0, {"verdict": "data-bound", "factor": float("inf")}),
])
def test_verdict_names_the_slower_side_and_the_factor(loader, step, want):
    assert verdict(loader, step) == want


def test_fastest_step_picks_the_model_and_clip_and_skips_failed_rows():
    rows = [{"model": "NL I3D R50", "clip": "8x8", "mode": "bf16", "status": "ok", "clips_per_s": 50.0},
            {"model": "NL I3D R50", "clip": "8x8", "mode": "bf16+compile", "status": "failed"},
            {"model": "NL I3D R50", "clip": "8x8", "mode": "bf16+channels_last", "status": "ok", "clips_per_s": 60.0},
            {"model": "I3D R50", "clip": "8x8", "mode": "bf16", "status": "ok", "clips_per_s": 90.0},
            {"model": "NL I3D R50", "clip": "32x2", "mode": "bf16", "status": "ok", "clips_per_s": 99.0}]
    assert fastest_step({"rows": rows}, "NL I3D R50", "8x8")["mode"] == "bf16+channels_last"
    assert fastest_step(None, "NL I3D R50", "8x8") is None


def test_modes_parse_and_compiled_rows_come_last():
    assert parse_mode("bf16+channels_last") == ("bf16", {"channels_last"})
    assert parse_mode("fp32") == ("fp32", set())
    with pytest.raises(ValueError, match=r"train mode 'bf16\+fast': expected fp32\|bf16\|fp16"):
        parse_mode("bf16+fast")
    rows = train_rows(S.preset(cpu_rehearsal=False)["train"])
    assert len(rows) == 16 and ["compile" in mode for _, mode in rows] == [False] * 12 + [True] * 4


def test_peak_from_the_datasheet_table_or_given():
    assert dense_bf16_peak("NVIDIA H200")[0] == 989.5e12
    assert dense_bf16_peak("NVIDIA H200", 500.0) == (500e12, "given: 500 TFLOP/s")
    peak, source = dense_bf16_peak("Some GPU")
    assert peak is None and "unknown device 'Some GPU'" in source


def test_budgets_come_from_the_parts_and_the_total_covers_the_sequential_ones():
    gpu = S.preset(cpu_rehearsal=False)
    assert gpu["budgets"] == {part.name: part.budget_s for part in PARTS}
    sequential = sum(seconds for name, seconds in gpu["budgets"].items() if name != "videos")
    assert sequential <= gpu["total_budget"]
    assert S.apply_budgets(S.preset(False), ["train=200"], 470)["budgets"]["train"] == 200


def test_bench_list_repeats_the_videos_enough(tmp_path):
    listing = write_bench_list(tmp_path, ["part0/train/a b/x.mp4", "part1/train/c/y.mp4"], min_items=5)
    lines = listing.read_text().splitlines()
    assert len(lines) == 6 and lines[:2] == ["part0/train/a b/x.mp4 0", "part1/train/c/y.mp4 0"]


def test_pytest_outcomes_from_junit_and_from_verbose_output(tmp_path):
    xml = tmp_path / "r.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="tests.gpu.t" name="a" time="1.5"/>'
                   '<testcase classname="tests.gpu.t" name="b" time="0.1"><skipped message="needs CUDA"/></testcase>'
                   '<testcase classname="tests.gpu.t" name="c" time="2"><failure message="assert 1 == 2&#10;more"/>'
                   '</testcase></testsuite></testsuites>')
    assert [(c["test"], c["outcome"], c["message"]) for c in outcomes(xml)] == [
        ("tests.gpu.t::a", "passed", ""), ("tests.gpu.t::b", "skipped", "needs CUDA"),
        ("tests.gpu.t::c", "failed", "assert 1 == 2")]
    text = ("tests/gpu/t.py::a PASSED [ 33%]\ntests/gpu/t.py::b[x-1] SKIPPED (needs CUDA) [ 66%]\n"
            "tests/gpu/t.py::c FAILED [100%]\nsomething else\n")
    assert [(c["test"], c["outcome"]) for c in outcomes_from_output(text)] == [
        ("tests/gpu/t.py::a", "passed"), ("tests/gpu/t.py::b[x-1]", "skipped"), ("tests/gpu/t.py::c", "failed")]


def test_a_failing_row_is_recorded_and_the_others_still_run(tmp_path):
    from benchmarks.gpu_check.record import CheckFailed, Recorder, Rows

    rows = Rows(Recorder(tmp_path / "part.json"))
    for mode in ("bf16", "bf16+compile", "fp32"):
        with rows.guard({"mode": mode}):
            if "compile" in mode:
                raise RuntimeError("inductor: something\nlong traceback")
            rows.append({"mode": mode, "status": "ok"})
    saved = rows.recorder.data["rows"]
    assert [(r["mode"], r["status"]) for r in saved] == [("bf16", "ok"), ("bf16+compile", "failed"), ("fp32", "ok")]
    assert saved[1]["reason"] == "RuntimeError: inductor: something"
    with pytest.raises(CheckFailed, match="1 of 3 rows failed"):
        rows.check()
