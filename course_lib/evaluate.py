"""Comparing models on held-out prompts: rewards, KL to the reference, diversity.

Every model answers the same prompts with the same response lengths and the
same sampling seed, so differences come from the models, not from the dice.
The original lab compared 16 samples; a before/after difference of one logit
needs hundreds of prompts to be told from noise, so the default here is 512
and every mean comes with a 95% confidence interval.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

LABELS = ("POSITIVE", "NEGATIVE")


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n: distinct word n-grams / all word n-grams over ``texts`` (lower-cased words).

    1.0 means no n-gram repeats; a model collapsed onto one phrase scores near 0.
    Returns 0.0 when the texts hold no n-gram at all.
    """
    grams, total = set(), 0
    for t in texts:
        words = t.lower().split()
        for i in range(len(words) - n + 1):
            grams.add(tuple(words[i:i + n]))
            total += 1
    return len(grams) / total if total else 0.0


def mean_ci(values: Sequence[float], z: float = 1.96) -> dict:
    """Mean, median, standard deviation and the normal-approximation 95% CI of the mean."""
    import numpy as np

    a = np.asarray(values, dtype=float)
    if a.size == 0:
        raise ValueError("no values to summarise")
    sd = float(a.std(ddof=1)) if a.size > 1 else 0.0
    half = z * sd / math.sqrt(a.size)
    m = float(a.mean())
    return {"mean": m, "median": float(np.median(a)), "std": sd, "ci95": [m - half, m + half], "n": int(a.size)}


def response_logprobs(model, queries: Sequence, responses: Sequence, pad_id: int, batch_size: int = 64) -> list[float]:
    """Sum over each response's tokens of log p(token | query, earlier tokens), in nats."""
    import torch

    from course_lib.padding import left_pad, position_ids
    from course_lib.rollout import causal_lm

    model = causal_lm(model)
    device = next(model.parameters()).device
    out = []
    for s in range(0, len(queries), batch_size):
        qs, rs = queries[s:s + batch_size], responses[s:s + batch_size]
        seqs = [torch.cat([q.to(device), r.to(device)]) for q, r in zip(qs, rs)]
        ids, mask = left_pad(seqs, pad_id)  # as in generation
        width = ids.shape[1]
        pos = position_ids(mask)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
        for i, r in enumerate(rs):
            out.append(float(logp[i, width - 1 - len(r):].sum()) if len(r) else 0.0)
    return out


def generate_for_eval(models: Mapping, tokenizer, queries: Sequence, lengths: Sequence[int], gen_kwargs: dict,
                      seed: int, batch_size: int = 64) -> dict[str, list]:
    """Responses of every model to every query, each model under the same seed."""
    import torch

    from course_lib.rollout import generate_responses

    out = {}
    for name, model in models.items():
        torch.manual_seed(seed)
        device = next(model.parameters()).device
        res = []
        for s in range(0, len(queries), batch_size):
            qs = [q.to(device) for q in queries[s:s + batch_size]]
            res += generate_responses(model, tokenizer, qs, lengths[s:s + batch_size], gen_kwargs)
        out[name] = [r.cpu() for r in res]
    return out


def _eval_prompts(prompts, cfg, n: int | None, seed: int):
    """The first ``n`` prompts' token ids and texts, and their seeded response lengths."""
    from course_lib.data import numpy_seed
    from course_lib.train import response_length_sampler

    n = min(n or cfg.eval_prompts, len(prompts))
    if n == 0:
        raise ValueError("no prompts to evaluate on")
    rows = prompts.select(range(n)) if hasattr(prompts, "select") else prompts[:n]
    queries = [r["input_ids"] for r in rows]
    query_texts = [r["query"] for r in rows]
    sampler = response_length_sampler(cfg)
    with numpy_seed(seed):
        lengths = [sampler() for _ in queries]
    return queries, query_texts, lengths


