"""Direct Preference Optimisation (Rafailov et al. 2023) on the lab's task, in one readable file.

PPO samples, scores and updates in a loop.  DPO needs neither the loop nor
the reward model during training: it learns from a fixed set of
*preference pairs* (a prompt, a chosen and a rejected response).  Here the
pairs are made the way the DPO paper made its IMDb pairs: two samples of the
reference per prompt, labelled by the sentiment classifier (chosen = the
response whose text gets the higher logit of the target label).

Every hyperparameter is named once in :class:`DPOSettings`; the steps are
marked in :func:`train_dpo`:

1. **pairs**          two reference samples per prompt, scored, ordered
   (:func:`build_preference_pairs`); optionally more samples per prompt
   (the best and the worst are paired) and further rounds whose pairs are
   sampled from the policy trained so far (iterative or "online" DPO);
2. **reference log-probabilities**  ``log pi_ref(y | x)`` of both responses,
   once (the reference never changes);
3. **optimisation**   epochs of shuffled mini-batches of the sigmoid DPO loss
   (:func:`dpo_loss`) on a LoRA adapter; the reference is the same model with
   the adapter switched off;
4. **statistics**     loss, accuracy of the implicit reward
   (:func:`implicit_reward`) and its margin, per mini-batch.

:func:`dpo_loss` is trl 0.11.4's ``DPOTrainer.dpo_loss`` with
``loss_type="sigmoid"``: ``tests/test_dpo.py`` checks the two equal to 1e-6
on a real batch of pairs.  Log-probabilities are in nats, summed over the
response tokens (``pi(y | x)`` of the whole response).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from course_instructor.ppo import pack, response_forward


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class DPOSettings:
    """Every hyperparameter of the course's DPO, named once."""

    beta: float = _help("strength of the pull toward the reference: the implicit reward is beta * log(pi / pi_ref)",
                        0.1)
    label_smoothing: float = _help("probability that a pair's label is wrong (conservative DPO; 0 = plain DPO)",
                                   0.0)
    prompts: int = _help("training prompts per round, each giving one pair", 1024)
    samples_per_prompt: int = _help("responses drawn per prompt; the pair is the best and the worst by the "
                                    "classifier (2 = the DPO paper's pairs)", 2)
    rounds: int = _help("rounds of sampling: round 1 samples the reference (offline DPO, the DPO paper's "
                        "setting); each later round samples the policy trained so far on fresh prompts "
                        "(iterative, 'online' DPO), always against the same reference", 1)
    epochs: int = _help("passes over the pairs", 2)
    mini_batch_size: int = _help("pairs per gradient step", 32)
    learning_rate: float = _help("Adam's step size (on the LoRA adapter)", 5e-4)
    lora_r: int = _help("rank of the LoRA adapter on every attention and MLP matrix", 16)
    lora_alpha: int = _help("LoRA scale alpha (the update is alpha / r times the low-rank product)", 32)
    target_label: str = _help("the classifier's label whose logit decides which response is chosen", "POSITIVE")
    seed: int = _help("one seed for prompts, samples and shuffling", 0)

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt must be at least 2 (a pair), got {self.samples_per_prompt}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if self.mini_batch_size < 1 or self.prompts < self.mini_batch_size:
            raise ValueError(f"need 1 <= mini_batch_size <= prompts, got {self.mini_batch_size} and {self.prompts}")


