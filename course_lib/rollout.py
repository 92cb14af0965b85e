"""Generating text with the policy: one prompt, or a whole batch of queries at once.

The original lab generated one query at a time.  :func:`generate_responses`
generates the whole batch in one call (left padding + attention mask), then
cuts each response to its own sampled length: the same result per query, many
times faster (see ``benchmarks/bench_rollout.py``).
"""
from __future__ import annotations

from typing import Sequence


def _unwrap(model):
    """trl's value-head wrapper and DDP wrappers forward ``generate``; plain models have it."""
    return getattr(model, "module", model)


def generate_some_text(model, tokenizer, text: str, gen_kwargs: dict, max_new_tokens: int = 20) -> str:
    """Prompt ``text`` -> prompt plus a sampled continuation of ``max_new_tokens`` tokens at most.

    ``gen_kwargs`` are the lab's sampling settings (``LabConfig.generation_kwargs``).
    Raises ``ValueError`` for an empty prompt (GPT-2 has no start token to begin from).
    """
    import torch

    if not text or not text.strip():
        raise ValueError("the prompt is empty: give at least one word to continue")
    model = _unwrap(model)
    device = next(model.parameters()).device
    enc = tokenizer(text, return_tensors="pt").to(device)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, **gen_kwargs)
    return tokenizer.decode(out[0], skip_special_tokens=True)


def _cut(response, length: int, eos_token_id: int):
    """First ``length`` tokens, ending after the first EOS if the model stopped earlier."""
    response = response[:length]
    hits = (response == eos_token_id).nonzero()
    if len(hits):
        response = response[: int(hits[0]) + 1]
    return response


def generate_responses(model, tokenizer, queries: Sequence, lengths: Sequence[int], gen_kwargs: dict) -> list:
    """Sample a response for every query in one batched ``generate`` call.

    ``queries``: 1-D LongTensors of prompt ids (different lengths allowed).
    ``lengths``: the wanted number of new tokens per query.  Returns a list of
    1-D tensors (response ids only, on the queries' device), each at most its
    length, ending early after an EOS.  Queries are left-padded with the pad
    (= EOS) id and masked, so padding changes no token's logits.
    """
    import torch

    if len(queries) != len(lengths):
        raise ValueError(f"{len(queries)} queries but {len(lengths)} lengths")
    if not len(queries):
        return []
    model = _unwrap(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(q) for q in queries)
    device = queries[0].device
    input_ids = torch.full((len(queries), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((len(queries), width), dtype=torch.long, device=device)
    for i, q in enumerate(queries):
        input_ids[i, width - len(q):] = q
        mask[i, width - len(q):] = 1
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max(lengths), **gen_kwargs)
    eos = tokenizer.eos_token_id
    return [_cut(out[i, width:], n, eos) for i, n in enumerate(lengths)]


def generate_one_by_one(model, tokenizer, queries: Sequence, lengths: Sequence[int], gen_kwargs: dict) -> list:
    """The original lab's loop: one ``generate`` call per query (kept for the benchmark)."""
    import torch

    model = _unwrap(model)
    out = []
    for q, n in zip(queries, lengths):
        with torch.no_grad():
            ids = model.generate(input_ids=q.unsqueeze(0), attention_mask=torch.ones_like(q).unsqueeze(0),
                                 max_new_tokens=n, **gen_kwargs)
        out.append(_cut(ids[0, len(q):], n, tokenizer.eos_token_id))
    return out
