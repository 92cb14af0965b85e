"""course_instructor.ppo: the course's PPO step equals trl 0.11.4's ``PPOTrainer.step``.

Both steps get the same batch, the same NumPy seed (trl shuffles the
mini-batches with NumPy's global generator) and copies of the same starting
weights; their statistics and the updated parameters are compared.

Why two optimizers.  trl's default is Adam, whose first steps move every
weight by about ``lr * g / |g|`` whatever the size of its gradient ``g``.
Some gradients are exactly zero in exact arithmetic (GPT-2's attention key
biases: adding a constant to every score of a query leaves the softmax
unchanged) and in floating point are rounding noise (about 1e-10 of the
other gradients) that depends on the order of the sums; Adam turns that noise
into steps of the size ``lr``.  The two implementations sum in different
orders (the course's output layer only sees response tokens), so on those
weights no two correct implementations agree.  With plain SGD every weight
moves by ``lr * g`` and all of them agree to 1e-5; with Adam everything but
those noise-driven weights does, and the test shows their gradients are
rounding noise.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from course_instructor import ppo as course_ppo
from course_lib.rollout import rollout_batch

STATS_RTOL = 1e-5
# The policy loss is a mean of terms of size ~1 that cancel to ~1e-3; float32 sums in a different
# order differ by ~1e-7 absolute there, so an absolute floor of 1e-6 is needed next to rtol.
STATS_ATOL = 1e-6
PARAM_RTOL = 1e-5


class RecordingAdam(torch.optim.Adam):
    """trl's optimizer (Adam) that keeps a copy of the gradients of its first step."""

    first_grads: dict | None = None

    def step(self, closure=None):
        if self.first_grads is None:
            self.first_grads = {id(p): p.grad.detach().clone() for g in self.param_groups for p in g["params"]
                                if p.grad is not None}
        return super().step(closure)


