"""The data tools as commands, end to end on generated data (subprocesses; what they compute is tested
in tests/data/test_commands.py)."""
import json
import subprocess
from pathlib import Path

import pytest

from helpers import PYTHON, ROOT, tool_env

pytestmark = pytest.mark.slow


def run_tool(tool, *args):
    """``python tools/<tool> args...``; returns (exit status, stdout). A one-line error (``error: ...`` last
    on stderr, status 2, no traceback) is raised as ``UserError(message)``, as the tool's main raises it."""
    from nlnet.utils.errors import UserError

    proc = subprocess.run([PYTHON, str(ROOT / "tools" / tool), *map(str, args)], env=tool_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode == 2:  # the last line (after any progress bar of a set checked before)
        last = proc.stderr.splitlines()[-1]
        assert last.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        raise UserError(last[len("error: "):])
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    return proc.returncode, proc.stdout


@pytest.fixture
def run():
    """``run("tool.py", *args)``: :func:`run_tool`."""
    return run_tool


def test_make_check_and_bench(tmp_path):
    root = tmp_path / "synthetic"
    args = ["--root", root, "--num-classes", 2, "--train-per-class", 2, "--val-per-class", 1,
            "--num-frames", 12, "--size", 48]
    code, out = run_tool("make_synthetic_dataset.py", *args)
    assert code == 0 and "wrote 6 videos" in out
    assert "already complete" in run_tool("make_synthetic_dataset.py", *args)[1]

    with open(root / "train.csv", "a") as f:
        f.write("growing,missing0000,0,1,train\n")
    code, out = run_tool("check_dataset.py", "--root", root, "--annotations", root / "train.csv", "--num-frames", 4,
                         "--sampling-rate", 2, "--report", tmp_path / "report.json")
    assert code == 1  # a video is missing
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] == 4 and len(report["missing"]) == 1
    assert "missing: 1" in (tmp_path / "report.txt").read_text()


def test_prepare(tmp_path):
    from nlnet.data.synthetic import index_frames, write_video

    raw = tmp_path / "raw"
    raw.mkdir()
    write_video(raw / "xyz.mp4", index_frames(30, width=64, height=48), fps=10)
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\nwave,xyz,1,2,train\n")
    args = ["--csv", tmp_path / "k.csv", "--raw", raw, "--out", tmp_path / "out", "--short-side", 32]
    code, out = run_tool("prepare_kinetics.py", *args)
    assert code == 0 and "written: 1" in out
    assert (tmp_path / "out" / "train" / "wave" / "xyz_000001_000002.mp4").is_file()
    assert "already done: 1" in run_tool("prepare_kinetics.py", *args)[1]


# ---- every dataset format: check_dataset --data, prepare_dataset -------------------------------------
@pytest.mark.parametrize("name, overrides", [("ucf101", ["data.split=2"]), ("hmdb51", ["data.split=3"]),
                                             ("ssv2", []), ("folder", [])])
def test_check_dataset_reads_every_format(tmp_path, run, name, overrides):
    import mini_datasets
    make = {"ucf101": mini_datasets.make_ucf101, "hmdb51": mini_datasets.make_hmdb51,
            "ssv2": mini_datasets.make_ssv2, "folder": mini_datasets.make_folder}[name]
    expected = make(tmp_path / name)
    code, out = run("check_dataset.py", "--data", name, f"data.root={tmp_path / name}", *overrides,
                    "data.num_frames=4", "data.sampling_rate=2", "--report", tmp_path / "check.json")
    assert code == 0, out
    sizes = {"ucf101": expected.get(2, {}), "hmdb51": expected.get(3, {})}.get(name) or expected
    for split, listed in zip(("train", "val"), sizes.values()):
        report = json.loads((tmp_path / f"check_{split}.json").read_text())
        assert report["ok"] == report["total"] == len(listed) and not report["unreadable"]


def test_check_dataset_data_errors(tmp_path, run):
    import mini_datasets
    from nlnet.utils.errors import UserError
    mini_datasets.make_ucf101(tmp_path / "ucf")
    with pytest.raises(UserError, match=r"^data.split=4: must be an integer in \[1, 3\]$"):
        run("check_dataset.py", "--data", "ucf101", f"data.root={tmp_path / 'ucf'}", "data.split=4")
    (tmp_path / "ucf" / "UCF-101" / "YoYo" / "v_YoYo_g01_c01.avi").unlink()
    code, out = run("check_dataset.py", "--data", "ucf101", f"data.root={tmp_path / 'ucf'}",
                    "--report", tmp_path / "check.json")
    assert code == 1  # one test video is missing
    assert len(json.loads((tmp_path / "check_val.json").read_text())["missing"]) == 1


