"""nlnet.utils.cluster: torchrun's variables from a Slurm job step or a submitit job, only there; the
signals that stop training; sinfo's partitions."""
import os
import signal
import stat

import pytest

from nlnet.utils import cluster

SCHEDULER_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SUBMITIT_EXECUTOR",
                  "SUBMITIT_PREEMPT_SIGNAL")


@pytest.fixture
def clean_env(monkeypatch):
    """No scheduler variables; whatever the code under test writes into os.environ (RANK, WORLD_SIZE, ...)
    is undone afterwards, so that later tests in this process do not wait for other ranks."""
    for name in SCHEDULER_VARS:
        monkeypatch.setenv(name, "")  # recorded as absent-before: the teardown removes what the test sets
        monkeypatch.delenv(name)
    for name in list(os.environ):
        if name.startswith("SLURM_"):
            monkeypatch.delenv(name)
    return monkeypatch


def fake_command(tmp_path, monkeypatch, name, output):
    """An executable ``name`` on PATH that prints ``output``."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")


def slurm_step(monkeypatch, *, procid, ntasks, localid, job_id="4242", nodelist="node[01-02]"):
    for name, value in {"SLURM_JOB_ID": job_id, "SLURM_STEP_ID": "0", "SLURM_PROCID": procid,
                        "SLURM_STEP_NUM_TASKS": ntasks, "SLURM_NTASKS": ntasks, "SLURM_LOCALID": localid,
                        "SLURM_JOB_NODELIST": nodelist, "SLURM_STEP_NODELIST": nodelist}.items():
        monkeypatch.setenv(name, str(value))


def test_a_task_of_a_slurm_step_gets_torchruns_variables(clean_env, tmp_path):
    fake_command(tmp_path, clean_env, "scontrol", r"node01\nnode02\n")
    slurm_step(clean_env, procid=3, ntasks=4, localid=1)
    place = cluster.use_scheduler_environment()
    assert place == cluster.ProcessPlace(rank=3, world_size=4, local_rank=1, master_addr="node01", job_id="4242")
    port = cluster.PORT_BASE + 4242 % cluster.PORT_RANGE
    assert {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")} == \
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "node01", "MASTER_PORT": str(port)}


def test_the_rendezvous_port_is_the_jobs_unless_set(clean_env):
    assert cluster.job_port("123") == cluster.job_port("123") != cluster.job_port("124")
    assert cluster.job_port("77_3") == cluster.job_port("773")  # array task ids: digits only
    clean_env.setenv("MASTER_PORT", "29511")
    assert cluster.job_port("123") == 29511


@pytest.mark.parametrize("case", ["outside", "torchrun", "batch_script", "one_task"])
def test_nothing_changes_outside_a_job_of_several_tasks(clean_env, case):
    if case != "outside":
        slurm_step(clean_env, procid=0, ntasks=1 if case == "one_task" else 2, localid=0, nodelist="node01")
    if case == "torchrun":
        clean_env.setenv("WORLD_SIZE", "2")
    if case == "batch_script":  # sbatch's script itself is no job step: it runs srun, whose tasks are the ranks
        clean_env.delenv("SLURM_STEP_ID")
    before = dict(os.environ)
    assert cluster.use_scheduler_environment() is None
    assert dict(os.environ) == before


def test_training_stops_on_submitits_preemption_signal_only_in_a_submitit_job(clean_env):
    assert cluster.stop_signals() == (signal.SIGTERM, signal.SIGINT)
    clean_env.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert cluster.stop_signals() == (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)
    clean_env.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    assert cluster.preemption_signal() == signal.SIGUSR1


def test_partitions_from_sinfo(clean_env, tmp_path):
    fake_command(tmp_path, clean_env, "sinfo", r"debug*|1|2\ngpu|3|64\ngpu|1|128+\n")
    assert cluster.partitions() == [cluster.Partition(name="debug", nodes=1, cpus_per_node=2, default=True),
                                    cluster.Partition(name="gpu", nodes=4, cpus_per_node=128, default=False)]
