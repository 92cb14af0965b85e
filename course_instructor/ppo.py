"""One PPO step, written out: what ``trl.PPOTrainer.step`` (trl 0.11.4) does, in one readable file.

The lab calls ``ppo_trainer.step(queries, responses, scores)`` and gets back
about forty statistics.  This module opens that call, in the shape of
CleanRL's single-file ``ppo.py``: every hyperparameter is named once in
:class:`PPOSettings` (with trl's defaults and a line of help), and the steps
of the algorithm are marked in :meth:`CoursePPO.step`:

1. **rollout forward pass**   per-token log-probabilities of the response
   tokens under the policy and the reference, and the value head's
   predictions (:func:`response_forward`);
2. **reward**                 the KL-shaped per-token reward
   (:func:`kl_shaped_rewards`);
3. **advantages**             generalised advantage estimation with the value
   head (:func:`gae`), or a REINFORCE leave-one-out baseline without it
   (:func:`rloo_advantages`), then whitening (:func:`masked_whiten`);
4. **optimisation**           ``ppo_epochs`` passes over shuffled mini-batches:
   clipped surrogate policy loss (:func:`clipped_policy_loss`), clipped value
   loss (:func:`clipped_value_loss`), one Adam step per mini-batch;
5. **statistics and KL control**  the statistics under trl's own names, then
   the adaptive KL controller (:class:`AdaptiveKLController`).

Given the same batch, seed and starting weights it returns the same
statistics and leaves the same parameters as trl 0.11.4: ``tests/test_ppo.py``
checks both to 1e-5 (relative), except for the few weights whose gradient is
zero in exact arithmetic, where Adam turns float rounding into steps of size
``lr`` in any two implementations (the test explains and checks this).  Where trl has a quirk the code matches it and says so
in a comment marked ``trl quirk``.

The one deliberate difference is speed: trl runs the 50,257-way output layer
(and its softmax) on every position of ``query + response + padding``; the
loss only ever reads the response positions, so :func:`response_forward` runs
it on those alone (``docs/benchmarks.md`` gives the ratio).

Shapes: ``B`` responses in a batch, ``T`` = the longest response (tokens);
per-token tensors are ``(B, T)``, left-aligned (token ``t`` of every response
in column ``t``), with a ``mask`` of 1 on real response tokens and 0 after.
Log-probabilities and KL are in nats.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Sequence

#: How advantages are estimated: with the value head, or without it.
ADVANTAGE_ESTIMATORS = ("gae", "rloo")


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class PPOSettings:
    """Every hyperparameter of one PPO step, named once.  Defaults are trl 0.11.4's ``PPOConfig``."""

    learning_rate: float = _help("Adam's step size", 1.41e-5)
    batch_size: int = _help("responses per PPO step", 128)
    mini_batch_size: int = _help("responses per gradient step", 128)
    ppo_epochs: int = _help("optimisation passes over each batch", 4)
    gamma: float = _help("discount of future rewards, per token", 1.0)
    lam: float = _help("GAE's lambda: 0 = one-step TD error, 1 = Monte-Carlo return minus value", 0.95)
    cliprange: float = _help("policy ratio is clipped to [1 - cliprange, 1 + cliprange]", 0.2)
    cliprange_value: float = _help("a new value may move this far from the rollout's value unclipped", 0.2)
    vf_coef: float = _help("weight of the value loss in the total loss", 0.1)
    init_kl_coef: float = _help("beta: nats of reward charged per nat of KL to the reference", 0.2)
    adap_kl_ctrl: bool = _help("adapt beta toward kl_target (Ziegler et al. 2019)", True)
    kl_target: float = _help("the adaptive controller's target KL (nats per response)", 6.0)
    kl_horizon: float = _help("the adaptive controller's horizon (responses)", 10000.0)
    ratio_threshold: float = _help("skip a mini-batch whose mean ratio exceeds this (its loss is zeroed)", 10.0)
    advantage: str = _help(f"advantage estimator, one of {', '.join(ADVANTAGE_ESTIMATORS)}", "gae")

    def __post_init__(self) -> None:
        if self.advantage not in ADVANTAGE_ESTIMATORS:
            raise ValueError(f"unknown advantage estimator {self.advantage!r}; "
                             f"valid: {', '.join(ADVANTAGE_ESTIMATORS)}")
        if self.batch_size % self.mini_batch_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of "
                             f"mini_batch_size {self.mini_batch_size}")
        if self.mini_batch_size < 2:
            # trl quirk kept: the value statistics use an unbiased variance, undefined for one token
            raise ValueError("mini_batch_size must be at least 2")

    @classmethod
    def from_lab_config(cls, cfg, **overrides) -> "PPOSettings":
        """The settings a ``LabConfig`` gives trl (``cfg.ppo_config()``), plus ``overrides``."""
        values = {"learning_rate": cfg.learning_rate, "batch_size": cfg.batch_size,
                  "mini_batch_size": cfg.mini_batch_size, "ppo_epochs": cfg.ppo_epochs,
                  "init_kl_coef": cfg.init_kl_coef, "adap_kl_ctrl": cfg.adap_kl_ctrl,
                  "kl_target": cfg.kl_target}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        return cls(**{**values, **overrides})

    @classmethod
    def from_trl_config(cls, config, **overrides) -> "PPOSettings":
        """The settings of a ``trl.PPOConfig`` (only the options this step implements)."""
        unsupported = {"use_score_scaling": False, "whiten_rewards": False, "early_stopping": False,
                       "kl_penalty": "kl", "max_grad_norm": None, "score_clip": None,
                       "gradient_accumulation_steps": 1}
        for name, neutral in unsupported.items():
            if getattr(config, name) != neutral:
                raise ValueError(f"PPOConfig.{name}={getattr(config, name)!r} is not implemented here "
                                 f"(only {name}={neutral!r})")
        values = {f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)}
        values.update(kl_target=config.target, kl_horizon=config.horizon)
        return cls(**{**values, **overrides})


