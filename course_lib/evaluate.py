"""Comparing models on held-out prompts: two judges, KL to the reference, diversity.

Every model answers the same prompts with the same response lengths and the
same sampling seed, so differences come from the models, not from the dice.
The original lab compared 16 samples; a before/after difference of one logit
needs hundreds of prompts to be told from noise, so the default here is 512
and every mean comes with a 95% confidence interval.

Two judges score every text.  The reward model (the sentiment classifier PPO
optimised) gives logits; VADER (``vaderSentiment``), a rule-based judge built
from a hand-made lexicon, which PPO never saw, gives a compound score in
[-1, 1].  A gain that is real shows up with both; a gain that only the reward
model sees is a sign that PPO found the reward model's blind spots (reward
hacking).  Neither judge catches a model that repeats the same praise words:
that is what distinct-2, against the reference's, is for.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

LABELS = ("POSITIVE", "NEGATIVE")
#: VADER's own thresholds on the compound score: above is positive, below the negative one is negative.
VADER_POSITIVE = 0.05
VADER_NEGATIVE = -0.05
#: A tuned model whose distinct-2 falls below this fraction of the reference's is flagged as collapsing.
DIVERSITY_FLOOR = 0.7

_vader = None


def vader_compound(texts: Sequence[str]) -> list[float]:
    """VADER's compound score of every text: -1 (most negative) .. +1 (most positive).

    VADER (Hutto and Gilbert, 2014) sums the valences of the words of its
    lexicon, with rules for negation ("not good"), intensifiers ("very"),
    capitals and exclamation marks, and squashes the sum into [-1, 1].
    """
    global _vader
    if _vader is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _vader = SentimentIntensityAnalyzer()
    return [float(_vader.polarity_scores(t)["compound"]) for t in texts]


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


def response_logprobs(model, queries: Sequence, responses: Sequence, pad_id: int, batch_size: int = 64,
                      bar=None) -> list[float]:
    """Sum over each response's tokens of log p(token | query, earlier tokens), in nats.

    ``bar``: a tqdm progress bar advanced by one per batch of ``batch_size`` responses.
    """
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
        if bar is not None:
            bar.update()
    return out


def generate_for_eval(models: Mapping, tokenizer, queries: Sequence, lengths: Sequence[int], gen_kwargs: dict,
                      seed: int, batch_size: int = 64, bar=None) -> dict[str, list]:
    """Responses of every model to every query, each model under the same seed.

    ``bar``: a tqdm progress bar advanced by one per batch of ``batch_size`` prompts.
    """
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
            if bar is not None:
                bar.update()
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


def score_texts(query_texts: Sequence[str], responses: Mapping[str, Sequence[str]], sentiment_pipe,
                sent_kwargs: dict | None = None):
    """Judge every model's responses with both judges; one row per query.

    ``responses``: ``{model name: [response text per query]}``.  Each judge
    reads ``query + response``, the text the reward model scored during
    training.  Returns a DataFrame with ``query`` and, per model ``m``:
    ``response [m]``, ``POSITIVE [m]`` and ``NEGATIVE [m]`` (the classifier's
    logits) and ``VADER [m]`` (VADER's compound score, -1..1).
    """
    import pandas as pd

    from course_lib.reward import label_logits

    table = pd.DataFrame({"query": list(query_texts)})
    for name, texts in responses.items():
        if len(texts) != len(table):
            raise ValueError(f"model {name!r} has {len(texts)} responses for {len(table)} queries")
        full = [q + t for q, t in zip(query_texts, texts)]
        table[f"response [{name}]"] = list(texts)
        logits = label_logits(sentiment_pipe, full, LABELS, batch_size=(sent_kwargs or {}).get("batch_size"))
        for label in LABELS:
            table[f"{label} [{name}]"] = logits[label]
        table[f"VADER [{name}]"] = vader_compound(full)
    return table


def compare_models(models: Mapping, tokenizer, sentiment_pipe, prompts, cfg, n: int | None = None,
                   seed: int = 1234, reference: str | None = "reference", previous=None, progress: bool = True):
    """Generate with every model on the first ``n`` prompts and score everything.

    ``models``: ``{"reference": ref_model, "happy": model, ...}`` (plain causal
    LMs or trl value-head models).  ``prompts``: a dataset built by
    ``data.build_dataset`` (its ``input_ids`` and ``query``), e.g. from the
    test split.  Returns a pandas DataFrame with one row per prompt: the
    columns of :func:`score_texts` (``response [m]``, ``POSITIVE [m]``,
    ``NEGATIVE [m]`` logits, ``VADER [m]`` compound score) and, when
    ``reference`` names one of the models, ``KL [m]`` (nats, the Monte-Carlo
    estimate log p_m - log p_ref of the sampled response).

    ``previous``: a table an earlier call returned for the same prompts, ``n``,
    ``seed`` and reference.  Models it already has columns for are not run
    again: their columns are copied (same seed, same answers), so adding one
    model to a comparison costs only that model's generation and scoring.

    ``progress``: show a progress bar (``tqdm.auto``: a widget in JupyterLab)
    with an estimate of the time left, advanced per batch of 64 prompts
    generated, per model scored and per batch of KL estimates.
    """
    import numpy as np
    from tqdm.auto import tqdm

    if reference is not None and reference not in models:
        raise ValueError(f"reference model {reference!r} is not among the models: {', '.join(models)}")
    queries, query_texts, lengths = _eval_prompts(prompts, cfg, n, seed)
    reused = _reusable(previous, list(models), query_texts, seed, reference)
    new = {name: m for name, m in models.items() if name not in reused}
    batches = math.ceil(len(queries) / 64)
    kl_passes = 0 if reference is None else sum(1 if name == reference else 2 for name in new)
    bar = tqdm(total=len(new) * (batches + 1) + kl_passes * batches, desc=f"comparing {', '.join(new) or 'nothing'}",
               unit="batch", disable=not progress)
    bar.set_postfix_str("generating")
    responses = generate_for_eval(new, tokenizer, queries, lengths, cfg.generation_kwargs(tokenizer), seed, bar=bar)
    texts = {name: tokenizer.batch_decode(res, skip_special_tokens=True) for name, res in responses.items()}
    bar.set_postfix_str("scoring")
    table = score_texts(query_texts, {}, sentiment_pipe, cfg.sent_kwargs)
    for name, model_texts in texts.items():
        table = table.join(score_texts(query_texts, {name: model_texts}, sentiment_pipe, cfg.sent_kwargs).drop(columns="query"))
        bar.update()
    if reference is not None:
        bar.set_postfix_str("KL to the reference")
        for name, res in responses.items():
            own = response_logprobs(models[name], queries, res, tokenizer.eos_token_id, bar=bar)
            on_ref = own if name == reference else response_logprobs(models[reference], queries, res,
                                                                     tokenizer.eos_token_id, bar=bar)
            table[f"KL [{name}]"] = np.asarray(own) - np.asarray(on_ref)
    bar.close()
    for name in reused:
        for col in _model_columns(name, reference is not None):
            table[col] = previous[col].to_numpy()
    # columns in the models' order: every model's answers and scores, then every model's KL
    cols = [c for name in models for c in _model_columns(name, False)]
    table = table[["query"] + cols + ([f"KL [{name}]" for name in models] if reference is not None else [])]
    table.attrs["compare"] = {"seed": seed, "reference": reference}
    return table


def _model_columns(name: str, with_kl: bool) -> list[str]:
    """The columns :func:`compare_models` writes for one model."""
    cols = [f"response [{name}]"] + [f"{label} [{name}]" for label in LABELS] + [f"VADER [{name}]"]
    return cols + [f"KL [{name}]"] if with_kl else cols


def _reusable(previous, names: list[str], query_texts: list[str], seed: int, reference) -> list[str]:
    """The models whose columns ``previous`` (an earlier :func:`compare_models` table) can supply."""
    if previous is None:
        return []
    made = previous.attrs.get("compare")
    if made is None or "query" not in previous.columns:
        raise ValueError("previous must be a table returned by compare_models")
    if made["seed"] != seed or made["reference"] != reference:
        raise ValueError(f"previous was made with seed {made['seed']} and reference {made['reference']!r}; "
                         f"this call has seed {seed} and reference {reference!r}")
    if previous["query"].tolist() != list(query_texts):
        raise ValueError("previous was made on other prompts (its queries differ); pass the same prompts and n")
    return [name for name in names if all(c in previous.columns for c in _model_columns(name, reference is not None))]


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

    from course_lib.reward import label_logits
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
        logits = label_logits(sentiment_pipe, [q + t for q, t in zip(query_texts, texts)], LABELS,
                              batch_size=cfg.sent_kwargs.get("batch_size"))
        for label in LABELS:
            scores[label][k] = logits[label]
    return scores


def model_names(table) -> list[str]:
    return [c[len("response ["):-1] for c in table.columns if c.startswith("response [")]


def summarize(table, label: str, reference: str | None = "reference") -> dict[str, dict]:
    """Per model: both judges' verdicts on ``label``, KL to the reference and diversity.

    For each model: the ``label`` logit's mean, median, standard deviation
    and 95% CI (``mean``, ``median``, ``std``, ``ci95``, ``n``); VADER's
    mean compound score and the share of texts it calls positive
    (``vader_positive_rate``, compound > 0.05) and negative
    (``vader_negative_rate``, compound < -0.05); the mean KL to the
    reference (nats, when the table has it); ``distinct_2`` and the mean
    response length in words.  When ``reference`` is one of the models, also
    ``distinct_2_ratio`` (the model's distinct-2 over the reference's) and
    ``collapse_flag`` (True when that ratio is below ``DIVERSITY_FLOOR``).
    """
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}; valid: {', '.join(LABELS)}")
    names = model_names(table)
    out = {}
    for name in names:
        s = mean_ci(table[f"{label} [{name}]"].tolist())
        s["label"] = label
        if f"VADER [{name}]" in table:
            v = table[f"VADER [{name}]"].to_numpy(dtype=float)
            s["vader_mean"] = float(v.mean())
            s["vader_positive_rate"] = float((v > VADER_POSITIVE).mean())
            s["vader_negative_rate"] = float((v < VADER_NEGATIVE).mean())
        if f"KL [{name}]" in table:
            s["kl_to_reference"] = float(table[f"KL [{name}]"].mean())
        responses = table[f"response [{name}]"].tolist()
        s["distinct_2"] = distinct_n(responses, 2)
        s["mean_response_words"] = float(sum(len(r.split()) for r in responses) / len(responses))
        out[name] = s
    if reference is not None and reference in out:
        ref_d2 = out[reference]["distinct_2"]
        for s in out.values():
            s["distinct_2_ratio"] = s["distinct_2"] / ref_d2 if ref_d2 else float("nan")
            s["collapse_flag"] = bool(ref_d2 and s["distinct_2_ratio"] < DIVERSITY_FLOOR)
    return out


def summary_frame(table, label: str, reference: str | None = "reference"):
    """:func:`summarize` as a DataFrame, one row per model (for display)."""
    import pandas as pd

    rows = []
    for name, s in summarize(table, label, reference).items():
        row = {"model": name, f"mean {label}": s["mean"], "median": s["median"],
               "95% CI": f"[{s['ci95'][0]:+.2f}, {s['ci95'][1]:+.2f}]"}
        if "vader_positive_rate" in s:
            row["VADER positive"] = s["vader_positive_rate"]
            row["VADER negative"] = s["vader_negative_rate"]
        row["KL to ref (nats)"] = s.get("kl_to_reference", float("nan"))
        row["distinct-2"] = s["distinct_2"]
        if "distinct_2_ratio" in s:
            row["distinct-2 / ref"] = s["distinct_2_ratio"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
