"""hydra/launcher=slurm and hydra/launcher=local (hydra_plugins/nlnet_launchers) end to end, against a real
single-node Slurm that scripts/slurm_local.sh starts for the test session (the tests that need it skip,
with the reason, where it cannot start): a 2-task DDP job matches torchrun, a -m sweep is one job per
row, a job signalled mid-training requeues itself and ends with the uninterrupted run's weights, bad
launcher settings and failed jobs are one line; the local launcher runs without Slurm."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import PYTHON, ROOT, run_in_session, tiny_overrides, tool_env
from nlnet.checkpoint.files import CheckpointManager, load_checkpoint

TRAIN = str(ROOT / "tools" / "train.py")
ENGINE_TESTS = str(ROOT / "tests" / "engine")  # _slow_dataset.py
SCRIPT = str(ROOT / "scripts" / "slurm_local.sh")
SLURM_DIR = os.environ.get("NLNET_SLURM_DIR", "/tmp/nlnet-slurm")

pytestmark = pytest.mark.slow


def _script(command: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SCRIPT, command], capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, "NLNET_SLURM_DIR": SLURM_DIR})


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """A running single-node Slurm for the session (started here unless it already ran, stopped at the
    end if started here); the environment its clients need (``SLURM_CONF``)."""
    if os.geteuid() != 0:
        pytest.skip("no Slurm for these tests: scripts/slurm_local.sh needs root to run the daemons")
    status = _script("status", timeout=60)
    was_running = status.returncode == 0 and status.stdout.count(": running") == 3
    try:
        started = _script("start", timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("no Slurm for these tests: scripts/slurm_local.sh start took more than 15 min")
    if started.returncode != 0:
        reason = (started.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"no Slurm for these tests: scripts/slurm_local.sh start failed: {reason}")
    yield {"SLURM_CONF": os.path.join(SLURM_DIR, "slurm.conf")}
    if not was_running:
        _script("stop", timeout=120)


def test_the_local_cluster_runs_tasks_and_starts_idempotently(slurm):
    env = {**os.environ, **slurm}
    ranks = subprocess.run(["srun", "-n", "2", "printenv", "SLURM_PROCID"], env=env, capture_output=True, text=True,
                           timeout=120, check=True).stdout.split()
    assert sorted(ranks) == ["0", "1"]
    before = _script("status", timeout=60).stdout
    assert _script("start", timeout=120).returncode == 0
    after = _script("status", timeout=60).stdout
    assert before == after and after.count(": running (pid") == 3  # the same daemons, nothing restarted


def common(tiny_videos: str) -> list[str]:
    return tiny_overrides(tiny_videos) + ["trainer.max_iter=4", "trainer.checkpoint_period=1"]


def run_train(args: list[str], env: dict[str, str], timeout: float = 400) -> tuple[int, str, str]:
    """tools/train.py ``args`` in its own session; one still running after ``timeout`` s is killed."""
    return run_in_session([PYTHON, TRAIN, *args], timeout=timeout, env=env)


def job_ids(run_dir: str | Path) -> list[str]:
    """The ids of the jobs submitted for a run or sweep folder (an array task's: ``<array>_<row>``)."""
    folder = Path(run_dir, ".submitit")
    return sorted(p.parent.name for p in folder.glob("*/*_submitted.pkl") if p.name == f"{p.parent.name}_submitted.pkl")


def final_model(run_dir: str | Path) -> dict:
    return load_checkpoint(CheckpointManager(directory=os.path.join(run_dir, "checkpoints")).latest())["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert value.equal(b[key]), key


def assert_same_results(a: str | Path, b: str | Path) -> None:
    assert json.loads(Path(a, "per_video_scores.json").read_text()) == \
        json.loads(Path(b, "per_video_scores.json").read_text())


@pytest.fixture(scope="module")
def slurm_run(tiny_videos, slurm, tmp_path_factory) -> Path:
    """The tiny demo as one 2-task job through hydra/launcher=slurm (a plain run: no -m)."""
    run_dir = tmp_path_factory.mktemp("launchers") / "slurm"
    code, out, err = run_train([*common(tiny_videos), "hydra/launcher=slurm", "hydra.launcher.tasks_per_node=2",
                                f"hydra.run.dir={run_dir}"], env={**tool_env(), **slurm})
    assert code == 0, out[-3000:] + err[-3000:]
    return run_dir


def test_two_task_slurm_job_matches_torchrun(tiny_videos, slurm_run, tmp_path):
    log = Path(slurm_run, "log.txt").read_text()
    assert "processes: 2" in log and "training finished: iteration 4 of 4" in log
    assert len(job_ids(slurm_run)) == 1 and re.fullmatch(r"\d+", job_ids(slurm_run)[0])  # one Slurm job
    reference = tmp_path / "torchrun"
    torchrun = os.path.join(os.path.dirname(PYTHON), "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", TRAIN, *common(tiny_videos),
                           f"hydra.run.dir={reference}"], env=tool_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_same_weights(final_model(slurm_run), final_model(reference))
    assert_same_results(slurm_run, reference)


def test_a_job_signalled_mid_training_requeues_resumes_and_matches(tiny_videos, slurm_run, slurm, tmp_path):
    run_dir = tmp_path / "preempted"
    slow = ["data.train._target_=_slow_dataset.SlowVideoDataset", "+data.train.delay=0.5"]
    args = [*common(tiny_videos), *slow, "hydra/launcher=slurm", "hydra.launcher.tasks_per_node=2",
            f"hydra.run.dir={run_dir}"]
    env = {**tool_env(ENGINE_TESTS), **slurm}
    proc = subprocess.Popen([PYTHON, TRAIN, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first = CheckpointManager(directory=str(run_dir / "checkpoints")).path(1)
        deadline = time.time() + 300
        while not os.path.exists(first):
            assert proc.poll() is None and time.time() < deadline, "no first checkpoint"
            time.sleep(0.05)
        (job,) = job_ids(run_dir)
        # what Slurm sends --signal-delay seconds before the time limit (submitit's USR2), to every task
        subprocess.run(["scancel", "--signal=USR2", job], env=env, check=True, timeout=60)
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            subprocess.run(["scancel", *job_ids(run_dir)], env=env, timeout=60, check=False)
    assert proc.returncode == 0, out[-4000:]
    log = Path(run_dir, "log.txt").read_text()
    stopped = re.search(r"stopped at iteration (\d+) \(received SIGUSR2\)", log)
    assert stopped and int(stopped.group(1)) < 4, log
    assert f"resumed from {run_dir}/checkpoints/checkpoint_{int(stopped.group(1)):07d}.pt" in log  # same folder
    assert "training finished: iteration 4 of 4" in log
    assert job_ids(run_dir) == [job]  # the job requeued itself: no second job
    assert_same_weights(final_model(run_dir), final_model(slurm_run))
    assert_same_results(run_dir, slurm_run)


def test_a_sweep_runs_each_row_as_its_own_job(tiny_videos, slurm, tmp_path):
    sweep = tmp_path / "sweep"
    code, out, err = run_train(["-m", *tiny_overrides(tiny_videos), "trainer.max_iter=1", "trainer.test_at_end=false",
                                "trainer.precise_bn_iters=0", "trainer.seed=0,1", "hydra/launcher=slurm",
                                f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=seed${trainer.seed}"],
                               env={**tool_env(), **slurm})
    assert code == 0, out[-3000:] + err[-3000:]
    jobs = job_ids(sweep)
    assert len(jobs) == 2 and len({job.split("_")[0] for job in jobs}) == 1, jobs  # one array task per row
    for seed in (0, 1):
        assert "training finished: iteration 1 of 1" in Path(sweep, f"seed{seed}", "log.txt").read_text()
    weights = [final_model(sweep / f"seed{seed}") for seed in (0, 1)]
    assert not all(weights[0][k].equal(weights[1][k]) for k in weights[0])  # the rows' own seeds


@pytest.mark.parametrize("override, message", [
    ("hydra.launcher.partition=nowhere",
     "error: hydra.launcher.partition='nowhere': no such Slurm partition; sinfo lists: debug"),
    ("hydra.launcher.tasks_per_node=4096",
     "error: hydra.launcher.tasks_per_node=4096 x cpus_per_task=1 needs 4096 CPUs on a node"),
    ("hydra.launcher.gpus_per_node=2", "error: hydra.launcher.tasks_per_node=1 with gpus_per_node=2"),
])
def test_bad_launcher_settings_are_one_line_naming_the_key(tiny_videos, slurm, tmp_path, override, message):
    code, _, err = run_train([*tiny_overrides(tiny_videos), "hydra/launcher=slurm", override,
                                f"hydra.run.dir={tmp_path / 'run'}"], env={**tool_env(), **slurm}, timeout=120)
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert not job_ids(tmp_path / "run")  # nothing submitted


def test_a_failed_job_reports_its_id_and_log(tiny_videos, slurm, tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = run_train([*tiny_overrides(tiny_videos), "data.val.annotations=/nonexistent/val.csv",
                                "hydra/launcher=slurm", f"hydra.run.dir={run_dir}"], env={**tool_env(), **slurm})
    (job,) = job_ids(run_dir)
    line = err.strip().splitlines()[-1]
    log = run_dir / ".submitit" / job / f"{job}_0_log.err"
    assert line == f"error: slurm job {job} failed: data.val.annotations: file not found: /nonexistent/val.csv; " \
                   f"log: {log}", err
    assert code == 2 and log.is_file()


def test_the_local_launcher_runs_without_slurm(tiny_videos, tmp_path):
    run_dir = tmp_path / "local"
    env = {k: v for k, v in tool_env().items() if not k.startswith("SLURM_")}
    env["SLURM_CONF"] = str(tmp_path / "no-slurm.conf")  # a Slurm command would fail
    code, out, err = run_train([*tiny_overrides(tiny_videos), "hydra/launcher=local", f"hydra.run.dir={run_dir}"],
                               env=env)
    assert code == 0, out[-3000:] + err[-3000:]
    assert "submitted local job" in out + err
    assert "training finished: iteration 2 of 2" in Path(run_dir, "log.txt").read_text()
    assert Path(run_dir, "results.json").is_file() and len(job_ids(run_dir)) == 1
