"""The GPU check's conductor: every part (``parts.py``) in its own process, each with its own time
budget, under a total budget; the JSON and Markdown report is rewritten after every part, so it exists
whatever happens (a part that fails or runs out of time is recorded with the reason and what it
measured).

    bash scripts/gpu_check.sh OUT                      # on a GPU machine: at most total_budget seconds
    bash scripts/gpu_check.sh --cpu-rehearsal OUT      # every part on the CPU with tiny shapes

OUT receives three files: ``gpu_check.json``, ``gpu_check.md`` and ``gpu_check.log`` (every part's
output). Videos, runs and per-part results go
to a work folder (``--work``, default a new folder under /tmp).
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from nlnet.utils.io import atomic_path

from . import settings as S
from .parts import PART_NAMES, PARTS, Part
from .record import Recorder
from .report import render

ROOT = Path(__file__).resolve().parents[2]
GRACE_S = 10.0  # past its budget a part gets SIGTERM, then SIGKILL after this many seconds


class Interrupted(Exception):
    """The check itself got SIGTERM/SIGINT: stop the running parts and write the report."""


@dataclass
class Running:
    part: Part
    proc: subprocess.Popen
    started: float
    budget: float
    result_path: Path
    log_path: Path


def start_part(part: Part, settings: dict[str, Any], results: dict[str, Any], budget: float, work: Path) -> Running:
    """Start ``part`` in a child process (its own process group) with a deadline of ``budget`` seconds."""
    result_path, log_path = work / f"{part.name}.json", work / f"{part.name}.log"
    result_path.unlink(missing_ok=True)
    child = dict(settings, deadline=time.time() + budget, work=str(work),
                 results={name: results[name] for name in part.needs + part.uses if name in results})
    settings_path = work / f"{part.name}.settings.json"
    settings_path.write_text(json.dumps(child, default=str))
    cmd = [sys.executable, "-m", "benchmarks.gpu_check.conductor", "--run-target", part.target,
           "--settings", str(settings_path), "--result", str(result_path)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if settings.get("threads"):
        env.update(OMP_NUM_THREADS=str(settings["threads"]), MKL_NUM_THREADS=str(settings["threads"]))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return Running(part, proc, time.time(), budget, result_path, log_path)


def _kill(proc: subprocess.Popen, grace: float = GRACE_S) -> None:
    for sig, wait in ((signal.SIGTERM, grace / 2), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def finish_part(running: Running, log: TextIO, grace: float = GRACE_S) -> dict[str, Any]:
    """Wait for the part (killing it past budget + ``grace``); its entry for the report."""
    timed_out = False
    try:
        running.proc.wait(timeout=max(0.0, running.started + running.budget + grace - time.time()))
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(running.proc, grace)
    seconds = time.time() - running.started
    result = json.loads(running.result_path.read_text()) if running.result_path.is_file() else {}
    text = running.log_path.read_text(errors="replace") if running.log_path.is_file() else ""
    log.write(f"\n===== {running.part.name}: {running.part.title} ({seconds:.1f} s) =====\n{text}")
    log.flush()
    entry: dict[str, Any] = {"title": running.part.title, "budget_s": round(running.budget, 1),
                             "seconds": round(seconds, 1), "result": result}
    if timed_out:
        return dict(entry, status="timeout", reason=f"ran out of its {running.budget:.0f} s budget and was stopped "
                                                    "(what it measured before is kept)")
    if running.proc.returncode == 0:
        return dict(entry, status="ok", reason="")
    reason = result.pop("error", None) or _last_line(text) or f"exit code {running.proc.returncode}"
    return dict(entry, status="failed", reason=reason)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def write_report(out: Path, report: dict[str, Any], parts: tuple[Part, ...] = PARTS) -> None:
    with atomic_path(out / "gpu_check.json") as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1, default=str))
    with atomic_path(out / "gpu_check.md") as tmp:
        Path(tmp).write_text(render(report, {part.name: part.section for part in parts}))


def run_check(out: Path, settings: dict[str, Any], *, parts: tuple[Part, ...] = PARTS,
              selected: set[str] | None = None, work: Path | None = None, grace: float = GRACE_S) -> dict[str, Any]:
    """Run the parts in order (background ones beside them) within the budgets; returns the report.

    A part still running ``grace`` seconds past its budget is stopped (SIGTERM, then SIGKILL).
    """
    out.mkdir(parents=True, exist_ok=True)
    work = work or Path(tempfile.mkdtemp(prefix="nlnet_gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    report: dict[str, Any] = {
        "format": 1, "mode": "cpu-rehearsal" if settings["rehearsal"] else "gpu", "command": " ".join(sys.argv),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "work": str(work),
        "total_budget_s": settings["total_budget"], "budgets_s": settings["budgets"], "parts": {}}
    entries: dict[str, dict[str, Any]] = report["parts"]
    results: dict[str, Any] = {}
    running: dict[str, Running] = {}

    def settle(name: str, log: TextIO) -> None:
        entries[name] = finish_part(running.pop(name), log, grace)
        results[name] = entries[name]["result"]
        write_report(out, report, parts)

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with open(out / "gpu_check.log", "w") as log:
            try:
                for part in parts:
                    for name in part.needs + part.uses + part.after:
                        if name in running:
                            settle(name, log)
                    skip = _skip_reason(part, selected, entries, settings, start)
                    if skip:
                        entries[part.name] = {"title": part.title, "status": "skipped", "reason": skip, "result": {}}
                        write_report(out, report, parts)
                        continue
                    budget = min(float(settings["budgets"][part.name]), start + settings["total_budget"] - time.time())
                    running[part.name] = start_part(part, settings, results, budget, work)
                    if not part.background:
                        settle(part.name, log)
                for name in list(running):
                    settle(name, log)
            except Interrupted as signum:
                for name, run in list(running.items()):
                    _kill(run.proc, grace)
                    settle(name, log)
                    entries[name].update(status="failed", reason=f"the check received {signum}")
                report["interrupted"] = str(signum)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        report["seconds"] = round(time.time() - start, 1)
        report["status"] = "ok" if all(e["status"] == "ok" for e in entries.values()) else "incomplete"
        write_report(out, report, parts)
    return report


def _skip_reason(part: Part, selected: set[str] | None, entries: dict[str, Any], settings: dict[str, Any],
                 start: float) -> str:
    if selected is not None and part.name not in selected:
        return "not selected (--parts)"
    for name in part.needs:
        if entries.get(name, {}).get("status") != "ok":
            return f"needs part {name!r}, which is {entries.get(name, {}).get('status', 'not run')}"
    left = start + settings["total_budget"] - time.time()
    if left < min(5.0, float(settings["budgets"][part.name])):
        return f"total budget ({settings['total_budget']:.0f} s) spent"
    return ""


def run_target(target: str, settings_path: str, result_path: str) -> int:
    """In a child process: ``function(settings, recorder)``; an exception is recorded as ``error``."""
    recorder = Recorder(result_path)
    module, _, function = target.partition(":")
    try:
        settings = json.loads(Path(settings_path).read_text())
        getattr(importlib.import_module(module), function)(settings, recorder)
    except BaseException as error:  # noqa: B036 - recorded, then the exit code says it failed
        traceback.print_exc()
        recorder.set(error=f"{type(error).__name__}: {error}".splitlines()[0][:500])
        return 1
    return 0


def prepare(settings: dict[str, Any], compose: Callable[[list[str]], dict[str, Any]], work: Path) -> dict[str, Any]:
    """Attach the composed configs the parts build from (models, optimisers, schedules, datasets)."""
    from .loader import bench_roots

    train = settings["train"]
    for model in train["models"]:
        model["config"] = compose(model["overrides"] + train["model_overrides"])
    settings["pytorchvideo"]["config"] = compose(settings["pytorchvideo"]["overrides"])
    loader, root = settings["loader"], bench_roots(str(work))[0]
    for clip in loader["clips"]:
        clip["config"] = compose(clip["overrides"] + [f"data.root={root}"] + loader["data_overrides"])
    return settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, help="folder for gpu_check.json, gpu_check.md, gpu_check.log")
    parser.add_argument("--cpu-rehearsal", action="store_true", help="every part on the CPU with tiny shapes")
    parser.add_argument("--budget", action="append", default=[], metavar="PART=SECONDS",
                        help=f"a part's time budget; parts: {', '.join(PART_NAMES)}")
    parser.add_argument("--total-budget", type=float, help="seconds for the whole check")
    parser.add_argument("--parts", help="comma-separated parts to run (the others are recorded as skipped)")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak for MFU (default: the datasheet's)")
    parser.add_argument("--loader-workers", type=int, help="DataLoader workers of part loader (default: CPU cores - 2)")
    parser.add_argument("--work", type=Path, help="work folder (default: a new folder under /tmp)")
    parser.add_argument("--run-target", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, compose: Callable[[list[str]], dict[str, Any]] | None = None) -> int:
    """The check (``compose``: config overrides -> plain configs, see benchmarks/gpu_check/__main__.py); exit code 0
    when every part is ok, 1 otherwise, 2 on bad arguments. The report is written in every case."""
    args = parse_args(argv)
    if args.run_target:
        return run_target(args.run_target, args.settings, args.result)
    if args.out is None or compose is None:
        print("error: gpu_check needs an output folder: gpu_check.sh OUT [--cpu-rehearsal]", file=sys.stderr)
        return 2
    try:
        settings = S.apply_budgets(S.preset(args.cpu_rehearsal), args.budget, args.total_budget)
        selected = _selected(args.parts)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.peak_tflops:
        settings["train"]["peak_tflops"] = args.peak_tflops
    if args.loader_workers is not None:
        settings["loader"]["workers"] = args.loader_workers
    work = args.work or Path(tempfile.mkdtemp(prefix="nlnet_gpu_check_"))
    report = run_check(args.out, prepare(settings, compose, work), selected=selected, work=work)
    for name, entry in report["parts"].items():
        print(f"{name:13s} {entry['status']:8s} {entry.get('seconds', 0):6.1f} s  {entry.get('reason', '')}")
    print(f"report: {args.out / 'gpu_check.md'} ({report['seconds']:.0f} s)")
    return 0 if report["status"] == "ok" else 1


def _selected(parts: str | None) -> set[str] | None:
    if not parts:
        return None
    chosen = {p.strip() for p in parts.split(",") if p.strip()}
    unknown = sorted(chosen - set(PART_NAMES))
    if unknown:
        raise ValueError(f"--parts {parts!r}: unknown {unknown}; valid: {', '.join(PART_NAMES)}")
    return chosen


if __name__ == "__main__":
    sys.exit(main())
