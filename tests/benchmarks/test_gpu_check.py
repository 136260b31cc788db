"""The GPU check's conductor and its CPU rehearsal (scripts/gpu_check.sh --cpu-rehearsal)."""
import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.gpu_check import settings as S
from benchmarks.gpu_check.conductor import main, run_check
from benchmarks.gpu_check.decode import ROWS
from benchmarks.gpu_check.parts import PART_NAMES, PARTS, Part
from benchmarks.gpu_check.report import render
from helpers import PYTHON, ROOT, tool_env


def tiny_settings(**budgets):
    settings = S.preset(cpu_rehearsal=True)
    settings["budgets"].update({name: 30 for name in PART_NAMES}, **budgets)
    return settings


def fake(name, function, **kwargs):
    return Part(name=name, target=f"tests.benchmarks._fake_parts:{function}", title=f"fake {function}", budget_s=30,
                rehearsal_budget_s=30, **kwargs)


@pytest.mark.slow
def test_parts_pass_results_on_and_failures_and_timeouts_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    parts = (fake("env", "measures"), fake("tests", "fails"), fake("train", "hangs"),
             fake("loader", "measures", needs=("tests",)), fake("torchrun", "measures"))
    start = time.time()
    report = run_check(tmp_path / "out", tiny_settings(train=2), parts=parts, work=tmp_path / "work", grace=2)
    entries = report["parts"]
    assert time.time() - start < 40  # the hanging part was stopped at its budget (+ grace)
    assert entries["env"]["status"] == "ok" and entries["env"]["result"]["value"] == 42
    assert entries["tests"]["status"] == "failed"
    assert entries["tests"]["reason"] == "CheckFailed: the thing did not hold"
    assert entries["tests"]["result"] == {"partial": 1}
    assert entries["train"]["status"] == "timeout" and entries["train"]["result"] == {"rows": [{"row": 1}]}
    assert entries["loader"]["status"] == "skipped" and "needs part 'tests'" in entries["loader"]["reason"]
    assert entries["torchrun"]["status"] == "ok"
    assert report["status"] == "incomplete"
    on_disk = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert on_disk["parts"].keys() == entries.keys()
    markdown = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "| tests | failed |" in markdown and "| train | timeout |" in markdown
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert "===== tests: fake fails" in log and "CheckFailed" in log
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]


@pytest.mark.slow
def test_results_reach_the_parts_that_use_them_and_the_total_budget_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    parts = (fake("env", "measures"), fake("tests", "measures", uses=("env",)), fake("train", "hangs"),
             fake("loader", "measures"))
    settings = tiny_settings(train=60)
    settings["total_budget"] = 8
    report = run_check(tmp_path / "out", settings, parts=parts, work=tmp_path / "work", grace=2)
    assert report["parts"]["tests"]["result"]["got"] == 42  # env's result was handed on
    assert report["parts"]["train"]["status"] == "timeout"  # cut to what the total budget left
    assert report["parts"]["loader"] == {"title": "fake measures", "status": "skipped", "result": {},
                                         "reason": "total budget (8 s) spent"}


@pytest.mark.parametrize("argv, message", [
    (["out", "--budget", "trian=20"], "--budget 'trian=20': expected PART=SECONDS with PART one of env,"),
    (["out", "--budget", "train=soon"], "'soon' is not a number of seconds"),
    (["out", "--parts", "env,gpu"], "unknown ['gpu']"),
    ([], "needs an output folder"),
])
def test_bad_arguments_are_one_line_errors(argv, message, capsys):
    assert main(argv, compose=lambda overrides: {}) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_report_renders_failed_rows_and_half_written_results():
    failed = {"model": "NL I3D R50", "clip": "32x2", "mode": "bf16+compile", "status": "failed",
              "reason": "BackendCompilerFailed: boom"}
    report = {"mode": "gpu", "started": "now", "total_budget_s": 460, "seconds": 12.0, "status": "incomplete",
              "parts": {"train": {"title": "train steps", "status": "failed", "reason": "1 of 1 rows failed",
                                  "seconds": 150.0, "budget_s": 150, "result": {"rows": [failed]}},
                        "pytorchvideo": {"title": "pv", "status": "timeout", "reason": "ran out", "seconds": 40.0,
                                         "budget_s": 40, "result": {"rows": [{"status": "ok", "odd": True}]}},
                        "loader": {"title": "loader", "status": "skipped", "reason": "total budget", "result": {}}}}
    text = render(report, {part.name: part.section for part in PARTS})
    assert "| train | failed | 150.0 | 150 | 1 of 1 rows failed |" in text
    assert "| NL I3D R50 | 32x2 | bf16+compile | failed: BackendCompilerFailed: boom | - |" in text
    assert "could not render: KeyError" in text and '"odd": true' in text  # the raw result instead
    assert "skipped: total budget" in text


