"""nlnet's CUDA paths, each run at least once: bf16 autocast and fp16 + GradScaler train steps,
torch.compile of the model in a train step, SyncBatchNorm conversion, NCCL DDP (one process), the
non-local block's fused attention against the reference in fp32 and bf16, channels_last_3d, the batch
prologue (pinned uint8 batch -> normalised, flipped clips on the device) against the CPU.

Marked ``gpu`` and skipped without CUDA (``scripts/gpu_check.sh`` runs them on the GPU machine).
``NLNET_GPU_TESTS_ON_CPU=1`` runs their logic on the CPU (gloo instead of NCCL; SyncBatchNorm, which
refuses CPU tensors, is skipped) to rehearse them without a GPU: that proves nothing about CUDA.
"""
import contextlib
import copy
import os

import pytest
import torch
import torch.nn as nn

from helpers import compose
from benchmarks.common import autocast, relative_error
from benchmarks.model import SyntheticBatches
from nlnet.config import instantiate
from nlnet.utils import distributed as du
from nlnet.data.prologue import BatchPrologue
from nlnet.engine.trainer import Trainer
from nlnet.models import NonLocalBlock
from nlnet.models.nonlocal_block import PAIRWISE

ON_CPU = os.environ.get("NLNET_GPU_TESTS_ON_CPU") == "1"
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not (torch.cuda.is_available() or ON_CPU), reason="needs a CUDA device")]


@pytest.fixture
def device():
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


@contextlib.contextmanager
def no_tf32():
    """Full fp32 matrix products and convolutions, so fp32 comparisons are exact up to rounding."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def demo_model(seed: int = 0) -> nn.Module:
    """The demo's tiny I3D ResNet-18 with a non-local block after res3's last block, 8 channels wide."""
    cfg = compose("train", ["experiment=demo", "data.root=unused", "model.net.base_width=8"])
    torch.manual_seed(seed)
    return instantiate(cfg.model.net)


def trainer_for(model, device, *, precision="fp32", channels_last=False, train_module=None, batch=4) -> Trainer:
    """nlnet's Trainer on a fixed random batch already on ``device`` (8 frames of 32x32)."""
    prologue = BatchPrologue(device=device, channels_last=channels_last)
    prologue.prepare_model(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    torch.manual_seed(1)
    data = SyntheticBatches(batch=batch, frames=8, size=32, num_classes=model.num_classes, device=device)
    return Trainer(model=model, optimizer=optimizer, scheduler=scheduler, data=data, max_iter=10, device=device,
                   train_module=train_module, precision=precision, prologue=prologue)


def parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def changed(before, model):
    return [name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())]


def assert_same_updates(before, model, reference, limit):
    """Every parameter moved from ``before`` as the reference model's did, within ``limit`` times the
    largest update of any parameter (some updates are exactly zero in theory, e.g. phi's bias under
    the softmax, and rounding noise in practice)."""
    want = {name: p.detach() - before[name] for name, p in reference.named_parameters()}
    scale = max(float(w.abs().max()) for w in want.values())
    assert scale > 0
    for name, p in model.named_parameters():
        error = float((p.detach() - before[name] - want[name]).abs().max())
        assert error <= limit * scale, (name, error, scale)


def test_bf16_autocast_train_step(device):
    model = demo_model()
    reference = trainer_for(copy.deepcopy(model), device)
    trainer = trainer_for(model, device, precision="bf16")
    dtypes = []
    model.head.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    before = parameters(model)
    for _ in range(2):
        trainer.run_step()
        reference.run_step()
    assert dtypes == [torch.bfloat16] * 2  # the classifier ran under autocast
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
    assert len(changed(before, model)) == len(before)  # the NL block too, once its BN gamma left 0
    # the same two steps in fp32 reach nearly the same loss
    assert abs(trainer.storage.latest("loss") - reference.storage.latest("loss")) < 0.05


def test_fp16_grad_scaler_scales_and_skips_overflowing_steps(device):
    model = demo_model()
    trainer = trainer_for(model, device, precision="fp16")
    assert trainer.scaler.is_enabled()
    trainer.run_step()
    assert torch.isfinite(torch.tensor(trainer.storage.latest("loss")))
    # a scale that overflows fp16 gradients: the step is skipped, the scale halves, nothing changes
    trainer.scaler.update(new_scale=2.0 ** 100)
    before = parameters(model)
    trainer.run_step()
    assert changed(before, model) == []
    assert trainer.scaler.get_scale() == 2.0 ** 99
    trainer.scaler.update(new_scale=1024.0)
    trainer.run_step()
    assert changed(before, model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_sync_batchnorm_conversion_keeps_keys_and_outputs(device):
    if device.type != "cuda":
        pytest.skip("SyncBatchNorm refuses CPU tensors")
    model = demo_model().to(device).eval()
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model)).eval()
    norms = [m for m in synced.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)  # the NL block's BN too
    assert list(synced.state_dict()) == list(model.state_dict())  # checkpoints stay loadable
    x = torch.randn(2, 3, 8, 32, 32, device=device)
    with torch.no_grad(), no_tf32():
        assert relative_error(synced(x), model(x)) < 1e-5


