"""Parameter groups, linear lr scaling and the iteration schedules."""
import math
from functools import partial

import pytest
import torch
import torch.nn as nn

from nlnet.solver.optim import build_optimizer, param_groups
from nlnet.solver.schedule import CosineSchedule, MultiStepSchedule, build_scheduler


def small_net():
    return nn.Sequential(nn.Conv3d(3, 4, 3, bias=False), nn.BatchNorm3d(4), nn.Flatten(), nn.LazyLinear(2))


def test_no_weight_decay_on_bn_and_biases():
    net = nn.Sequential(nn.Conv3d(3, 4, 3, bias=False), nn.BatchNorm3d(4), nn.Linear(4, 2))
    decay, no_decay = param_groups(net, weight_decay=1e-4)
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(net[1].weight), id(net[1].bias), id(net[2].bias)}
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (1e-4, 0.0)


def test_lr_scales_linearly_with_total_batch():
    net = nn.Linear(3, 2)
    opt = build_optimizer(net, total_batch_size=16, optimizer=partial(torch.optim.SGD, momentum=0.9, nesterov=True),
                          lr=0.01, reference_batch_size=64)
    assert all(g["lr"] == pytest.approx(0.0025) for g in opt.param_groups)
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[0]["momentum"] == 0.9


def test_paper_step_schedule_and_warmup():
    s = MultiStepSchedule(milestones=[150_000, 300_000], gamma=0.1)
    assert [s(0), s(149_999), s(150_000), s(300_000), s(399_999)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    w = MultiStepSchedule(milestones=[10], warmup_iters=4, warmup_factor=0.2)
    assert [w(0), w(2), w(4)] == pytest.approx([0.2, 0.6, 1.0])
    with pytest.raises(ValueError, match="milestones"):
        MultiStepSchedule(milestones=[3, 1])


def test_cosine_schedule():
    c = CosineSchedule(max_iter=100, final_factor=0.0)
    assert [c(0), c(50), c(100)] == pytest.approx([1.0, 0.5, 0.0], abs=1e-9)
    assert c(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduler_state_is_plain_and_resumes(tmp_path):
    net = nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    sched = build_scheduler(opt, schedule=MultiStepSchedule(milestones=[2], gamma=0.5))
    for _ in range(3):
        opt.step()
        sched.step()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    opt2 = torch.optim.SGD(net.parameters(), lr=1.0)
    sched2 = build_scheduler(opt2, schedule=MultiStepSchedule(milestones=[2], gamma=0.5))
    opt2.load_state_dict(state["opt"])
    sched2.load_state_dict(state["sched"])
    assert state["sched"]["lr_lambdas"] == [{"warmup_iters": 0, "warmup_factor": 0.1, "milestones": [2],
                                             "gamma": 0.5}]
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5)
    assert sched2.last_epoch == 4
