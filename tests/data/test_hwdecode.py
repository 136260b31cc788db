"""decode_device=cuda: NVDEC where it runs, otherwise the CPU with the reason; never an exception."""
import pickle

import av
import pytest
import torch
from helpers import compose, tiny_overrides

from nlnet.data import VideoDataset, decoding
from nlnet.data.decoding import VideoDecodeError
from nlnet.data.hwdecode import Decoder, nvcuvid_library
from nlnet.engine.train import train
from nlnet.utils.errors import ConfigError

HAS_NVDEC = torch.cuda.is_available() and nvcuvid_library() is not None


def dataset(root, mode="train", **options):
    size = dict(crop_size=24, train_scale=(28, 34)) if mode == "train" else dict(test_scale=28, test_crop_size=24,
                                                                                  num_clips=2, num_crops=2)
    return VideoDataset(root=root, annotations=f"{root}/{'train' if mode == 'train' else 'val'}.csv", mode=mode,
                        num_frames=4, sampling_rate=2, **size, **options)


@pytest.mark.parametrize("key,value", [("decode_device", "nvdec"), ("color_convert", "gpu")])
def test_bad_choices_name_the_key_and_the_valid_choices(tiny_videos, key, value):
    with pytest.raises(ConfigError, match=rf"^data\.{key}='{value}': valid choices are \w+, \w+$"):
        dataset(tiny_videos, **{key: value})


@pytest.mark.skipif(HAS_NVDEC, reason="checks the CPU fallback")
@pytest.mark.parametrize("mode", ["train", "test"])
def test_cuda_without_a_device_gives_the_cpu_clips_and_says_why(tiny_videos, mode):
    cpu, cuda = dataset(tiny_videos, mode), dataset(tiny_videos, mode, decode_device="cuda")
    assert cuda.worker_start_method == "spawn" and cpu.worker_start_method is None
    for index in range(len(cpu)):
        a, b = cpu[index], cuda[index]
        assert torch.equal(a["video"], b["video"]) and a["ok"] and b["ok"]
        assert a["decoder"] == "cpu" and b["decoder"].startswith("cpu (data.decode_device=cuda: ")


def hwaccel_refused(monkeypatch):
    """PyAV's behaviour without a CUDA device, whatever this machine has: PermissionError at open."""
    opened = []
    real_open = av.open

    def fake_open(path, *args, hwaccel=None, **kwargs):
        opened.append(hwaccel is not None)
        if hwaccel is not None:
            raise PermissionError(1, "Operation not permitted")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(decoding.av, "open", fake_open)
    monkeypatch.setattr("nlnet.data.hwdecode._unavailable", lambda device: None)  # get as far as opening
    return opened


def test_hwaccel_error_at_open_falls_back_once_per_process(tiny_videos, monkeypatch):
    opened = hwaccel_refused(monkeypatch)
    cpu, cuda = dataset(tiny_videos), dataset(tiny_videos, decode_device="cuda")
    for index in range(3):
        item = cuda[index]
        assert torch.equal(item["video"], cpu[index]["video"])
        assert "hwaccel failed at open" in item["decoder"] and "PermissionError" in item["decoder"]
    assert opened.count(True) == 1  # probed once; the later videos open on the CPU directly


def test_a_damaged_file_is_still_a_decode_failure(tmp_path, monkeypatch):
    hwaccel_refused(monkeypatch)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        Decoder(device="cuda").open(str(bad))


def test_a_new_process_probes_again():
    decoder = Decoder(device="cuda")
    decoder.fallback()
    copy = pickle.loads(pickle.dumps(decoder))  # what a spawned worker receives
    assert copy._pid is None and copy.device == "cuda"


@pytest.mark.slow
@pytest.mark.skipif(HAS_NVDEC, reason="checks the CPU fallback")
def test_demo_trains_and_tests_with_cuda_decoding_requested_and_one_warning(tiny_videos, tmp_path):
    overrides = tiny_overrides(tiny_videos, str(tmp_path / "run")) + ["data.decode_device=cuda"]
    cfg = compose("train", overrides)
    assert cfg.data.train.decode_device == cfg.data.val.decode_device == "cuda"
    summary = train(cfg)
    assert summary["exit_code"] == 0 and summary["iteration"] == 2
    log = (tmp_path / "run" / "log.txt").read_text().splitlines()
    fallback = [line for line in log if "decode_device=cuda" in line]
    assert len(fallback) == 1 and "WARNING" in fallback[0], fallback
    assert "data: videos decoded by cpu (data.decode_device=cuda: " in fallback[0]
    assert any(line.split("] ", 1)[-1].startswith("test: top1") for line in log)  # and tested
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard")).Reload()
    assert any(tag.startswith("data/decoder") for tag in events.Tags()["tensors"]), events.Tags()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_NVDEC, reason="needs a CUDA device and libnvcuvid")
def test_nvdec_planes_equal_software_planes_and_clips_equal_cpu_clips(tiny_videos):
    from benchmarks.gpu_check.decode import compare_planes

    cpu, cuda = dataset(tiny_videos), dataset(tiny_videos, decode_device="cuda")
    assert compare_planes(cpu.video_paths[0])["identical"]
    for index in range(len(cpu)):
        item = cuda[index]
        assert item["decoder"] == "cuda" and torch.equal(item["video"], cpu[index]["video"])