def test_prepare_dataset_reencodes_ssv2(tmp_path, run):
    import mini_datasets
    from nlnet.data.decoding import VideoReader
    from nlnet.data.readers import SSv2Reader
    expected = mini_datasets.make_ssv2(tmp_path / "raw")
    out = tmp_path / "prepared"
    code, text = run("prepare_dataset.py", "--src", tmp_path / "raw", "--out", out, "--short-side", 32,
                     "--keyframe-interval", 0.5)
    assert code == 0 and "written: 10, already done: 0, other files copied: 3, failed: 0" in text, text
    reader = SSv2Reader(root=out / "20bn-something-something-v2",
                        labels=out / "labels" / "something-something-v2-labels.json",
                        annotations=out / "labels" / "something-something-v2-train.json")
    table = reader.read()
    assert [(Path(r.path).name, r.label) for r in table.records] == [
        (name.replace(".webm", ".mp4"), label) for name, label in expected["train"]]
    with VideoReader(table.records[0].path) as video:
        assert video.stream.codec_context.name == "h264" and video.info.num_frames == 16
    assert "written: 0, already done: 10" in run("prepare_dataset.py", "--src", tmp_path / "raw", "--out", out)[1]


def _bad_ucf_label(root):
    path = root / "ucfTrainTestlist" / "trainlist01.txt"
    path.write_text(path.read_text() + "YoYo/v_YoYo_g07_c01.avi 102\r\n")
    return "ucf101", [], rf"{path}:13: label 102 is not in classInd.txt \(1..3\)"


def _bad_ssv2_template(root):
    path = root / "labels" / "something-something-v2-train.json"
    path.write_text(path.read_text().replace("Holding [something] next to [something]", "Juggling [something]"))
    return "ssv2", [], rf"{path}:2: template 'Juggling something' \(video 1000\) is not in "


def _empty_class_folder(root):
    (root / "val" / "emu").mkdir()
    return "folder", [], rf"{root / 'val' / 'emu'}: empty class folder"


def _missing_hmdb_split_files(root):
    for path in (root / "testTrainMulti_7030_splits").glob("*_test_split2.txt"):
        path.unlink()
    return "hmdb51", ["data.split=2"], rf"{root / 'testTrainMulti_7030_splits'}: no <class>_test_split2.txt file"


@pytest.mark.parametrize("spoil", [_bad_ucf_label, _bad_ssv2_template, _empty_class_folder, _missing_hmdb_split_files])
def test_bad_dataset_inputs_are_one_line(tmp_path, run, spoil):
    import mini_datasets
    from nlnet.utils.errors import UserError
    make = {"_bad_ucf_label": mini_datasets.make_ucf101, "_bad_ssv2_template": mini_datasets.make_ssv2,
            "_empty_class_folder": mini_datasets.make_folder,
            "_missing_hmdb_split_files": mini_datasets.make_hmdb51}[spoil.__name__]
    make(tmp_path / "data")
    name, overrides, message = spoil(tmp_path / "data")
    with pytest.raises(UserError, match=message) as error:
        run("check_dataset.py", "--data", name, f"data.root={tmp_path / 'data'}", *overrides,
            "--report", tmp_path / "check.json")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_train_with_a_bad_split_file_exits_with_one_line(tmp_path):
    import re
    import subprocess

    import mini_datasets
    mini_datasets.make_ucf101(tmp_path / "ucf")
    _, _, message = _bad_ucf_label(tmp_path / "ucf")
    done = subprocess.run([PYTHON, str(ROOT / "tools" / "train.py"), "data=ucf101", "model=tiny",
                           f"data.root={tmp_path / 'ucf'}", "model.net.num_classes=3", "trainer.device=cpu",
                           f"run_dir={tmp_path / 'run'}"], cwd=tmp_path, env=tool_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert done.stderr.startswith("error: data.train: ") and re.search(message, done.stderr), done.stderr