def compare_models(models: Mapping, tokenizer, sentiment_pipe, prompts, cfg, n: int | None = None,
                   seed: int = 1234, reference: str | None = "reference"):
    """Generate with every model on the first ``n`` prompts and score everything.

    ``models``: ``{"reference": ref_model, "happy": model, ...}`` (plain causal
    LMs or trl value-head models).  ``prompts``: a dataset built by
    ``data.build_dataset`` (its ``input_ids`` and ``query``), e.g. from the
    test split.  Returns a pandas DataFrame with one row per prompt and, per
    model ``m``: ``response [m]``, ``POSITIVE [m]``, ``NEGATIVE [m]`` (logits)
    and, when ``reference`` names one of the models, ``KL [m]`` (nats, the
    Monte-Carlo estimate log p_m - log p_ref of the sampled response).
    """
    import numpy as np
    import pandas as pd

    from course_lib.reward import score_for_label

    if reference is not None and reference not in models:
        raise ValueError(f"reference model {reference!r} is not among the models: {', '.join(models)}")
    queries, query_texts, lengths = _eval_prompts(prompts, cfg, n, seed)
    responses = generate_for_eval(models, tokenizer, queries, lengths, cfg.generation_kwargs(tokenizer), seed)
    table = pd.DataFrame({"query": query_texts})
    ref_lp = None
    if reference is not None:
        ref_lp = response_logprobs(models[reference], queries, responses[reference], tokenizer.eos_token_id)
    for name, res in responses.items():
        texts = tokenizer.batch_decode(res, skip_special_tokens=True)
        table[f"response [{name}]"] = texts
        outputs = sentiment_pipe([q + t for q, t in zip(query_texts, texts)], **cfg.sent_kwargs)
        for label in LABELS:
            table[f"{label} [{name}]"] = [score_for_label(o, label) for o in outputs]
        if reference is not None:
            own = response_logprobs(models[name], queries, res, tokenizer.eos_token_id)
            on_ref = ref_lp if name == reference else response_logprobs(models[reference], queries, res,
                                                                        tokenizer.eos_token_id)
            table[f"KL [{name}]"] = np.asarray(own) - np.asarray(on_ref)
    return table


def best_of_n_kl(n: int) -> float:
    """KL (nats) from the best-of-``n`` policy to its base policy: ``ln n - (n - 1) / n``.

    The usual formula for best-of-n sampling; Beirami et al. (2024) show it
    is an upper bound on the true KL.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return math.log(n) - (n - 1) / n


def best_of_n(model, tokenizer, sentiment_pipe, prompts, cfg, samples: int, n: int | None = None,
              seed: int = 1234, sample_seed: int = 0) -> dict:
    """Scores of ``samples`` responses per prompt from one model: a yardstick for PPO.

    The prompts and response lengths are those :func:`compare_models` uses
    with the same ``n`` and ``seed``.  Returns ``{label: array (samples, n)}``
    of logits for both labels; ``scores[label][:k].max(axis=0).mean()`` is
    what keeping the best of ``k`` samples per prompt reaches, at a KL of at
    most :func:`best_of_n_kl` ``(k)`` nats.
    """
    import numpy as np
    import torch

    from course_lib.reward import score_for_label
    from course_lib.rollout import generate_responses

    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    queries, query_texts, lengths = _eval_prompts(prompts, cfg, n, seed)
    gen = cfg.generation_kwargs(tokenizer)
    device = next(model.parameters()).device
    scores = {label: np.zeros((samples, len(queries))) for label in LABELS}
    torch.manual_seed(sample_seed)
    for k in range(samples):
        res = []
        for s in range(0, len(queries), 64):
            res += generate_responses(model, tokenizer, [q.to(device) for q in queries[s:s + 64]],
                                      lengths[s:s + 64], gen)
        texts = tokenizer.batch_decode([r.cpu() for r in res], skip_special_tokens=True)
        outputs = sentiment_pipe([q + t for q, t in zip(query_texts, texts)], **cfg.sent_kwargs)
        for label in LABELS:
            scores[label][k] = [score_for_label(o, label) for o in outputs]
    return scores


def model_names(table) -> list[str]:
    return [c[len("response ["):-1] for c in table.columns if c.startswith("response [")]


def summarize(table, label: str) -> dict[str, dict]:
    """Per model: reward statistics for ``label`` (mean, median, 95% CI), mean KL, distinct-2, mean length."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; valid: {', '.join(LABELS)}")
    out = {}
    for name in model_names(table):
        s = mean_ci(table[f"{label} [{name}]"].tolist())
        s["label"] = label
        if f"KL [{name}]" in table:
            s["kl_to_reference"] = float(table[f"KL [{name}]"].mean())
        responses = table[f"response [{name}]"].tolist()
        s["distinct_2"] = distinct_n(responses, 2)
        s["mean_response_words"] = float(sum(len(r.split()) for r in responses) / len(responses))
        out[name] = s
    return out


def summary_frame(table, label: str):
    """:func:`summarize` as a DataFrame, one row per model (for display)."""
    import pandas as pd

    rows = []
    for name, s in summarize(table, label).items():
        rows.append({"model": name, f"mean {label}": s["mean"], "median": s["median"],
                     "95% CI": f"[{s['ci95'][0]:+.2f}, {s['ci95'][1]:+.2f}]",
                     "KL to ref (nats)": s.get("kl_to_reference", float("nan")), "distinct-2": s["distinct_2"]})
    return pd.DataFrame(rows).set_index("model")
