"""Generating text with the policy: one prompt, or a whole batch of queries at once.

The original lab generated one query at a time.  :func:`generate_responses`
generates the whole batch at once (left padding + attention mask) and cuts each
response to its own sampled length: per query the same distribution (greedy:
the same tokens) as one ``generate`` call per query, several times faster (see
``benchmarks/bench_rollout.py``).

For the lab's settings (plain sampling from the softmax: ``top_k=0``,
``top_p=1.0``) and for greedy decoding it runs its own cached decoding loop
instead of ``generate``, for two reasons measured on CPU: ``torch.multinomial``
draws one exponential variate per vocabulary entry (64 x 50,257 per token at
batch 64), where inverse-CDF sampling needs one uniform per row; and rows
leave the batch as soon as they reach their length or an EOS.  Any other
setting (top-k, nucleus, temperature, penalties, ...) goes to ``generate``.
"""
from __future__ import annotations

from typing import Sequence

from course_lib.padding import left_pad, position_ids


def _unwrap(model):
    """trl's value-head wrapper and DDP wrappers forward ``generate``; plain models have it."""
    return getattr(model, "module", model)


def _on_device_of(model, tensors) -> list:
    """``tensors`` moved to the device of ``model``'s parameters (unchanged for a model without any)."""
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if callable(params) else None
    return list(tensors) if first is None else [t.to(first.device) for t in tensors]


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


# gen_kwargs keys the fast loop understands; anything else goes to HF ``generate``
_FAST_KEYS = {"do_sample", "top_k", "top_p", "temperature", "min_length", "pad_token_id", "eos_token_id"}
# generation-config fields that must keep their neutral value for the fast loop
_NEUTRAL = {"num_beams": (None, 1), "num_return_sequences": (None, 1), "repetition_penalty": (None, 1.0),
            "no_repeat_ngram_size": (None, 0), "bad_words_ids": (None,), "suppress_tokens": (None,),
            "begin_suppress_tokens": (None,), "forced_bos_token_id": (None,), "forced_eos_token_id": (None,),
            "min_new_tokens": (None, 0), "typical_p": (None, 1.0), "epsilon_cutoff": (None, 0.0),
            "eta_cutoff": (None, 0.0), "min_p": (None,), "encoder_repetition_penalty": (None, 1.0),
            "sequence_bias": (None,), "guidance_scale": (None, 1.0)}


def causal_lm(model):
    """The module whose forward returns logits: trl's value-head wrapper keeps it in ``pretrained_model``."""
    return getattr(model, "pretrained_model", model) if hasattr(model, "v_head") else model


def transformer_body(lm):
    """The transformer of a causal LM without its output layer (GPT-2's ``lm.transformer``); ``None`` if it has none.

    Found by the model's ``base_model_prefix``, not by ``base_model``: a PEFT
    model's ``base_model`` is the whole wrapped LM, head included, while its
    attributes lead to the (adapted) transformer.
    """
    prefix = getattr(lm, "base_model_prefix", "")
    body = getattr(lm, prefix, None) if prefix else None
    return None if body is None or body is lm else body


def decoding_mode(model, gen_kwargs: dict) -> str | None:
    """``"sample"`` (plain sampling), ``"greedy"``, or ``None`` when only ``generate`` can honour ``gen_kwargs``.

    Settings not given in ``gen_kwargs`` come from the model's ``generation_config``,
    exactly as ``generate`` would take them (its default ``top_k`` is 50, so
    plain sampling needs ``top_k=0`` given explicitly, as the lab does).
    """
    lm = causal_lm(_unwrap(model))
    if not callable(getattr(lm, "forward", None)) or getattr(lm, "config", None) is None:
        return None
    if set(gen_kwargs) - _FAST_KEYS:
        return None
    gc = getattr(lm, "generation_config", None)

    def setting(name, default):
        if name in gen_kwargs:
            return gen_kwargs[name]
        return getattr(gc, name, default) if gc is not None else default

    if gc is not None and any(getattr(gc, k, None) not in ok for k, ok in _NEUTRAL.items()):
        return None
    min_length = setting("min_length", 0)
    if min_length is not None and min_length > 0:
        return None
    if not setting("do_sample", False):
        return "greedy"
    if setting("top_k", 50) not in (None, 0) or setting("top_p", 1.0) not in (None, 1.0) \
            or setting("temperature", 1.0) not in (None, 1.0):
        return None
    return "sample"


def sample_from_logits(logits):
    """One token per row, drawn from ``softmax(logits)`` by inverse CDF: a single uniform per row.

    Same distribution as ``torch.multinomial(softmax(logits), 1)``, different
    random stream.  A token of probability zero is never drawn.
    """
    import torch

    cdf = torch.softmax(logits.double(), dim=-1).cumsum_(dim=-1)
    u = torch.rand((logits.shape[0], 1), dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=logits.shape[-1] - 1)