# ---- the KL controller ---------------------------------------------------------------
class AdaptiveKLController:
    """beta, adapted after each step toward a target KL (Ziegler et al. 2019, trl's ``AdaptiveKLController``).

    ``beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon)``
    where ``n`` is the number of responses the step saw.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_responses: int) -> None:
        import numpy as np

        proportional_error = np.clip(current_kl / self.target - 1, -0.2, 0.2)
        self.value *= 1 + proportional_error * n_responses / self.horizon


class FixedKLController:
    """A constant beta."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_responses: int) -> None:
        pass


def kl_controller(settings: PPOSettings):
    if settings.adap_kl_ctrl:
        return AdaptiveKLController(settings.init_kl_coef, settings.kl_target, settings.kl_horizon)
    return FixedKLController(settings.init_kl_coef)


# ---- masked statistics (trl.core's, the same arithmetic) ----------------------------------
def masked_mean(values, mask):
    """Mean of ``values`` where ``mask`` is 1."""
    return (values * mask).sum() / mask.sum()


def masked_var(values, mask):
    """Unbiased variance of ``values`` where ``mask`` is 1."""
    centred = values - masked_mean(values, mask)
    n = mask.sum()
    if n < 2:
        raise ValueError("the variance needs at least 2 unmasked values")
    return masked_mean(centred ** 2, mask) * (n / (n - 1))


def masked_whiten(values, mask, shift_mean: bool = True):
    """``(values - mean) / std`` over the unmasked entries (the mean is added back if not ``shift_mean``)."""
    import torch

    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


