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
MIN_RISE = 0.1  # logits: mean reward of the last 3 steps minus the first 3 (measured: about +0.2 to +0.3)


@pytest.mark.slow
@pytest.mark.parametrize("label", ["POSITIVE", "NEGATIVE"])
def test_short_run_raises_the_target_reward(label):
    cfg = make_config("cpu", target_label=label, steps=STEPS, seed=0)  # the live run's settings
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
    rise = sum(during[-3:]) / 3 - sum(during[:3]) / 3
    assert rise > MIN_RISE, f"the {label} reward rose by only {rise:+.3f} over the run: {during}"
    assert gain > 0, f"on {EVAL_PROMPTS} held-out prompts the {label} logit fell by {gain:+.3f}"
