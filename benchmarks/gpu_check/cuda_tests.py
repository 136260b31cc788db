"""Part "tests": the test suite's CUDA-marked tests (``pytest -m gpu``), one outcome per test.

Without a GPU they skip (the rehearsal checks only that they are collected and run). pytest writes
JUnit XML; the part records every test's outcome and time, and fails when pytest reports failures
or errors, or collects no test at all. Stopped at the budget, it keeps the outcomes ``-v`` printed.
"""
from __future__ import annotations

import re
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
        cases.append({"test": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0.0),
                      "message": message.splitlines()[0][:300] if message else ""})
    return cases


VERBOSE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def outcomes_from_output(text: str) -> list[dict[str, Any]]:
    """The outcomes ``pytest -v`` printed so far (when it was stopped before writing its XML)."""
    return [{"test": m.group(1), "outcome": m.group(2).lower(), "seconds": None,
             "message": ""} for m in map(VERBOSE.match, text.splitlines()) if m]


def run(settings: dict[str, Any], recorder: Recorder) -> None:
    """Run ``pytest -m gpu -v`` over the test suite within the part's budget."""
    deadline = part_deadline(settings)
    work = Path(settings["work"])
    junit, output = work / "pytest_gpu.xml", work / "pytest_gpu.out"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", f"--junitxml={junit}",
           f"--timeout={settings['tests']['per_test_timeout']}", "tests"]
    recorder.set(command=" ".join(cmd[1:]))
    with open(output, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=max(1.0, deadline.remaining() - 3))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = output.read_text(errors="replace")
    print(text[-20000:])
    finished = proc.returncode is not None and proc.returncode >= 0 and junit.is_file()
    cases = outcomes(junit) if finished else outcomes_from_output(text)
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    recorder.set(exit_code=proc.returncode, counts=counts, cases=cases,
                 summary=(text.strip().splitlines() or [""])[-1])
    if not finished:
        raise CheckFailed(f"pytest ran out of the part's budget after {len(cases)} tests (outcomes so far kept)")
    if proc.returncode == 5 or not cases:
        raise CheckFailed("pytest collected no gpu-marked test")
    if proc.returncode != 0:
        raise CheckFailed(f"{counts['failed']} failed, {counts['error']} errors of {len(cases)} CUDA-marked tests")
