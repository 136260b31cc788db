"""Miniature copies of UCF101, HMDB51, Something-Something v2 and a class-folder tree, in their official
layouts, file names and line formats: AVI (MPEG-4 part 2, as UCF101's Xvid and HMDB51's DivX), webm (VP9),
MP4 (H.264); a few 32x32 frames per video, each frame's colour encoding its index (``index_frames``).

Each ``make_*`` returns what a test checks the reader against: {subset or split: [(relative path, class)]}.
"""
from __future__ import annotations

import json
from pathlib import Path

import av

from nlnet.data.synthetic import index_frames, write_video

NUM_FRAMES, FPS, SIZE = 8, 25, 32

UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "YoYo"]  # classInd.txt: 1 ApplyEyeMakeup, 2 Archery, 3 YoYo
HMDB_CLASSES = ["brush_hair", "cartwheel", "catch"]
SSV2_CLASSES = [  # labels.json indices 0..6
    "Holding something next to something",
    "Pulling something from left to right",
    "Pulling something from right to left",
    "Pushing something from left to right",
    "Pushing something from right to left",
    "Turning the camera left while filming something",
    "Turning the camera right while filming something",
]
FOLDER_CLASSES = ["cat", "dog"]


def write_avi(path: Path, num_frames: int = NUM_FRAMES, fps: int = FPS) -> None:
    """An AVI file with MPEG-4 part 2 video (FourCC FMP4), as PyAV encodes it, at a constant ``fps``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for image in index_frames(num_frames, width=SIZE, height=SIZE):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def _crlf(lines: list[str]) -> str:
    return "".join(line + "\r\n" for line in lines)  # the official UCF101 lists end lines with CRLF


def ucf_video(cls: str, group: int, clip: int) -> str:
    return f"{cls}/v_{cls}_g{group:02d}_c{clip:02d}.avi"


def make_ucf101(root: Path) -> dict:
    """``<root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi`` and ``<root>/ucfTrainTestlist/``: groups 1-2 test in
    split 1, 3-4 in split 2, 5-6 in split 3 (as the official splits: 7 groups each); one clip per group."""
    videos = {(cls, g): ucf_video(cls, g, 1) for cls in UCF_CLASSES for g in range(1, 7)}
    for rel in videos.values():
        write_avi(root / "UCF-101" / rel)
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text(_crlf([f"{i + 1} {c}" for i, c in enumerate(UCF_CLASSES)]))
    expected = {}
    for split in (1, 2, 3):
        test_groups = {2 * split - 1, 2 * split}
        train = [(rel, UCF_CLASSES.index(c)) for (c, g), rel in videos.items() if g not in test_groups]
        test = [(rel, UCF_CLASSES.index(c)) for (c, g), rel in videos.items() if g in test_groups]
        (lists / f"trainlist0{split}.txt").write_text(_crlf([f"{rel} {label + 1}" for rel, label in train]))
        (lists / f"testlist0{split}.txt").write_text(_crlf([rel for rel, _ in test]))
        expected[split] = {"train": train, "test": test}
    return expected


def make_hmdb51(root: Path) -> dict:
    """``<root>/<class>/<video>.avi`` and ``<root>/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt``
    (``<video>.avi <tag> `` lines, the trailing space included, as shipped): 4 videos per class, in split s
    video s-1 tests, video 3 is unused (tag 0), the others train."""
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    expected = {s: {"train": [], "test": []} for s in (1, 2, 3)}
    for label, cls in enumerate(HMDB_CLASSES):
        names = [f"April_09_{cls}_u_nm_np1_ba_goo_{k}.avi" for k in range(4)]
        for name in names:
            write_avi(root / cls / name)
        for split in (1, 2, 3):
            tags = [2 if k == split - 1 else 0 if k == 3 else 1 for k in range(4)]
            (splits / f"{cls}_test_split{split}.txt").write_text("".join(f"{n} {t} \n" for n, t in zip(names, tags)))
            for name, tag in zip(names, tags):
                if tag:
                    expected[split]["train" if tag == 1 else "test"].append((f"{cls}/{name}", label))
    return expected


def ssv2_record(video_id: int, template: str, *objects: str) -> dict:
    label = template
    for obj in objects:
        label = label.replace("[something]", obj, 1)
    return {"id": str(video_id), "label": label.replace("[", "").replace("]", "").lower(), "template": template,
            "placeholders": list(objects)}


def make_ssv2(root: Path) -> dict:
    """``<root>/20bn-something-something-v2/<id>.webm`` (VP9) and ``<root>/labels/something-something-v2-
    {labels,train,validation}.json`` as released (labels: ``{"template": "index"}``; records with id, label,
    template with [something] in brackets, placeholders)."""
    labels = root / "labels"
    labels.mkdir(parents=True)
    (labels / "something-something-v2-labels.json").write_text(
        json.dumps({name: str(i) for i, name in enumerate(SSV2_CLASSES)}, indent=4))
    bracketed = [name.replace("something", "[something]") for name in SSV2_CLASSES]
    train = [ssv2_record(1000 + i, t, *(["a cup"] * t.count("["))) for i, t in enumerate(bracketed)]
    validation = [ssv2_record(2000 + i, bracketed[i], *(["a pen"] * bracketed[i].count("["))) for i in (1, 4, 0)]
    for name, records in (("train", train), ("validation", validation)):
        (labels / f"something-something-v2-{name}.json").write_text(json.dumps(records, indent=4))
        for record in records:
            write_video(root / "20bn-something-something-v2" / f"{record['id']}.webm",
                        index_frames(NUM_FRAMES * 2, width=SIZE, height=SIZE), fps=12)
    return {"train": [(f"{r['id']}.webm", SSV2_CLASSES.index(r["template"].replace("[", "").replace("]", "")))
                      for r in train],
            "validation": [(f"{r['id']}.webm", i) for r, i in zip(validation, (1, 4, 0))]}


def make_folder(root: Path) -> dict:
    """``<root>/{train,val}/<class>/*.{mp4,avi,mkv,webm}``."""
    expected = {"train": [], "val": []}
    for split, names in (("train", ["a.mp4", "b.avi", "c.mkv"]), ("val", ["d.webm"])):
        for label, cls in enumerate(FOLDER_CLASSES):
            for name in names:
                path = root / split / cls / name
                if name.endswith(".avi"):
                    write_avi(path)
                else:
                    write_video(path, index_frames(NUM_FRAMES, width=SIZE, height=SIZE), fps=FPS)
                expected[split].append((f"{split}/{cls}/{name}", label))
    (root / "train" / "dog" / "notes.txt").write_text("not a video")  # ignored
    return expected
