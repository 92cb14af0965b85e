"""Plots of the lab: training curves and reward histograms (matplotlib)."""
from __future__ import annotations

from typing import Sequence


def _series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for i, r in enumerate(records):
        if key in r and r[key] is not None:
            xs.append(r.get("step", i + 1))
            ys.append(r[key])
    return xs, ys


CURVES = (
    ("ppo/loss/total", "total loss"),
    ("env/reward_mean", "mean reward (logit)"),
    ("objective/kl", "KL to reference (nats)"),
)


def plot_training(records: Sequence[dict], title: str = "", smooth: int = 5):
    """Total loss, mean reward and KL over PPO steps, side by side. Returns the figure.

    Raw values in light colour, a ``smooth``-step moving average on top.
    Raises ``ValueError`` if ``records`` is empty.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if not records:
        raise ValueError("no training records to plot")
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.2 * len(CURVES), 3.2))
    for ax, (key, label) in zip(axes, CURVES):
        xs, ys = _series(records, key)
        ax.plot(xs, ys, color="tab:blue", alpha=0.35, lw=1)
        if len(ys) >= smooth > 1:
            k = np.ones(smooth) / smooth
            ax.plot(xs[smooth - 1:], np.convolve(ys, k, mode="valid"), color="tab:blue", lw=2)
        ax.set_xlabel("PPO step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reward_histograms(table, label: str, models: Sequence[str] | None = None, bins: int = 30):
    """Histograms of the ``label`` logit per model from an ``evaluate.compare_models`` table."""
    import matplotlib.pyplot as plt
    import numpy as np

    from course_lib.evaluate import model_names

    models = list(models or model_names(table))
    missing = [m for m in models if f"{label} [{m}]" not in table]
    if missing:
        raise ValueError(f"no {label} scores for {', '.join(missing)}; models in the table: {', '.join(model_names(table))}")
    values = [table[f"{label} [{m}]"].to_numpy() for m in models]
    lo, hi = min(v.min() for v in values), max(v.max() for v in values)
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    for m, v in zip(models, values):
        ax.hist(v, bins=edges, alpha=0.5, label=f"{m} (mean {v.mean():+.2f})")
    ax.set_xlabel(f"{label} logit of query + response")
    ax.set_ylabel("prompts")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
