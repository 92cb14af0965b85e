"""course_lib.reward: the sentiment score of the wanted label, read by name."""
import math

import pytest
import torch

from course_lib.models import load_sentiment_pipeline
from course_instructor.reference import score_for_label
from course_lib.reward import (check_label, label_logits, labels_of, mean, sentiment_rewards,
                               sentiment_scores)

POS_FIRST = [{"label": "POSITIVE", "score": 2.5}, {"label": "NEGATIVE", "score": -2.25}]
NEG_FIRST = [{"label": "NEGATIVE", "score": 1.75}, {"label": "POSITIVE", "score": -1.5}]
TEXTS = ["This movie was great!", "A terrible, boring film.", "I loved the acting and the story."]
SENT_KWARGS = {"top_k": None, "function_to_apply": "none", "batch_size": 16}


# ---- score_for_label on pipeline-shaped output ---------------------------------
def test_positive_score_whatever_its_position():
    assert score_for_label(NEG_FIRST, "POSITIVE") == -1.5   # POSITIVE listed second
    assert score_for_label(POS_FIRST, "POSITIVE") == 2.5    # POSITIVE listed first


def test_negative_score_whatever_its_position():
    assert score_for_label(NEG_FIRST, "NEGATIVE") == 1.75   # NEGATIVE listed first
    assert score_for_label(POS_FIRST, "NEGATIVE") == -2.25  # NEGATIVE listed second


def test_score_is_a_python_float():
    out = score_for_label([{"label": "POSITIVE", "score": torch.tensor(0.5)},
                           {"label": "NEGATIVE", "score": torch.tensor(-0.5)}], "POSITIVE")
    assert type(out) is float and out == 0.5


@pytest.mark.parametrize("label", ["NEUTRAL", "positive", "LABEL_1"])
def test_unknown_label_names_the_valid_ones(label):
    with pytest.raises(ValueError) as err:
        score_for_label(NEG_FIRST, label)
    assert repr(label) in str(err.value)
    assert "valid labels: NEGATIVE, POSITIVE" in str(err.value)


def test_dict_instead_of_list_is_a_type_error():
    # what a pipeline called without top_k=None gives for one text: the best label only
    with pytest.raises(TypeError, match="top_k=None"):
        score_for_label({"label": "POSITIVE", "score": 0.9}, "POSITIVE")


@pytest.mark.parametrize("output", [[0.1, 0.9], [{"label": "POSITIVE"}], [{"score": 1.0}], ["POSITIVE"]])
def test_list_of_non_label_score_entries_is_a_type_error(output):
    with pytest.raises(TypeError, match="list of \\{'label', 'score'\\} dicts"):
        score_for_label(output, "POSITIVE")


def test_mean():
    assert mean([1.0, 2.0, 4.5]) == 2.5
    assert mean(x for x in (1, 2)) == 1.5
    assert math.isnan(mean([]))


# ---- a real pipeline ------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe(tiny_classifier_dir):
    return load_sentiment_pipeline(str(tiny_classifier_dir), device=-1)