# ---- step 1: the forward pass over the response tokens --------------------------------
@dataclass
class PackedBatch:
    """Queries and responses, each row ``query + response`` right-padded to one width.

    ``positions[b, t]``: the column whose output predicts response token ``t``
    of row ``b`` (the column before it); ``mask[b, t]``: 1 for real response
    tokens.  ``response_ids[b, t]``: the token itself (pad after the end).
    """

    input_ids: object
    attention_mask: object
    positions: object
    response_ids: object
    mask: object

    def rows(self, index) -> "PackedBatch":
        return PackedBatch(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


def pack(queries: Sequence, responses: Sequence, pad_token_id: int) -> PackedBatch:
    """Concatenate each query and response and right-pad them (what trl's default collator does)."""
    import torch

    if len(queries) != len(responses):
        raise ValueError(f"{len(queries)} queries but {len(responses)} responses")
    if not len(queries):
        raise ValueError("empty batch")
    if min(len(r) for r in responses) < 1:
        raise ValueError("every response needs at least one token")
    device = queries[0].device
    lengths = [len(q) + len(r) for q, r in zip(queries, responses)]
    width, longest = max(lengths), max(len(r) for r in responses)
    n = len(queries)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((n, width), dtype=torch.long, device=device)
    positions = torch.zeros((n, longest), dtype=torch.long, device=device)
    response_ids = torch.full((n, longest), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((n, longest), dtype=torch.long, device=device)
    steps = torch.arange(longest, device=device)
    for b, (q, r) in enumerate(zip(queries, responses)):
        input_ids[b, :lengths[b]] = torch.cat([q, r])
        attention_mask[b, :lengths[b]] = 1
        # the output at column len(q) - 1 + t predicts response token t;
        # padded columns repeat the last real one (masked out, never read)
        positions[b] = (len(q) - 1 + steps).clamp(max=lengths[b] - 2)
        response_ids[b, :len(r)] = r
        mask[b, :len(r)] = 1
    return PackedBatch(input_ids, attention_mask, positions, response_ids, mask)


def _parts(model):
    """(transformer body, output layer, value head or None) of a causal LM, with or without trl's value head."""
    from course_lib.rollout import causal_lm, transformer_body

    lm = causal_lm(getattr(model, "module", model))
    body, head = transformer_body(lm), lm.get_output_embeddings()
    if body is None or head is None:
        raise TypeError(f"{type(lm).__name__} has no separate transformer body and output layer")
    return body, head, getattr(getattr(model, "module", model), "v_head", None)


def response_logprobs(logits, response_ids):
    """Log-probability (nats) of each response token under ``logits`` (``(B, T, V)`` -> ``(B, T)``)."""
    import torch

    return torch.log_softmax(logits, dim=-1).gather(-1, response_ids.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits):
    """Entropy (nats) of ``softmax(logits)`` along the last axis."""
    import torch

    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(-1)


def response_forward(model, batch: PackedBatch, want_values: bool = True, want_entropy: bool = False):
    """Policy outputs on the response tokens only: ``(logprobs, values, entropy)``, each ``(B, T)``.

    The transformer body runs over the whole padded ``query + response``; the
    output layer, the softmax and the value head only over the real response
    tokens (0 on padding).  ``values`` is ``None`` unless ``want_values`` (and
    the model has a value head); ``entropy`` (nats per token) is ``None``
    unless ``want_entropy``.
    """
    import torch

    body, head, v_head = _parts(model)
    # trl passes neither position ids nor a cache: GPT-2 then numbers the columns 0, 1, ...,
    # which is right for right-padded rows
    hidden = body(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    rows, steps = batch.mask.nonzero(as_tuple=True)
    hidden = hidden[rows, batch.positions[rows, steps]]          # (n real response tokens, H)
    logits = head(hidden)                                         # (n, V): the expensive part

    def per_token(flat):
        out = flat.new_zeros(batch.mask.shape)
        out[rows, steps] = flat
        return out

    logprobs = per_token(torch.log_softmax(logits, dim=-1).gather(-1, batch.response_ids[rows, steps, None])[:, 0])
    values = per_token(v_head(hidden)[:, 0]) if want_values and v_head is not None else None
    entropy = per_token(entropy_from_logits(logits)) if want_entropy else None
    return logprobs, values, entropy


# ---- step 2: the KL-shaped reward ---------------------------------------------------------
def kl_shaped_rewards(scores, logprobs, ref_logprobs, mask, kl_coef: float):
    """Per-token rewards ``(B, T)``: ``-kl_coef * (logprobs - ref_logprobs)``, plus the score at the last token.

    Returns ``(rewards, non_score_rewards, kl)``; ``kl`` is the per-token
    sample estimate ``log pi(y_t) - log pi_ref(y_t)`` (nats; trl's ``kl_penalty="kl"``).
    """
    import torch

    kl = logprobs - ref_logprobs
    non_score = -kl_coef * kl
    last = mask.sum(-1) - 1
    rewards = non_score.clone()
    rewards[torch.arange(len(scores), device=rewards.device), last] += scores
    return rewards, non_score, kl


# ---- step 3: advantages --------------------------------------------------------------------
def gae(values, rewards, mask, gamma: float, lam: float):
    """Generalised advantage estimation (Schulman et al. 2016) over each response.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (``V`` after the last token is 0),
    ``A_t = delta_t + gamma * lam * A_{t+1}``; returns ``(advantages, returns)``
    with ``returns = advantages + values``: the value head's regression
    target.  Padding (``mask`` 0) counts as reward 0 and value 0.
    """
    import torch

    values, rewards = values * mask, rewards * mask
    last_gae = torch.zeros_like(values[:, 0])
    advantages = torch.zeros_like(values)
    length = values.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    return advantages, advantages + values


def rloo_advantages(rewards, mask):
    """REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024): no value head.

    Each response's return is the sum of its per-token rewards (score plus KL
    penalty); its baseline is the mean return of the *other* responses of the
    batch.  Every token of response ``b`` gets ``R_b - mean_{j != b} R_j``.
    Returns ``(advantages, returns)``, both ``(B, T)``, zero on padding.
    """
    totals = (rewards * mask).sum(-1)
    n = len(totals)
    if n < 2:
        raise ValueError("a leave-one-out baseline needs at least 2 responses")
    baseline = (totals.sum() - totals) / (n - 1)
    advantages = (totals - baseline)[:, None] * mask
    return advantages, totals[:, None] * mask


# ---- step 4: the losses --------------------------------------------------------------------
def clipped_policy_loss(logprobs, old_logprobs, advantages, mask, cliprange: float):
    """PPO's clipped surrogate loss: ``mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))``.

    ``ratio = exp(logprobs - old_logprobs)``.  Returns ``(loss, clipfrac,
    ratio)``; ``clipfrac`` is the fraction of response tokens where the
    clipped term was the larger (the update was cut off there).
    """
    import torch

    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    clipfrac = masked_mean(torch.gt(clipped, unclipped).float(), mask)
    return loss, clipfrac, ratio


def clipped_value_loss(vpreds, old_values, returns, mask, cliprange_value: float):
    """The value head's clipped squared error: ``0.5 * mean(max((V - R)^2, (clip(V) - R)^2))``.

    ``clip(V)`` keeps the new prediction within ``cliprange_value`` of the
    rollout's ``old_values``.  Returns ``(loss, clipfrac)``.
    """
    import torch

    clipped_preds = torch.max(torch.min(vpreds, old_values + cliprange_value), old_values - cliprange_value)
    loss_unclipped = (vpreds - returns) ** 2
    loss_clipped = (clipped_preds - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(loss_unclipped, loss_clipped), mask)
    clipfrac = masked_mean(torch.gt(loss_clipped, loss_unclipped).float(), mask)
    return loss, clipfrac


# ---- the step ------------------------------------------------------------------------------
class CoursePPO:
    """PPO on a policy with a value head (``AutoModelForCausalLMWithValueHead``).

    ``CoursePPO(model, ref_model, settings, pad_token_id)`` creates trl's
    optimizer (Adam over the trainable parameters) and KL controller;
    :meth:`from_trainer` reuses a ``PPOTrainer``'s instead, so the two steps
    can be taken in turn on one model.  :meth:`step` takes the arguments of
    ``PPOTrainer.step`` and returns its statistics under the same names.
    """

    def __init__(self, model, ref_model, settings: PPOSettings, pad_token_id: int, optimizer=None, kl_ctl=None):
        import torch

        self.model, self.ref_model, self.settings, self.pad_token_id = model, ref_model, settings, pad_token_id
        self.optimizer = optimizer or torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
        self.kl_ctl = kl_ctl or kl_controller(settings)

    @classmethod
    def from_trainer(cls, trainer, **overrides) -> "CoursePPO":
        settings = PPOSettings.from_trl_config(trainer.config, **overrides)
        return cls(trainer.model, trainer.ref_model, settings, trainer.tokenizer.pad_token_id,
                   optimizer=trainer.optimizer, kl_ctl=trainer.kl_ctl)

    def _forward_in_chunks(self, model, batch: PackedBatch, want_values: bool):
        import torch

        size = self.settings.mini_batch_size
        outs = [response_forward(model, batch.rows(slice(i, i + size)), want_values)
                for i in range(0, len(batch.mask), size)]
        logprobs = torch.cat([o[0] for o in outs])
        values = torch.cat([o[1] for o in outs]) if want_values else None
        return logprobs, values

    def step(self, queries: Sequence, responses: Sequence, scores: Sequence) -> dict:
        """One PPO step on ``batch_size`` (query, response, score) triples; returns trl's statistics."""
        import numpy as np
        import torch

        hp = self.settings
        for name, items in (("queries", queries), ("responses", responses), ("scores", scores)):
            if len(items) != hp.batch_size:
                raise ValueError(f"batch_size is {hp.batch_size} but got {len(items)} {name}")
        scores = torch.tensor([float(s) for s in scores], dtype=torch.float32, device=queries[0].device)
        batch = pack(list(queries), list(responses), self.pad_token_id)
        mask = batch.mask

        # ---- 1. rollout forward pass: log pi_old, log pi_ref and V on the response tokens ----
        # trl quirk: every forward pass, the gradient ones included, runs in eval mode
        # (PPOTrainer.batched_forward_pass calls model.eval(); train_minibatch's model.train()
        # comes after it), so dropout never acts.  Chunks of mini_batch_size, like trl's.
        self.model.eval()
        if self.ref_model is not None:
            self.ref_model.eval()
        with torch.no_grad():
            old_logprobs, old_values = self._forward_in_chunks(self.model, batch, want_values=True)
            if self.ref_model is not None:
                ref_logprobs, _ = self._forward_in_chunks(self.ref_model, batch, want_values=False)
            else:  # LoRA: the reference is the policy with its adapter switched off (trl's ref_model=None)
                with self.model.pretrained_model.disable_adapter():
                    ref_logprobs, _ = self._forward_in_chunks(self.model, batch, want_values=False)

            # ---- 2. reward: KL penalty at every token, the classifier's score at the last ----
            kl_coef = self.kl_ctl.value
            rewards, non_score_rewards, kl = kl_shaped_rewards(scores, old_logprobs, ref_logprobs, mask, kl_coef)

            # ---- 3. advantages (and the value head's targets), whitened over the batch ----
            if hp.advantage == "gae":
                advantages, returns = gae(old_values, rewards, mask, hp.gamma, hp.lam)
            else:
                advantages, returns = rloo_advantages(rewards, mask)
            # trl quirk: the rollout values enter the value loss and its statistics masked (0 on padding)
            old_values = old_values * mask
            advantages = masked_whiten(advantages, mask)
        use_value_loss = hp.advantage == "gae"

        # ---- 4. optimisation: ppo_epochs passes over shuffled mini-batches ----
        mb_stats: list[dict] = []
        for _epoch in range(hp.ppo_epochs):
            # trl quirk: the shuffle draws from NumPy's global random generator
            order = np.random.permutation(hp.batch_size)
            for start in range(0, hp.batch_size, hp.mini_batch_size):
                idx = order[start:start + hp.mini_batch_size]
                mb = batch.rows(idx)
                m = mb.mask
                logprobs, vpreds, entropy = response_forward(self.model, mb, want_values=use_value_loss,
                                                             want_entropy=True)
                pg_loss, pg_clipfrac, ratio = clipped_policy_loss(logprobs, old_logprobs[idx], advantages[idx],
                                                                  m, hp.cliprange)
                if use_value_loss:
                    vf_loss, vf_clipfrac = clipped_value_loss(vpreds, old_values[idx], returns[idx], m,
                                                              hp.cliprange_value)
                else:  # REINFORCE: the value head is not trained (and not used)
                    vf_loss = vf_clipfrac = torch.zeros(())
                loss = pg_loss + hp.vf_coef * vf_loss
                avg_ratio = masked_mean(ratio, m).item()
                if avg_ratio > hp.ratio_threshold:
                    # trl quirk: the batch is "skipped" by zeroing its loss, but Adam still steps
                    # (its momentum moves the weights)
                    warnings.warn(f"mean ratio {avg_ratio:.2f} exceeds ratio_threshold "
                                  f"{hp.ratio_threshold:.2f}: this mini-batch's loss is zeroed")
                    pg_loss, vf_loss, loss = pg_loss * 0.0, vf_loss * 0.0, loss * 0.0
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.optimizer.zero_grad()
                with torch.no_grad():
                    mb_stats.append(self._minibatch_stats(
                        pg_loss, vf_loss, loss, pg_clipfrac, vf_clipfrac, entropy, logprobs, old_logprobs[idx],
                        advantages[idx], returns[idx], old_values[idx], vpreds, m))

        # trl quirk: train_minibatch calls model.train() after each forward pass and nothing sets eval
        # mode again, so the policy leaves the step in train mode and the next rollout samples with
        # dropout active (when the model has dropout).  Kept, so a training loop repeats trl's run.
        self.model.train()

        # ---- 5. statistics (trl's names and arithmetic), then the KL controller ----
        stats = {k: torch.stack([s[k] for s in mb_stats]).mean(0).item() for k in mb_stats[0]}
        masked_kl = (kl * mask).sum(-1)
        query_lens = torch.tensor([len(q) for q in queries], dtype=torch.float)
        response_lens = torch.tensor([len(r) for r in responses], dtype=torch.float)
        stats.update({
            "objective/kl": masked_kl.mean().item(),
            "objective/kl_coef": kl_coef,
            "objective/entropy": (-old_logprobs * mask).sum(-1).mean().item(),
            "ppo/mean_non_score_reward": masked_mean(non_score_rewards, mask).item(),
            "ppo/mean_scores": scores.mean().item(),
            "ppo/std_scores": scores.std().item(),
            "tokens/queries_len_mean": query_lens.mean().item(),
            "tokens/queries_len_std": query_lens.std().item(),
            "tokens/responses_len_mean": response_lens.mean().item(),
            "tokens/responses_len_std": response_lens.std().item(),
            "ppo/learning_rate": self.optimizer.param_groups[0]["lr"],
        })
        # trl quirk: explained variance from the mini-batch means of error and return variance
        stats["ppo/val/var_explained"] = 1 - stats["ppo/val/error"] / stats["ppo/returns/var"] \
            if use_value_loss else float("nan")
        self.kl_ctl.update(stats["objective/kl"], hp.batch_size)
        return stats

    @staticmethod
    def _minibatch_stats(pg_loss, vf_loss, loss, pg_clipfrac, vf_clipfrac, entropy, logprobs, old_logprobs,
                         advantages, returns, old_values, vpreds, mask) -> dict:
        import torch

        if vpreds is None:
            vpreds = torch.zeros_like(returns)
        return {
            "ppo/loss/policy": pg_loss.detach(),
            "ppo/loss/value": vf_loss.detach(),
            "ppo/loss/total": loss.detach(),
            "ppo/policy/entropy": masked_mean(entropy, mask),
            "ppo/policy/approxkl": 0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask),
            "ppo/policy/policykl": masked_mean(old_logprobs - logprobs, mask),
            "ppo/policy/clipfrac": pg_clipfrac.detach(),
            "ppo/policy/advantages_mean": masked_mean(advantages, mask),
            "ppo/returns/mean": masked_mean(returns, mask),
            "ppo/returns/var": masked_var(returns, mask),
            "ppo/val/vpred": masked_mean(vpreds, mask).detach(),
            "ppo/val/error": masked_mean((vpreds - returns) ** 2, mask).detach(),
            "ppo/val/clipfrac": vf_clipfrac.detach(),
            "ppo/val/mean": masked_mean(old_values, mask),
            "ppo/val/var": masked_var(old_values, mask),
        }


#: trl's statistics that :meth:`CoursePPO.step` reproduces (scalars).
STAT_NAMES = (
    "objective/kl", "objective/kl_coef", "objective/entropy",
    "ppo/mean_non_score_reward", "ppo/mean_scores", "ppo/std_scores",
    "ppo/loss/policy", "ppo/loss/value", "ppo/loss/total",
    "ppo/policy/entropy", "ppo/policy/approxkl", "ppo/policy/policykl", "ppo/policy/clipfrac",
    "ppo/policy/advantages_mean", "ppo/returns/mean", "ppo/returns/var",
    "ppo/val/vpred", "ppo/val/error", "ppo/val/clipfrac", "ppo/val/mean", "ppo/val/var", "ppo/val/var_explained",
    "tokens/queries_len_mean", "tokens/queries_len_std", "tokens/responses_len_mean", "tokens/responses_len_std",
    "ppo/learning_rate",
)

