"""The Hydra launchers of ``hydra/launcher=slurm`` and ``hydra/launcher=local``: hydra-submitit-launcher's
(``configs/hydra/launcher/*.yaml`` name them), with what nlnet adds around a job:

* before submitting, the launcher's settings are checked against the cluster (``sinfo``): a partition
  that does not exist, more nodes or CPUs than a node of the partition has, GPUs without one task each
  give one line naming the ``hydra.launcher`` key;
* each job's id and log are logged when it is submitted, and a job that fails is reported in one line
  with its id and the path of its log;
* a job whose training stopped on the scheduler's preemption signal (Slurm's ``--signal`` before the
  time limit, preemption; ``nlnet.utils.cluster.preemption_signal``), which has written its checkpoint
  by then, is requeued through submitit's checkpoint/requeue mechanism: the same call runs again with
  the same overrides, hence in the same run folder, and resumes from that checkpoint.

Like ``nlnet.config``, a bridge to Hydra (here because Hydra takes launchers from the ``hydra_plugins``
package only): nlnet itself knows nothing of launchers.
"""
from __future__ import annotations

import logging
import re
import signal
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as plugin
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

from nlnet.utils import cluster
from nlnet.utils.errors import ConfigError, UserError

log = logging.getLogger(__name__)

# Keys of the launcher config that go to submitit's executor itself rather than to its job parameters.
_FOLDER_KEY, _INIT_KEYS = "submitit_folder", ("max_num_timeout",)


class JobExited(RuntimeError):
    """A job's task function exited with a status (``error: ...`` is in its log)."""


def _error_line(log_path: Path) -> str | None:
    """The last error a job's log shows: nlnet's ``error: ...`` line or an exception's last line."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    pattern = re.compile(r"^(error: |[\w.]*(Error|Exception|Interrupt)\b)")
    found = [line.strip() for line in lines if pattern.match(line.strip())]
    return found[-1].removeprefix("error: ") if found else None


class _SubmititLauncher(plugin.BaseSubmititLauncher):
    """Submits each row of a sweep as one submitit job (``tasks_per_node`` x ``nodes`` processes)."""

    def check(self) -> None:
        """Fail with one line naming the ``hydra.launcher`` key of a setting the cluster cannot run."""
        gpus, tasks = self.params.get("gpus_per_node"), int(self.params.get("tasks_per_node") or 1)
        if gpus and tasks != int(gpus):
            raise ConfigError(f"hydra.launcher.tasks_per_node={tasks} with gpus_per_node={gpus}: nlnet runs one "
                              f"process per GPU; set hydra.launcher.tasks_per_node={gpus}")

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit  # the submitting process only

        assert self.config is not None
        self.check()
        name = self._EXECUTOR
        executor = submitit.AutoExecutor(
            cluster=name, folder=self.params[_FOLDER_KEY],
            **{f"{name}_{k}": v for k, v in self.params.items() if k in _INIT_KEYS})
        shared = set(OmegaConf.structured(BaseQueueConf).keys())  # the keys every executor takes unprefixed
        executor.update_parameters(**{k if k in shared else f"{name}_{k}": v for k, v in self.params.items()
                                      if k != _FOLDER_KEY and k not in _INIT_KEYS})
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        rows = [list(overrides) for overrides in job_overrides]
        calls = [(row, "hydra.sweep.dir", initial_job_idx + i, f"job_id_for_{initial_job_idx + i}",
                  Singleton.get_state()) for i, row in enumerate(rows)]
        jobs = executor.map_array(self, *zip(*calls))
        logs = [submitit.core.utils.JobPaths(job.paths.folder, job_id=job.job_id, task_id=0) for job in jobs]
        for job, row, paths in zip(jobs, rows, logs):
            log.info(f"submitted {name} job {job.job_id} ({' '.join(filter_overrides(row)) or 'no overrides'}); "
                     f"log: {paths.stdout}")
        returns, failures = [], []
        for job, paths in zip(jobs, logs):
            try:
                returns.append(job.results()[0])
            except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError) as e:
                reason = _error_line(paths.stderr) or str(e).strip().splitlines()[0]
                failures.append(f"{name} job {job.job_id} failed: {reason}; log: {paths.stderr}")
        if failures:
            more = f" (and {len(failures) - 1} more failed jobs)" if len(failures) > 1 else ""
            raise UserError(failures[0] + more)
        return returns

    def __call__(self, *args: Any) -> JobReturn:
        """One row of the sweep, in every task of its job (see the module's docstring for what happens
        when the task function exits: a stop on the preemption signal requeues the job)."""
        try:
            ret = super().__call__(*args)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
            preemption = cluster.preemption_signal()
            if preemption is not None and code == 128 + preemption:
                # training stopped at a step boundary and wrote its checkpoint; submitit's own handler
                # (back in place) checkpoints this call and requeues the job on rank 0, which exits
                signal.raise_signal(preemption)
            if code > 128:  # stopped by a signal: no result, the scheduler says what happened (requeued, ended)
                raise
            raise JobExited(f"the task function exited with status {code}") from None
        if ret.status is JobStatus.FAILED:  # Hydra caught the task function's exception: log it for the user
            try:
                _ = ret.return_value  # raises the exception
            except Exception:
                traceback.print_exc()
                raise
        return ret


class SlurmLauncher(_SubmititLauncher, plugin.SlurmLauncher):
    """``hydra/launcher=slurm``: each row of a sweep is one Slurm job (configs/hydra/launcher/slurm.yaml)."""

    def check(self) -> None:
        super().check()
        found = cluster.partitions()
        wanted = self.params.get("partition")
        partition = next((p for p in found if p.name == wanted or (wanted is None and p.default)), None)
        if partition is None:
            names = ", ".join(p.name for p in found) or "none"
            key = f"hydra.launcher.partition={wanted!r}" if wanted else "hydra.launcher.partition"
            raise ConfigError(f"{key}: no such Slurm partition{'' if wanted else ' (and no default one)'}; "
                              f"sinfo lists: {names}")
        nodes = int(self.params.get("nodes") or 1)
        if nodes > partition.nodes:
            raise ConfigError(f"hydra.launcher.nodes={nodes}: partition {partition.name} has {partition.nodes} "
                              "node(s)")
        tasks, cpus = int(self.params.get("tasks_per_node") or 1), int(self.params.get("cpus_per_task") or 1)
        if tasks * cpus > partition.cpus_per_node:
            raise ConfigError(f"hydra.launcher.tasks_per_node={tasks} x cpus_per_task={cpus} needs {tasks * cpus} "
                              f"CPUs on a node; the nodes of partition {partition.name} have at most "
                              f"{partition.cpus_per_node}")


class LocalLauncher(_SubmititLauncher, plugin.LocalLauncher):
    """``hydra/launcher=local``: each row of a sweep is a submitit job on this machine
    (configs/hydra/launcher/local.yaml)."""
