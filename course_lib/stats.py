"""Printing the statistics dictionary that ``PPOTrainer.step`` returns.

trl 0.11 reports about 40 keys per step.  The lab looks at them in two groups:

* ``"objective"`` -- what PPO minimises: the KL penalty to the reference
  model, the losses, the policy's update statistics;
* ``"reward"`` -- what the reward and the value head do, plus the token
  lengths and the time the step took.
"""
from __future__ import annotations

import sys
from typing import Mapping, TextIO

STAT_GROUPS: dict[str, list[tuple[str, list[tuple[str, str]]]]] = {
    "objective": [
        ("KL penalty and entropy", [
            ("objective/kl", "KL divergence to the reference model (nats, summed over the response)"),
            ("objective/kl_coef", "KL coefficient (beta)"),
            ("objective/entropy", "entropy of the policy (nats, summed over the response)"),
        ]),
        ("Losses", [
            ("ppo/loss/policy", "policy (clipped surrogate) loss"),
            ("ppo/loss/value", "value-head loss"),
            ("ppo/loss/total", "total loss = policy + vf_coef * value"),
        ]),
        ("Policy update", [
            ("ppo/policy/entropy", "mean token entropy (nats)"),
            ("ppo/policy/approxkl", "approximate KL between old and new policy"),
            ("ppo/policy/clipfrac", "fraction of ratios clipped"),
        ]),
    ],
    "reward": [
        ("Reward and value estimation", [
            ("ppo/mean_scores", "mean reward from the classifier (logits)"),
            ("ppo/std_scores", "standard deviation of that reward"),
            ("ppo/mean_non_score_reward", "mean KL-penalty part of the reward"),
            ("ppo/val/vpred", "mean value prediction"),
            ("ppo/val/error", "mean squared value error"),
            ("ppo/val/var", "variance of value predictions"),
            ("ppo/val/mean", "mean of value predictions"),
            ("ppo/val/var_explained", "explained variance of the returns"),
        ]),
        ("Token lengths", [
            ("tokens/queries_len_mean", "mean query length (tokens)"),
            ("tokens/responses_len_mean", "mean response length (tokens)"),
        ]),
        ("Time", [
            ("time/ppo/total", "time of the optimisation step (seconds)"),
        ]),
    ],
}


def _fmt(value) -> str:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list):
        flat = value
        while flat and isinstance(flat[0], list):
            flat = [x for row in flat for x in row]
        if not flat:
            return "[] (empty)"
        mean = sum(flat) / len(flat)
        return f"mean {mean:.4g} over {len(flat)} values"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_ppo_stats(stats: Mapping, group: str = "objective") -> str:
    """The statistics of one group as text (see :data:`STAT_GROUPS`).

    ``group`` is ``"objective"``, ``"reward"`` or ``"all"``; anything else
    raises ``ValueError`` naming the valid groups.  Keys missing from
    ``stats`` are listed as missing, with a note at the end, instead of
    raising ``KeyError``.
    """
    valid = list(STAT_GROUPS) + ["all"]
    if group not in valid:
        raise ValueError(f"unknown statistics group {group!r}; valid: {', '.join(valid)}")
    groups = list(STAT_GROUPS) if group == "all" else [group]
    lines, missing = [], []
    for g in groups:
        lines.append(f"PPO statistics: {g}")
        for title, keys in STAT_GROUPS[g]:
            lines.append(f"  {title}:")
            for key, meaning in keys:
                if key in stats:
                    lines.append(f"    {key:28s} {_fmt(stats[key]):>24s}   {meaning}")
                else:
                    lines.append(f"    {key:28s} {'(missing)':>24s}   {meaning}")
                    missing.append(key)
    if missing:
        lines.append(f"Note: {len(missing)} key(s) not in these statistics: {', '.join(missing)} "
                     "(a different trl version, or statistics saved without them).")
    return "\n".join(lines)


def print_ppo_stats(stats: Mapping, group: str = "objective", file: TextIO | None = None) -> None:
    """Print :func:`format_ppo_stats` (to ``file``, default stdout)."""
    print(format_ppo_stats(stats, group), file=file or sys.stdout)
