"""Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath) on the lab's task, in one readable file.

PPO needs a value head to tell a good response from a lucky one.  GRPO
drops it: it samples a *group* of G responses to the same prompt and judges
each against its siblings, ``A = (r - mean(group)) / std(group)``.  The KL
to the reference is not folded into the reward (as in PPO) but added to the
loss, per token, with the k3 estimator.

Every hyperparameter is named once in :class:`GRPOSettings`; the steps are
marked in :func:`train_grpo`:

1. **rollout**      ``prompts_per_step`` prompts, ``group_size`` samples of
   each from the current policy, scored by the classifier;
2. **advantages**   group-relative (:func:`group_relative_advantages`), one
   number per response, given to each of its tokens;
3. **old and reference log-probabilities** per token, without gradient;
4. **optimisation** ``epochs_per_step`` passes over the batch: the clipped
   surrogate per token (no value head) plus ``kl_coef`` times the k3 KL
   (:func:`grpo_loss`, :func:`k3_kl`).

The arithmetic is that of trl's ``GRPOTrainer`` (``loss_type="grpo"``:
each response's tokens averaged, then the responses; rewards scaled by the
group's std): ``make modern-trl`` checks :func:`group_relative_advantages`
and :func:`grpo_loss` against the installed trl.  Shapes: ``(B, T)``
per-token tensors, left-aligned, ``mask`` 1 on real response tokens.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from course_instructor.ppo import masked_mean, pack, response_forward

#: How the per-token losses become one number (trl's names).
LOSS_TYPES = ("grpo", "bnpo")


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class GRPOSettings:
    """Every hyperparameter of the course's GRPO, named once.  Defaults follow trl's ``GRPOConfig`` where it has one."""

    group_size: int = _help("G: responses sampled per prompt (trl's num_generations)", 8)
    prompts_per_step: int = _help("prompts per step (batch = prompts_per_step * group_size responses)", 8)
    steps: int = _help("optimisation steps (each draws a fresh batch)", 40)
    epochs_per_step: int = _help("passes over each batch (trl's num_iterations)", 1)
    learning_rate: float = _help("Adam's step size (on the LoRA adapter)", 1e-3)
    cliprange: float = _help("the ratio pi / pi_old is clipped to [1 - cliprange, 1 + cliprange] (trl's epsilon)",
                             0.2)
    kl_coef: float = _help("beta: weight of the k3 KL to the reference in the loss, per token", 0.04)
    std_eps: float = _help("added to the group's std before dividing (a group of equal rewards gives 0, not nan)",
                           1e-4)
    loss_type: str = _help(f"how per-token losses are averaged, one of {', '.join(LOSS_TYPES)}", "grpo")
    lora_r: int = _help("rank of the LoRA adapter on every attention and MLP matrix", 16)
    lora_alpha: int = _help("LoRA scale alpha", 32)
    target_label: str = _help("the classifier's label whose logit is the reward (read by name)", "POSITIVE")
    seed: int = _help("one seed for prompts, samples and everything else", 0)

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"a group needs at least 2 responses, got group_size={self.group_size}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {self.loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")


# ---- step 2: advantages --------------------------------------------------------------------
def group_relative_advantages(rewards, group_size: int, eps: float = 1e-4):
    """``(r - mean) / (std + eps)`` within each group of ``group_size`` consecutive responses.

    ``rewards``: ``(B,)``, the responses of one prompt next to each other
    (``B`` a multiple of ``group_size``).  ``std`` is the unbiased standard
    deviation of the group (``torch.std``, as trl).  Returns ``(B,)``.
    """
    import torch

    rewards = torch.as_tensor(rewards, dtype=torch.float32)
    if rewards.ndim != 1 or len(rewards) % group_size:
        raise ValueError(f"need a 1-D tensor whose length is a multiple of group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    groups = rewards.view(-1, group_size)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)
    return ((groups - mean) / (std + eps)).view(-1)


# ---- the KL estimator ------------------------------------------------------------------------
def k3_kl(logprobs, ref_logprobs):
    """Per-token KL(pi || pi_ref) estimate k3 = ``exp(d) - d - 1`` with ``d = log pi_ref - log pi`` (nats).

    Unbiased for the KL when the token was sampled from pi, and never
    negative (unlike the plain ``log pi - log pi_ref``), Schulman (2020).
    """
    import torch

    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


# ---- step 4: the loss ------------------------------------------------------------------------
def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, cliprange: float, kl_coef: float,
              loss_type: str = "grpo"):
    """GRPO's loss: the clipped surrogate per token plus ``kl_coef`` times the k3 KL.

    ``per_token = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) + kl_coef * k3``
    with ``ratio = exp(logprobs - old_logprobs)`` and ``A`` the response's
    advantage (``(B,)``, broadcast over its tokens).  ``loss_type="grpo"``
    averages each response's tokens, then the responses; ``"bnpo"`` averages
    all tokens of the batch.  Returns ``(loss, stats)``; ``stats`` holds the
    mean KL and the fraction of clipped tokens.
    """
    import torch

    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; valid: {', '.join(LOSS_TYPES)}")
    mask = mask.to(logprobs.dtype)
    adv = advantages[:, None]
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - cliprange, 1 + cliprange) * adv
    per_token = -torch.min(unclipped, clipped)
    kl = k3_kl(logprobs, ref_logprobs)
    if kl_coef:
        per_token = per_token + kl_coef * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    else:
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    stats = {"kl": masked_mean(kl, mask).detach(), "clip_ratio": masked_mean((clipped < unclipped).float(), mask)}
    return loss, stats


def token_logprobs(model, queries: Sequence, responses: Sequence, pad_token_id: int):
    """Per-token log-probabilities ``(B, T)`` of the responses and their ``mask``."""
    batch = pack(list(queries), list(responses), pad_token_id)
    logprobs, _, _ = response_forward(model, batch, want_values=False)
    return logprobs, batch.mask


# ---- the training run ------------------------------------------------------------------------
def train_grpo(settings: GRPOSettings, cfg, tokenizer, prompts, sentiment_pipe, progress=None):
    """GRPO for ``settings.steps`` steps; returns ``(model, records, info)``.

    ``cfg``: the lab's ``LabConfig`` (models, sampling, response lengths);
    ``prompts``: a dataset from ``course_lib.data.build_dataset``.  ``info``:
    ``train_seconds`` and ``samples`` (responses drawn).
    """
    import numpy as np
    import torch

    from course_instructor.dpo import lora_policy
    from course_lib.reward import sentiment_scores
    from course_lib.rollout import generate_responses
    from course_lib.train import response_length_sampler, set_seed

    hp = settings
    t_start = time.perf_counter()
    set_seed(hp.seed)
    model = lora_policy(cfg.policy_model, hp.lora_r, hp.lora_alpha)
    # eval mode throughout, as the course's PPO: no dropout, so CPU runs repeat exactly
    model.eval()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=hp.learning_rate)
    pad = tokenizer.eos_token_id
    gen = cfg.generation_kwargs(tokenizer)
    sampler = response_length_sampler(cfg)
    rng = np.random.default_rng(hp.seed)
    records, samples = [], 0
    for step in range(hp.steps):
        t0 = time.perf_counter()
        # ---- 1. rollout: G samples of each prompt from the current policy ----
        idx = rng.choice(len(prompts), size=hp.prompts_per_step, replace=False)
        rows = prompts.select(idx.tolist())
        queries, query_texts = [], []
        lengths = []
        for q, text in zip(rows["input_ids"], rows["query"]):
            n_tokens = sampler()  # one length per group: siblings differ in content, not in length
            queries += [torch.as_tensor(q)] * hp.group_size
            query_texts += [text] * hp.group_size
            lengths += [n_tokens] * hp.group_size
        responses = generate_responses(model, tokenizer, queries, lengths, gen)
        samples += len(responses)
        texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
        scores = sentiment_scores(sentiment_pipe, [q + t for q, t in zip(query_texts, texts)], hp.target_label,
                                  cfg.sent_kwargs)
        rewards = torch.tensor(scores, dtype=torch.float32)

        # ---- 2. group-relative advantages (no value head) ----
        advantages = group_relative_advantages(rewards, hp.group_size, hp.std_eps)

        # ---- 3. old and reference log-probabilities, per token ----
        with torch.no_grad():
            old_logprobs, mask = token_logprobs(model, queries, responses, pad)
            with model.disable_adapter():
                ref_logprobs, _ = token_logprobs(model, queries, responses, pad)

        # ---- 4. optimisation: clipped surrogate + kl_coef * k3 KL ----
        for _ in range(hp.epochs_per_step):
            logprobs, _ = token_logprobs(model, queries, responses, pad)
            loss, stats = grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, hp.cliprange,
                                    hp.kl_coef, hp.loss_type)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seq_kl = ((old_logprobs - ref_logprobs) * mask).sum(-1)
        records.append({"step": step + 1, "env/reward_mean": float(rewards.mean()),
                        "env/reward_std": float(rewards.std()), "loss": float(loss),
                        "objective/kl": float(seq_kl.mean()), "kl/k3_per_token": float(stats["kl"]),
                        "clip_ratio": float(stats["clip_ratio"]), "time/step": time.perf_counter() - t0})
        if progress and (step + 1) % 5 == 0:
            progress(f"  GRPO step {step + 1}: reward {records[-1]['env/reward_mean']:+.3f} "
                     f"KL {records[-1]['objective/kl']:.2f}")
    info = {"train_seconds": time.perf_counter() - t_start, "samples": samples}
    return model, records, info
