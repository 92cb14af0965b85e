"""The reward: the sentiment classifier's score of the wanted label.

The lab scores each ``query + response`` with a ``sentiment-analysis``
pipeline called with ``top_k=None`` (every label) and
``function_to_apply="none"`` (raw logits, not probabilities).  With
``top_k=None`` the pipeline sorts the labels by score, so *the position of
POSITIVE changes from text to text*: reading ``output[1]["score"]`` (as the
original lab did) returns the NEGATIVE logit whenever the text is positive.
The score is therefore always looked up by the label's name.

Reading one label's score out of a pipeline output is exercise 4, which
students write.  This module asks the classifier itself: it runs the
pipeline's tokenizer and model and takes the logit at the index that the
model's ``label2id`` gives the label's name (the same numbers the pipeline
returns with ``function_to_apply="none"``).
"""
from __future__ import annotations

from typing import Iterable, Sequence


def label_logits(pipe, texts: Sequence[str], labels: Sequence[str], batch_size: int | None = None) -> dict[str, list[float]]:
    """``{label: [logit of that label for each text]}`` from the pipeline's classifier.

    Texts are tokenized as the pipeline does (truncated to the model's
    length), ``batch_size`` at a time (default: ``sent_kwargs``'
    ``batch_size`` if given there, else 16); each label's logit is read at
    the index its *name* has in the model's ``label2id``.  An unknown label
    raises ``ValueError`` naming the valid ones.
    """
    import torch

    ids = [pipe.model.config.label2id[check_label(pipe, label)] for label in labels]
    texts = list(texts)
    size = batch_size or 16
    out: dict[str, list[float]] = {label: [] for label in labels}
    device = pipe.model.device
    for i in range(0, len(texts), size):
        enc = pipe.tokenizer(texts[i:i + size], padding=True, truncation=True, return_tensors="pt").to(device)
        with torch.no_grad():
            logits = pipe.model(**enc).logits.float().cpu()
        for label, k in zip(labels, ids):
            out[label] += logits[:, k].tolist()
    return out


def sentiment_scores(pipe, texts: Sequence[str], label: str, sent_kwargs: dict | None = None) -> list[float]:
    """The ``label`` logit of every text (what the pipeline returns with ``function_to_apply="none"``)."""
    return label_logits(pipe, texts, [label], batch_size=(sent_kwargs or {}).get("batch_size"))[label]


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