def _select_rows(past, keep):
    """Keep the rows ``keep`` of a key/value cache (legacy tuples or a ``Cache`` object)."""
    if isinstance(past, tuple):
        return tuple(tuple(t.index_select(0, keep) for t in layer) for layer in past)
    past.batch_select_indices(keep)
    return past


def _decode(lm, input_ids, mask, lengths, mode: str, eos: int):
    """Cached decoding loop; a row leaves the batch at its length or after its first EOS."""
    import torch

    device = input_ids.device
    n = len(lengths)
    want = torch.as_tensor(lengths, device=device)
    out = torch.full((n, max(lengths)), eos, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)  # original index of each row still decoding
    pos = position_ids(mask)
    ids, past = input_ids, None
    can_drop = True
    body, head = transformer_body(lm), lm.get_output_embeddings()
    split = body is not None and head is not None  # run the head on the last position only
    for t in range(max(lengths)):
        if split:
            res = body(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
            logits = head(res.last_hidden_state[:, -1, :])
        else:
            res = lm(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=past, use_cache=True)
            logits = res.logits[:, -1, :]
        nxt = logits.argmax(-1) if mode == "greedy" else sample_from_logits(logits)
        out[rows, t] = nxt
        past = res.past_key_values
        done = (nxt == eos) | (want[rows] <= t + 1)
        if bool(done.all()):
            break
        if can_drop and bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            try:
                past = _select_rows(past, keep)
            except AttributeError:  # a cache type that cannot drop rows: keep decoding them
                can_drop = False
            else:
                rows, nxt, mask, pos = rows[keep], nxt[keep], mask[keep], pos[keep]
        ids = nxt[:, None]
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
        pos = pos[:, -1:] + 1
    return out


def generate_responses(model, tokenizer, queries: Sequence, lengths: Sequence[int], gen_kwargs: dict) -> list:
    """Sample a response for every query, the whole batch at once.

    The lab's plain sampling and greedy decoding run the cached loop above;
    any other ``gen_kwargs`` go to one batched ``generate`` call.

    ``queries``: 1-D LongTensors of prompt ids (different lengths allowed).
    ``lengths``: the wanted number of new tokens per query.  Returns a list of
    1-D tensors (response ids only, on the model's device: queries elsewhere,
    e.g. dataset rows on the CPU for a model on a GPU, are moved there), each
    at most its length, ending early after an EOS.  Queries are left-padded
    with the pad (= EOS) id and masked, so padding changes no token's logits.
    """
    import torch

    if len(queries) != len(lengths):
        raise ValueError(f"{len(queries)} queries but {len(lengths)} lengths")
    if not len(queries):
        return []
    if min(lengths) < 1:
        raise ValueError(f"every response length must be at least 1 token, got {min(lengths)}")
    model = _unwrap(model)
    queries = _on_device_of(model, queries)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids, mask = left_pad(queries, pad)
    width = input_ids.shape[1]
    eos = tokenizer.eos_token_id
    mode = decoding_mode(model, gen_kwargs) if eos is not None else None
    with torch.no_grad():
        if mode is None:
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max(lengths), **gen_kwargs)
            out = out[:, width:]
        else:
            out = _decode(causal_lm(model), input_ids, mask, list(lengths), mode, eos)
    return [_cut(out[i], n, eos) for i, n in enumerate(lengths)]


def rollout_batch(model, tokenizer, sentiment_pipe, dataset, cfg, n: int, seed: int = 0) -> dict:
    """A real batch of the course: ``n`` prompts, sampled responses and their rewards (what ``step`` takes).

    Prompts are rows ``0 .. n-1`` of ``dataset``; response lengths and tokens
    are drawn after seeding with ``seed`` (so the same seed gives the same
    batch); rewards are ``cfg.reward_scale`` times the ``cfg.target_label``
    logit.  Returns ``{"queries", "responses", "scores", "texts"}``.
    """
    from course_lib.data import numpy_seed
    from course_lib.reward import sentiment_rewards
    from course_lib.train import response_length_sampler, set_seed

    if n > len(dataset):
        raise ValueError(f"{n} prompts asked, the dataset has {len(dataset)}")
    queries = [dataset[i]["input_ids"] for i in range(n)]
    with numpy_seed(seed):
        sampler = response_length_sampler(cfg)
        lengths = [sampler() for _ in queries]
    set_seed(seed)
    responses = generate_responses(model, tokenizer, queries, lengths, cfg.generation_kwargs(tokenizer))
    texts = [tokenizer.decode(q) + tokenizer.decode(r, skip_special_tokens=True) for q, r in zip(queries, responses)]
    scores = sentiment_rewards(sentiment_pipe, texts, cfg.target_label, cfg.sent_kwargs, scale=cfg.reward_scale)
    return {"queries": queries, "responses": responses, "scores": scores, "texts": texts}
