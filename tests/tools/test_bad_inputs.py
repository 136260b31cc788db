"""The bad-input table: every input a careful user can get wrong ends the tool with exactly one line
``error: ...`` on stderr (naming the key, file or value and what is valid), exit status 2, no traceback.

Most rows run in this process through the tools' own error layer (``nlnet.utils.cli.one_line_errors``
around ``train``/``test``/the data functions); the last rows run the tools as commands, for what only
a command shows (Hydra's parsing, argparse, the exit status).
"""
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch

from helpers import PYTHON, ROOT, TINY_DATASET, compose, tiny_overrides, tool_env
from nlnet.data.synthetic import SYNTHETIC_CLASSES
from nlnet.utils.cli import one_line_errors


def one_line_error(run, capsys) -> str:
    """Run ``run()`` as a tool does; return its one-line message (asserting exactly one line, status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        with one_line_errors():
            run()
    lines = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0][len("error: "):]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_videos):
    """Bad files the table refers to as {name}."""
    from nlnet.checkpoint.files import atomic_save
    from nlnet.engine.train import train

    folder = tmp_path_factory.mktemp("bad_inputs")
    header = "label,youtube_id,time_start,time_end,split\n"
    (folder / "empty.csv").write_text(header)
    (folder / "blank.csv").write_text("")
    (folder / "columns.csv").write_text("name,id,start,end\nrun,abc,0,10\n")
    (folder / "times.csv").write_text(header + "run,abc,zero,ten,train\n")
    run_dir = folder / "run"
    train(compose("train", tiny_overrides(tiny_videos, str(run_dir)) + ["trainer.max_iter=1", "logger=none",
                                                                        "trainer.test_at_end=false"]))
    good = run_dir / "checkpoints" / "checkpoint_0000001.pt"
    data = good.read_bytes()
    (folder / "empty.pt").write_bytes(b"")
    (folder / "text.pt").write_text("model: weights\n")
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    for position in range(3000, 3064):
        flipped[position] ^= 0xFF
    (folder / "flipped.pt").write_bytes(bytes(flipped))
    state = torch.load(good, weights_only=True)
    state["model"] = torch.nn.Linear(3, 2).state_dict()  # another model's weights
    atomic_save(state, str(folder / "other_model.pt"))
    torch.save(state["model"], folder / "bare.pt")  # a bare state_dict, as model.state_dict() gives it
    torch.save({"conv1.weight": CodeRunner()}, folder / "runs_code.pt")  # unpickling it would call print()
    classes = sorted(SYNTHETIC_CLASSES[:TINY_DATASET["num_classes"]])  # the tiny dataset's, as trained
    (folder / "seven_classes.txt").write_text("\n".join(classes + ["wave", "jump", "sit", "stand"]) + "\n")
    (folder / "reordered.txt").write_text("\n".join(classes[::-1]) + "\n")
    (folder / "a_file").write_text("not a folder\n")
    (folder / "text.mp4").write_text("not a video\n")
    return {"dir": str(folder), "good": str(good), "videos": tiny_videos, "classes": classes}


class CodeRunner:
    """An object whose unpickling runs code (``print``): what a tampered weights file holds."""

    def __reduce__(self):
        return print, ("unpickling ran code",)


TRAIN_TABLE = [
    ("data.batch_size=2.5", "data.batch_size=2.5: must be an integer >= 1"),
    ("data.batch_size=-1", "data.batch_size=-1: must be an integer >= 1"),
    ("data.batch_size=64", "the training set has 12 clips, fewer than one batch on every rank (data.batch_size=64 x 1"),
    ("data.num_workers=-1", "data.num_workers=-1: must be an integer >= 0"),
    ("data.num_frames=0", "data.num_frames=0: must be an integer >= 1"),
    ("data.sampling_rate=two", "data.sampling_rate='two': must be an integer >= 1"),
    ("data.train.crop_size=0", "data.train.crop_size=0: must be an integer >= 1"),
    ("data.train.train_scale=[40,32]", "data.train.train_scale: train_scale=(40, 32) must be ordered"),
    ("data.train.flip_prob=1.5", "data.train.flip_prob=1.5: must be a number in [0, 1]"),
    ("data.val.num_clips=0", "data.val.num_clips=0: must be an integer >= 1"),
    ("data.max_frame_pixels=0", "data.max_frame_pixels=0: must be an integer >= 1 or null"),
    ("data.decode_timeout=0", "data.decode_timeout=0: must be a number > 0 or null"),
    ("trainer.max_iter=0", "trainer.max_iter=0: must be an integer >= 1"),
    ("trainer.checkpoint_period=-5", "trainer.checkpoint_period=-5: must be an integer >= 0"),
    ("trainer.keep_last=0", "trainer.keep_last=0: must be an integer >= 1"),
    ("trainer.eval_period=-1", "trainer.eval_period=-1: must be an integer >= 0"),
    ("trainer.log_period=0", "trainer.log_period=0: must be an integer >= 1"),
    ("trainer.grad_clip_norm=0", "trainer.grad_clip_norm=0: must be a number > 0 or null"),
    ("trainer.precision=fp8", "trainer.precision='fp8': valid choices are fp32, bf16, fp16"),
    ("trainer.device=tpu", "trainer.device='tpu': valid choices are auto, cpu, cuda"),
    ("schedule.warmup_iters=-1", "schedule.warmup_iters=-1: must be an integer >= 0"),
    ("optim.lr=0", "optim.lr=0: must be a number > 0"),
    ("optim.weight_decay=-1e-4", "optim.weight_decay=-0.0001: must be a number >= 0"),
    ("model.net.num_classes=5", "model.net.num_classes=5 but"),
    ("model.net.dropout=1.5", "model.net.dropout=1.5: must be a number in [0, 1]"),
    ("+model.net.colour=red", "model.net: ResNet3d.__init__() got an unexpected keyword argument 'colour'"),
    ("model.net.dpeth=50", "unknown config key 'model.net.dpeth' (check its spelling; to add a new key write "
                           "+model.net.dpeth=VALUE)"),
    ("experiment=nope", "Could not find 'experiment/nope' Available options in 'experiment': c2d_r50_kinetics"),
    ("data.root={dir}/nowhere", "data.root: directory not found: {dir}/nowhere"),
    ("data.train.annotations={dir}/missing.csv", "data.train.annotations: file not found: {dir}/missing.csv"),
    ("data.train.annotations={dir}/empty.csv", "data.train: annotation file {dir}/empty.csv lists no videos"),
    ("data.train.annotations={dir}/blank.csv", "data.train: annotation file {dir}/blank.csv lists no videos"),
    ("data.train.annotations={dir}/columns.csv", "data.train: {dir}/columns.csv:1: expected 'relative/path label_index' "
                                                 "or a Kinetics CSV header"),
    ("data.train.annotations={dir}/times.csv", "data.train: {dir}/times.csv:2: expected label,youtube_id,time_start,"
                                               "time_end,split with numeric times"),
    ("resume={dir}/missing.pt", "checkpoint not found: {dir}/missing.pt"),
    ("resume={dir}/empty.pt", "checkpoint {dir}/empty.pt is empty"),
    ("resume={dir}/text.pt", "checkpoint {dir}/text.pt cannot be loaded: truncated, damaged or not a checkpoint"),
    ("resume={dir}/truncated.pt", "checkpoint {dir}/truncated.pt cannot be loaded: truncated, damaged or not a "
                                  "checkpoint"),
    ("resume={dir}/flipped.pt", "checkpoint {dir}/flipped.pt is damaged"),
    ("resume={dir}/other_model.pt", "checkpoint {dir}/other_model.pt does not fit the model"),
    ("resume={dir}/bare.pt", "resume={dir}/bare.pt: not a checkpoint of an nlnet run (a bare state_dict of "),
    ("model.init_checkpoint={dir}/bare.pt", "model.init_checkpoint={dir}/bare.pt: not a checkpoint of an nlnet run "
                                            "(a bare state_dict of "),
    ("model.pretrained={dir}/runs_code.pt", "model.pretrained={dir}/runs_code.pt: {dir}/runs_code.pt holds objects "
                                            "other than tensors and plain containers: refused, since loading it "
                                            "could run code"),
    ("model.pretrained={dir}/text.pt", "model.pretrained={dir}/text.pt: {dir}/text.pt cannot be loaded: empty, "
                                       "truncated or not written by torch.save"),
    ("data.label_map={dir}/seven_classes.txt", "model.net.num_classes=3 but the label map {dir}/seven_classes.txt "
                                               "lists 7 classes: set model.net.num_classes=7"),
    ("run_dir={dir}/a_file", "run_dir={dir}/a_file: is a file, not a folder"),
]
if not torch.cuda.is_available():
    TRAIN_TABLE.append(("trainer.device=cuda", "trainer.device=cuda but this machine has 0 CUDA devices"))


@pytest.mark.parametrize("override, expected", TRAIN_TABLE, ids=[row[0].split("{")[0] for row in TRAIN_TABLE])
def test_train_bad_input_is_one_line(files, tmp_path, capsys, override, expected):
    from nlnet.engine.train import train

    run_dir = None if override.startswith("run_dir=") else str(tmp_path / "run")
    overrides = tiny_overrides(files["videos"], run_dir) + ["logger=none", override.format(**files)]
    message = one_line_error(lambda: train(compose("train", overrides)), capsys)
    assert expected.format(**files) in message
    assert not (tmp_path / "run" / "checkpoints").exists() or override.startswith("resume")
    assert "unpickling ran code" not in capsys.readouterr().out


def test_unset_dataset_root_is_one_line(capsys, tmp_path):
    from nlnet.engine.train import train

    message = one_line_error(lambda: train(compose("train", ["experiment=nl_r50_kinetics", f"run_dir={tmp_path}"])),
                             capsys)
    assert message == "data.root is not set: pass data.root=VALUE on the command line"


TEST_TABLE = [
    (["checkpoint={dir}/missing.pt"], "checkpoint: file not found: {dir}/missing.pt"),
    (["checkpoint={dir}/text.pt"], "checkpoint {dir}/text.pt cannot be loaded: truncated, damaged or not a checkpoint"),
    (["checkpoint={dir}/empty.pt"], "checkpoint {dir}/empty.pt is empty"),
    (["checkpoint={dir}/truncated.pt"], "checkpoint {dir}/truncated.pt cannot be loaded"),
    (["checkpoint={dir}/flipped.pt"], "checkpoint {dir}/flipped.pt is damaged"),
    (["checkpoint={dir}/other_model.pt"], "checkpoint {dir}/other_model.pt does not fit the model"),
    (["checkpoint={good}", "data.num_frames=0"], "data.num_frames=0: must be an integer >= 1"),
    (["checkpoint={good}", "data.val.num_crops=-3"], "data.val.num_crops=-3: must be an integer >= 1"),
    (["checkpoint={good}", "data=kinetics"], "data=kinetics: a checkpoint's data cannot be swapped"),
    (["checkpoint={good}", "output_dir={dir}/a_file"], "output_dir={dir}/a_file: is a file, not a folder"),
    (["checkpoint={good}", "data.label_map={dir}/reordered.txt"],
     "data.val.label_map={dir}/reordered.txt: lists the checkpoint's 3 classes in another order (index 0 is "
     "{classes[2]!r} here, {classes[0]!r} in the checkpoint): use the label map the checkpoint was trained with"),
]


@pytest.mark.parametrize("args, expected", TEST_TABLE, ids=[" ".join(row[0]).split("{")[-1] for row in TEST_TABLE])
def test_test_tool_bad_input_is_one_line(files, tmp_path, capsys, args, expected):
    from nlnet.config import apply_overrides
    from nlnet.checkpoint.files import read_checkpoint_config
    from nlnet.engine.test import test

    args = [a.format(**files) for a in args] + ["data.num_workers=0"]
    if not any(a.startswith("output_dir=") for a in args):
        args.append(f"output_dir={tmp_path}")

    def run():  # what tools/test.py's main does
        cfg = compose("test", args)
        if not Path(cfg.checkpoint).is_file():
            from nlnet.utils.errors import ConfigError

            raise ConfigError(f"checkpoint: file not found: {cfg.checkpoint}")
        test(apply_overrides(read_checkpoint_config(cfg.checkpoint), cfg, args, own_keys=("checkpoint", "output_dir")))

    assert expected.format(**files) in one_line_error(run, capsys)


def test_data_tools_bad_input_is_one_line(files, tmp_path, capsys):
    from nlnet.data.check import check_dataset
    from nlnet.data.prepare import prepare_kinetics

    folder = files["dir"]
    rows = [
        (lambda: prepare_kinetics([f"{folder}/empty.csv"], folder, tmp_path), f"{folder}/empty.csv lists no videos"),
        (lambda: prepare_kinetics([f"{folder}/columns.csv"], folder, tmp_path),
         f"{folder}/columns.csv: not a Kinetics CSV: columns ['label', 'youtube_id', 'time_start', 'time_end'] are missing"),
        (lambda: prepare_kinetics([f"{folder}/nope.csv"], folder, tmp_path), f"CSV file not found: {folder}/nope.csv"),
        (lambda: prepare_kinetics([f"{folder}/empty.csv", f"{folder}/sub/empty.csv"], folder, tmp_path),
         "would write the same annotation file"),
        (lambda: check_dataset(f"{folder}/empty.csv", folder, progress=False), f"{folder}/empty.csv lists no videos"),
        (lambda: check_dataset(f"{folder}/columns.csv", folder, progress=False), "expected 'relative/path label_index'"),
        (lambda: check_dataset(f"{folder}/nope.csv", folder, progress=False), f"annotation file {folder}/nope.csv does not exist"),
    ]
    for run, expected in rows:
        assert expected in one_line_error(run, capsys)


def test_synthetic_dataset_and_dataset_check_bad_input_is_one_line(files, tmp_path, capsys, monkeypatch):
    from nlnet.data.commands import run_check_dataset, run_make_synthetic

    folder = files["dir"]
    check = dict(annotations=f"{files['videos']}/val.csv", root=files["videos"], num_frames=4, sampling_rate=1,
                 progress=False)
    rows = [
        (lambda: run_make_synthetic(f"{folder}/a_file", num_classes=1, train_per_class=1, val_per_class=0),
         f"root={folder}/a_file: is a file, not a folder"),
        (lambda: run_make_synthetic(tmp_path / "s", num_classes=0), "num_classes=0: choose 1..6"),
        (lambda: run_make_synthetic(tmp_path / "s", num_classes=1, size=33),
         "size=33: width and height must be even (H.264 yuv420p)"),
        (lambda: run_check_dataset(**check, report=f"{folder}/a_file/report.json"),
         f"cannot write {folder}/a_file/report.json: {folder}/a_file is a file, not a folder"),
    ]
    for run, expected in rows:
        assert expected in one_line_error(run, capsys)
    assert not (tmp_path / "s").exists()

    def unwritable(*args, **kwargs):  # a folder the user may not write in (as root, chmod would not stop us)
        raise PermissionError(13, "Permission denied", os.path.join(kwargs["dir"], ".tmp-x1y2z3.json"))

    monkeypatch.setattr(tempfile, "mkstemp", unwritable)
    assert one_line_error(lambda: run_check_dataset(**check, report=tmp_path / "report.json"), capsys) == \
        f"[Errno 13] cannot write {tmp_path / 'report.json'}: Permission denied"


def test_visualize_a_file_that_is_no_video_is_one_line(files, capsys):
    from nlnet.viz.visualize import visualize

    cfg = compose("visualize", [f"checkpoint={files['good']}", f"video={files['dir']}/text.mp4"])
    assert one_line_error(lambda: visualize(cfg), capsys).startswith(f"{files['dir']}/text.mp4: cannot open: ")


def run_tool(*args):
    return subprocess.run([PYTHON, str(ROOT / "tools" / args[0]), *map(str, args[1:])], env=tool_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, expected", [
    (["train.py", "data.batch_size=[1"], "no viable alternative at input '[1'"),
    (["prepare_kinetics.py", "--csv", "{dir}/empty.csv", "--raw", "{dir}/no_downloads", "--out", "{out}"],
     "folder of raw downloads not found: {dir}/no_downloads"),
    (["check_dataset.py", "--root", "{dir}", "--annotations", "{dir}/empty.csv", "--report", "{out}/r.json"],
     "annotation file {dir}/empty.csv lists no videos"),
    (["make_synthetic_dataset.py", "--root", "{out}/synthetic", "--num-classes", "0"],
     "--num-classes 0: must be at least 1 and at most 6"),
])
@pytest.mark.slow
def test_tools_as_commands_print_one_line(files, tmp_path, args, expected):
    args = [a.format(dir=files["dir"], out=tmp_path) for a in args]
    proc = run_tool(*args, *([f"hydra.run.dir={tmp_path}"] if args[0] == "train.py" else []))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: "), proc.stderr
    assert expected.format(dir=files["dir"], out=tmp_path) in proc.stderr


def test_a_full_disk_is_one_line(files, tmp_path, capsys, monkeypatch):
    import errno

    import nlnet.checkpoint.files as checkpoint
    from nlnet.engine.train import train

    def no_space(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device", f.name)

    monkeypatch.setattr(checkpoint.torch, "save", no_space)
    overrides = tiny_overrides(files["videos"], str(tmp_path / "run")) + ["logger=none", "data.num_workers=1"]
    message = one_line_error(lambda: train(compose("train", overrides)), capsys)
    assert message.startswith("[Errno 28] No space left on device: ") and ".tmp-" in message
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))  # nothing half-written left


def test_test_tool_without_a_checkpoint_is_one_line(capsys):
    message = one_line_error(lambda: compose("test", []).checkpoint, capsys)
    assert message == "checkpoint is not set: pass checkpoint=VALUE on the command line"


def test_command_line_options_out_of_range_are_one_line(capsys):
    from nlnet.utils.cli import ArgumentParser

    parser = ArgumentParser(prog="prepare_kinetics.py")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--csv", required=True)
    args = parser.parse_args(["--csv", "a.csv", "--workers", "0"])
    assert one_line_error(lambda: parser.require("--workers", args.workers, 1), capsys) == \
        "--workers 0: must be at least 1 (usage: prepare_kinetics.py --help)"
    assert one_line_error(lambda: parser.parse_args([]), capsys) == \
        "the following arguments are required: --csv (usage: prepare_kinetics.py --help)"
