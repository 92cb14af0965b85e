"""Reference implementations of graded exercises that the student library used to carry.

Students must not receive a working copy of any graded function (not in the
notebooks, not in ``course_lib``), so these live on the instructor's side.
The tests use them to check the library and the solutions; the builders use
``score_for_label`` to read pipeline outputs.  The PPO parts (KL-shaped
rewards, GAE, the clipped losses, RLOO) are in :mod:`course_instructor.ppo`.
"""
from __future__ import annotations

from typing import Sequence


def pad_to_length(seq, length: int, pad_token_id: int):
    """Right-pad ``seq`` (a 1-D torch tensor or a list of ints) with ``pad_token_id`` to ``length``.

    Returns the same type as the input.  A sequence already ``length`` long is
    returned unchanged; a longer one raises ``ValueError`` (truncating silently
    would drop tokens).
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    n = len(seq)
    if n > length:
        raise ValueError(f"sequence of {n} tokens is longer than the target length {length}")
    if isinstance(seq, list):
        return seq + [pad_token_id] * (length - n)
    import torch

    if not isinstance(seq, torch.Tensor) or seq.dim() != 1:
        raise TypeError("pad_to_length takes a list of ints or a 1-D torch tensor")
    pad = torch.full((length - n,), pad_token_id, dtype=seq.dtype, device=seq.device)
    return torch.cat([seq, pad])


def collator(batch: list[dict]) -> dict[str, list]:
    """Turn a list of samples into a dict of lists, one list per key.

    ``PPOTrainer`` batches with it: queries of different lengths stay a list of
    tensors instead of being stacked.  ``[{"a": 1, "b": 2}, {"a": 3, "b": 4}]``
    becomes ``{"a": [1, 3], "b": [2, 4]}``.  An empty batch, or samples with
    different keys, raise ``ValueError``.
    """
    if not batch:
        raise ValueError("collator got an empty batch")
    keys = list(batch[0])
    for i, sample in enumerate(batch):
        if list(sample) != keys and set(sample) != set(keys):
            raise ValueError(f"sample {i} has keys {sorted(sample)}, expected {sorted(keys)}")
    return {key: [sample[key] for sample in batch] for key in keys}


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


def generate_one_by_one(model, tokenizer, queries: Sequence, lengths: Sequence[int], gen_kwargs: dict) -> list:
    """The original lab's loop: one ``generate`` call per query (kept for the benchmark)."""
    import torch

    from course_lib.rollout import _cut, _on_device_of, _unwrap

    model = _unwrap(model)
    out = []
    for q, n in zip(_on_device_of(model, queries), lengths):
        with torch.no_grad():
            ids = model.generate(input_ids=q.unsqueeze(0), attention_mask=torch.ones_like(q).unsqueeze(0),
                                 max_new_tokens=n, **gen_kwargs)
        out.append(_cut(ids[0, len(q):], n, tokenizer.eos_token_id))
    return out
