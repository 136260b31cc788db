"""Part "tests": the test suite's CUDA-marked tests (``pytest -m gpu``), one outcome per test.

Without a GPU they skip (the rehearsal checks only that they are collected and run). pytest writes
JUnit XML; the part records every test's outcome and time, and fails when pytest reports failures
or errors, or collects no test at all.
"""
from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .record import CheckFailed, Recorder, part_deadline

ROOT = Path(__file__).resolve().parents[2]


def outcomes(junit_xml: str | Path) -> list[dict[str, Any]]:
    """Every test case of a JUnit XML report: name, outcome (passed/failed/error/skipped), seconds, message."""
    cases = []
    for case in ET.parse(junit_xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome, message = ("failed" if tag == "failure" else tag), node.get("message") or ""
                break
        cases.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome, "seconds": float(case.get("time") or 0.0),
                      "message": message.splitlines()[0][:300] if message else ""})
    return cases


def run(settings: dict[str, Any], recorder: Recorder) -> None:
    """Run ``pytest -m gpu`` over the test suite within the part's budget."""
    deadline = part_deadline(settings)
    junit = Path(settings["work"]) / "pytest_gpu.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
           f"--timeout={settings['tests']['per_test_timeout']}", "tests"]
    recorder.set(command=" ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, deadline.remaining() - 3))
    print(proc.stdout[-20000:], proc.stderr[-5000:], sep="\n")
    cases = outcomes(junit) if junit.is_file() else []
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    recorder.set(exit_code=proc.returncode, counts=counts, cases=cases,
                 summary=(proc.stdout.strip().splitlines() or [""])[-1])
    if proc.returncode == 5 or not cases:
        raise CheckFailed("pytest collected no gpu-marked test")
    if proc.returncode != 0:
        raise CheckFailed(f"{counts['failed']} failed, {counts['error']} errors of {len(cases)} CUDA-marked tests")