@dataclasses.dataclass
class Rehearsal:
    proc: subprocess.CompletedProcess
    out: Path
    report: dict
    statuses: dict  # part -> (status, reason)
    parts: dict  # part -> its result


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory) -> Rehearsal:
    """``bash scripts/gpu_check.sh --cpu-rehearsal`` with its own settings, run once per session (about
    two to five minutes on a loaded 2-core CPU); the tests below each read one part of its report."""
    work = tmp_path_factory.mktemp("gpu_check")
    out = work / "out"
    env = dict(tool_env(), PYTHON=PYTHON)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--cpu-rehearsal", str(out), "--work",
                           str(work / "work")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert (out / "gpu_check.json").is_file(), (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    report = json.loads((out / "gpu_check.json").read_text())
    statuses = {name: (entry["status"], entry.get("reason")) for name, entry in report["parts"].items()}
    parts = {name: entry["result"] for name, entry in report["parts"].items()}
    return Rehearsal(proc=proc, out=out, report=report, statuses=statuses, parts=parts)


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_part(rehearsal):
    proc, report, statuses = rehearsal.proc, rehearsal.report, rehearsal.statuses
    assert proc.returncode == 0, (statuses, proc.stdout[-3000:], proc.stderr[-3000:])
    assert list(report["parts"]) == ["env", "tests", "nonlocal", "videos", "train", "pytorchvideo", "loader",
                                     "torchrun", "decode"]
    assert all(status == "ok" for status, _ in statuses.values()), statuses
    markdown = (rehearsal.out / "gpu_check.md").read_text()
    assert all(f"## {name}:" in markdown for name in report["parts"])
    assert not any(p for p in os.listdir(ROOT) if p.startswith("nlnet_gpu_check"))


@pytest.mark.slow
def test_cpu_rehearsal_collects_and_skips_the_cuda_tests(rehearsal):
    tests = rehearsal.parts["tests"]  # the CUDA-marked tests were collected and skipped (no GPU here)
    assert rehearsal.statuses["tests"][0] == "ok", rehearsal.statuses["tests"]
    assert tests["counts"]["skipped"] == len(tests["cases"]) >= 10


@pytest.mark.slow
def test_cpu_rehearsal_measures_every_pairwise_function_at_both_shapes_and_precisions(rehearsal):
    # non-local block: every pairwise function at both shapes and precisions; fp32 impls agree
    rows = rehearsal.parts["nonlocal"]["rows"]
    assert len(rows) == 2 * 4 * 2 and all(r["status"] == "ok" for r in rows)
    limits = {"fp32": 1e-4, "bf16": 2e-2}
    assert all(r["rel_err_auto_vs_reference"] < limits[r["precision"]] for r in rows)
    assert all(r[impl]["rel_err_vs_fp64"] < limits[r["precision"]] for r in rows for impl in ("auto", "reference"))


@pytest.mark.slow
def test_cpu_rehearsal_measures_every_train_mode_and_the_pytorchvideo_model(rehearsal):
    # train steps: every mode measured, MFU against the given peak
    train = rehearsal.parts["train"]["rows"]
    assert {r["mode"] for r in train} == set(S.TRAIN_MODES) and all(r["status"] == "ok" for r in train)
    assert all(r["clips_per_s"] > 0 and r["fwd_gmacs_per_clip"] > 0 and r["mfu"] > 0 for r in train)
    assert [r["precision"] for r in rehearsal.parts["pytorchvideo"]["rows"]] == ["fp32", "bf16"]
    assert all(r["ratio"] > 0 for r in rehearsal.parts["pytorchvideo"]["rows"])


@pytest.mark.slow
def test_cpu_rehearsal_measures_the_loader_and_resumes_the_torchrun_run(rehearsal):
    loader = rehearsal.parts["loader"]["rows"]
    assert [r["clip"] for r in loader] == ["32x2", "8x8"]
    assert all(r["clips_per_s"] > 0 and r["verdict"] in ("GPU-bound", "data-bound") for r in loader)
    torchrun = rehearsal.parts["torchrun"]
    assert 0 < torchrun["stopped_at"] < torchrun["max_iter"] == torchrun["second"]["finished"]
    assert torchrun["second"]["resumed_from"] == torchrun["stopped_at"] and torchrun["results_json"]


@pytest.mark.slow
def test_cpu_rehearsal_measures_every_decode_setting_and_says_which_decoder_ran(rehearsal):
    # NVDEC rows fall back to the CPU here, and say why; RGB reaches the model either way
    decode = rehearsal.parts["decode"]
    rows = decode["rows"]
    assert [(r["decode_device"], r["color_convert"]) for r in rows] == [row[:2] for row in ROWS]
    assert all(r["status"] == "ok" for r in rows), rows
    assert all(r["clips_per_s"] > 0 and r["cpu_s_per_clip"] > 0 for r in rows)
    assert all(r["verdict"] in ("GPU-bound", "data-bound") and r["factor"] >= 1 for r in rows)
    assert all(r["clip_shape"] == [3, 4, 24, 24] for r in rows)
    assert not decode["videos_written_here"] and decode["videos"] == rehearsal.parts["videos"]["bench_videos"]
    assert set(decode["item_cpu_ms"]["best_ms"]) == {"worker", "device", "yuv_to_rgb_on_cpu"}
    for row in rows:
        decoders = set(row["decoders"])
        if row["decode_device"] == "cpu":
            assert decoders == {"cpu"}
        else:
            assert len(decoders) == 1 and decoders.pop().startswith("cpu (data.decode_device=cuda: ")
    assert decode["planes"]["status"] == "skipped"
    markdown = (rehearsal.out / "gpu_check.md").read_text()
    assert "| cuda | device | 2 |" in markdown and "NVDEC planes vs FFmpeg's software planes: skipped" in markdown