def random_batch(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    queries = [torch.randint(0, 50257, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g) for _ in range(n)]
    responses = [torch.randint(0, 50257, (int(torch.randint(4, 17, (1,), generator=g)),), generator=g)
                 for _ in range(n)]
    scores = [torch.tensor(float(x)) for x in torch.randn(n, generator=g) * 2]
    return {"queries": queries, "responses": responses, "scores": scores}


def run_both(policy, ref, tokenizer, batches, optimizer: str = "adam", **config):
    """Take the PPO steps of ``batches`` with trl and with the course; return both results."""
    from trl import PPOConfig, PPOTrainer

    opt_class = {"adam": RecordingAdam, "sgd": torch.optim.SGD}[optimizer]
    cfg = PPOConfig(log_with=None, batch_size=len(batches[0]["queries"]), **config)
    out = {}
    for engine in ("trl", "course"):
        model = copy.deepcopy(policy)
        opt = opt_class([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
        trainer = PPOTrainer(cfg, model, copy.deepcopy(ref), tokenizer, optimizer=opt)
        step = trainer.step if engine == "trl" else course_ppo.CoursePPO.from_trainer(trainer).step
        stats = []
        for i, b in enumerate(batches):
            np.random.seed(100 + i)
            stats.append(step(list(b["queries"]), list(b["responses"]), list(b["scores"])))
        out[engine] = {"stats": stats, "model": model, "opt": opt, "kl_coef": trainer.kl_ctl.value}
    return out["trl"], out["course"]


def assert_same_stats(trl_stats, course_stats):
    for k in course_ppo.STAT_NAMES:
        expected = float(np.asarray(trl_stats[k]))
        assert course_stats[k] == pytest.approx(expected, rel=STATS_RTOL, abs=STATS_ATOL), k


def key_bias_mask(name: str, param):
    """True on the key part of GPT-2's fused q/k/v bias (``c_attn.bias`` = [q | k | v])."""
    mask = torch.zeros_like(param, dtype=torch.bool)
    if name.endswith("attn.c_attn.bias"):
        third = param.numel() // 3
        mask[third:2 * third] = True
    return mask


def param_agreement(trl_model, course_model, exclude_key_biases: bool):
    """(elements outside rtol 1e-5, elements compared, largest absolute difference).

    Relative to the larger of the element and the root mean square of its
    tensor: a weight that happens to sit near 0 is compared at its tensor's scale.
    """
    outside = total = 0
    largest = 0.0
    for (name, a), (_, b) in zip(trl_model.named_parameters(), course_model.named_parameters()):
        keep = ~key_bias_mask(name, a) if exclude_key_biases else torch.ones_like(a, dtype=torch.bool)
        a, b = a.detach(), b.detach()
        scale = torch.maximum(a.abs(), a.pow(2).mean().sqrt())[keep]
        diff = (a - b).abs()[keep]
        outside += int((diff > PARAM_RTOL * scale).sum())
        total += int(keep.sum())
        largest = max(largest, float(diff.max()) if diff.numel() else 0.0)
    return outside, total, largest


@pytest.fixture(scope="module")
def tiny(tiny_policy_dir):
    from course_lib.models import load_policy, load_tokenizer

    torch.manual_seed(0)
    return load_policy(tiny_policy_dir), load_policy(tiny_policy_dir), load_tokenizer(tiny_policy_dir)


# ---- the step against trl, tiny models ------------------------------------------------
def test_two_steps_with_sgd_match_trl_statistics_kl_coefficient_and_every_parameter(tiny):
    policy, ref, tok = tiny
    batches = [random_batch(8, 1), random_batch(8, 2)]
    trl, course = run_both(policy, ref, tok, batches, optimizer="sgd", mini_batch_size=4, ppo_epochs=2,
                           learning_rate=1e-2, init_kl_coef=0.3, target=0.5, horizon=100)
    for s_trl, s_course in zip(trl["stats"], course["stats"]):
        assert_same_stats(s_trl, s_course)
    # the adaptive controller moved beta after step 1 (KL above target), and step 2 used the moved value
    assert course["stats"][1]["objective/kl_coef"] != 0.3
    assert course["kl_coef"] == pytest.approx(trl["kl_coef"], rel=1e-6)
    outside, total, largest = param_agreement(trl["model"], course["model"], exclude_key_biases=False)
    assert outside == 0, f"{outside} of {total} parameters differ by more than 1e-5 relative"
    moved = sum(int((a != b).sum()) for a, b in zip(trl["model"].parameters(), policy.parameters()))
    assert moved > 0.5 * total  # the step did something to compare


def test_adam_step_matches_trl_except_on_weights_whose_gradient_is_rounding_noise(tiny):
    policy, ref, tok = tiny
    trl, course = run_both(policy, ref, tok, [random_batch(8, 3)], optimizer="adam", mini_batch_size=4,
                           ppo_epochs=2, learning_rate=1e-3, adap_kl_ctrl=False, init_kl_coef=0.1)
    assert_same_stats(trl["stats"][0], course["stats"][0])
    outside, total, largest = param_agreement(trl["model"], course["model"], exclude_key_biases=True)
    assert outside <= 1e-5 * total, f"{outside} of {total} parameters differ by more than 1e-5 relative"
    # Adam moves a weight by at most about lr per step (4 steps here), so does any disagreement
    assert largest < 4 * 1e-3
    # the excluded weights' first gradient is rounding noise next to the other biases' gradients
    for name, p in trl["model"].named_parameters():
        if name.endswith("attn.c_attn.bias"):
            g = trl["opt"].first_grads[id(p)]
            kb = key_bias_mask(name, p)
            assert g[kb].abs().max() < 1e-5 * g[~kb].abs().max(), name


def test_fixed_kl_and_zeroed_minibatches_follow_trl(tiny):
    """ratio_threshold below 1: every mini-batch is "skipped" (loss zeroed), as trl does, yet Adam still steps."""
    policy, ref, tok = tiny
    with pytest.warns(UserWarning, match="ratio"):
        trl, course = run_both(policy, ref, tok, [random_batch(4, 4)], optimizer="sgd", mini_batch_size=2,
                               ppo_epochs=1, learning_rate=1e-2, adap_kl_ctrl=False, ratio_threshold=0.5)
    assert course["stats"][0]["ppo/loss/total"] == 0.0
    assert_same_stats(trl["stats"][0], course["stats"][0])
    assert course["kl_coef"] == trl["kl_coef"] == 0.2
    outside, _, _ = param_agreement(trl["model"], course["model"], exclude_key_biases=False)
    assert outside == 0


# ---- the same on a real batch of the course (bundled models) --------------------------
@pytest.mark.slow
def test_course_step_equals_trl_step_on_a_real_batch_of_the_bundled_models():
    from course_lib.config import make_config
    from course_lib.data import build_dataset
    from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer

    cfg = make_config("cpu", batch_size=16, mini_batch_size=4, ppo_epochs=2, learning_rate=1.41e-4)
    tok = load_tokenizer(cfg.policy_model)
    torch.manual_seed(0)
    policy, ref = load_policy(cfg.policy_model), load_policy(cfg.policy_model)
    batch = rollout_batch(policy, tok, load_sentiment_pipeline(cfg.reward_model),
                                     build_dataset(cfg, tok), cfg, 16, seed=3)
    assert len({float(s) for s in batch["scores"]}) == 16 and all(len(r) >= 1 for r in batch["responses"])
    config = dict(mini_batch_size=4, ppo_epochs=2, learning_rate=cfg.learning_rate, init_kl_coef=cfg.init_kl_coef)
    for optimizer in ("sgd", "adam"):
        trl, course = run_both(policy, ref, tok, [batch], optimizer=optimizer, **config)
        assert_same_stats(trl["stats"][0], course["stats"][0])
        outside, total, largest = param_agreement(trl["model"], course["model"], exclude_key_biases=optimizer == "adam")
        if optimizer == "sgd":
            assert outside == 0, f"{outside} of {total} parameters differ by more than 1e-5 relative"
        else:
            assert outside <= 1e-5 * total and largest < 8 * cfg.learning_rate


# ---- the parts, on values small enough to check by hand -----------------------------
def test_gae_by_hand_and_padding_counts_as_zero():
    values = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, 9.0]])
    rewards = torch.tensor([[0.0, 0.0, 1.0], [2.0, 0.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    adv, ret = course_ppo.gae(values, rewards, mask, gamma=0.9, lam=0.5)
    # row 0: deltas 0+0.9*2-1=0.8, 0+0.9*3-2=0.7, 1-3=-2; A2=-2, A1=0.7+0.45*-2=-0.2, A0=0.8+0.45*-0.2=0.71
    assert torch.allclose(adv[0], torch.tensor([0.71, -0.2, -2.0]))
    assert torch.allclose(ret[0], torch.tensor([1.71, 1.8, 1.0]))
    # row 1: one real token, the padding's value and reward (9) are ignored: A0 = 2 - 0.5
    assert torch.allclose(adv[1], torch.tensor([1.5, 0.0, 0.0])) and ret[1, 0] == 2.0


def test_gae_equals_trl_compute_advantages_on_the_right_padded_layout(tiny):
    """trl works on (B, query+response) with the response in the middle; the course on (B, response)."""
    from trl import PPOConfig, PPOTrainer

    policy, ref, tok = tiny
    trainer = PPOTrainer(PPOConfig(log_with=None, batch_size=2, mini_batch_size=2, gamma=0.97, lam=0.9),
                         policy, ref, tok)
    g = torch.Generator().manual_seed(0)
    values, rewards = torch.randn(2, 9, generator=g), torch.randn(2, 9, generator=g)
    wide_mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 1]])
    _, adv_trl, ret_trl = trainer.compute_advantages(values, rewards, wide_mask)
    rows = [wide_mask[b].nonzero()[:, 0] for b in range(2)]
    compact = lambda x: torch.stack([torch.cat([x[b, r], x.new_zeros(5 - len(r))]) for b, r in enumerate(rows)])
    mask = compact(wide_mask.float()).long()
    adv, ret = course_ppo.gae(compact(values), compact(rewards), mask, 0.97, 0.9)
    adv = course_ppo.masked_whiten(adv, mask)
    assert torch.allclose(adv[mask.bool()], adv_trl[wide_mask.bool()], atol=1e-6)
    assert torch.allclose(ret[mask.bool()], ret_trl[wide_mask.bool()], atol=1e-6)


