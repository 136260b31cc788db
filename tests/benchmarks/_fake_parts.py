"""Parts for the conductor's tests (run in child processes as ``tests.benchmarks._fake_parts:NAME``)."""
import time

from benchmarks.gpu_check.record import CheckFailed


def measures(settings, recorder):
    recorder.set(value=42, got=settings["results"].get("env", {}).get("value"))


def fails(settings, recorder):
    recorder.set(partial=1)
    raise CheckFailed("the thing did not hold")


def hangs(settings, recorder):
    recorder.append("rows", {"row": 1})
    time.sleep(600)
