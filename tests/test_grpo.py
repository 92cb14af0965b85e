"""course_instructor.grpo: group-relative advantages, the k3 KL, the GRPO loss and a short run.

The comparison with today's trl (``GRPOTrainer``) runs in ``make modern-trl``
(its own environment, ``course_instructor/modern_trl.py``); here the pieces are
checked by hand on small numbers.
"""
from __future__ import annotations

import pytest
import torch

from course_instructor import grpo


def test_group_relative_advantages_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0])
    a = grpo.group_relative_advantages(r, group_size=3)
    # group 1: mean 2, unbiased std 1 -> (-1, 0, 1) / (1 + 1e-4); group 2: all equal -> 0
    torch.testing.assert_close(a, torch.tensor([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0]) / torch.tensor(
        [1 + 1e-4] * 3 + [1.0] * 3), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="multiple of group_size"):
        grpo.group_relative_advantages(torch.ones(5), group_size=2)


def test_k3_is_nonnegative_and_zero_on_equal_policies():
    lp = torch.tensor([-1.0, -2.0, -0.5])
    assert torch.all(grpo.k3_kl(lp, lp) == 0)
    ref = torch.tensor([-1.5, -1.0, -3.0])
    k3 = grpo.k3_kl(lp, ref)
    d = ref - lp
    torch.testing.assert_close(k3, torch.exp(d) - d - 1)
    assert torch.all(k3 >= 0)


def test_grpo_loss_at_ratio_one_is_minus_the_mean_advantage_plus_kl():
    torch.manual_seed(0)
    lp = -torch.rand(4, 5)
    ref = lp - 0.1 * torch.rand(4, 5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]])
    adv = torch.tensor([1.0, -0.5, 2.0, 0.0])
    loss, stats = grpo.grpo_loss(lp, lp, ref, adv, mask, cliprange=0.2, kl_coef=0.1)
    k3 = grpo.k3_kl(lp, ref)
    per_seq = (-adv[:, None] + 0.1 * k3) * mask
    expected = (per_seq.sum(-1) / mask.sum(-1)).mean()
    torch.testing.assert_close(loss, expected)
    bnpo, _ = grpo.grpo_loss(lp, lp, ref, adv, mask, 0.2, 0.1, loss_type="bnpo")
    torch.testing.assert_close(bnpo, per_seq.sum() / mask.sum())
    assert float(stats["clip_ratio"]) == 0.0


def test_grpo_loss_clips_a_ratio_beyond_the_range():
    lp = torch.log(torch.tensor([[0.9]]))
    old = torch.log(torch.tensor([[0.5]]))  # ratio 1.8
    loss, stats = grpo.grpo_loss(lp, old, lp, torch.tensor([1.0]), torch.ones(1, 1), 0.2, 0.0)
    assert float(loss) == pytest.approx(-1.2) and float(stats["clip_ratio"]) == 1.0
    with pytest.raises(ValueError, match="loss_type"):
        grpo.grpo_loss(lp, old, lp, torch.tensor([1.0]), torch.ones(1, 1), 0.2, 0.0, loss_type="nope")


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="group"):
        grpo.GRPOSettings(group_size=1)
    with pytest.raises(ValueError, match="loss_type"):
        grpo.GRPOSettings(loss_type="dr_grpo")


@pytest.mark.slow
def test_a_short_grpo_run_raises_the_reward():
    from course_lib.config import make_config
    from course_lib.data import build_dataset
    from course_lib.models import load_sentiment_pipeline, load_tokenizer

    cfg = make_config("cpu")
    tok = load_tokenizer(cfg.policy_model)
    settings = grpo.GRPOSettings(steps=12, prompts_per_step=4, group_size=8, learning_rate=2e-3)
    model, records, info = grpo.train_grpo(settings, cfg, tok, build_dataset(cfg, tok),
                                           load_sentiment_pipeline(cfg.reward_model))
    assert info["samples"] == 12 * 32
    first = sum(r["env/reward_mean"] for r in records[:4]) / 4
    last = sum(r["env/reward_mean"] for r in records[-4:]) / 4
    assert last > first