def test_one_process_ddp_matches_plain_training(device, tmp_path):
    """NCCL (gloo on CPU) process group of one rank, DDP (+ SyncBatchNorm on CUDA) around the model:
    the same steps as without DDP, and the engine's collectives work on the group."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        with no_tf32():
            model = demo_model()
            plain = trainer_for(copy.deepcopy(model), device)
            before = parameters(plain.model)
            model.to(device)
            if device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[0] if device.type == "cuda" else None)
            trainer = trainer_for(model, device, train_module=ddp)
            for _ in range(2):
                trainer.run_step()
                plain.run_step()
        assert_same_updates(before, model, plain.model, 1e-4)
        assert du.get_world_size() == 1 and du.any_rank(True, device) and not du.any_rank(False, device)
        assert du.all_reduce_mean(torch.full((3,), 2.0, device=device)).tolist() == [2.0] * 3
    finally:
        torch.distributed.destroy_process_group()


def flat_grad(module):
    """All parameter gradients as one vector (a per-parameter relative error would weigh rounding
    noise on gradients that are zero in theory, e.g. phi's bias under the softmax)."""
    return torch.cat([p.grad.flatten().double().cpu() for p in module.parameters()])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("pairwise", PAIRWISE)
def test_nonlocal_fused_attention_agrees_with_reference(device, pairwise, precision):
    """impl="auto" (fused attention for the Gaussians) against impl="reference", both against the
    reference computed in float64 on the CPU: the residual branch and every parameter gradient.

    No BN after w_z: it would re-normalise a branch whose spread over positions is small and so
    amplify rounding many times; without it the errors are those of Eq. 1 and W_z themselves.
    """
    torch.manual_seed(0)
    block = NonLocalBlock(64, pairwise=pairwise, scale=True, pool_before=True, bn_layer=False).train()
    for conv in block.modules():
        if isinstance(conv, (nn.Conv3d, nn.Conv2d)):
            conv.reset_parameters()  # trained-looking weights (the official std 0.01 gives a near-zero branch)
    x = torch.randn(2, 64, 4, 14, 14)
    probe = torch.randn(2, 64, 4, 14, 14)  # loss = <branch, probe>: every parameter gets a gradient
    exact = copy.deepcopy(block).double()
    exact.impl = "reference"
    truth = exact(x.double()) - x.double()
    (truth * probe.double()).sum().backward()
    results = {}
    with no_tf32():
        for impl in ("auto", "reference"):
            candidate = copy.deepcopy(block).to(device)
            candidate.impl = impl
            xd = x.to(device)
            with autocast(device, precision):
                out = candidate(xd)
            branch = out.float() - xd
            (branch * probe.to(device)).sum().backward()
            results[impl] = relative_error(branch, truth), relative_error(flat_grad(candidate), flat_grad(exact))
    # measured on the CPU: fp32 ~1e-7, bf16 3e-3..7e-3, for both impls
    limit, slack = {"fp32": (1e-4, 1e-5), "bf16": (2e-2, 2e-3)}[precision]
    for impl, (out_err, grad_err) in results.items():
        assert out_err < limit and grad_err < limit, (impl, out_err, grad_err)
    # the fast path is no less accurate than the materialised one (beyond rounding-level differences)
    for auto, reference in zip(results["auto"], results["reference"]):
        assert auto <= 1.5 * reference + slack, results


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_prologue_on_the_device_equals_the_cpu_bit_for_bit(device, channels_last):
    g = torch.Generator().manual_seed(0)
    video = torch.randint(256, (4, 3, 8, 32, 32), dtype=torch.uint8, generator=g)
    batch = {"video": video.pin_memory() if device.type == "cuda" else video, "label": torch.arange(4),
             "flip": torch.tensor([True, False, True, False])}
    got, labels = BatchPrologue(device=device, channels_last=channels_last)(batch)
    want, _ = BatchPrologue(device="cpu")({**batch, "video": video})
    assert got.device == device and labels.device == device and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last_3d if channels_last else torch.contiguous_format)
    assert torch.equal(got.cpu(), want)


def test_channels_last_3d_model_and_train_step(device):
    with no_tf32():
        model = demo_model().eval()
        x = torch.randn(2, 3, 8, 32, 32, device=device)
        model.to(device)
        with torch.no_grad():
            want = model(x)
            fast = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
            got = fast(x.contiguous(memory_format=torch.channels_last_3d))
        assert relative_error(got, want) < 1e-5
        trainer = trainer_for(model.train(), device, precision="bf16", channels_last=True)
        before = parameters(model)
        trainer.run_step()
    assert changed(before, model)
    assert model.stem.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.isfinite(torch.tensor(trainer.storage.latest("loss")))


# last: its compilation takes the longest (tens of seconds); the other outcomes are in before it
def test_torch_compile_train_step_matches_eager(device):
    with no_tf32():
        model = demo_model()
        eager = trainer_for(copy.deepcopy(model), device)
        compiled = trainer_for(model, device, train_module=torch.compile(model))
        before = parameters(eager.model)
        for _ in range(2):
            eager.run_step()
            compiled.run_step()
            assert abs(compiled.storage.latest("loss") - eager.storage.latest("loss")) < 1e-4
    assert_same_updates(before, model, eager.model, 1e-2)
