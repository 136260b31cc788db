"""The parts of the GPU check, in the order they run: a list of :class:`Part`, each a function with its
own time budget.

A new part is one more entry here: a function ``run(settings, recorder)`` (anywhere under
``benchmarks/``; it reads its options from ``settings[name]``, records what it measures with the
recorder and raises ``CheckFailed`` when what it checks does not hold), its budgets on a GPU and in
the CPU rehearsal, and, if a table says more than the raw JSON, a section in ``report.py``. Its
options, if it has any, go into both presets of ``settings.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import report as R


@dataclass(frozen=True, kw_only=True)
class Part:
    """One part of the check.

    Args:
        name: key in the report, in the settings and in ``--budget`` / ``--parts``.
        target: ``"module:function"`` called as ``function(settings, recorder)`` in a child process.
        title: what it measures, for the report.
        budget_s: seconds of wall time it may take on a GPU (``--budget NAME=SECONDS`` overrides).
        rehearsal_budget_s: the same in the CPU rehearsal.
        section: renders its result in the Markdown report (None: the raw JSON).
        needs: parts whose results it reads; it is skipped unless they are ok.
        uses: parts whose results it reads when they have any (e.g. the train step's batch).
        after: background parts that must have ended first (their CPU load would disturb its timings).
        background: started at once and run beside the others (CPU work such as writing videos).
    """

    name: str
    target: str
    title: str
    budget_s: float
    rehearsal_budget_s: float
    section: R.Section | None = None
    needs: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    background: bool = False


PARTS = (
    Part(name="env", target="benchmarks.gpu_check.machine:run", title="machine, versions, bf16 matmul rate",
         budget_s=15, rehearsal_budget_s=30, section=R.env_section),
    Part(name="videos", target="benchmarks.gpu_check.loader:make_videos",
         title="bench videos (256p) and the demo dataset", budget_s=120, rehearsal_budget_s=120,
         section=R.videos_section, background=True),
    Part(name="tests", target="benchmarks.gpu_check.cuda_tests:run", title="CUDA-marked tests (pytest -m gpu)",
         budget_s=90, rehearsal_budget_s=120, section=R.tests_section),
    Part(name="nonlocal", target="benchmarks.nonlocal_block:run", title="non-local block: auto vs reference",
         budget_s=45, rehearsal_budget_s=60, section=R.nonlocal_section),
    Part(name="train", target="benchmarks.model:run_train", title="train steps: I3D R50 and NL I3D R50",
         budget_s=150, rehearsal_budget_s=150, section=R.train_section, after=("videos",)),
    Part(name="pytorchvideo", target="benchmarks.model:run_pytorchvideo", title="nlnet vs pytorchvideo I3D R50",
         budget_s=40, rehearsal_budget_s=90, section=R.pytorchvideo_section),
    Part(name="loader", target="benchmarks.gpu_check.loader:run", title="data loader vs train step",
         budget_s=45, rehearsal_budget_s=60, section=R.loader_section, needs=("videos",), uses=("train",)),
    Part(name="torchrun", target="benchmarks.gpu_check.torchrun:run", title="torchrun demo, stopped and resumed",
         budget_s=75, rehearsal_budget_s=150, section=R.torchrun_section, needs=("videos",)),
    Part(name="decode", target="benchmarks.gpu_check.decode:run",
         title="decoding: CPU vs NVDEC, RGB in the worker vs on the device", budget_s=45, rehearsal_budget_s=120,
         section=R.decode_section, uses=("videos", "train"), after=("videos",)),
)
PART_NAMES = tuple(part.name for part in PARTS)
