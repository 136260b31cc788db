"""Part "torchrun": the demo trained with ``torchrun --standalone --nproc_per_node=N tools/train.py``,
stopped half-way by SIGTERM (as a scheduler preempts a job: torchrun passes it to its workers, which
finish the iteration and write a checkpoint), then started again with the same command, which must
resume from that checkpoint and finish.

If the first run finishes before the signal lands (possible only with very fast iterations), the
checkpoints after the half-way one are removed instead, which is what a crash right after that
checkpoint leaves behind; the report says which of the two stops happened.
"""
from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from nlnet.checkpoint.files import CheckpointManager

from .record import CheckFailed, Recorder, part_deadline

ROOT = Path(__file__).resolve().parents[2]
PATTERNS = {  # what nlnet's log says (nlnet.engine.train, nlnet.engine.hooks.timing.MetricLogger)
    "last_iter": re.compile(r"\biter (\d+)/\d+\b"),
    "resumed_from": re.compile(r"resumed from \S+ at iteration (\d+)"),
    "finished": re.compile(r"training finished: iteration (\d+) of \d+"),
    "device": re.compile(r"device: (\S+), processes: \d+"),
    "processes": re.compile(r"device: \S+, processes: (\d+)"),
}


def command(options: dict[str, Any], data_root: str, run_dir: str) -> list[str]:
    """The torchrun command line; the same for the first run and the resumed one."""
    max_iter = int(options["max_iter"])
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={options['nproc_per_node']}", str(ROOT / "tools" / "train.py"),
            "experiment=demo", f"data.root={data_root}", f"hydra.run.dir={run_dir}", f"trainer.max_iter={max_iter}",
            f"trainer.checkpoint_period={max(1, max_iter // 2)}", "trainer.log_period=1",
            "trainer.progress_bar=false", "logger=none", *options["overrides"]]


def run_once(cmd: list[str], *, log: Any, stop_at: int | None, timeout: float) -> dict[str, Any]:
    """Run ``cmd``, echoing its output to ``log``; SIGTERM it once iteration ``stop_at`` is logged.

    Past ``timeout`` it gets SIGTERM (torchrun stops its workers), then SIGKILL 30 s later.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    seen: dict[str, Any] = {"signalled_at": None, "last_iter": 0, "resumed_from": None, "finished": None,
                            "device": None, "processes": None, "timed_out": False}
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, start + timeout - time.perf_counter()))
            except queue.Empty:
                seen["timed_out"] = True
                proc.send_signal(signal.SIGTERM)
                break
            if line is None:  # output closed: the run is ending
                break
            log.write(line)
            _parse(line, seen)
            if stop_at is not None and seen["signalled_at"] is None and seen["last_iter"] >= stop_at:
                proc.send_signal(signal.SIGTERM)
                seen["signalled_at"] = seen["last_iter"]
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log.flush()
    return {**seen, "exit_code": proc.returncode, "seconds": time.perf_counter() - start}


def _pump(stream: Any, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _parse(line: str, seen: dict[str, Any]) -> None:
    """Update what the run's log says so far: iteration, resume point, end, device and processes."""
    for key, pattern in PATTERNS.items():
        if match := pattern.search(line):
            seen[key] = match.group(1) if key == "device" else int(match.group(1))


def roll_back(checkpoints: CheckpointManager, keep_up_to: int) -> int:
    """Delete checkpoints after iteration ``keep_up_to`` (a crash right after it); the newest kept."""
    for iteration, path in checkpoints.list():
        if iteration > keep_up_to:
            os.remove(path)
    latest = checkpoints.list()
    if not latest:
        raise CheckFailed(f"no checkpoint at or before iteration {keep_up_to} in {checkpoints.directory}")
    return latest[-1][0]


def run(settings: dict[str, Any], recorder: Recorder) -> None:
    """Part "torchrun": first run stopped half-way, second run resumes and finishes; raises if not."""
    deadline, options = part_deadline(settings), settings["torchrun"]
    run_dir = str(Path(settings["work"]) / "torchrun_demo")
    cmd = command(options, settings["results"]["videos"]["demo_root"], run_dir)
    max_iter, half = int(options["max_iter"]), max(1, int(options["max_iter"]) // 2)
    recorder.set(command=" ".join(cmd[1:]), max_iter=max_iter, run_dir=run_dir)
    checkpoints = CheckpointManager(directory=os.path.join(run_dir, "checkpoints"))
    with open(Path(settings["work"]) / "torchrun.log", "w") as log:
        first = run_once(cmd, log=log, stop_at=half, timeout=deadline.remaining() * 0.6)
        saved = [i for i, _ in checkpoints.list()]
        recorder.set(first=first, checkpoints_after_first=saved)
        if not saved:
            raise CheckFailed(f"the first run wrote no checkpoint (exit code {first['exit_code']})")
        stop = "SIGTERM"
        if saved[-1] >= max_iter:  # it finished before the signal landed: simulate a crash instead
            stop = f"rollback to iteration {roll_back(checkpoints, half)} (the run finished before SIGTERM)"
        stopped_at = checkpoints.list()[-1][0]
        second = run_once(cmd, log=log, stop_at=None, timeout=max(1.0, deadline.remaining() - 2))
    recorder.set(stop=stop, stopped_at=stopped_at, second=second,
                 results_json=os.path.isfile(os.path.join(run_dir, "results.json")))
    if second["resumed_from"] != stopped_at:
        raise CheckFailed(f"the second run did not resume from iteration {stopped_at} "
                          f"(resumed from: {second['resumed_from']}); see the log")
    if second["exit_code"] != 0 or second["finished"] != max_iter:
        raise CheckFailed(f"the resumed run did not finish {max_iter} iterations (exit code {second['exit_code']}, "
                          f"finished: {second['finished']})")