def test_rloo_advantage_is_return_minus_the_mean_of_the_others():
    rewards = torch.tensor([[0.0, 1.0, 0.0], [3.0, 0.0, 0.0], [-1.0, 0.0, 7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    adv, ret = course_ppo.rloo_advantages(rewards, mask)
    # returns 1, 3, 6: baselines (3+6)/2, (1+6)/2, (1+3)/2
    assert torch.allclose(adv, torch.tensor([[-3.5, -3.5, 0.0], [-0.5, 0.0, 0.0], [4.0, 4.0, 4.0]]))
    assert torch.equal(ret[:, 0], torch.tensor([1.0, 3.0, 6.0]))
    with pytest.raises(ValueError, match="at least 2"):
        course_ppo.rloo_advantages(rewards[:1], mask[:1])


def test_clipped_losses_by_hand():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, 1.0, -2.0]])
    mask = torch.tensor([[1, 1, 1]])
    loss, clipfrac, ratio = course_ppo.clipped_policy_loss(new, old, adv, mask, cliprange=0.2)
    # token 0: ratio 1.5 clipped to 1.2 (-1.2 > -1.5); token 1: 0.5, unclipped -0.5 > -0.8; token 2: 2.2
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 2.2) / 3)
    assert clipfrac.item() == pytest.approx(1 / 3)
    vloss, vclip = course_ppo.clipped_value_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]),
                                                 torch.tensor([[2.0, 0.1]]), torch.tensor([[1, 1]]), 0.2)
    # token 0: max((1-2)^2, (0.2-2)^2) = 3.24 (clipped); token 1: 0.01
    assert vloss.item() == pytest.approx(0.5 * (3.24 + 0.01) / 2)
    assert vclip.item() == pytest.approx(0.5)


