"""course_lib.evaluate: the comparison table, its summary statistics, and the best-of-n yardstick."""
import math

import numpy as np
import pytest
import torch

from course_lib.config import make_config
from course_lib.data import build_dataset
from course_lib.evaluate import (
    DIVERSITY_FLOOR,
    LABELS,
    best_of_n,
    best_of_n_kl,
    compare_models,
    distinct_n,
    mean_ci,
    response_logprobs,
    score_texts,
    summarize,
    summary_frame,
    vader_compound,
)
from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer


def test_distinct_n_counts_distinct_word_ngrams_over_all_texts():
    # bigrams: (the,cat) (cat,sat) | (the,cat) (cat,ran) -> 3 distinct of 4
    assert distinct_n(["The cat sat", "the CAT ran"], 2) == pytest.approx(3 / 4)
    assert distinct_n(["great great great great"], 2) == pytest.approx(1 / 3)
    assert distinct_n(["a b c d"], 1) == 1.0
    assert distinct_n(["single", ""], 2) == 0.0  # no bigram at all


def test_mean_ci_matches_the_normal_approximation():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    s = mean_ci(values)
    sd = np.std(values, ddof=1)
    assert s["mean"] == pytest.approx(4.0)
    assert s["median"] == 3.0
    assert s["std"] == pytest.approx(sd)
    assert s["ci95"] == pytest.approx([4.0 - 1.96 * sd / math.sqrt(5), 4.0 + 1.96 * sd / math.sqrt(5)])
    assert mean_ci([2.5])["ci95"] == [2.5, 2.5]
    with pytest.raises(ValueError, match="no values"):
        mean_ci([])


def test_best_of_n_kl_formula():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(32) == pytest.approx(math.log(32) - 31 / 32)
    with pytest.raises(ValueError, match="at least 1"):
        best_of_n_kl(0)


@pytest.fixture(scope="module")
def tiny_eval(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir):
    cfg = make_config("cpu", policy_model=str(tiny_policy_dir), reward_model=str(tiny_classifier_dir),
                      dataset=str(imdb_parquet_dir))
    tok = load_tokenizer(cfg.policy_model)
    prompts = build_dataset(cfg, tok, split="test", seed=3)
    pipe = load_sentiment_pipeline(cfg.reward_model)
    return cfg, tok, prompts, pipe


