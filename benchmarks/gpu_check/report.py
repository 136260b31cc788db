"""The GPU check's Markdown report: a summary table of the parts, then one section per part.

Each part renders its own section (``Part.section``); a section that cannot be rendered (a part that
died half-way and left odd results) says so, shows the raw result, and the rest of the report is
still written.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..table import fmt, markdown_table

Section = Callable[[dict[str, Any], dict[str, Any]], list[str]]


def measured_rows(result: dict[str, Any], keys: Sequence[str], width: int,
                  render: Callable[[dict[str, Any]], Sequence[Any]], shown: Sequence[str] = ("ok",)) -> list:
    """A part's table rows: ``render(row)`` for measured rows; the others show their keys, then their
    status and reason."""
    rows = []
    for row in result.get("rows", []):
        if row.get("status") in shown:
            rows.append(render(row))
            continue
        cells = [", ".join(map(str, v)) if isinstance(v, list) else v for v in (row.get(k, "-") for k in keys)]
        rows.append((*cells, f"{row.get('status')}: {row.get('reason', '')}", *["-"] * (width - len(keys) - 1)))
    return rows


def sci(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def sig(value: float | None) -> str:
    """Three significant digits (figures of tiny rehearsal models stay readable)."""
    return "-" if value is None else f"{value:.3g}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.3g}%"


# One section per part (Part.section); each reads only its part's result and the report.
def env_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    packages = ", ".join(f"{k} {v}" for k, v in (r.get("packages") or {}).items() if v)
    return [f"- device: {r.get('device_name')} (compute capability {r.get('capability', '-')}, "
            f"{r.get('memory_gib', '-')} GiB, {r.get('multiprocessors', '-')} SMs); CPUs: {r.get('cpus')}",
            f"- nvidia-smi: {r.get('nvidia_smi') or '-'}",
            f"- Python {r.get('python')}, torch {r.get('torch')}, CUDA {r.get('cuda')}, cuDNN {r.get('cudnn', '-')}; "
            f"cudnn.benchmark={r.get('cudnn_benchmark')}, cudnn.allow_tf32={r.get('cudnn_allow_tf32')}, "
            f"matmul.allow_tf32={r.get('matmul_allow_tf32')}",
            f"- packages: {packages}",
            f"- bf16 matrix product {r.get('matmul_size')}^3, random data: **{fmt(r.get('matmul_bf16_tflops'), 1)} "
            f"TFLOP/s** measured; dense bf16 peak used for MFU: {fmt(r.get('peak_bf16_tflops'), 1)} TFLOP/s "
            f"({r.get('peak_source')})"]


def tests_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    counts = r.get("counts", {})
    lines = [f"`{r.get('command', '')}`: " + ", ".join(f"{v} {k}" for k, v in counts.items()), ""]
    rows = [(c["test"], c["outcome"], fmt(c["seconds"], 1), c["message"]) for c in r.get("cases", [])]
    return lines + markdown_table(["test", "outcome", "s", "message"], rows)


def nonlocal_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    def impl(row: dict[str, Any], name: str, key: str, digits: int) -> str:
        case = row.get(name) or {}
        return fmt(case.get(key), digits) if case.get("status") == "ok" else case.get("status", "-")

    def render(row: dict[str, Any]) -> Sequence[Any]:
        return (", ".join(map(str, row["shape"])), row["pairwise"], row["precision"],
                impl(row, "auto", "ms", 2), impl(row, "reference", "ms", 2), fmt(row.get("speedup"), 2, "x"),
                impl(row, "auto", "peak_gib", 2), impl(row, "reference", "peak_gib", 2),
                sci(row.get("rel_err_auto_vs_reference")), sci((row.get("auto") or {}).get("rel_err_vs_fp64")),
                sci((row.get("reference") or {}).get("rel_err_vs_fp64")))

    rows = measured_rows(r, ("shape", "pairwise"), 11, render, shown=("ok", "oom"))
    header = ["input (B, C, T, H, W)", "pairwise", "precision", "auto ms", "reference ms", "speed-up", "auto GiB",
              "reference GiB", "auto vs reference", "auto vs fp64", "reference vs fp64"]
    return (["Forward + backward of one block (median) and peak memory above the input (CUDA max allocated); "
             "relative error ||a - b|| / ||b|| of the residual branch of a copy with default conv init and no BN "
             "(benchmarks/nonlocal_block.py says why).", ""] + markdown_table(header, rows))


def train_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    matmul = ((report["parts"].get("env") or {}).get("result") or {}).get("matmul_bf16_tflops")
    def render(row: dict[str, Any]) -> Sequence[Any]:
        vs_matmul = row["model_tflops"] / matmul if matmul else None
        return (row["model"], row["clip"], row["mode"], row["batch"], fmt(row["step_ms"], 1),
                sig(row["clips_per_s"]), fmt(row["peak_gib"], 1), sig(row["fwd_gmacs_per_clip"]),
                sig(row["model_tflops"]), percent(row.get("mfu")), percent(vs_matmul))

    rows = measured_rows(r, ("model", "clip", "mode"), 11, render)
    header = ["model", "clip", "mode", "batch", "ms/step", "clips/s", "peak GiB", "fwd GMACs/clip", "model TFLOP/s",
              "MFU (peak)", "MFU (matmul)"]
    return ([f"{r.get('flop_convention', '')}; peak {fmt(r.get('peak_tflops'), 1)} TFLOP/s ({r.get('peak_source')}); "
             f"MFU (matmul): against the bf16 matrix-product rate measured in part env.", ""] + markdown_table(header, rows))


def pytorchvideo_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    def render(row: dict[str, Any]) -> Sequence[Any]:
        nl, pv = row["cases"].values()
        return (row["precision"], row["batch"], fmt(nl["step_ms"], 1), fmt(pv["step_ms"], 1),
                fmt(row["ratio"], 3, "x"), fmt(nl["step_peak_gib"], 1), fmt(pv["step_peak_gib"], 1))

    rows = measured_rows(r, ("precision",), 7, render)
    return (["Same trainer, batch, precision and input, steps interleaved; ratio = pytorchvideo ms / nlnet ms "
             "(above 1: nlnet faster). Step GiB: peak during one step above the memory held before it.", ""]
            + markdown_table(["precision", "batch", "nlnet ms/step", "pytorchvideo ms/step", "ratio", "nlnet step GiB",
                     "pytorchvideo step GiB"], rows))


def loader_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    def render(row: dict[str, Any]) -> Sequence[Any]:
        step = f"{sig(row.get('step_clips_per_s'))} ({row.get('model')}, {row.get('step_mode', '-')})"
        return (row["clip"], row["batch"], sig(row["clips_per_s"]), fmt(row["first_wave_s"], 1), step,
                row.get("verdict", "-"), fmt(row.get("factor"), 2, "x"))

    rows = measured_rows(r, ("clip",), 7, render)
    return ([f"{r.get('workers')} workers ({r.get('cpus')} CPUs), {r.get('videos')} bench videos; clips/s over the "
             "timed whole waves of batches (one per worker) after the first, each batch copied to the device.", ""]
            + markdown_table(["clip", "batch", "loader clips/s", "first wave s", "train step clips/s (fastest mode)",
                     "verdict", "factor"], rows))


def torchrun_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    first, second = r.get("first") or {}, r.get("second") or {}
    return [f"- command: `{r.get('command', '')}`",
            f"- first run: SIGTERM after iteration {first.get('signalled_at')}, exit code {first.get('exit_code')}, "
            f"{fmt(first.get('seconds'), 1)} s; device {first.get('device')}, processes {first.get('processes')}",
            f"- stop: {r.get('stop')}; newest checkpoint: iteration {r.get('stopped_at')}",
            "- process group: " + ("one per torchrun rank" if (first.get("processes") or 1) > 1 else
                                   "none (nlnet.utils.distributed starts one only for WORLD_SIZE > 1; NCCL is "
                                   "covered by the CUDA-marked one-process DDP test)"),
            f"- second run: resumed from iteration {second.get('resumed_from')}, finished {second.get('finished')} of "
            f"{r.get('max_iter')}, exit code {second.get('exit_code')}, {fmt(second.get('seconds'), 1)} s; "
            f"results.json written: {r.get('results_json')}"]


def decode_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    def render(row: dict[str, Any]) -> Sequence[Any]:
        return (row["decode_device"], row["color_convert"], row["workers"], sig(row["clips_per_s"]),
                fmt(row.get("cpu_s_per_clip"), 3), row.get("verdict", "-"), fmt(row.get("factor"), 2, "x"),
                ", ".join(f"{k} ({v})" for k, v in sorted(row.get("decoders", {}).items())))

    planes, items = r.get("planes") or {}, (r.get("item_cpu_ms") or {}).get("best_ms") or {}
    if planes.get("status") != "ok":
        same = f"{planes.get('status')} ({planes.get('reason')})"
    elif planes.get("identical"):
        same = "identical on every frame"
    else:
        same = f"{planes.get('differing_frames')} frames differ (max |difference| {planes.get('max_abs_diff')})"
    clip = r.get("clip") or {}
    rows = measured_rows(r, ("decode_device", "color_convert", "workers"), 8, render)
    return ([f"- {clip.get('num_frames')}x{clip.get('sampling_rate')} clips, {clip.get('crop_size')} crops, batch "
             f"{r.get('batch')}, {r.get('videos')} videos; {r.get('cpus')} CPUs; libnvcuvid: "
             f"{r.get('libnvcuvid') or 'not found'}; PyAV hw devices: {', '.join(r.get('hwdevices') or []) or '-'}",
             f"- NVDEC planes vs FFmpeg's software planes: {same}",
             f"- CPU ms per item in one process: color_convert=worker {fmt(items.get('worker'), 1)}, "
             f"device {fmt(items.get('device'), 1)} (+ yuv_to_rgb on the CPU {fmt(items.get('yuv_to_rgb_on_cpu'), 1)})",
             f"- train step (verdict): {sig(r.get('step_clips_per_s'))} clips/s ({r.get('step_mode') or '-'})", ""]
            + markdown_table(["decode_device", "color_convert", "workers", "clips/s", "CPU-s/clip", "verdict",
                              "factor", "decoders (clips)"], rows))


def videos_section(r: dict[str, Any], report: dict[str, Any]) -> list[str]:
    return [f"- {r.get('bench_videos')} bench videos {r.get('bench_size')}, {r.get('bench_frames')} frames, keyframe "
            f"every {r.get('gop_size')} frames, in {fmt(r.get('bench_seconds'), 1)} s; demo dataset in "
            f"{fmt(r.get('demo_seconds'), 1)} s"]


def render(report: dict[str, Any], sections: Mapping[str, Section | None]) -> str:
    """The whole Markdown report; ``sections``: part name -> its section (None: the raw result)."""
    env = (report["parts"].get("env") or {}).get("result") or {}
    lines = [f"# nlnet GPU check ({report['mode']})", "",
             f"{env.get('device_name', 'unknown device')}; started {report['started']}; "
             f"{fmt(report.get('seconds'), 0)} s of a {report['total_budget_s']:.0f} s budget; "
             f"status: **{report.get('status', 'running')}**", ""]
    if report["mode"] == "cpu-rehearsal":
        lines += ["CPU rehearsal: tiny shapes on the CPU, CUDA-marked tests skipped. It shows that every part runs; "
                  "its numbers say nothing about a GPU.", ""]
    rows = [(name, e["status"], fmt(e.get("seconds"), 1), fmt(e.get("budget_s"), 0), e.get("reason", ""))
            for name, e in report["parts"].items()]
    lines += markdown_table(["part", "status", "s", "budget s", "reason"], rows)
    for name, entry in report["parts"].items():
        lines += ["", f"## {name}: {entry['title']}", ""]
        if not entry.get("result"):
            lines.append(f"{entry['status']}: {entry.get('reason') or 'no results'}")
            continue
        try:
            lines += (sections.get(name) or _raw)(entry["result"], report)
        except Exception as error:  # a half-written result must not cost the rest of the report
            lines += [f"(could not render: {type(error).__name__}: {error})", ""] + _raw(entry["result"], report)
    return "\n".join(lines) + "\n"


def _raw(result: dict[str, Any], report: dict[str, Any]) -> list[str]:
    return ["```json", json.dumps(result, indent=1, default=str)[:4000], "```"]
