"""check_dataset: missing, unreadable and too-short videos are reported."""
import numpy as np

from nlnet.data.check import check_dataset, check_video, format_report
from nlnet.data.synthetic import index_frames, write_audio_only, write_video

HEADER = "label,youtube_id,time_start,time_end,split\n"


def test_report(tmp_path):
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    write_video(folder / "good_000000_000010.mp4", index_frames(20), fps=10)
    write_video(folder / "short_000000_000010.mp4", index_frames(3), fps=10)
    data = (folder / "good_000000_000010.mp4").read_bytes()
    (folder / "trunc_000000_000010.mp4").write_bytes(data[: len(data) // 2])
    (folder / "zero_000000_000010.mp4").write_bytes(b"")
    (folder / "text_000000_000010.mp4").write_text("hello")
    write_audio_only(folder / "audio_000000_000010.mp4")
    ids = ["good", "short", "trunc", "zero", "text", "audio", "gone"]
    (tmp_path / "train.csv").write_text(HEADER + "".join(f"a,{i},0,10,train\n" for i in ids))
    report = check_dataset(tmp_path / "train.csv", tmp_path, num_frames=4, sampling_rate=2, progress=False)
    assert report["total"] == 7 and report["ok"] == 1 and len(report["missing"]) == 1
    assert sorted(p.split("/")[-1][:-18] for p in report["unreadable"]) == ["audio", "text", "trunc", "zero"]
    assert [p.split("/")[-1][:-18] for p in report["too_short"]] == ["short"]
    text = format_report(report)
    assert "unreadable: 4" in text and "short_000000_000010.mp4" in text
    full = check_dataset(tmp_path / "train.csv", tmp_path, num_frames=4, sampling_rate=2, full=True,
                         num_workers=2, progress=False)
    assert full["ok"] == 1 and len(full["unreadable"]) == 4


def test_full_decode_finds_corruption_in_the_middle(tmp_path):
    path = tmp_path / "v.mp4"
    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 256, size=(30, 32, 32, 3), dtype=np.uint8), fps=10, gop_size=5)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 2000] = rng.integers(0, 256, size=2000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    status, reason = check_video(str(path), full=True)
    assert status == "unreadable" and "corrupt" in reason
    assert check_video(str(path).replace("v.mp4", "missing.mp4"))[0] == "unreadable"