@pytest.fixture(scope="module")
def logits(tiny_classifier_dir):
    """The classifier's own logits for TEXTS, one text at a time: rows (NEGATIVE, POSITIVE)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir).eval()
    assert model.config.id2label == {0: "NEGATIVE", 1: "POSITIVE"}
    with torch.no_grad():
        return torch.stack([model(**tok(t, return_tensors="pt")).logits[0] for t in TEXTS])


def test_pipeline_lists_labels_in_both_orders(pipe):
    """Guard for the tests below: POSITIVE comes first for some texts and second for others."""
    outputs = pipe(TEXTS, **SENT_KWARGS)
    firsts = [out[0]["label"] for out in outputs]
    assert firsts == ["POSITIVE", "NEGATIVE", "POSITIVE"]


def test_positive_scores_are_the_models_positive_logits(pipe, logits):
    scores = sentiment_scores(pipe, TEXTS, "POSITIVE", SENT_KWARGS)
    assert len(scores) == 3 and all(type(s) is float for s in scores)
    torch.testing.assert_close(torch.tensor(scores), logits[:, 1], atol=1e-4, rtol=0)
    # and not the value at index 1 of the sorted output (the original lab's bug)
    by_index = [out[1]["score"] for out in pipe(TEXTS, **SENT_KWARGS)]
    assert not torch.allclose(torch.tensor(by_index), logits[:, 1], atol=1e-4)


def test_negative_scores_are_the_models_negative_logits(pipe, logits):
    scores = sentiment_scores(pipe, TEXTS, "NEGATIVE", SENT_KWARGS)
    torch.testing.assert_close(torch.tensor(scores), logits[:, 0], atol=1e-4, rtol=0)


def test_default_kwargs_give_raw_logits_of_every_label(pipe, logits):
    # without sent_kwargs, sentiment_scores still asks for every label as a raw logit
    torch.testing.assert_close(torch.tensor(sentiment_scores(pipe, TEXTS, "POSITIVE")), logits[:, 1],
                               atol=1e-4, rtol=0)


def test_rewards_are_scaled_scalar_tensors(pipe, logits):
    rewards = sentiment_rewards(pipe, TEXTS, "POSITIVE", SENT_KWARGS, scale=2.0)
    assert len(rewards) == 3
    for r in rewards:
        assert isinstance(r, torch.Tensor) and r.dim() == 0 and r.dtype == torch.float32
    torch.testing.assert_close(torch.stack(rewards), 2.0 * logits[:, 1], atol=2e-4, rtol=0)
    unscaled = sentiment_rewards(pipe, TEXTS, "NEGATIVE", SENT_KWARGS)
    torch.testing.assert_close(torch.stack(unscaled), logits[:, 0], atol=1e-4, rtol=0)


def test_unknown_label_through_the_pipeline(pipe):
    with pytest.raises(ValueError, match="valid labels: "):
        sentiment_scores(pipe, TEXTS[:1], "NEUTRAL", SENT_KWARGS)


def test_labels_of_and_check_label(pipe):
    assert labels_of(pipe) == ["NEGATIVE", "POSITIVE"]
    assert check_label(pipe, "POSITIVE") == "POSITIVE"
    assert check_label(pipe, "NEGATIVE") == "NEGATIVE"
    with pytest.raises(ValueError) as err:
        check_label(pipe, "HAPPY")
    assert str(err.value) == "unknown sentiment label 'HAPPY'; valid labels: NEGATIVE, POSITIVE"


# ---- the bundled reward model on hand-written short sentences ---------------------
REQUIRED = {"this movie was really good!!": "POSITIVE", "This movie was great.": "POSITIVE",
            "not bad at all": "POSITIVE", "not good": "NEGATIVE"}


def test_short_sentence_list_is_balanced_and_holds_the_labs_examples():
    from course_instructor.builders.metrics import read_sentences

    pairs = read_sentences()
    labels = [label for label, _ in pairs]
    assert len(pairs) >= 60 and labels.count("POSITIVE") == labels.count("NEGATIVE")
    assert len({text.lower() for _, text in pairs}) == len(pairs)  # no sentence twice
    assert {text: label for label, text in pairs if text in REQUIRED} == REQUIRED


@pytest.mark.xfail(strict=True, reason=(
    "issue 14 open: the bundled distilbert-imdb-mini gets 92.2% of these sentences right with a median margin "
    "of 1.64 logits and scores 'this movie was really good!!' and 'not bad at all' as negative; a classifier "
    "that meets this target has not been committed yet. strict: this marker must go when one is."))
def test_bundled_classifier_judges_short_sentences_like_a_reader():
    """>= 95% of the hand-written sentences right, with a median |POSITIVE - NEGATIVE| margin >= 2 logits."""
    from course_instructor.builders.metrics import read_sentences, sentence_metrics
    from course_lib.config import make_config

    pipe = load_sentiment_pipeline(make_config("cpu").reward_model, device=-1)
    m = sentence_metrics(pipe, read_sentences())
    assert m["sentence_accuracy"] >= 0.95, m["sentences_wrong"]
    assert m["sentence_median_margin"] >= 2.0
    scores = {r["text"]: r for r in m["sentence_scores"]}
    for text, label in REQUIRED.items():  # the lab's own examples, each clearly on its side
        other = "NEGATIVE" if label == "POSITIVE" else "POSITIVE"
        assert scores[text][label] - scores[text][other] > 1.0, scores[text]


def test_read_sentences_rejects_a_bad_line(tmp_path):
    from course_instructor.builders.metrics import read_sentences

    f = tmp_path / "s.tsv"
    f.write_text("# comment\nPOSITIVE\tfine\nHAPPY\tnope\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"s.tsv:3: .*one of POSITIVE, NEGATIVE"):
        read_sentences(f)


def test_label_logits_equal_the_pipelines_scores_read_by_name(pipe):
    """The library reads logits from the model by label name; the pipeline's outputs say the same."""
    outputs = pipe(TEXTS, **SENT_KWARGS)
    got = label_logits(pipe, TEXTS, ["POSITIVE", "NEGATIVE"], batch_size=2)
    for i, out in enumerate(outputs):
        for label in ("POSITIVE", "NEGATIVE"):
            assert abs(got[label][i] - score_for_label(out, label)) < 1e-5


def test_label_logits_unknown_label_names_the_valid_ones(pipe):
    with pytest.raises(ValueError, match="POSITIVE"):
        label_logits(pipe, TEXTS, ["HAPPY"])
