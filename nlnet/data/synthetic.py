"""Test videos and the built-in synthetic dataset a newcomer trains on.

``write_video`` (``nlnet.data.encode``) encodes frames to a real file (H.264 .mp4 by default) with exact
control over timestamps, first timestamp and rotation metadata; the tests build every case the decoder
must handle with it and ``index_frames``. ``make_synthetic_dataset`` writes a small Kinetics-layout
dataset whose classes can only be told apart by motion or by relations between shapes across frames
(a single frame is uninformative), so a small 3D network learns it in minutes on a CPU.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from nlnet.utils.errors import ConfigError
from nlnet.utils.io import atomic_path, require_folder

from .annotations import kinetics_filename, write_kinetics_csv
from .encode import write_audio_only, write_video

__all__ = [
    "SYNTHETIC_CLASSES",
    "write_video",
    "write_audio_only",
    "index_frames",
    "frame_indices",
    "render_synthetic_clip",
    "make_synthetic_dataset",
    "render_synthetic_sequence",
    "make_synthetic_charades",
]

# Every clip shows two shapes on a textured background; the class is what they do over time.
# None of the classes is mirror-sensitive, so the paper's horizontal flip keeps labels correct.
SYNTHETIC_CLASSES = (
    "moving up",        # both shapes move up
    "moving down",      # both shapes move down
    "moving sideways",  # both shapes move left, or both right
    "approaching",      # the two shapes move towards each other
    "separating",       # the two shapes move apart
    "growing",          # both shapes stay in place and grow
)

def index_frames(num_frames: int, *, width: int = 32, height: int = 32) -> np.ndarray:
    """Flat-colour frames (T, H, W, 3) uint8 whose colour encodes the frame index (up to 512 frames).

    Each channel holds one base-8 digit of the index at levels 16, 48, ..., 240, which survive
    lossy H.264, colour conversion, scaling and cropping. ``frame_indices`` reads them back; tests
    use the pair to check which frames a decoder returned.
    """
    if num_frames > 512:
        raise ValueError(f"index_frames encodes at most 512 frames, got {num_frames}")
    i = np.arange(num_frames)
    digits = np.stack([i % 8, (i // 8) % 8, i // 64], axis=1)  # (T, 3) base-8 digits, R G B
    colours = (32 * digits + 16).astype(np.uint8)
    return np.broadcast_to(colours[:, None, None, :], (num_frames, height, width, 3)).copy()


def frame_indices(frames: np.ndarray, *, channels_last: bool = True) -> np.ndarray:
    """Frame indices encoded by ``index_frames``: (T, H, W, 3) uint8 (or (T, 3, H, W)) -> (T,) int."""
    frames = np.asarray(frames, dtype=np.float64)
    means = frames.mean(axis=(1, 2)) if channels_last else frames.mean(axis=(2, 3))  # (T, 3)
    digits = np.clip(np.rint((means - 16) / 32), 0, 7).astype(int)
    return digits[:, 0] + 8 * digits[:, 1] + 64 * digits[:, 2]


# ---------------------------------------------------------------------------------------------
# The synthetic dataset
# ---------------------------------------------------------------------------------------------


def _draw_shape(image: np.ndarray, kind: int, cy: float, cx: float, radius: float, color) -> None:
    """Draw a filled square (0), disc (1) or diamond (2) in place on an (H, W, 3) image."""
    h, w = image.shape[:2]
    y0, y1 = max(int(cy - radius - 1), 0), min(int(cy + radius + 2), h)
    x0, x1 = max(int(cx - radius - 1), 0), min(int(cx + radius + 2), w)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = np.abs(yy + 0.5 - cy), np.abs(xx + 0.5 - cx)
    if kind == 0:
        mask = np.maximum(dy, dx) <= radius
    elif kind == 1:
        mask = dy**2 + dx**2 <= radius**2
    else:
        mask = dy + dx <= radius * 1.3
    image[y0:y1, x0:x1][mask] = color


def _trajectories(label: int, rng: np.random.Generator, t: np.ndarray, width: int, height: int):
    """Centres (2, T, 2) as (y, x) and radii (2, T) of the two shapes for one clip of class ``label``.

    Distances scale with the frame size; ``t`` runs from 0 to 1 over the clip.
    """
    size = min(width, height)
    r0 = rng.uniform(0.08, 0.12, size=2) * size  # (2,) radii
    radii = np.repeat(r0[:, None], len(t), axis=1)  # (2, T)
    travel = rng.uniform(0.45, 0.6) * size  # how far shapes move over the clip
    margin = r0.max() + 1
    name = SYNTHETIC_CLASSES[label]
    if name.startswith("moving"):
        if name == "moving up":
            direction = np.array([-1.0, 0.0])
        elif name == "moving down":
            direction = np.array([1.0, 0.0])
        else:
            direction = np.array([0.0, rng.choice([-1.0, 1.0])])
        step = direction * travel  # (2,) displacement over the clip
        lo = np.maximum(margin, margin - step)  # start positions keeping the path inside the frame
        hi = np.array([height, width]) - margin - np.maximum(step, 0)
        starts = rng.uniform(lo, hi, size=(2, 2))  # (2 shapes, yx)
        for _ in range(20):  # keep the two shapes apart (they move together)
            if np.linalg.norm(starts[0] - starts[1]) > 2.5 * r0.max():
                break
            starts[1] = rng.uniform(lo, hi)
        centres = starts[:, None, :] + t[None, :, None] * step  # (2, T, 2)
    elif name in ("approaching", "separating"):
        angle = rng.uniform(0, 2 * np.pi)
        axis = np.array([np.sin(angle), np.cos(angle)])
        far = rng.uniform(0.68, 0.78) * size  # centre distance when apart
        near = 2.4 * r0.max()  # just not touching: each shape travels about a quarter of the frame
        gap = np.interp(t, [0, 1], [far, near] if name == "approaching" else [near, far])  # (T,)
        centre = np.array([height, width]) / 2 + rng.uniform(-0.04, 0.04, size=2) * size
        offsets = gap[:, None] / 2 * axis[None, :]  # (T, 2)
        centres = np.stack([centre + offsets, centre - offsets])  # (2, T, 2)
    else:  # growing: shapes stay put and grow from small to large
        r_start = rng.uniform(0.04, 0.06, size=2) * size
        r_end = rng.uniform(0.14, 0.18, size=2) * size
        radii = r_start[:, None] + t[None, :] * (r_end - r_start)[:, None]
        margin = r_end.max() + 1
        pos = rng.uniform(margin, [height - margin, width - margin], size=(2, 2))
        centres = np.repeat(pos[:, None, :], len(t), axis=1)
    return centres, radii


def render_synthetic_clip(
    label: int, *, num_frames: int, width: int, height: int, rng: np.random.Generator, noise: float = 4.0
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of one synthetic clip of class ``SYNTHETIC_CLASSES[label]``.

    Colours, shape kinds, sizes, start positions, speeds and background texture are random, so no
    single frame tells the class; the motion (or growth) over time does.
    """
    t = np.linspace(0.0, 1.0, num_frames)
    centres, radii = _trajectories(label, rng, t, width, height)
    # a dark, slightly tinted background: bright shapes on it give every clip the same contrast
    # polarity, so a small network learns motion features instead of memorising colour pairs
    base = rng.integers(30, 90) + rng.integers(-15, 16, size=3)
    # a static texture (coarse random blocks) under per-frame noise: realistic for the codec
    coarse = rng.normal(0, 8, size=(height // 8 + 1, width // 8 + 1, 3))
    texture = np.kron(coarse, np.ones((8, 8, 1)))[:height, :width]
    background = np.clip(base + texture, 0, 255).astype(np.float32)
    kinds = rng.integers(0, 3, size=2)
    colors = rng.integers(150, 256, size=(2, 3))  # every channel well above the background's
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        image = background
        if noise:
            image = background + noise * rng.standard_normal(background.shape, dtype=np.float32)
        image = np.clip(image, 0, 255).astype(np.uint8)
        for s in range(2):
            _draw_shape(image, int(kinds[s]), centres[s, i, 0], centres[s, i, 1], radii[s, i], colors[s])
        frames[i] = image
    return frames


def _youtube_like_id(rng: np.random.Generator) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=11))