# ---- step 1: preference pairs ------------------------------------------------------------
def build_preference_pairs(responses_a: Sequence, responses_b: Sequence, scores_a: Sequence[float],
                           scores_b: Sequence[float]) -> dict:
    """Order two responses per prompt by the classifier: chosen = the higher target logit.

    ``responses_*``: one response per prompt (token tensors, texts, anything);
    ``scores_*``: the target label's logit of ``prompt + response``.  A tie
    keeps ``a`` as chosen.  Returns ``{"chosen", "rejected", "margin"}``, lists
    in prompt order; ``margin`` = chosen score - rejected score (>= 0, logits).
    """
    if not len(responses_a) == len(responses_b) == len(scores_a) == len(scores_b):
        raise ValueError(f"one of each per prompt: got {len(responses_a)}, {len(responses_b)} responses and "
                         f"{len(scores_a)}, {len(scores_b)} scores")
    chosen, rejected, margin = [], [], []
    for ra, rb, sa, sb in zip(responses_a, responses_b, scores_a, scores_b):
        a_wins = float(sa) >= float(sb)
        chosen.append(ra if a_wins else rb)
        rejected.append(rb if a_wins else ra)
        margin.append(abs(float(sa) - float(sb)))
    return {"chosen": chosen, "rejected": rejected, "margin": margin}


# ---- the loss ------------------------------------------------------------------------------
def dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
             beta: float, label_smoothing: float = 0.0):
    """The sigmoid DPO loss per pair, and the implicit rewards of both responses.

    ``h = (log pi(y_w) - log pi(y_l)) - (log pi_ref(y_w) - log pi_ref(y_l))``;
    ``loss = -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)``
    (``eps`` = ``label_smoothing``).  Inputs: ``(B,)`` sequence
    log-probabilities in nats.  Returns ``(losses, chosen_rewards,
    rejected_rewards)``, each ``(B,)``; the rewards are detached, as trl's.
    """
    import torch.nn.functional as F

    logits = (policy_chosen_logps - policy_rejected_logps) - (reference_chosen_logps - reference_rejected_logps)
    losses = -F.logsigmoid(beta * logits) * (1 - label_smoothing) - F.logsigmoid(-beta * logits) * label_smoothing
    chosen_rewards = implicit_reward(policy_chosen_logps, reference_chosen_logps, beta).detach()
    rejected_rewards = implicit_reward(policy_rejected_logps, reference_rejected_logps, beta).detach()
    return losses, chosen_rewards, rejected_rewards


def implicit_reward(policy_logps, reference_logps, beta: float):
    """DPO's implicit reward of a response: ``beta * (log pi(y | x) - log pi_ref(y | x))`` (nats times beta).

    The policy DPO trains is the optimum of a KL-regularised RL problem
    whose reward is this (up to a term that depends on the prompt only).
    """
    return beta * (policy_logps - reference_logps)


# ---- log-probabilities of whole responses ---------------------------------------------------
def sequence_logprobs(model, queries: Sequence, responses: Sequence, pad_token_id: int, batch_size: int = 64):
    """``log pi(response | query)`` summed over the response tokens, ``(B,)`` nats (with gradient if enabled)."""
    import torch

    out = []
    for s in range(0, len(queries), batch_size):
        batch = pack(list(queries[s:s + batch_size]), list(responses[s:s + batch_size]), pad_token_id)
        logprobs, _, _ = response_forward(model, batch, want_values=False)
        out.append((logprobs * batch.mask).sum(-1))
    return torch.cat(out)


