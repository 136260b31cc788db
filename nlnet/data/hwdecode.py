"""Which decoder opens a video: FFmpeg's software decoders, or the GPU's (NVDEC) through PyAV's CUDA hwaccel.

``VideoDataset(decode_device="cuda")`` opens videos with ``av.codec.hwaccel.HWAccel("cuda")``: the
FFmpeg inside PyAV's wheel decodes H.264, HEVC, VP9, MPEG-4 and AV1 on NVDEC and hands the frames
back to the CPU (nv12), where sampling, resizing and cropping are the same as for software frames
(H.264 decoding is exact, so the planes are identical). Each process (DataLoader worker) probes
once: where NVDEC cannot be used (PyAV's FFmpeg without CUDA, no ``libnvcuvid`` from the driver, no
CUDA device, which PyAV reports as ``PermissionError`` when the file is opened) the process decodes
on the CPU for good, and a codec NVDEC does not take is decoded on the CPU for that stream. Nothing
of this raises: :meth:`Decoder.open` returns a reader and a one-line description of the decoder
that ran (``"cuda"``, or ``"cpu"`` with the reason), which items carry to the main process
(``nlnet.data.loader``), where each description is logged once and written to TensorBoard.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

import av
from av.codec.hwaccel import HWAccel, hwdevices_available

from nlnet.utils.errors import ConfigError

from .decoding import VideoDecodeError, VideoReader

__all__ = ["DECODE_DEVICES", "Decoder", "check_choice", "nvcuvid_library"]

DECODE_DEVICES = ("cpu", "cuda")
_NVCUVID = ("libnvcuvid.so.1", "libnvcuvid.so", "nvcuvid.dll")


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` when it is one of ``choices``; otherwise a one-line ``ConfigError`` naming the key."""
    if value not in choices:
        raise ConfigError(f"{key}={value!r}: valid choices are {', '.join(choices)}")
    return value


def nvcuvid_library() -> str | None:
    """The NVIDIA video decoding library (``libnvcuvid``, installed with the driver) that loads, or None."""
    names = [n for n in (ctypes.util.find_library("nvcuvid"), *_NVCUVID) if n]
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


def _unavailable(device: str) -> str | None:
    """Why ``device`` cannot decode in this process, before any file is opened (None: try it)."""
    if device not in hwdevices_available():
        return f"PyAV's FFmpeg has no {device} hwaccel"
    if device == "cuda" and nvcuvid_library() is None:
        return "no libnvcuvid (the NVIDIA driver's video decoding library) found"
    return None


class Decoder:
    """Opens videos on ``device``, probing once per process and falling back to the CPU.

    Args:
        device: ``"cpu"`` (FFmpeg's software decoders) or ``"cuda"`` (NVDEC through PyAV's hwaccel).
        gpu: CUDA device index for NVDEC (None: ``LOCAL_RANK``, the device the trainer of this
            process's rank computes on, ``nlnet.utils.distributed``).
    """

    def __init__(self, *, device: str = "cpu", gpu: int | None = None) -> None:
        self.device = check_choice("data.decode_device", device, DECODE_DEVICES)
        self.gpu = gpu
        self._pid: int | None = None  # the process whose probe ``_fallback`` holds (workers are forked)
        self._fallback: str | None = None  # why this process decodes on the CPU
        self._retained: HWAccel | None = None  # holds the device's primary CUDA context for the process

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _pid=None, _fallback=None, _retained=None)  # a new process probes again

    def fallback(self) -> str | None:
        """Why this process decodes on the CPU although ``device`` asks otherwise (None: it does not)."""
        if self.device == "cpu":
            return None
        if self._pid != os.getpid():
            self._pid, self._fallback = os.getpid(), _unavailable(self.device)
        return self._fallback

    def open(self, path: str, **options) -> tuple[VideoReader, str]:
        """An open reader of ``path`` (``VideoReader``'s ``options``) and the decoder that reads it.

        Raises:
            VideoDecodeError: the file cannot be read on the CPU either (never for a hardware error).
        """
        fallback = self.fallback()
        if fallback is not None:
            return VideoReader(path, **options), self._describe("cpu", fallback)
        if self.device == "cpu":
            return VideoReader(path, **options), "cpu"
        gpu = self.gpu if self.gpu is not None else int(os.environ.get("LOCAL_RANK", "0"))
        # every file opens its own FFmpeg device context; on the device's primary CUDA context, held
        # for the whole process (``_retained``), that costs a reference, not a new CUDA context
        hwaccel = HWAccel(self.device, device=str(gpu), allow_software_fallback=True,
                          options={"primary_ctx": "1"} if self.device == "cuda" else None)
        try:
            reader = VideoReader(path, hwaccel=hwaccel, **options)
        except VideoDecodeError as error:
            reader = VideoReader(path, **options)  # raises when the file itself is bad
            self._fallback = f"{self.device} hwaccel failed at open ({error.reason})"
            return reader, self._describe("cpu", self._fallback)
        context = reader.stream.codec_context
        if not context.is_hwaccel:
            return reader, self._describe("cpu", f"NVDEC does not take codec {context.name}")
        if self._retained is None:
            with contextlib.suppress(OSError, NotImplementedError, av.FFmpegError):  # only a saving: never fail
                self._retained = hwaccel.create(context.codec)
        return reader, self.device

    def _describe(self, decoder: str, reason: str) -> str:
        return f"{decoder} (data.decode_device={self.device}: {reason})"