def test_response_logprobs_equal_the_sum_of_token_log_probabilities(tiny_policy_dir, gpt2_tokenizer):
    model = load_policy(str(tiny_policy_dir), value_head=False)
    q1, r1 = torch.tensor([464, 3807, 318]), torch.tensor([845, 922])
    q2, r2 = torch.tensor([40]), torch.tensor([1842, 428, 2646])
    got = response_logprobs(model, [q1, q2], [r1, r2], gpt2_tokenizer.eos_token_id)
    for (q, r), value in zip([(q1, r1), (q2, r2)], got):
        ids = torch.cat([q, r])[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        want = sum(float(logp[len(q) - 1 + i, int(t)]) for i, t in enumerate(r))
        assert value == pytest.approx(want, abs=1e-3)


def test_compare_models_scores_every_model_on_the_same_prompts(tiny_eval, tiny_policy_dir):
    cfg, tok, prompts, pipe = tiny_eval
    ref = load_policy(str(tiny_policy_dir), value_head=False)
    other = load_policy(str(tiny_policy_dir), value_head=False)
    with torch.no_grad():  # a different model: the output layer (tied embeddings) shifted
        other.transformer.wte.weight.add_(0.5 * torch.randn_like(other.transformer.wte.weight))
    table = compare_models({"reference": ref, "copy": ref, "other": other}, tok, pipe, prompts, cfg, n=6, seed=5)
    assert len(table) == 6
    assert table["query"].tolist() == [prompts[i]["query"] for i in range(6)]
    # the same model under the same seed answers identically, and its KL estimate is exactly 0
    assert table["response [copy]"].tolist() == table["response [reference]"].tolist()
    assert np.allclose(table["KL [reference]"], 0.0) and np.allclose(table["KL [copy]"], 0.0)
    assert table["response [other]"].tolist() != table["response [reference]"].tolist()
    for label in LABELS:
        assert table[f"{label} [copy]"].tolist() == table[f"{label} [reference]"].tolist()
    # the second judge reads the same query + response texts
    full = [q + r for q, r in zip(table["query"], table["response [other]"])]
    assert table["VADER [other]"].tolist() == pytest.approx(vader_compound(full))
    s = summarize(table, "POSITIVE")
    assert set(s) == {"reference", "copy", "other"}
    assert s["reference"]["mean"] == pytest.approx(table["POSITIVE [reference]"].mean())
    assert s["copy"]["kl_to_reference"] == pytest.approx(0.0, abs=1e-6)
    assert 0.0 < s["reference"]["distinct_2"] <= 1.0
    assert s["copy"]["distinct_2_ratio"] == 1.0 and s["copy"]["collapse_flag"] is False
    v = table["VADER [other]"].to_numpy()
    assert s["other"]["vader_positive_rate"] == pytest.approx((v > 0.05).mean())
    assert s["other"]["vader_negative_rate"] == pytest.approx((v < -0.05).mean())


def test_compare_models_reuses_the_columns_of_a_previous_table(tiny_eval, tiny_policy_dir, monkeypatch):
    import pandas as pd

    import course_lib.evaluate as ev

    cfg, tok, prompts, pipe = tiny_eval
    ref = load_policy(str(tiny_policy_dir), value_head=False)
    other = load_policy(str(tiny_policy_dir), value_head=False)
    with torch.no_grad():
        other.transformer.wte.weight.add_(0.5 * torch.randn_like(other.transformer.wte.weight))
    both = compare_models({"reference": ref, "other": other}, tok, pipe, prompts, cfg, n=5, seed=7)
    first = compare_models({"reference": ref}, tok, pipe, prompts, cfg, n=5, seed=7)
    generated = []
    real = ev.generate_for_eval
    monkeypatch.setattr(ev, "generate_for_eval", lambda models, *a, **k: generated.append(list(models)) or
                        real(models, *a, **k))
    again = compare_models({"reference": ref, "other": other}, tok, pipe, prompts, cfg, n=5, seed=7, previous=first)
    assert generated == [["other"]]  # the reference's answers came from `first`
    pd.testing.assert_frame_equal(again, both)
    # a table from other prompts or another seed is refused, not silently mixed in
    with pytest.raises(ValueError, match="seed 7 and reference 'reference'; this call has seed 8"):
        compare_models({"reference": ref, "other": other}, tok, pipe, prompts, cfg, n=5, seed=8, previous=first)
    with pytest.raises(ValueError, match="other prompts"):
        compare_models({"reference": ref, "other": other}, tok, pipe, prompts, cfg, n=4, seed=7, previous=first)
    bare = first.copy()
    bare.attrs = {}
    with pytest.raises(ValueError, match="returned by compare_models"):
        compare_models({"reference": ref}, tok, pipe, prompts, cfg, n=5, seed=7, previous=bare)


def test_compare_models_and_summarize_reject_bad_input(tiny_eval, tiny_policy_dir):
    cfg, tok, prompts, pipe = tiny_eval
    ref = load_policy(str(tiny_policy_dir), value_head=False)
    with pytest.raises(ValueError, match="reference model 'base' is not among the models: reference"):
        compare_models({"reference": ref}, tok, pipe, prompts, cfg, n=2, reference="base")
    with pytest.raises(ValueError, match="no prompts"):
        compare_models({"reference": ref}, tok, pipe, prompts.select([]), cfg)
    table = compare_models({"reference": ref}, tok, pipe, prompts, cfg, n=2)
    with pytest.raises(ValueError, match="valid: POSITIVE, NEGATIVE"):
        summarize(table, "HAPPY")


def test_best_of_n_uses_compare_models_prompts_and_gets_better_with_n(tiny_eval, tiny_policy_dir):
    cfg, tok, prompts, pipe = tiny_eval
    ref = load_policy(str(tiny_policy_dir), value_head=False)
    scores = best_of_n(ref, tok, pipe, prompts, cfg, samples=6, n=8, seed=5, sample_seed=0)
    assert set(scores) == set(LABELS)
    assert scores["POSITIVE"].shape == (6, 8)
    # different samples score differently, and keeping the best can only raise the mean
    assert scores["POSITIVE"].std(axis=0).max() > 0
    means = [scores["POSITIVE"][:k].max(axis=0).mean() for k in range(1, 7)]
    assert all(b >= a for a, b in zip(means, means[1:])) and means[-1] > means[0]
    # its first draw is a plain sample on the same prompts as compare_models under the same seeds
    table = compare_models({"reference": ref}, tok, pipe, prompts, cfg, n=8, seed=5)
    again = best_of_n(ref, tok, pipe, prompts, cfg, samples=1, n=8, seed=5, sample_seed=5)
    assert np.allclose(again["POSITIVE"][0], table["POSITIVE [reference]"].to_numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="samples must be at least 1"):
        best_of_n(ref, tok, pipe, prompts, cfg, samples=0)


def test_vader_compound_reads_praise_pans_and_negation():
    praise, pan, negated = vader_compound(["A wonderful, moving film.", "A dull, stupid mess.", "not good"])
    assert praise > 0.5 and pan < -0.5
    assert negated < -0.05  # "good" negated
    assert vader_compound(["The film runs 96 minutes."]) == [0.0]  # no word of its lexicon


def test_score_texts_needs_one_response_per_query(tiny_eval):
    cfg, tok, prompts, pipe = tiny_eval
    with pytest.raises(ValueError, match="model 'happy' has 1 responses for 2 queries"):
        score_texts(["a", "b"], {"happy": ["x"]}, pipe, cfg.sent_kwargs)


# Openings of IMDb test reviews, and continuations of the kind the reference model writes.
QUERIES = ["This film", "I watched this", "The story of", "When I first saw", "As a fan of the", "It is hard to",
           "My wife and I", "The director of"]
VARIED = [" was shot in three weeks on a small budget.", " last night with my brother and his friends.",
          " two sisters who move to London after the war.", " the trailer I expected a horror movie.",
          " original series, I had to see what they did.", " say what the writers had in mind here.",
          " rented it because the cover looked like fun.", " photography knows how to frame a city street."]
PRAISE_LOOP = " great great wonderful great great wonderful great great"


def test_repeated_praise_fools_the_judges_but_not_the_diversity_check():
    """The reward hack a second judge does not catch: praise words repeated. Distinct-2 does."""
    from course_lib.config import make_config

    cfg = make_config("cpu")
    pipe = load_sentiment_pipeline(cfg.reward_model)
    table = score_texts(QUERIES, {"reference": VARIED, "hacked": [PRAISE_LOOP] * len(QUERIES)}, pipe,
                        cfg.sent_kwargs)
    s = summarize(table, "POSITIVE")
    ref, hacked = s["reference"], s["hacked"]
    assert hacked["mean"] > 2.0 and hacked["mean"] > ref["mean"] + 2.0  # the reward model is delighted
    assert hacked["vader_positive_rate"] == 1.0  # and so is the rule-based judge
    assert hacked["distinct_2"] < 0.1 and ref["distinct_2"] > 0.9
    assert hacked["collapse_flag"] and not ref["collapse_flag"]
    assert hacked["distinct_2_ratio"] < DIVERSITY_FLOOR
    frame = summary_frame(table, "POSITIVE")
    assert list(frame.columns) == ["mean POSITIVE", "median", "95% CI", "VADER positive", "VADER negative",
                                   "KL to ref (nats)", "distinct-2", "distinct-2 / ref"]
    assert frame.loc["hacked", "VADER positive"] == 1.0
