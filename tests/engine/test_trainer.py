"""The training loop and its hooks on stand-in data (no video decoding): non-finite loss, precise BN,
checkpoint contents."""
import pytest
import torch
import torch.nn as nn

from nlnet.checkpoint.files import CheckpointManager, load_checkpoint
from nlnet.engine.hooks import Checkpointer, PreciseBN, update_bn_stats
from nlnet.solver.schedule import MultiStepSchedule, build_scheduler
from nlnet.engine.trainer import HookBase, NonFiniteLossError, Trainer


class Batches:
    """Endless batches of (2, 3, 1, 2, 2) clips; batch ``bad`` (1-based) is infinite."""

    def __init__(self, bad=None):
        self.i = 0
        self.bad = bad

    def __next__(self):
        self.i += 1
        g = torch.Generator().manual_seed(self.i)
        video = torch.randn(2, 3, 1, 2, 2, generator=g)
        if self.i == self.bad:
            video[0, 0, 0, 0, 0] = float("inf")
        return {"video": video, "label": torch.tensor([0, 1])}

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, state):
        self.i = state["i"]


def make_trainer(tmp_path, data, max_iter=5, hooks=()):
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Flatten(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = build_scheduler(opt, schedule=MultiStepSchedule(milestones=[3]))
    return Trainer(model=model, optimizer=opt, scheduler=sched, data=data, max_iter=max_iter,
                   device=torch.device("cpu"), hooks=hooks)


def test_non_finite_loss_stops_naming_the_iteration(tmp_path):
    manager = CheckpointManager(directory=str(tmp_path), keep_last=5)
    trainer = make_trainer(tmp_path, Batches(bad=3),
                           hooks=[Checkpointer(manager=manager, period=1, extra={"class_names": ["a", "b"]})])
    with pytest.raises(NonFiniteLossError, match="at iteration 3"):
        trainer.train()
    assert [it for it, _ in manager.list()] == [1, 2]  # the last good checkpoint is intact
    state = load_checkpoint(manager.latest())
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_checkpoint_holds_everything_needed_to_resume(tmp_path):
    manager = CheckpointManager(directory=str(tmp_path), keep_last=1)
    trainer = make_trainer(tmp_path, Batches(), max_iter=4,
                           hooks=[Checkpointer(manager=manager, period=2, extra={"config": {"a": 1},
                                                                                 "class_names": ["a", "b"]})])
    trainer.train()
    state = load_checkpoint(manager.latest())
    for key in ("model", "optimizer", "scheduler", "scaler", "iteration", "loader", "rng_states", "config",
                "class_names", "world_size"):
        assert key in state, key
    assert state["iteration"] == 4 and state["loader"] == {"i": 4} and len(state["rng_states"]) == 1
    assert state["scheduler"]["last_epoch"] == 4
    assert [it for it, _ in manager.list()] == [4]
    # a fresh trainer continues from it: same schedule position and data position
    resumed = make_trainer(tmp_path, Batches(), max_iter=6)
    resumed.load_state_dict(state)
    assert resumed.iter == 4 and resumed.data.i == 4
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_precise_bn_recomputes_population_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm3d(2))
    batches = [{"video": torch.randn(4, 2, 1, 3, 3) * (i + 1) + i} for i in range(3)]
    used = update_bn_stats(model, batches + batches, num_iters=3, device=torch.device("cpu"))
    assert used == 3
    per_batch_mean = torch.stack([b["video"].mean(dim=(0, 2, 3, 4)) for b in batches])
    per_batch_var = torch.stack([b["video"].transpose(0, 1).reshape(2, -1).var(dim=1) for b in batches])
    assert torch.allclose(model[0].running_mean, per_batch_mean.mean(0), atol=1e-5)
    assert torch.allclose(model[0].running_var, per_batch_var.mean(0), atol=1e-4)
    assert model[0].momentum == 0.1


def test_precise_bn_runs_before_checkpoints(tmp_path):
    calls, saved = [], []
    manager = CheckpointManager(directory=str(tmp_path), keep_last=5)

    class Spy(HookBase):
        def after_step(self):
            saved.append((self.trainer.iter, list(calls)))

    trainer = make_trainer(tmp_path, Batches(), max_iter=5,
                           hooks=[PreciseBN(batches=lambda it: calls.append(it) or iter([next(Batches())]),
                                            num_iters=1, periods=(2,)),
                                  Checkpointer(manager=manager, period=2), Spy()])
    trainer.train()
    assert calls == [2, 4, 5]  # every checkpoint period and the end
    assert [it for it, _ in manager.list()] == [2, 4, 5]
    assert saved[1] == (2, [2])  # statistics recomputed before the checkpoint of iteration 2


def test_the_step_feeds_the_model_the_prologue_of_uint8_batches(tmp_path):
    from nlnet.data.prologue import BatchPrologue

    seen = []
    model = nn.Sequential(nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4), nn.Flatten(), nn.Linear(16, 2))
    model[0].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    batch = {"video": torch.randint(256, (2, 3, 1, 2, 2), dtype=torch.uint8), "label": torch.tensor([0, 1]),
             "flip": torch.tensor([True, False])}
    prologue = BatchPrologue(device="cpu", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.4), channels_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer(model=model, optimizer=opt, scheduler=build_scheduler(opt, schedule=MultiStepSchedule()),
                      data=iter([batch] * 3), max_iter=1, device=torch.device("cpu"), prologue=prologue)
    trainer.train()
    want = batch["video"].float()
    want[0] = want[0].flip(-1)
    want = ((want - torch.tensor([m * 255 for m in (0.5, 0.4, 0.3)]).view(3, 1, 1, 1))
            / torch.tensor([s * 255 for s in (0.2, 0.3, 0.4)]).view(3, 1, 1, 1))  # (x - 255 mean) / (255 std)
    assert len(seen) == 1 and seen[0].dtype == torch.float32 and torch.equal(seen[0], want)
    assert seen[0].is_contiguous(memory_format=torch.channels_last_3d)
    # precise BN gets the same input
    assert update_bn_stats(model, [batch], num_iters=1, device=torch.device("cpu"), prologue=prologue) == 1
    assert torch.equal(seen[1], want)
