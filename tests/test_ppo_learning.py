"""A short seeded PPO run on the bundled models moves the reward toward the target label.

Real models, real data, real trl: for each sentiment, a few PPO steps from
``gpt2-imdb-mini`` must raise the mean logit of the target label on held-out
prompts (same prompts, same lengths, same sampling seed before and after).
"""
import pytest

from course_lib import train
from course_lib.config import make_config
from course_lib.data import build_dataset
from course_lib.evaluate import compare_models, summarize
from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer

STEPS = 10
EVAL_PROMPTS = 96
MIN_GAIN = 0.3  # logits; the measured gains are reported in the test output


@pytest.mark.slow
@pytest.mark.parametrize("label", ["POSITIVE", "NEGATIVE"])
def test_short_run_raises_the_target_reward(label):
    cfg = make_config("cpu", target_label=label, steps=STEPS, seed=0)
    records, trainer = train.run(cfg, None, progress=False)
    assert len(records) == STEPS
    tok = load_tokenizer(cfg.policy_model)
    tuned = trainer.accelerator.unwrap_model(trainer.model)
    models = {"reference": load_policy(cfg.policy_model, value_head=False), "tuned": tuned.pretrained_model}
    prompts = build_dataset(cfg, tok, split="test", seed=99)
    pipe = load_sentiment_pipeline(cfg.reward_model)
    table = compare_models(models, tok, pipe, prompts, cfg, n=EVAL_PROMPTS, seed=99)
    s = summarize(table, label)
    gain = s["tuned"]["mean"] - s["reference"]["mean"]
    during = [r["env/reward_mean"] for r in records]
    print(f"{label}: reward during training {during[0]:+.2f} -> {during[-1]:+.2f}; "
          f"held-out mean {s['reference']['mean']:+.3f} -> {s['tuned']['mean']:+.3f} (gain {gain:+.3f})")
    assert gain > MIN_GAIN, f"{label} logit rose by only {gain:+.3f} on {EVAL_PROMPTS} held-out prompts"
    assert sum(during[-3:]) / 3 > sum(during[:3]) / 3, "the training reward did not rise"
