"""The reward: the sentiment classifier's score of the wanted label.

The lab scores each ``query + response`` with a ``sentiment-analysis``
pipeline called with ``top_k=None`` (every label) and
``function_to_apply="none"`` (raw logits, not probabilities).  With
``top_k=None`` the pipeline sorts the labels by score, so *the position of
POSITIVE changes from text to text*: reading ``output[1]["score"]`` (as the
original lab did) returns the NEGATIVE logit whenever the text is positive.
The score is therefore always looked up by the label's name.
"""
from __future__ import annotations

from typing import Iterable, Sequence


def score_for_label(output: Sequence[dict], label: str) -> float:
    """The score of ``label`` in one text's pipeline output.

    ``output`` is a list such as ``[{"label": "NEGATIVE", "score": -1.2},
    {"label": "POSITIVE", "score": 1.4}]`` in any order.  Returns the float
    score (a logit when the pipeline used ``function_to_apply="none"``).
    Raises ``ValueError`` naming the valid labels if ``label`` is not there,
    and ``TypeError`` if ``output`` is not a list of label/score dicts (for
    example a pipeline called without ``top_k=None``).
    """
    if isinstance(output, dict) or not all(isinstance(o, dict) and "label" in o and "score" in o for o in output):
        raise TypeError("expected a list of {'label', 'score'} dicts for one text; "
                        "call the pipeline with top_k=None to get every label")
    for entry in output:
        if entry["label"] == label:
            return float(entry["score"])
    valid = ", ".join(entry["label"] for entry in output)
    raise ValueError(f"label {label!r} is not in the classifier output; valid labels: {valid}")


def sentiment_scores(pipe, texts: Sequence[str], label: str, sent_kwargs: dict | None = None) -> list[float]:
    """Score every text with the pipeline; return the ``label`` score of each (logits)."""
    kwargs = {"top_k": None, "function_to_apply": "none", **(sent_kwargs or {})}
    outputs = pipe(list(texts), **kwargs)
    return [score_for_label(out, label) for out in outputs]


def sentiment_rewards(pipe, texts: Sequence[str], label: str, sent_kwargs: dict | None = None,
                      scale: float = 1.0) -> list:
    """Rewards for ``PPOTrainer.step``: one scalar tensor per text, ``scale`` times its ``label`` logit."""
    import torch

    return [torch.tensor(scale * s) for s in sentiment_scores(pipe, texts, label, sent_kwargs)]


def labels_of(pipe) -> list[str]:
    """The label names a pipeline's model knows (from its ``id2label``)."""
    return [pipe.model.config.id2label[i] for i in sorted(pipe.model.config.id2label)]


def check_label(pipe, label: str) -> str:
    """Return ``label`` if the pipeline's model has it; else ``ValueError`` naming the valid ones."""
    valid = labels_of(pipe)
    if label not in valid:
        raise ValueError(f"unknown sentiment label {label!r}; valid labels: {', '.join(valid)}")
    return label


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
