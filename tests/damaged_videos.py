"""Damaged video files of every kind a real dataset holds, generated from a good one (tests' helper)."""
from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from nlnet.data.synthetic import index_frames, write_audio_only, write_video

GOOD_FRAMES = 40  # at 10 fps, 48x32, a keyframe every 10 frames


def _box(data: bytes, path: list[str]) -> tuple[int, int]:
    """(offset, size) of the MP4 box at ``path`` (e.g. ["moov", "trak", ..., "stsz"])."""
    offset, end = 0, len(data)
    for depth, name in enumerate(path):
        while offset + 8 <= end:
            size = int.from_bytes(data[offset:offset + 4], "big")
            if data[offset + 4:offset + 8] == name.encode():
                break
            offset += size
        else:
            raise ValueError(f"no box {path[:depth + 1]}")
        if depth < len(path) - 1:
            offset, end = offset + 8, offset + size
    return offset, size


def _flipped(data: bytes, count: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for position in rng.integers(0, len(out), size=count):
        out[position] ^= int(rng.integers(1, 256))
    return bytes(out)


def write_huge_declared_size(path: Path, side: int = 8192) -> None:
    """A ~40 KB MJPEG .avi whose headers declare ``side`` x ``side`` frames (its data is 64x48)."""
    container = av.open(str(path), "w")
    stream = container.add_stream("mjpeg", rate=Fraction(10))
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
    for i, array in enumerate(index_frames(20, width=64, height=48)):
        frame = av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuvj420p")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
    container.close()
    data = bytearray(path.read_bytes())
    start = data.find(b"\xff\xc0")  # every JPEG's start-of-frame: height, width
    while start != -1:
        data[start + 5:start + 9] = struct.pack(">HH", side, side)
        start = data.find(b"\xff\xc0", start + 2)
    strf, avih = data.find(b"strf"), data.find(b"avih")  # the AVI headers: width, height
    data[strf + 12:strf + 20] = struct.pack("<ii", side, side)
    data[avih + 40:avih + 48] = struct.pack("<II", side, side)
    path.write_bytes(bytes(data))


def write_damaged_videos(folder: Path) -> dict[str, Path]:
    """One good video (``"good"``) and damaged copies of it; returns {kind: path}. Every file is
    named ``<kind>.<ext>``."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good.mp4"
    write_video(good, index_frames(GOOD_FRAMES, width=48, height=32), fps=10, gop_size=10)
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    sample_sizes = _box(data, ["moov", "trak", "mdia", "minf", "stbl", "stsz"])
    decoder_box = data.find(b"avc1", _box(data, ["moov", "trak", "mdia", "minf", "stbl", "stsd"])[0])
    contents = {
        "zero_byte": b"",
        "text": b"this is not a video\n" * 50,
        "truncated_half": data[: len(data) // 2],
        "truncated_header": data[:200],
        "garbage_after_signature": data[:48] + rng.integers(0, 256, size=len(data) - 48, dtype=np.uint8).tobytes(),
        "zeroed_range": data[: len(data) // 3] + bytes(len(data) // 4) + data[len(data) // 3 + len(data) // 4:],
        # header damage: the sample-size table of the index zeroed (seeking fails)
        "sample_table_zeroed": data[: sample_sizes[0] + 8] + bytes(sample_sizes[1] - 8)
        + data[sample_sizes[0] + sample_sizes[1]:],
        # a video stream whose codec no decoder knows
        "no_decoder": data[:decoder_box] + b"zzzz" + data[decoder_box + 4:],
        **{f"flipped_{seed}": _flipped(data, 64, seed) for seed in range(4)},
    }
    paths = {"good": good}
    for kind, content in contents.items():
        paths[kind] = folder / f"{kind}.mp4"
        paths[kind].write_bytes(content)
    paths["audio_only"] = folder / "audio_only.mp4"
    write_audio_only(paths["audio_only"])
    paths["huge_declared_size"] = folder / "huge_declared_size.avi"
    write_huge_declared_size(paths["huge_declared_size"])
    return paths