def test_kl_shaped_rewards_put_the_score_on_each_last_real_token():
    lp = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    ref = torch.tensor([[-2.0, -2.0, -1.0], [-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    rewards, non_score, kl = course_ppo.kl_shaped_rewards(torch.tensor([1.0, -4.0]), lp, ref, mask, 0.5)
    assert torch.equal(kl, lp - ref)
    assert torch.allclose(rewards, torch.tensor([[-0.5, 0.0, 1.0 + 1.0], [-0.25 - 4.0, 0.0, 0.0]]))


def test_adaptive_kl_controller_matches_trl():
    from trl.trainer.utils import AdaptiveKLController

    mine, theirs = course_ppo.AdaptiveKLController(0.2, 6.0, 10000), AdaptiveKLController(0.2, 6.0, 10000)
    for kl in (20.0, 7.0, 1.0, 6.0):
        mine.update(kl, 64)
        theirs.update(kl, 64)
        assert mine.value == theirs.value
    assert mine.value != 0.2


def test_response_forward_equals_log_softmax_of_the_full_model(tiny):
    policy, _, _ = tiny
    queries = [torch.tensor([10, 11, 12]), torch.tensor([5])]
    responses = [torch.tensor([7, 8]), torch.tensor([1, 2, 3, 4])]
    batch = course_ppo.pack(queries, responses, pad_token_id=50256)
    policy.eval()
    with torch.no_grad():
        lp, values, ent = course_ppo.response_forward(policy, batch, want_values=True, want_entropy=True)
        for b, (q, r) in enumerate(zip(queries, responses)):
            logits, _, v = policy(torch.cat([q, r])[None])
            full = torch.log_softmax(logits[0, len(q) - 1:-1], -1)
            assert torch.allclose(lp[b, :len(r)], full.gather(-1, r[:, None])[:, 0], atol=1e-5)
            assert torch.allclose(values[b, :len(r)], v[0, len(q) - 1:-1], atol=1e-5)
            assert torch.allclose(ent[b, :len(r)], -(full.exp() * full).sum(-1), atol=1e-4)
            assert (lp[b, len(r):] == 0).all()
    assert batch.mask.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_settings_reject_bad_values_naming_the_valid_ones():
    from trl import PPOConfig

    with pytest.raises(ValueError, match="valid: gae, rloo"):
        course_ppo.PPOSettings(advantage="td")
    with pytest.raises(ValueError, match="not a multiple"):
        course_ppo.PPOSettings(batch_size=10, mini_batch_size=4)
    with pytest.raises(ValueError, match="whiten_rewards"):
        course_ppo.PPOSettings.from_trl_config(PPOConfig(log_with=None, whiten_rewards=True))
    with pytest.raises(ValueError, match="valid: "):
        course_ppo.PPOSettings.from_lab_config(__import__("course_lib.config").config.make_config("cpu"), gama=1)
    s = course_ppo.PPOSettings.from_lab_config(__import__("course_lib.config").config.make_config("cpu"))
    assert (s.batch_size, s.mini_batch_size, s.learning_rate, s.init_kl_coef) == (32, 8, 5e-4, 0.3)


def test_step_checks_the_batch_size(tiny):
    policy, ref, tok = tiny
    step = course_ppo.CoursePPO(copy.deepcopy(policy), ref, course_ppo.PPOSettings(batch_size=4, mini_batch_size=2),
                                tok.pad_token_id)
    b = random_batch(3, 0)
    with pytest.raises(ValueError, match="batch_size is 4 but got 3 queries"):
        step.step(b["queries"], b["responses"], b["scores"])


def test_rloo_step_trains_the_policy_and_leaves_the_value_head_alone(tiny):
    policy, ref, tok = tiny
    model = copy.deepcopy(policy)
    settings = course_ppo.PPOSettings(batch_size=8, mini_batch_size=4, ppo_epochs=1, learning_rate=1e-3,
                                      advantage="rloo")
    b = random_batch(8, 5)
    np.random.seed(0)
    stats = course_ppo.CoursePPO(model, ref, settings, tok.pad_token_id).step(b["queries"], b["responses"], b["scores"])
    assert torch.equal(model.v_head.summary.weight, policy.v_head.summary.weight)
    assert not torch.equal(model.pretrained_model.transformer.h[0].mlp.c_fc.weight,
                           policy.pretrained_model.transformer.h[0].mlp.c_fc.weight)
    assert stats["ppo/loss/value"] == 0.0 and stats["ppo/loss/policy"] != 0.0


# ---- the builders' --engine option ----------------------------------------------------------
def test_builder_engines_train_the_same_run(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir, tmp_path):
    from course_instructor.builders.ppo import train_with_engine
    from course_lib.config import make_config

    cfg = make_config("cpu", policy_model=str(tiny_policy_dir), reward_model=str(tiny_classifier_dir),
                      dataset=str(imdb_parquet_dir), batch_size=4, mini_batch_size=2, ppo_epochs=1, steps=2,
                      learning_rate=1e-3)
    records = {e: train_with_engine(cfg, tmp_path / e, e)[0] for e in ("trl", "course")}
    for r_trl, r_course in zip(records["trl"], records["course"]):
        for k in ("env/reward_mean", "objective/kl", "ppo/loss/total", "ppo/loss/value", "ppo/policy/clipfrac"):
            assert r_course[k] == pytest.approx(r_trl[k], rel=STATS_RTOL, abs=STATS_ATOL), k
    assert records["trl"][1]["objective/kl"] != 0.0  # step 2 saw a policy moved by step 1
    assert (tmp_path / "course" / "training_stats.json").exists()
    with pytest.raises(ValueError, match="valid: trl, course"):
        train_with_engine(cfg, tmp_path / "x", "jax")


def test_lora_step_with_the_adapter_disabled_reference_matches_trl(tiny_policy_dir, gpt2_tokenizer):
    """PPO with LoRA: no reference copy (trl's ref_model=None); both steps use the adapter-disabled policy."""
    from course_lib.models import load_policy, lora_config

    torch.manual_seed(0)
    policy = load_policy(tiny_policy_dir, peft_config=lora_config(4, 8))
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("v_head.") for n in trainable)
    batches = [random_batch(8, 5), random_batch(8, 6)]
    trl, course = run_both(policy, None, gpt2_tokenizer, batches, optimizer="sgd", mini_batch_size=4,
                           ppo_epochs=2, learning_rate=1e-1, init_kl_coef=0.3)
    for s_trl, s_course in zip(trl["stats"], course["stats"]):
        assert_same_stats(s_trl, s_course)
    # LoRA's B starts at 0, so step 1 starts on the reference (KL 0); step 2 starts away from it
    assert course["stats"][0]["objective/kl"] == pytest.approx(0.0, abs=1e-6)
    assert abs(course["stats"][1]["objective/kl"]) > 1e-4  # a sampled estimate: either sign
    outside, total, _ = param_agreement(trl["model"], course["model"], exclude_key_biases=False)
    assert outside == 0, f"{outside} of {total} parameters differ by more than 1e-5 relative"
    before = dict(policy.named_parameters())
    for name, p in course["model"].named_parameters():
        assert torch.equal(p, before[name]) == (name not in trainable), name  # only adapters and head moved


def test_bundled_ppo_models_were_trained_with_the_builders_settings():
    """What `make assets` would build is what ships: each bundled model's recorded settings equal build_settings."""
    import json

    from course_lib.assets import bundled
    from course_instructor.builders.ppo import KL_TARGETS, NAMES, build_settings

    assert KL_TARGETS.keys() == NAMES.keys()
    for sentiment, name in NAMES.items():
        recorded = json.loads((bundled(name) / "training_stats.json").read_text())["config"]
        assert recorded["target_label"] == sentiment
        want = build_settings(sentiment)
        assert {k: recorded[k] for k in want} == want, name
    with pytest.raises(ValueError, match="valid: POSITIVE, NEGATIVE"):
        build_settings("HAPPY")
