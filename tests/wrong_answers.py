"""Plausible wrong answers to the 20 graded exercises, and a second correct solution of each.

Used by ``tests/test_wrong_answers.py``.  Each wrong answer is the kind of slip a
student makes (an off-by-one shift, the wrong dtype, padding on the wrong side,
``max_length`` instead of ``max_new_tokens``, reading by position, a missing 1/2,
whitening per row, the prompt left in the response, a clip fraction counted on
the wrong side, unmasked means, ...).  ``hint`` is a fragment (lower case) that
the visible test's failure message must contain: the message names the problem.

``SECOND_CORRECT`` holds each exercise solved a different way than the
solution notebook: it must pass the visible test and match the hidden evidence.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Wrong:
    name: str
    code: str
    hint: str


WRONG: dict[str, list[Wrong]] = {
    # ---- notebook 1 -------------------------------------------------------------------------
    "ex1": [
        Wrong("padding on the left", '''
def pad_to_length(seq, length, pad_token_id):
    if len(seq) > length:
        raise ValueError("too long")
    return torch.cat([torch.full((length - len(seq),), pad_token_id, dtype=seq.dtype), seq])
''', "right"),
        Wrong("float padding (torch.zeros + pad_token_id)", '''
def pad_to_length(seq, length, pad_token_id):
    if len(seq) > length:
        raise ValueError("too long")
    return torch.cat([seq, torch.zeros(length - len(seq)) + pad_token_id])
''', "dtype"),
        Wrong("padding of the default integer dtype (torch.full without dtype)", '''
def pad_to_length(seq, length, pad_token_id):
    if len(seq) > length:
        raise ValueError("too long")
    return torch.cat([seq, torch.full((length - len(seq),), pad_token_id)])
''', "dtype"),
        Wrong("one pad token too many", '''
def pad_to_length(seq, length, pad_token_id):
    if len(seq) > length:
        raise ValueError("too long")
    return torch.cat([seq, torch.full((length - len(seq) + 1,), pad_token_id, dtype=seq.dtype)])
''', "expected"),
        Wrong("cuts a too-long sequence instead of raising", '''
def pad_to_length(seq, length, pad_token_id):
    seq = seq[:length]
    return torch.cat([seq, torch.full((length - len(seq),), pad_token_id, dtype=seq.dtype)])
''', "valueerror"),
    ],
    "ex2": [
        Wrong("cuts characters instead of tokens", '''
def tokenize(sample):
    text = sample["review"][: input_size()]
    sample["input_ids"] = tokenizer.encode(text)
    sample["query"] = tokenizer.decode(sample["input_ids"])
    return sample
''', "token"),
        Wrong("one token too many", '''
def tokenize(sample):
    sample["input_ids"] = tokenizer.encode(sample["review"])[: input_size() + 1]
    sample["query"] = tokenizer.decode(sample["input_ids"])
    return sample
''', "input_size()"),
        Wrong("calls the sampler twice", '''
def tokenize(sample):
    sample["input_ids"] = tokenizer.encode(sample["review"])[: input_size()]
    sample["query"] = tokenizer.decode(tokenizer.encode(sample["review"])[: input_size()])
    return sample
''', "decode"),
        Wrong("a tensor of ids instead of a list", '''
def tokenize(sample):
    sample["input_ids"] = tokenizer.encode(sample["review"], return_tensors="pt")[0, : input_size()]
    sample["query"] = tokenizer.decode(sample["input_ids"])
    return sample
''', "list"),
    ],
    "ex3": [
        Wrong("returns the list of samples unchanged", '''
def collator(data):
    return data
''', "dict"),
        Wrong("drops the last sample (off by one)", '''
def collator(data):
    return {key: [data[i][key] for i in range(len(data) - 1)] for key in data[0]}
''', "samples"),
        Wrong("keeps only the keys it knows", '''
def collator(data):
    return {"input_ids": [d["input_ids"] for d in data], "query": [d["query"] for d in data]}
''', "keys"),
    ],
    "ex4": [
        Wrong("reads the score by position", '''
def score_for_label(output, label):
    position = {"NEGATIVE": 0, "POSITIVE": 1}
    if label not in position:
        raise ValueError(f"unknown label {label}; valid: POSITIVE, NEGATIVE")
    return float(output[position[label]]["score"])
''', "by name"),
        Wrong("takes the highest score", '''
def score_for_label(output, label):
    if label not in [e["label"] for e in output]:
        raise ValueError(f"unknown label {label}; valid: POSITIVE, NEGATIVE")
    return float(max(e["score"] for e in output))
''', "expected"),
        Wrong("returns None for an unknown label", '''
def score_for_label(output, label):
    for e in output:
        if e["label"] == label:
            return float(e["score"])
    return None
''', "valueerror"),
        Wrong("raises without naming the valid labels", '''
def score_for_label(output, label):
    for e in output:
        if e["label"] == label:
            return float(e["score"])
    raise ValueError(f"unknown label {label!r}")
''', "valid labels"),
    ],
    # ---- notebook 2 -------------------------------------------------------------------------
    "ex5": [
        Wrong("max_length instead of max_new_tokens", '''
def generate_response(model, query_tensor, n_tokens):
    input_ids = query_tensor.unsqueeze(0).to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_length=n_tokens, **gen_kwargs)
    return out[0, len(query_tensor):]
''', "max_new_tokens"),
        Wrong("no attention mask", '''
def generate_response(model, query_tensor, n_tokens):
    input_ids = query_tensor.unsqueeze(0).to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(input_ids, max_new_tokens=n_tokens, **gen_kwargs)
    return out[0, len(query_tensor):]
''', "attention_mask"),
        Wrong("the prompt left in the response", '''
def generate_response(model, query_tensor, n_tokens):
    input_ids = query_tensor.unsqueeze(0).to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=n_tokens, **gen_kwargs)
    return out[0]
''', "prompt"),
        Wrong("slice one token early (keeps the prompt's last token)", '''
def generate_response(model, query_tensor, n_tokens):
    input_ids = query_tensor.unsqueeze(0).to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=n_tokens, **gen_kwargs)
    return out[0, len(query_tensor) - 1:]
''', "prompt"),
        Wrong("keeps the batch dimension", '''
def generate_response(model, query_tensor, n_tokens):
    input_ids = query_tensor.unsqueeze(0).to(next(model.parameters()).device)
    with torch.no_grad():
        out = model.generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=n_tokens, **gen_kwargs)
    return out[:, len(query_tensor):]
''', "1-d"),
    ],
    "ex6": [
        Wrong("forgets the cap", '''
def next_kl_coef(beta, kl, target, horizon, n_responses):
    return float(beta * (1.0 + (kl / target - 1.0) * n_responses / horizon))
''', "capped"),
        Wrong("adds instead of multiplying", '''
def next_kl_coef(beta, kl, target, horizon, n_responses):
    miss = min(max(kl / target - 1.0, -0.2), 0.2)
    return float(beta + miss * n_responses / horizon)
''', "expected"),
        Wrong("caps only from above", '''
def next_kl_coef(beta, kl, target, horizon, n_responses):
    miss = min(kl / target - 1.0, 0.2)
    return float(beta * (1.0 + miss * n_responses / horizon))
''', "capped at -20%"),
        Wrong("the miss in nats, not relative to the target", '''
def next_kl_coef(beta, kl, target, horizon, n_responses):
    miss = min(max(kl - target, -0.2), 0.2)
    return float(beta * (1.0 + miss * n_responses / horizon))
''', "+10%"),
    ],
    "ex7": [
        Wrong("score at the last position, padding or not", '''
def kl_shaped_rewards(score, logprobs, ref_logprobs, mask, beta):
    rewards = -beta * (logprobs - ref_logprobs)
    rewards[-1] = rewards[-1] + score
    return rewards
''', "last real token"),
        Wrong("score one position after the last real token", '''
def kl_shaped_rewards(score, logprobs, ref_logprobs, mask, beta):
    rewards = -beta * (logprobs - ref_logprobs)
    rewards[min(int(mask.sum()), len(mask) - 1)] += score
    return rewards
''', "last real token"),
        Wrong("the KL penalty with the wrong sign", '''
def kl_shaped_rewards(score, logprobs, ref_logprobs, mask, beta):
    rewards = beta * (logprobs - ref_logprobs)
    rewards[int(mask.nonzero()[-1])] += score
    return rewards
''', "-beta"),
        Wrong("changes logprobs in place", '''
def kl_shaped_rewards(score, logprobs, ref_logprobs, mask, beta):
    logprobs -= ref_logprobs
    logprobs *= -beta
    logprobs[int(mask.nonzero()[-1])] += score
    return logprobs
''', "in place"),
    ],
    # ---- notebook 3 -------------------------------------------------------------------------
    "ex8": [
        Wrong("scores the response without its query", '''
def comparison_table(queries, before, after, label):
    def scores(responses):
        return [float({e["label"]: e["score"] for e in out}[label]) for out in sentiment_pipe(list(responses), **sent_kwargs)]
    return pd.DataFrame({"query": list(queries), "response (before)": list(before), "response (after)": list(after),
                         "reward (before)": scores(before), "reward (after)": scores(after)})
''', "query + continuation"),
        Wrong("reads the score by position", '''
def comparison_table(queries, before, after, label):
    def scores(responses):
        outs = sentiment_pipe([q + r for q, r in zip(queries, responses)], **sent_kwargs)
        return [float(out[1 if label == "POSITIVE" else 0]["score"]) for out in outs]
    return pd.DataFrame({"query": list(queries), "response (before)": list(before), "response (after)": list(after),
                         "reward (before)": scores(before), "reward (after)": scores(after)})
''', "by name"),
        Wrong("always the POSITIVE logit", '''
def comparison_table(queries, before, after, label):
    def scores(responses):
        outs = sentiment_pipe([q + r for q, r in zip(queries, responses)], **sent_kwargs)
        return [float({e["label"]: e["score"] for e in out}["POSITIVE"]) for out in outs]
    return pd.DataFrame({"query": list(queries), "response (before)": list(before), "response (after)": list(after),
                         "reward (before)": scores(before), "reward (after)": scores(after)})
''', "negative"),
        Wrong("probabilities instead of logits (no sent_kwargs)", '''
def comparison_table(queries, before, after, label):
    def scores(responses):
        outs = sentiment_pipe([q + r for q, r in zip(queries, responses)], top_k=None)
        return [float({e["label"]: e["score"] for e in out}[label]) for out in outs]
    return pd.DataFrame({"query": list(queries), "response (before)": list(before), "response (after)": list(after),
                         "reward (before)": scores(before), "reward (after)": scores(after)})
''', "sent_kwargs"),
        Wrong("columns in another order", '''
def comparison_table(queries, before, after, label):
    def scores(responses):
        outs = sentiment_pipe([q + r for q, r in zip(queries, responses)], **sent_kwargs)
        return [float({e["label"]: e["score"] for e in out}[label]) for out in outs]
    return pd.DataFrame({"query": list(queries), "response (before)": list(before), "reward (before)": scores(before),
                         "response (after)": list(after), "reward (after)": scores(after)})
''', "columns"),
    ],
    "ex9": [
        Wrong("counts pairs instead of texts", '''
def stutter_share(texts):
    pairs = [p for t in texts for p in zip(t.lower().split(), t.lower().split()[1:])]
    if not pairs:
        return 0.0
    return 1.0 - len(set(pairs)) / len(pairs)
''', "expected"),
        Wrong("does not lower-case", '''
def stutter_share(texts):
    if not texts:
        return 0.0
    n = 0
    for t in texts:
        pairs = list(zip(t.split(), t.split()[1:]))
        n += len(set(pairs)) < len(pairs)
    return n / len(texts)
''', "lower-case"),
        Wrong("repeated words instead of repeated pairs", '''
def stutter_share(texts):
    if not texts:
        return 0.0
    n = 0
    for t in texts:
        words = t.lower().split()
        n += len(set(words)) < len(words)
    return n / len(texts)
''', "different pairs"),
        Wrong("divides by zero on an empty list", '''
def stutter_share(texts):
    n = 0
    for t in texts:
        words = t.lower().split()
        pairs = list(zip(words, words[1:]))
        n += len(set(pairs)) < len(pairs)
    return n / len(texts)
''', "empty list"),
    ],
    "ex10": [
        Wrong("ties count as wins", '''
def happy_vs_pessimistic(table):
    gap = table["POSITIVE [happy]"] - table["POSITIVE [pessimistic]"]
    return {"mean_gap": float(gap.mean()), "happy_wins": float((gap >= 0).mean())}
''', "strictly"),
        Wrong("the gap the other way round", '''
def happy_vs_pessimistic(table):
    gap = table["POSITIVE [pessimistic]"] - table["POSITIVE [happy]"]
    return {"mean_gap": float(gap.mean()), "happy_wins": float((gap < 0).mean())}
''', "mean_gap"),
        Wrong("counts wins instead of their share", '''
def happy_vs_pessimistic(table):
    gap = table["POSITIVE [happy]"] - table["POSITIVE [pessimistic]"]
    return {"mean_gap": float(gap.mean()), "happy_wins": float((gap > 0).sum())}
''', "fraction"),
        Wrong("the median gap instead of the mean", '''
def happy_vs_pessimistic(table):
    gap = table["POSITIVE [happy]"] - table["POSITIVE [pessimistic]"]
    return {"mean_gap": float(gap.median()), "happy_wins": float((gap > 0).mean())}
''', "mean_gap"),
    ],
    # ---- notebook 4 -------------------------------------------------------------------------
    "ex11": [
        Wrong("reads the logits one position late", '''
def response_logprobs_and_values(model, query, response):
    ids = torch.cat([query, response])
    with torch.no_grad():
        logits, _, values = model(ids[None])
    start = len(query) - 1
    lp = torch.log_softmax(logits[0, start + 1:], dim=-1).gather(-1, response[:, None])[:, 0]
    return lp, values[0, start:-1]
''', "position"),
        Wrong("raw logits instead of log-probabilities", '''
def response_logprobs_and_values(model, query, response):
    ids = torch.cat([query, response])
    with torch.no_grad():
        logits, _, values = model(ids[None])
    start = len(query) - 1
    return logits[0, start:-1].gather(-1, response[:, None])[:, 0], values[0, start:-1]
''', "log_softmax"),
        Wrong("values one position late", '''
def response_logprobs_and_values(model, query, response):
    ids = torch.cat([query, response])
    with torch.no_grad():
        logits, _, values = model(ids[None])
    start = len(query) - 1
    lp = torch.log_softmax(logits[0, start:-1], dim=-1).gather(-1, response[:, None])[:, 0]
    return lp, values[0, start + 1:]
''', "values"),
        Wrong("every position, query included", '''
def response_logprobs_and_values(model, query, response):
    ids = torch.cat([query, response])
    with torch.no_grad():
        logits, _, values = model(ids[None])
    lp = torch.log_softmax(logits[0, :-1], dim=-1).gather(-1, ids[1:, None])[:, 0]
    return lp, values[0, :-1]
''', "one per response token"),
    ],
    "ex12": [
        Wrong("no bootstrap from the next value", '''
def gae(values, rewards, gamma, lam):
    adv = torch.zeros_like(values)
    last = 0.0
    for t in reversed(range(len(values))):
        last = rewards[t] - values[t] + gamma * lam * last
        adv[t] = last
    return adv, adv + values
''', "returns"),
        Wrong("forgets lambda", '''
def gae(values, rewards, gamma, lam):
    adv = torch.zeros_like(values)
    last = 0.0
    for t in reversed(range(len(values))):
        nv = values[t + 1] if t + 1 < len(values) else 0.0
        last = rewards[t] + gamma * nv - values[t] + gamma * last
        adv[t] = last
    return adv, adv + values
''', "returns"),
        Wrong("returns the advantages as returns", '''
def gae(values, rewards, gamma, lam):
    adv = torch.zeros_like(values)
    last = 0.0
    for t in reversed(range(len(values))):
        nv = values[t + 1] if t + 1 < len(values) else 0.0
        last = rewards[t] + gamma * nv - values[t] + gamma * lam * last
        adv[t] = last
    return adv, adv.clone()
''', "returns"),
        Wrong("whitens per response instead of per batch", '''
def gae(values, rewards, gamma, lam):
    adv = torch.zeros_like(values)
    last = 0.0
    for t in reversed(range(len(values))):
        nv = values[t + 1] if t + 1 < len(values) else 0.0
        last = rewards[t] + gamma * nv - values[t] + gamma * lam * last
        adv[t] = last
    returns = adv + values
    return (adv - adv.mean()) / adv.std(), returns
''', "whiten"),
    ],
    "ex13": [
        Wrong("the clip fraction counted on the wrong side", '''
def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    m = mask.float()
    return (torch.max(unclipped, clipped) * m).sum() / m.sum(), ((clipped < unclipped).float() * m).sum() / m.sum()
''', "clip fraction"),
        Wrong("the clip fraction as ratios outside the range", '''
def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    m = mask.float()
    outside = ((ratio - 1).abs() > cliprange).float()
    return (torch.max(unclipped, clipped) * m).sum() / m.sum(), (outside * m).sum() / m.sum()
''', "clip fraction"),
        Wrong("unmasked means", '''
def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    return torch.max(unclipped, clipped).mean(), (clipped > unclipped).float().mean()
''', "mask"),
        Wrong("the smaller term instead of the larger", '''
def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - cliprange, 1 + cliprange)
    m = mask.float()
    return (torch.min(unclipped, clipped) * m).sum() / m.sum(), ((clipped > unclipped).float() * m).sum() / m.sum()
''', "larger"),
    ],
    "ex14": [
        Wrong("a missing 1/2", '''
def clipped_value_loss(vpreds, values, returns, mask, cliprange_value):
    vclip = torch.clamp(vpreds, values - cliprange_value, values + cliprange_value)
    e1, e2 = (vpreds - returns) ** 2, (vclip - returns) ** 2
    m = mask.float()
    return (torch.max(e1, e2) * m).sum() / m.sum(), ((e2 > e1).float() * m).sum() / m.sum()
''', "1/2"),
        Wrong("the clip fraction counted on the wrong side", '''
def clipped_value_loss(vpreds, values, returns, mask, cliprange_value):
    vclip = torch.clamp(vpreds, values - cliprange_value, values + cliprange_value)
    e1, e2 = (vpreds - returns) ** 2, (vclip - returns) ** 2
    m = mask.float()
    return 0.5 * (torch.max(e1, e2) * m).sum() / m.sum(), ((e2 < e1).float() * m).sum() / m.sum()
''', "clip fraction"),
        Wrong("unmasked means", '''
def clipped_value_loss(vpreds, values, returns, mask, cliprange_value):
    vclip = torch.clamp(vpreds, values - cliprange_value, values + cliprange_value)
    e1, e2 = (vpreds - returns) ** 2, (vclip - returns) ** 2
    return 0.5 * torch.max(e1, e2).mean(), (e2 > e1).float().mean()
''', "mask"),
        Wrong("clips around the returns instead of the old values", '''
def clipped_value_loss(vpreds, values, returns, mask, cliprange_value):
    vclip = torch.clamp(vpreds, returns - cliprange_value, returns + cliprange_value)
    e1, e2 = (vpreds - returns) ** 2, (vclip - returns) ** 2
    m = mask.float()
    return 0.5 * (torch.max(e1, e2) * m).sum() / m.sum(), ((e2 > e1).float() * m).sum() / m.sum()
''', "values"),
    ],
    "ex15": [
        Wrong("the mean of all returns as the baseline (self included)", '''
def rloo_advantages(returns):
    return returns - returns.mean()
''', "others"),
        Wrong("divides the others' sum by n", '''
def rloo_advantages(returns):
    return returns - (returns.sum() - returns) / len(returns)
''', "n - 1"),
        Wrong("forgets to leave itself out of the sum", '''
def rloo_advantages(returns):
    return returns - returns.sum() / (len(returns) - 1)
''', "others"),
        Wrong("standardises instead", '''
def rloo_advantages(returns):
    return (returns - returns.mean()) / returns.std()
''', "others"),
    ],
    # ---- notebook 5 -------------------------------------------------------------------------
    "ex16": [
        Wrong("a tie goes to b", '''
def preference_pairs(responses_a, responses_b, scores_a, scores_b):
    chosen, rejected = [], []
    for ra, rb, sa, sb in zip(responses_a, responses_b, scores_a, scores_b):
        chosen.append(ra if sa > sb else rb)
        rejected.append(rb if sa > sb else ra)
    return chosen, rejected
''', "a tie"),
        Wrong("always a as chosen", '''
def preference_pairs(responses_a, responses_b, scores_a, scores_b):
    return list(responses_a), list(responses_b)
''', "higher score"),
        Wrong("the lower score chosen", '''
def preference_pairs(responses_a, responses_b, scores_a, scores_b):
    chosen, rejected = [], []
    for ra, rb, sa, sb in zip(responses_a, responses_b, scores_a, scores_b):
        chosen.append(ra if sa <= sb else rb)
        rejected.append(rb if sa <= sb else ra)
    return chosen, rejected
''', "higher score"),
        Wrong("returns (rejected, chosen)", '''
def preference_pairs(responses_a, responses_b, scores_a, scores_b):
    chosen, rejected = [], []
    for ra, rb, sa, sb in zip(responses_a, responses_b, scores_a, scores_b):
        chosen.append(ra if sa >= sb else rb)
        rejected.append(rb if sa >= sb else ra)
    return rejected, chosen
''', "swapped"),
        Wrong("the pairs out of prompt order (a's wins first, then b's)", '''
def preference_pairs(responses_a, responses_b, scores_a, scores_b):
    rows = list(zip(responses_a, responses_b, scores_a, scores_b))
    chosen = [ra for ra, rb, sa, sb in rows if sa >= sb] + [rb for ra, rb, sa, sb in rows if sa < sb]
    rejected = [rb for ra, rb, sa, sb in rows if sa >= sb] + [ra for ra, rb, sa, sb in rows if sa < sb]
    return chosen, rejected
''', "prompt order"),
    ],
    "ex17": [
        Wrong("log(sigmoid) instead of logsigmoid (underflows)", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    h = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    losses = -torch.log(torch.sigmoid(beta * h))
    chosen_rewards = (beta * (policy_chosen_logps - ref_chosen_logps)).detach()
    rejected_rewards = (beta * (policy_rejected_logps - ref_rejected_logps)).detach()
    return losses, chosen_rewards, rejected_rewards
''', "logsigmoid"),
        Wrong("beta missing from the loss", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    h = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    losses = -torch.nn.functional.logsigmoid(h)
    chosen_rewards = (beta * (policy_chosen_logps - ref_chosen_logps)).detach()
    rejected_rewards = (beta * (policy_rejected_logps - ref_rejected_logps)).detach()
    return losses, chosen_rewards, rejected_rewards
''', "multiplied by beta"),
        Wrong("implicit rewards not detached", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    h = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    losses = -torch.nn.functional.logsigmoid(beta * h)
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    return losses, chosen_rewards, rejected_rewards
''', "detach"),
        Wrong("the sign flipped", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    h = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    losses = -torch.nn.functional.logsigmoid(-beta * h)
    chosen_rewards = (beta * (policy_chosen_logps - ref_chosen_logps)).detach()
    rejected_rewards = (beta * (policy_rejected_logps - ref_rejected_logps)).detach()
    return losses, chosen_rewards, rejected_rewards
''', "sign"),
        Wrong("the reference terms swapped (its margin added)", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    h = (policy_chosen_logps - policy_rejected_logps) - (ref_rejected_logps - ref_chosen_logps)
    losses = -torch.nn.functional.logsigmoid(beta * h)
    chosen_rewards = (beta * (policy_chosen_logps - ref_chosen_logps)).detach()
    rejected_rewards = (beta * (policy_rejected_logps - ref_rejected_logps)).detach()
    return losses, chosen_rewards, rejected_rewards
''', "(ref_chosen - ref_rejected)"),
    ],
    "ex18": [
        Wrong("the standard deviation of all rewards, not per group", '''
def group_advantages(rewards, group_size, eps=1e-4):
    groups = rewards.view(-1, group_size)
    return ((groups - groups.mean(dim=1, keepdim=True)) / (rewards.std() + eps)).view(-1)
''', "own group's standard deviation"),
        Wrong("the population standard deviation (unbiased=False)", '''
def group_advantages(rewards, group_size, eps=1e-4):
    groups = rewards.view(-1, group_size)
    std = groups.std(dim=1, unbiased=False, keepdim=True)
    return ((groups - groups.mean(dim=1, keepdim=True)) / (std + eps)).view(-1)
''', "unbiased"),
        Wrong("no eps (nan for a group of equal rewards)", '''
def group_advantages(rewards, group_size, eps=1e-4):
    groups = rewards.view(-1, group_size)
    return ((groups - groups.mean(dim=1, keepdim=True)) / groups.std(dim=1, keepdim=True)).view(-1)
''', "std + eps"),
        Wrong("the mean of the whole batch as the baseline", '''
def group_advantages(rewards, group_size, eps=1e-4):
    groups = rewards.view(-1, group_size)
    return ((groups - rewards.mean()) / (groups.std(dim=1, keepdim=True) + eps)).view(-1)
''', "own group's mean"),
        Wrong("the advantages not reshaped (one row per group)", '''
def group_advantages(rewards, group_size, eps=1e-4):
    groups = rewards.view(-1, group_size)
    return (groups - groups.mean(dim=1, keepdim=True)) / (groups.std(dim=1, keepdim=True) + eps)
''', "shape (6,)"),
    ],
    "ex19": [
        Wrong("k1 instead of k3", '''
def k3_kl(logprobs, ref_logprobs):
    return logprobs - ref_logprobs
''', "k1"),
        Wrong("d with the wrong sign (logprobs - ref_logprobs)", '''
def k3_kl(logprobs, ref_logprobs):
    d = logprobs - ref_logprobs
    return torch.exp(d) - d - 1
''', "d = ref_logprobs - logprobs"),
        Wrong("the -1 missing", '''
def k3_kl(logprobs, ref_logprobs):
    d = ref_logprobs - logprobs
    return torch.exp(d) - d
''', "exp(0) - 0 - 1"),
        Wrong("k2 (d^2 / 2) instead of k3", '''
def k3_kl(logprobs, ref_logprobs):
    return 0.5 * (ref_logprobs - logprobs) ** 2
''', "exp(d) - d - 1"),
        Wrong("the mean over tokens instead of element-wise", '''
def k3_kl(logprobs, ref_logprobs):
    d = ref_logprobs - logprobs
    return (torch.exp(d) - d - 1).mean()
''', "element-wise"),
    ],
    "ex20": [
        Wrong("the mean over all tokens instead of per response", '''
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, cliprange, beta):
    mask = mask.float()
    adv = advantages[:, None]
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * adv)
    per_token = -surrogate + beta * k3_kl(logprobs, ref_logprobs)
    return (per_token * mask).sum() / mask.sum()
''', "each response over its own tokens"),
        Wrong("max instead of min", '''
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, cliprange, beta):
    mask = mask.float()
    adv = advantages[:, None]
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.max(ratio * adv, torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * adv)
    per_token = -surrogate + beta * k3_kl(logprobs, ref_logprobs)
    return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
''', "not the max"),
        Wrong("no clipping", '''
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, cliprange, beta):
    mask = mask.float()
    ratio = torch.exp(logprobs - old_logprobs)
    per_token = -ratio * advantages[:, None] + beta * k3_kl(logprobs, ref_logprobs)
    return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
''', "clip the ratio"),
        Wrong("the KL term with the wrong sign", '''
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, cliprange, beta):
    mask = mask.float()
    adv = advantages[:, None]
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * adv)
    per_token = -(surrogate + beta * k3_kl(logprobs, ref_logprobs))
    return ((per_token * mask).sum(-1) / mask.sum(-1)).mean()
''', "penalty"),
        Wrong("the mask ignored", '''
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, cliprange, beta):
    adv = advantages[:, None]
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * adv)
    per_token = -surrogate + beta * k3_kl(logprobs, ref_logprobs)
    return per_token.mean(-1).mean()
''', "padding"),
    ],
}


SECOND_CORRECT: dict[str, str] = {
    "ex1": '''
def pad_to_length(seq, length, pad_token_id):
    missing = length - seq.shape[0]
    if missing < 0:
        raise ValueError(f"{seq.shape[0]} tokens do not fit in {length}")
    return torch.nn.functional.pad(seq, (0, missing), value=pad_token_id)
''',
    "ex2": '''
def tokenize(sample):
    n = input_size()
    ids = tokenizer(sample["review"])["input_ids"]
    sample["input_ids"] = [int(i) for i in ids[:n]]
    sample["query"] = tokenizer.decode(sample["input_ids"])
    return sample
''',
    "ex3": '''
def collator(data):
    batch = {}
    for sample in data:
        for key, value in sample.items():
            batch.setdefault(key, []).append(value)
    return batch
''',
    "ex4": '''
def score_for_label(output, label):
    by_name = {e["label"]: e["score"] for e in output}
    if label not in by_name:
        raise ValueError(f"no {label!r}; the output has {sorted(by_name)}")
    return float(by_name[label])
''',
    "ex5": '''
def generate_response(model, query_tensor, n_tokens):
    device = next(model.parameters()).device
    batch = query_tensor[None, :].to(device)
    mask = torch.ones(batch.shape, dtype=torch.long, device=device)
    out = model.generate(input_ids=batch, attention_mask=mask, max_length=batch.shape[1] + n_tokens, **gen_kwargs)
    return out[0][batch.shape[1]:].detach()
''',
    "ex6": '''
def next_kl_coef(beta, kl, target, horizon, n_responses):
    import numpy as np
    proportional_error = np.clip(kl / target - 1, -0.2, 0.2)
    mult = 1 + proportional_error * n_responses / horizon
    return float(beta * mult)
''',
    "ex7": '''
def kl_shaped_rewards(score, logprobs, ref_logprobs, mask, beta):
    last = int(mask.sum()) - 1
    bonus = torch.zeros_like(logprobs)
    bonus[last] = score
    return bonus - beta * (logprobs - ref_logprobs)
''',
    "ex8": '''
def comparison_table(queries, before, after, label):
    rows = []
    for q, b, a in zip(queries, before, after):
        row = {"query": q, "response (before)": b, "response (after)": a}
        for which, cont in (("before", b), ("after", a)):
            out = sentiment_pipe(q + cont, **sent_kwargs)
            out = out[0] if isinstance(out[0], list) else out
            row[f"reward ({which})"] = next(float(e["score"]) for e in out if e["label"] == label)
        rows.append(row)
    return pd.DataFrame(rows, columns=["query", "response (before)", "response (after)", "reward (before)", "reward (after)"])
''',
    "ex9": '''
def stutter_share(texts):
    from collections import Counter
    flags = []
    for t in texts:
        w = t.lower().split()
        counts = Counter(zip(w, w[1:]))
        flags.append(any(c > 1 for c in counts.values()))
    return sum(flags) / len(flags) if flags else 0.0
''',
    "ex10": '''
def happy_vs_pessimistic(table):
    import numpy as np
    h = table["POSITIVE [happy]"].to_numpy()
    p = table["POSITIVE [pessimistic]"].to_numpy()
    return {"mean_gap": float(np.mean(h - p)), "happy_wins": float(np.count_nonzero(h > p) / len(h))}
''',
    "ex11": '''
def response_logprobs_and_values(model, query, response):
    ids = torch.cat([query, response]).unsqueeze(0)
    pos = torch.arange(len(query) - 1, ids.shape[1] - 1)
    with torch.no_grad():
        out = model(ids)
    logits, values = out[0][0], out[2][0]
    lp = -torch.nn.functional.cross_entropy(logits[pos], response, reduction="none")
    return lp, values[pos]
''',
    "ex12": '''
def gae(values, rewards, gamma, lam):
    n = len(values)
    next_values = torch.cat([values[1:], values.new_zeros(1)])
    deltas = rewards + gamma * next_values - values
    k = torch.arange(n)
    power = (k[None, :] - k[:, None]).clamp(min=0).to(values.dtype)
    weights = torch.where(k[None, :] >= k[:, None], (gamma * lam) ** power, torch.zeros_like(power))
    advantages = weights @ deltas
    return advantages, advantages + values
''',
    "ex13": '''
def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange):
    r = (logprobs - old_logprobs).exp()
    plain, clipped = r * advantages, r.clamp(1 - cliprange, 1 + cliprange) * advantages
    on = mask.bool()
    return -torch.minimum(plain, clipped)[on].mean(), (clipped < plain)[on].float().mean()
''',
    "ex14": '''
def clipped_value_loss(vpreds, values, returns, mask, cliprange_value):
    vclip = values + (vpreds - values).clamp(-cliprange_value, cliprange_value)
    plain, clipped = (vpreds - returns).pow(2), (vclip - returns).pow(2)
    on = mask.bool()
    return torch.maximum(plain, clipped)[on].mean() / 2, (clipped > plain)[on].float().mean()
''',
    "ex15": '''
def rloo_advantages(returns):
    n = len(returns)
    return torch.stack([returns[i] - torch.cat([returns[:i], returns[i + 1:]]).mean() for i in range(n)])
''',
    "ex16": '''
def preference_pairs(responses_a, responses_b, scores_a, scores_b):
    a_wins = [float(sa) >= float(sb) for sa, sb in zip(scores_a, scores_b)]
    chosen = [a if win else b for a, b, win in zip(responses_a, responses_b, a_wins)]
    rejected = [b if win else a for a, b, win in zip(responses_a, responses_b, a_wins)]
    return chosen, rejected
''',
    "ex17": '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    policy_margin = policy_chosen_logps - policy_rejected_logps
    ref_margin = ref_chosen_logps - ref_rejected_logps
    losses = torch.nn.functional.softplus(-beta * (policy_margin - ref_margin))   # -log sigmoid(z) = softplus(-z)
    with torch.no_grad():
        chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps)
        rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps)
    return losses, chosen_rewards, rejected_rewards
''',
    "ex18": '''
def group_advantages(rewards, group_size, eps=1e-4):
    out = torch.empty_like(rewards)
    for start in range(0, len(rewards), group_size):
        group = rewards[start:start + group_size]
        centred = group - group.mean()
        std = torch.sqrt((centred ** 2).sum() / (len(group) - 1))
        out[start:start + group_size] = centred / (std + eps)
    return out
''',
    "ex19": '''
def k3_kl(logprobs, ref_logprobs):
    d = ref_logprobs - logprobs
    return torch.expm1(d) - d
''',
    "ex20": '''
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, cliprange, beta):
    ratio = (logprobs - old_logprobs).exp()
    adv = advantages.unsqueeze(1).expand_as(logprobs)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - cliprange, 1 + cliprange) * adv)
    d = ref_logprobs - logprobs
    token_loss = beta * (d.exp() - d - 1) - surrogate
    m = mask.to(token_loss.dtype)
    per_response = (token_loss * m).sum(dim=1) / m.sum(dim=1)
    return per_response.sum() / per_response.numel()
''',
}