# ---- a LoRA policy on the bundled base (shared with GRPO) ------------------------------------
def lora_policy(base_name: str, r: int, alpha: int):
    """A plain causal LM (no value head) with a new trainable LoRA adapter; adapter off = the reference."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from course_lib.assets import resolve
    from course_lib.models import lora_config

    base = AutoModelForCausalLM.from_pretrained(resolve(base_name), torch_dtype=torch.float32)
    return get_peft_model(base, lora_config(r, alpha))


def sample_responses(model, tokenizer, queries: Sequence, lengths: Sequence[int], gen_kwargs: dict,
                     batch_size: int = 64) -> list:
    """One sampled response per query (the lab's sampling), in batches."""
    from course_lib.rollout import generate_responses

    out = []
    for s in range(0, len(queries), batch_size):
        out += generate_responses(model, tokenizer, queries[s:s + batch_size], lengths[s:s + batch_size], gen_kwargs)
    return out


# ---- the training run ------------------------------------------------------------------------
def _pairs_of_round(model, tokenizer, cfg, hp, queries, query_texts, lengths, sentiment_pipe, from_reference):
    """Step 1 of one round: ``samples_per_prompt`` samples per prompt, scored; the best and the worst paired."""
    from course_lib.reward import sentiment_scores

    gen = cfg.generation_kwargs(tokenizer)
    samples, scores = [], []
    for _ in range(hp.samples_per_prompt):
        if from_reference:
            with model.disable_adapter():
                drawn = sample_responses(model, tokenizer, queries, lengths, gen)
        else:
            drawn = sample_responses(model, tokenizer, queries, lengths, gen)
        texts = tokenizer.batch_decode(drawn, skip_special_tokens=True)
        samples.append(drawn)
        scores.append(sentiment_scores(sentiment_pipe, [q + t for q, t in zip(query_texts, texts)],
                                       hp.target_label, cfg.sent_kwargs))
    if hp.samples_per_prompt == 2:
        pairs = build_preference_pairs(samples[0], samples[1], scores[0], scores[1])
    else:
        best = [max(range(len(scores)), key=lambda k: scores[k][i]) for i in range(len(queries))]
        worst = [min(range(len(scores)), key=lambda k: scores[k][i]) for i in range(len(queries))]
        pairs = build_preference_pairs([samples[k][i] for i, k in enumerate(best)],
                                       [samples[k][i] for i, k in enumerate(worst)],
                                       [scores[k][i] for i, k in enumerate(best)],
                                       [scores[k][i] for i, k in enumerate(worst)])
    pairs["chosen_score"] = [max(col) for col in zip(*scores)]
    pairs["rejected_score"] = [min(col) for col in zip(*scores)]
    return pairs


def train_dpo(settings: DPOSettings, cfg, tokenizer, prompts, sentiment_pipe, progress=None,
              pairs_cache: dict | None = None):
    """DPO on ``settings.prompts`` training prompts per round; returns ``(model, records, info)``.

    ``cfg``: the lab's ``LabConfig`` (models, sampling settings, response
    lengths); ``prompts``: a dataset from ``course_lib.data.build_dataset``.
    ``model`` is the PEFT policy; ``records`` one dict per gradient step;
    ``info`` the totals: ``train_seconds`` (pairs included), ``samples`` (the
    responses drawn), ``pairs``.

    With ``rounds=1`` this is the DPO paper's offline DPO: every pair comes
    from the reference, drawn before any training.  Each further round uses
    the next ``prompts`` prompts, draws its pairs from the policy as trained
    so far, and trains on them (the reference, and so the loss, stay the
    same).

    ``pairs_cache``: a dict shared by several runs on the same prompts (a
    sweep over beta): round 1's pairs and the reference's log-probabilities
    do not depend on beta, so they are made once and reused.
    ``train_seconds`` still counts the time the first run spent making them,
    as a run of its own would.
    """
    import numpy as np
    import torch

    from course_lib.data import numpy_seed
    from course_lib.train import response_length_sampler, set_seed

    hp = settings
    t_start = time.perf_counter()
    set_seed(hp.seed)
    model = lora_policy(cfg.policy_model, hp.lora_r, hp.lora_alpha)
    pad = tokenizer.eos_token_id
    n = min(hp.prompts, len(prompts) // hp.rounds)
    if n < hp.mini_batch_size:
        raise ValueError(f"{len(prompts)} prompts are too few for {hp.rounds} round(s) of {hp.mini_batch_size}")
    sampler = response_length_sampler(cfg)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=hp.learning_rate)
    rng = np.random.default_rng(hp.seed)
    records, rounds, pairs_seconds, credited = [], [], 0.0, 0.0
    for rnd in range(hp.rounds):
        t_round = time.perf_counter()
        rows = prompts.select(range(rnd * n, (rnd + 1) * n))
        queries = [torch.as_tensor(q) for q in rows["input_ids"]]
        query_texts = list(rows["query"])
        with numpy_seed(hp.seed + rnd):
            lengths = [sampler() for _ in queries]

        model.eval()
        key = (n, hp.seed, hp.samples_per_prompt, hp.target_label, tuple(query_texts[:4]))
        if rnd == 0 and pairs_cache is not None and key in pairs_cache:
            chosen, rejected, ref_chosen, ref_rejected, pairs, seconds = pairs_cache[key]
            credited += seconds  # counted as if this run had made them
        else:
            # ---- 1. pairs: samples per prompt (the reference's in round 1), ordered by the classifier ----
            pairs = _pairs_of_round(model, tokenizer, cfg, hp, queries, query_texts, lengths, sentiment_pipe,
                                    from_reference=rnd == 0)
            chosen, rejected = pairs["chosen"], pairs["rejected"]

            # ---- 2. reference log-probabilities, once per pair ----
            with torch.no_grad(), model.disable_adapter():
                ref_chosen = sequence_logprobs(model, queries, chosen, pad)
                ref_rejected = sequence_logprobs(model, queries, rejected, pad)
            seconds = time.perf_counter() - t_round
            if rnd == 0 and pairs_cache is not None:
                pairs_cache[key] = (chosen, rejected, ref_chosen, ref_rejected, pairs, seconds)
        pairs_seconds += seconds
        rounds.append({"round": rnd + 1, "sampled": "reference" if rnd == 0 else "policy",
                       "mean_pair_margin": float(np.mean(pairs["margin"])),
                       "mean_chosen_score": float(np.mean(pairs["chosen_score"])),
                       "mean_rejected_score": float(np.mean(pairs["rejected_score"])),
                       "pair_seconds": round(seconds, 1)})

        # ---- 3. optimisation: epochs of shuffled mini-batches of the DPO loss ----
        # (the model stays in eval mode, as in the course's PPO: no dropout, so CPU runs repeat exactly)
        for epoch in range(hp.epochs):
            order = rng.permutation(n)
            for start in range(0, n - hp.mini_batch_size + 1, hp.mini_batch_size):
                idx = order[start:start + hp.mini_batch_size]
                q = [queries[i] for i in idx]
                logps = sequence_logprobs(model, q + q, [chosen[i] for i in idx] + [rejected[i] for i in idx], pad)
                pol_chosen, pol_rejected = logps[:len(idx)], logps[len(idx):]
                losses, r_chosen, r_rejected = dpo_loss(pol_chosen, pol_rejected, ref_chosen[idx],
                                                        ref_rejected[idx], hp.beta, hp.label_smoothing)
                loss = losses.mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                # ---- 4. statistics (trl's names) ----
                records.append({"step": len(records) + 1, "round": rnd + 1, "epoch": epoch,
                                "loss": loss.item(),
                                "rewards/chosen": float(r_chosen.mean()),
                                "rewards/rejected": float(r_rejected.mean()),
                                "rewards/accuracies": float((r_chosen > r_rejected).float().mean()),
                                "rewards/margins": float((r_chosen - r_rejected).mean()),
                                "logps/chosen": pol_chosen.mean().item(),
                                "logps/rejected": pol_rejected.mean().item()})
                if progress and len(records) % 10 == 0:
                    progress(f"  DPO round {rnd + 1} step {len(records)}: loss {loss:.3f} "
                             f"accuracy {records[-1]['rewards/accuracies']:.2f}")
    model.eval()
    info = {"train_seconds": time.perf_counter() - t_start + credited, "pairs_seconds": pairs_seconds,
            "samples": hp.samples_per_prompt * n * hp.rounds, "pairs": n * hp.rounds, "rounds": rounds,
            "mean_pair_margin": float(np.mean([r["mean_pair_margin"] for r in rounds])),
            "mean_chosen_score": float(np.mean([r["mean_chosen_score"] for r in rounds])),
            "mean_rejected_score": float(np.mean([r["mean_rejected_score"] for r in rounds]))}
    return model, records, info
