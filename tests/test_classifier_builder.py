"""The classifier builder's teacher (bag-of-bigrams logistic regression) and its word-list verdicts."""
import numpy as np
import pytest

from course_instructor.builders import phrases, teacher
from course_instructor.builders.metrics import read_sentences


def test_no_test_sentence_is_a_training_verdict():
    """The short sentences that judge the classifier are not among the verdicts it is trained on."""
    seen = phrases.all_phrases_normalised()
    assert len(seen) > 10_000
    clash = [text for _, text in read_sentences() if phrases.normalise(text) in seen]
    assert clash == []


def test_verdict_targets_follow_their_words():
    texts, targets = phrases.phrases(4000, np.random.default_rng(1))
    by_text = dict(zip(texts, targets))
    pos = [t for t, p in by_text.items() if p > 0.5]
    neg = [t for t, p in by_text.items() if p < 0.5]
    assert 0.4 < len(pos) / len(by_text) < 0.65
    assert any(" not " in f" {t.lower()} " for t in neg)  # negated praise is negative
    for t, p in by_text.items():
        words = set(phrases.normalise(t).split())
        negated = bool(words & {"not", "isn't", "wasn't", "never", "hardly", "far"})
        if not negated and words & set(phrases.PANS) and not words & set(phrases.PRAISE):
            assert p < 0.5, t
        if negated and words & set(phrases.PRAISE) and not words & set(phrases.PANS):
            assert p < 0.5, t
    assert phrases.normalise("Not bad... at ALL!") == "not bad at all"


def test_teacher_learns_words_and_word_pairs():
    # token ids: 1 "good", 2 "bad", 3 "not", 4..9 neutral; "not good" is negative, "not bad" positive
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for _ in range(600):
        kind = int(rng.integers(4))
        core = [[1], [2], [3, 1], [3, 2]][kind]
        filler = list(rng.integers(4, 10, size=3))
        texts.append(filler + core + list(rng.integers(4, 10, size=2)))
        labels.append([1, 0, 0, 1][kind])
    t = teacher.fit(texts, labels, vocab_size=10, min_df=3, epochs=30, lr=0.3, l2=0.0, log=lambda m: None)
    z = t.log_odds([[5, 1, 6], [5, 2, 6], [5, 3, 1], [5, 3, 2]])
    assert z[0] > 1 and z[1] < -1 and z[2] < -1 and z[3] > 1
    # "good bad" never occurs in training: that bigram has no feature, only its two words count
    assert t.log_odds([[1, 2]])[0] == pytest.approx(t.bias + t.weights[1] + t.weights[2])


def test_openings_are_the_first_gpt2_tokens_and_inner_windows_skip_the_first_word(gpt2_tokenizer):
    from course_instructor.builders.classifier import OPENING_TOKENS, inner_window, openings

    review = "This film is a quiet, patient drama about two brothers who run a farm in the hills of Wales."
    ids = gpt2_tokenizer(review)["input_ids"]
    assert openings(gpt2_tokenizer, [review], None, 5) == [gpt2_tokenizer.decode(ids[:5])]
    assert openings(gpt2_tokenizer, [review], None, 5)[0] == "This film is a quiet"
    rng = np.random.default_rng(0)
    drawn = [len(gpt2_tokenizer(o)["input_ids"]) for o in openings(gpt2_tokenizer, [review * 3] * 200, rng)]
    assert min(drawn) == OPENING_TOKENS[0] and max(drawn) == OPENING_TOKENS[1]
    words = review.split()
    for _ in range(200):
        w = inner_window(words, rng).split()
        assert 4 <= len(w) <= min(24, len(words) - 1)
        assert any(words[i:i + len(w)] == w for i in range(1, len(words)))  # a window from word 2 on
    assert inner_window(["Fine."], rng) == "Fine."
