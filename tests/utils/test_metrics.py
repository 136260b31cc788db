"""Charades mAP (PySlowFast / LFB): per-class average precision against an independent computation, and
hand-made cases (ties, a class with no positive, all correct, all wrong)."""
import math

import pytest
import torch

from nlnet.utils.metrics import average_precision, mean_average_precision


def precision_at_each_positive(scores, targets):
    """AP written independently: sort by score, average the precision at the rank of each positive."""
    ranked = sorted(zip(scores.tolist(), targets.tolist()), key=lambda pair: -pair[0])
    hits, precisions = 0, []
    for rank, (_, positive) in enumerate(ranked, 1):
        if positive:
            hits += 1
            precisions.append(hits / rank)
    return sum(precisions) / len(precisions)


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_is_the_mean_precision_at_each_positive(seed):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(40, 7, generator=g)  # continuous: no ties
    targets = (torch.rand(40, 7, generator=g) < 0.3).float()
    targets[0] = 1  # every class has a positive
    mean_ap, per_class = mean_average_precision(scores, targets)
    expected = [100 * precision_at_each_positive(scores[:, k], targets[:, k]) for k in range(7)]
    assert per_class == pytest.approx(expected, abs=1e-9)
    assert mean_ap == pytest.approx(sum(expected) / 7, abs=1e-9)


def test_tied_scores_form_one_threshold():
    # at 0.5: 1 of 2 correct (precision 1/2, recall 1/2); at 0.2: 2 of 3 (precision 2/3, recall 1)
    expected = 0.5 / 2 + 0.5 * 2 / 3
    assert average_precision(torch.tensor([0.5, 0.5, 0.2]), torch.tensor([1, 0, 1])) == pytest.approx(expected)
    # order inside a tie does not matter
    assert average_precision(torch.tensor([0.5, 0.5, 0.2]), torch.tensor([0, 1, 1])) == pytest.approx(expected)


def test_a_class_without_positives_is_left_out_of_the_mean():
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4], [0.1, 0.3, 0.2]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 0]]).float()
    mean_ap, per_class = mean_average_precision(scores, targets)
    assert per_class[:2] == [100.0, 100.0] and math.isnan(per_class[2]) and mean_ap == 100.0
    assert math.isnan(mean_average_precision(scores, torch.zeros(3, 3))[0])


def test_all_correct_and_all_wrong():
    targets = torch.tensor([[1, 0], [0, 1], [0, 0], [1, 1]]).float()
    assert mean_average_precision(targets * 0.9 + 0.05, targets)[0] == 100.0
    # all wrong: every positive ranked below every negative; class 0 has positives at ranks 3 and 4 of 4
    distinct = 0.01 * torch.arange(1, 5, dtype=torch.float32)[:, None]  # no ties
    mean_ap, per_class = mean_average_precision(1 - targets + distinct, targets)
    assert per_class == pytest.approx([100 * (1 / 3 + 2 / 4) / 2, 100 * (1 / 3 + 2 / 4) / 2])
    assert mean_ap < 50
