"""NonLocalBlock's options for converted models: temporal groups (official add_nonlocal_group, PySlowFast
NONLOCAL.GROUP) and the BN epsilon, with the plain block's state-dict keys and attention accessor; the
name ExtendedNonLocalBlock, written into configs by earlier converters, still instantiates."""
from __future__ import annotations

import pytest
import torch

from nlnet.models import NonLocalBlock
from nlnet.models.convert.layers import ExtendedNonLocalBlock


def grouped_block(groups=4, **kwargs) -> NonLocalBlock:
    torch.manual_seed(0)
    block = NonLocalBlock(8, temporal_groups=groups, pool_before=True, scale=True, **kwargs)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
    return block.eval()


def test_groups_attend_within_consecutive_frames():
    block = grouped_block()
    plain = NonLocalBlock(8, pool_before=True, scale=True).eval()
    plain.load_state_dict(block.state_dict())  # same keys
    x = torch.randn(2, 8, 8, 6, 5)
    with torch.no_grad():
        want = torch.cat([plain(x[:, :, 2 * g:2 * g + 2]) for g in range(4)], dim=2)  # 4 groups of 2 frames
        torch.testing.assert_close(block(x), want, rtol=0, atol=1e-6)
    assert torch.equal(block.ungroup_frames(block.group_frames(x)), x)


def test_attention_is_block_diagonal_over_the_clip():
    block = grouped_block(groups=2)
    x = torch.randn(1, 8, 4, 6, 6)
    att = block.attention(x)
    assert (att.query_grid, att.key_grid, att.batch_size, att.scope) == ((4, 6, 6), (4, 3, 3), 1, "spacetime")
    plain = NonLocalBlock(8, pool_before=True, scale=True)
    plain.load_state_dict(block.state_dict())
    n, n_keys = 2 * 36, 2 * 9
    for g in range(2):
        part = plain.attention(x[:, :, 2 * g:2 * g + 2]).weights[0]
        torch.testing.assert_close(att.weights[0, g * n:(g + 1) * n, g * n_keys:(g + 1) * n_keys], part)
    assert att.weights[0, :n, n_keys:].abs().max() == 0 and att.weights[0, n:, :n_keys].abs().max() == 0
    torch.testing.assert_close(att.weights.sum(-1), torch.ones(1, 4 * 36))  # softmax rows
    assert att.global_weights(0).shape == (4 * 36, 4 * 9)


def test_groups_by_width_and_eps():
    assert ExtendedNonLocalBlock is NonLocalBlock  # configs of earlier converters
    assert NonLocalBlock(16).temporal_groups == 1 and NonLocalBlock(16).norm.eps == 1e-5
    assert ExtendedNonLocalBlock(512, temporal_groups={512: 4}).temporal_groups == 4
    assert NonLocalBlock(1024, temporal_groups={512: 4}).temporal_groups == 1
    assert NonLocalBlock(16, norm_eps=1.0000001e-5).norm.eps == 1.0000001e-5
    with pytest.raises(ValueError, match="scope='spacetime'"):
        NonLocalBlock(16, temporal_groups=2, scope="space")
    with pytest.raises(ValueError, match="5 frames do not split into temporal_groups=2"):
        NonLocalBlock(8, temporal_groups=2)(torch.randn(1, 8, 5, 4, 4))