def make_synthetic_dataset(
    root: str | os.PathLike,
    *,
    num_classes: int = 6,
    train_per_class: int = 100,
    val_per_class: int = 20,
    num_frames: int = 16,
    size: int | tuple[int, int] = 64,
    fps: float = 25.0,
    noise: float = 4.0,
    crf: int | None = None,
    gop_size: int | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write the synthetic demo dataset in the Kinetics layout, with official-format CSVs.

    Layout: ``<root>/<split>/<label>/<id>_<start:06d>_<end:06d>.mp4`` (H.264) and
    ``<root>/train.csv``, ``<root>/val.csv`` (``label,youtube_id,time_start,time_end,split``).
    Deterministic from ``seed``. A dataset that is already complete with the same arguments is not
    written again (``<root>/.complete.json`` records the arguments; it is written last).

    Args:
        root: output folder.
        num_classes: how many of ``SYNTHETIC_CLASSES`` to use (1..6).
        train_per_class: training clips per class.
        val_per_class: validation clips per class.
        num_frames: frames per clip.
        size: frame size, an int (square) or ``(width, height)``; even numbers.
        fps: frame rate of the files.
        noise: standard deviation of the per-frame pixel noise.
        crf: libx264 quality (None: libx264's default, 23).
        gop_size: frames between keyframes (None: libx264's default, 250, as in most Kinetics copies).
        seed: everything random derives from it.
        overwrite: write again even if complete.

    Returns:
        The arguments recorded in ``.complete.json`` plus ``"skipped": bool``.

    Raises:
        ConfigError: ``num_classes`` out of range, an odd ``size``, or ``root`` naming a file.
    """
    if not 1 <= num_classes <= len(SYNTHETIC_CLASSES):
        raise ConfigError(f"num_classes={num_classes}: choose 1..{len(SYNTHETIC_CLASSES)}")
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if width % 2 or height % 2:
        raise ConfigError(f"size={size}: width and height must be even (H.264 yuv420p)")
    root = Path(root)
    require_folder(root, key="root")
    spec = dict(
        num_classes=num_classes, train_per_class=train_per_class, val_per_class=val_per_class,
        num_frames=num_frames, width=width, height=height, fps=fps, noise=noise, crf=crf, gop_size=gop_size,
        seed=seed,
        version=5,
    )
    marker = root / ".complete.json"
    if not overwrite and marker.is_file():
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError):
            done = None
        if done == spec and all((root / f).is_file() for f in ("train.csv", "val.csv")):
            return {**spec, "skipped": True}
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for split, per_class, split_seed in (("train", train_per_class, 0), ("val", val_per_class, 1)):
        rows = []
        for label in range(num_classes):
            name = SYNTHETIC_CLASSES[label]
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                rng = np.random.default_rng([seed, split_seed, label, k])
                vid = _youtube_like_id(rng)
                start = int(rng.integers(0, 300))
                end = start + max(1, int(round(num_frames / fps)))
                frames = render_synthetic_clip(
                    label, num_frames=num_frames, width=width, height=height, rng=rng, noise=noise
                )
                write_video(folder / f"{kinetics_filename(vid, start, end)}.mp4", frames, fps=fps, crf=crf,
                            gop_size=gop_size, preset="veryfast")
                rows.append((name, vid, start, end, split))
        write_kinetics_csv(root / f"{split}.csv", rows)
    with atomic_path(marker) as tmp:
        Path(tmp).write_text(json.dumps(spec))
    return {**spec, "skipped": False}


# ---------------------------------------------------------------------------------------------
# A miniature Charades: several synthetic motions per video, each a timed action
# ---------------------------------------------------------------------------------------------

CHARADES_FIELDS = ("id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
                   "descriptions", "actions", "length")


def render_synthetic_sequence(labels, *, segment_frames: int, width: int, height: int, rng: np.random.Generator,
                              noise: float = 4.0) -> np.ndarray:
    """Frames (len(labels) * segment_frames, H, W, 3) uint8: one synthetic clip per label, one after the other
    (each a motion of ``SYNTHETIC_CLASSES``, with its own shapes and background, like a cut between scenes)."""
    return np.concatenate([render_synthetic_clip(int(label), num_frames=segment_frames, width=width, height=height,
                                                 rng=rng, noise=noise) for label in labels])


def make_synthetic_charades(
    root: str | os.PathLike,
    *,
    num_classes: int = 4,
    train_videos: int = 48,
    test_videos: int = 16,
    actions_per_video: int = 2,
    segment_frames: int = 12,
    size: int = 32,
    fps: float = 25.0,
    noise: float = 4.0,
    seed: int = 0,
) -> dict:
    """Write a miniature Charades in the official release's format (paper §5.2): ``Charades_v1_classes.txt``
    (``c000 moving up``), ``Charades_v1_train.csv`` / ``Charades_v1_test.csv`` (id, subject, scene, quality,
    relevance, verified, script, objects, descriptions, actions, length) and ``Charades_v1_480/<id>.mp4``.

    Each video shows ``actions_per_video`` different motions of ``SYNTHETIC_CLASSES`` one after the other, each
    ``segment_frames`` long: its ``actions`` cell times them (``c001 0.48 0.96;c000 0.00 0.48``).

    Args:
        root: output folder.
        num_classes: how many of ``SYNTHETIC_CLASSES`` are actions (2..6).
        train_videos: videos of the training CSV.
        test_videos: videos of the test CSV.
        actions_per_video: motions per video (1..num_classes).
        segment_frames: frames per motion.
        size: frame side (even).
        fps: frame rate of the files.
        noise: standard deviation of the per-frame pixel noise.
        seed: everything random derives from it.

    Returns:
        The paths written: ``classes``, ``train``, ``test`` (CSV files) and ``videos`` (folder).
    """
    if not 2 <= num_classes <= len(SYNTHETIC_CLASSES) or not 1 <= actions_per_video <= num_classes:
        raise ValueError(f"num_classes={num_classes}, actions_per_video={actions_per_video}: choose "
                         f"2 <= num_classes <= {len(SYNTHETIC_CLASSES)}, 1 <= actions_per_video <= num_classes")
    root = Path(root)
    videos = root / "Charades_v1_480"
    videos.mkdir(parents=True, exist_ok=True)
    paths = {"classes": str(root / "Charades_v1_classes.txt"), "train": str(root / "Charades_v1_train.csv"),
             "test": str(root / "Charades_v1_test.csv"), "videos": str(videos)}
    with atomic_path(paths["classes"]) as tmp:
        Path(tmp).write_text("".join(f"c{k:03d} {SYNTHETIC_CLASSES[k]}\n" for k in range(num_classes)))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    for split, count, split_seed in (("train", train_videos, 0), ("test", test_videos, 1)):
        rows = []
        for k in range(count):
            rng = np.random.default_rng([seed, split_seed, k])
            vid = "".join(alphabet[i] for i in rng.integers(0, len(alphabet), size=5)) + f"{k:03d}"
            labels = rng.choice(num_classes, size=actions_per_video, replace=False)
            frames = render_synthetic_sequence(labels, segment_frames=segment_frames, width=size, height=size,
                                               rng=rng, noise=noise)
            write_video(videos / f"{vid}.mp4", frames, fps=fps, preset="veryfast")
            seconds = segment_frames / fps
            actions = ";".join(f"c{label:03d} {i * seconds:.2f} {(i + 1) * seconds:.2f}"
                               for i, label in enumerate(labels))
            rows.append({"id": vid, "subject": "S01", "scene": "Synthetic", "quality": 7, "relevance": 7,
                         "verified": "Yes", "script": "", "objects": "", "descriptions": "", "actions": actions,
                         "length": f"{len(frames) / fps:.2f}"})
        with atomic_path(paths[split]) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CHARADES_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return paths
