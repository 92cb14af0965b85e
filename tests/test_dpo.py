"""course_instructor.dpo: preference pairs, the DPO loss (equal to trl 0.11.4's) and a short run.

The loss is compared with trl's own ``DPOTrainer.dpo_loss``, called unbound on
a stand-in ``self`` that carries the attributes that method reads (building a
whole ``DPOTrainer`` needs a training data set and writes an output folder;
the method itself is what the course reproduces).  The batch is real: pairs
of the bundled reference's samples, ordered by the bundled classifier, with
the log-probabilities of the Happy LLM (policy) and of the reference.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from course_instructor import dpo

TOL = 1e-6


@pytest.fixture(scope="module")
def real_pairs():
    from course_lib.config import make_config
    from course_lib.data import build_dataset
    from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer
    from course_lib.reward import sentiment_scores
    from course_lib.train import set_seed

    cfg = make_config("cpu")
    tok = load_tokenizer(cfg.policy_model)
    ref = load_policy(cfg.policy_model, value_head=False).eval()
    happy = load_policy("course_lib/assets/ppo-happy-mini", value_head=False).eval()
    pipe = load_sentiment_pipeline(cfg.reward_model)
    prompts = build_dataset(cfg, tok, split="test", seed=7).select(range(24))
    queries = [torch.as_tensor(q) for q in prompts["input_ids"]]
    lengths = [8] * len(queries)
    set_seed(0)
    gen = cfg.generation_kwargs(tok)
    a = dpo.sample_responses(ref, tok, queries, lengths, gen)
    b = dpo.sample_responses(ref, tok, queries, lengths, gen)
    score = lambda rs: sentiment_scores(pipe, [q + t for q, t in zip(prompts["query"], tok.batch_decode(rs, skip_special_tokens=True))], "POSITIVE")  # noqa: E731
    sa, sb = score(a), score(b)
    pairs = dpo.build_preference_pairs(a, b, sa, sb)
    with torch.no_grad():
        logps = {(who, side): dpo.sequence_logprobs(m, queries, pairs[side], tok.eos_token_id)
                 for who, m in (("policy", happy), ("reference", ref)) for side in ("chosen", "rejected")}
    return {"pairs": pairs, "scores": (sa, sb), "logps": logps}


def trl_dpo_loss(logps, beta, label_smoothing=0.0):
    from trl import DPOTrainer

    stub = SimpleNamespace(beta=beta, label_smoothing=label_smoothing, loss_type="sigmoid", reference_free=False,
                           f_divergence_type="reverse_kl", f_divergence_params=None,
                           accelerator=SimpleNamespace(device=torch.device("cpu")))
    return DPOTrainer.dpo_loss(stub, logps["policy", "chosen"], logps["policy", "rejected"],
                               logps["reference", "chosen"], logps["reference", "rejected"])


@pytest.mark.parametrize("beta,label_smoothing", [(0.1, 0.0), (0.5, 0.0), (0.05, 0.1)])
def test_dpo_loss_equals_trl(real_pairs, beta, label_smoothing):
    logps = real_pairs["logps"]
    ours = dpo.dpo_loss(logps["policy", "chosen"], logps["policy", "rejected"], logps["reference", "chosen"],
                        logps["reference", "rejected"], beta, label_smoothing)
    theirs = trl_dpo_loss(logps, beta, label_smoothing)
    for name, x, y in zip(("losses", "chosen_rewards", "rejected_rewards"), ours, theirs):
        assert x.shape == y.shape == (24,), name
        torch.testing.assert_close(x, y, rtol=TOL, atol=TOL, msg=name)
    # a real batch: the Happy LLM prefers the classifier's choice on most pairs (the loss is informative)
    assert 0.5 < float((ours[1] > ours[2]).float().mean()) < 1.0


def test_pairs_put_the_higher_logit_first(real_pairs):
    sa, sb = real_pairs["scores"]
    pairs = real_pairs["pairs"]
    assert all(m == pytest.approx(abs(x - y)) for m, x, y in zip(pairs["margin"], sa, sb))
    p = dpo.build_preference_pairs(["a1", "a2", "a3"], ["b1", "b2", "b3"], [0.5, -1.0, 2.0], [0.1, 3.0, 2.0])
    assert p["chosen"] == ["a1", "b2", "a3"] and p["rejected"] == ["b1", "a2", "b3"]
    with pytest.raises(ValueError, match="one of each"):
        dpo.build_preference_pairs(["a"], ["b", "c"], [1.0], [0.0])


def test_implicit_reward_and_loss_by_hand():
    pc, pr, rc, rr = (torch.tensor([v]) for v in (-10.0, -12.0, -11.0, -11.0))
    losses, cr, rj = dpo.dpo_loss(pc, pr, rc, rr, beta=0.5)
    # h = (-10 + 12) - (-11 + 11) = 2; loss = -log sigmoid(1) = log(1 + e^-1)
    assert float(losses) == pytest.approx(float(torch.log1p(torch.exp(torch.tensor(-1.0)))))
    assert float(cr) == pytest.approx(0.5) and float(rj) == pytest.approx(-0.5)
    assert float(dpo.implicit_reward(pc, rc, 0.5)) == pytest.approx(0.5)


def test_settings_refuse_bad_values():
    with pytest.raises(ValueError, match="beta"):
        dpo.DPOSettings(beta=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo.DPOSettings(label_smoothing=0.5)
    with pytest.raises(ValueError, match="samples_per_prompt"):
        dpo.DPOSettings(samples_per_prompt=1)
    with pytest.raises(ValueError, match="rounds"):
        dpo.DPOSettings(rounds=0)
    assert dpo.DPOSettings.__dataclass_fields__["beta"].metadata["help"]


@pytest.mark.slow
def test_a_short_dpo_run_raises_the_chosen_margin():
    from course_lib.config import make_config
    from course_lib.data import build_dataset
    from course_lib.models import load_sentiment_pipeline, load_tokenizer

    cfg = make_config("cpu")
    tok = load_tokenizer(cfg.policy_model)
    prompts = build_dataset(cfg, tok)
    settings = dpo.DPOSettings(prompts=64, epochs=2, mini_batch_size=16, learning_rate=1e-3)
    model, records, info = dpo.train_dpo(settings, cfg, tok, prompts, load_sentiment_pipeline(cfg.reward_model))
    assert len(records) == 8 and info["samples"] == 128
    assert records[-1]["rewards/margins"] > records[0]["rewards/margins"]
    assert records[-1]["loss"] < records[0]["loss"]


@pytest.mark.slow
def test_iterative_dpo_samples_later_rounds_from_the_policy_on_fresh_prompts(monkeypatch):
    """rounds=2, four samples per prompt: round 1 from the reference, round 2 from the adapter; best vs worst."""
    from course_lib.config import make_config
    from course_lib.data import build_dataset
    from course_lib.models import load_sentiment_pipeline, load_tokenizer

    cfg = make_config("cpu")
    tok = load_tokenizer(cfg.policy_model)
    prompts = build_dataset(cfg, tok)
    seen = []
    real = dpo.sample_responses

    def spy(model, tokenizer, queries, lengths, gen_kwargs, batch_size=64):
        # the adapter is switched off while the reference samples (peft's disable_adapter context)
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        seen.append((len(queries), all(m.disable_adapters for m in layers) and bool(layers),
                     tokenizer.decode(queries[0])))
        return real(model, tokenizer, queries, lengths, gen_kwargs, batch_size)

    monkeypatch.setattr(dpo, "sample_responses", spy)
    settings = dpo.DPOSettings(prompts=32, rounds=2, samples_per_prompt=4, epochs=1, mini_batch_size=16,
                               learning_rate=1e-3)
    model, records, info = dpo.train_dpo(settings, cfg, tok, prompts, load_sentiment_pipeline(cfg.reward_model))
    assert [(n, off) for n, off, _ in seen] == [(32, True)] * 4 + [(32, False)] * 4
    assert seen[0][2] == prompts[0]["query"] and seen[4][2] == prompts[32]["query"]   # fresh prompts in round 2
    assert info["samples"] == 2 * 32 * 4 and info["pairs"] == 64 and len(records) == 4
    assert [r["sampled"] for r in info["rounds"]] == ["reference", "policy"]
    for r in info["rounds"]:   # the best and the worst of four: the chosen score is the maximum
        assert r["mean_chosen_score"] - r["mean_rejected_score"] == pytest.approx(r["mean_pair_margin"], abs=1e-5)
        assert r["mean_pair_margin"] > 0
