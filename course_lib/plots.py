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


def plot_reward_kl_frontier(runs: dict, window: int = 5):
    """Mean reward against KL to the reference, one colour per KL coefficient (notebook 4).

    ``runs``: ``{name: {"init_kl_coef", "records"}}`` (``inside-ppo-runs``).
    Each point averages ``window`` consecutive training steps; the line joins
    them in training order.  Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if not runs:
        raise ValueError("no runs to plot")
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, run in sorted(runs.items(), key=lambda kv: kv[1]["init_kl_coef"]):
        recs = run["records"]
        chunks = [recs[i:i + window] for i in range(0, len(recs) - window + 1, window)]
        kl = [np.mean([r["objective/kl"] for r in c]) for c in chunks]
        reward = [np.mean([r["env/reward_mean"] for r in c]) for c in chunks]
        ax.plot(kl, reward, "o-", label=f"beta = {run['init_kl_coef']:g}")
    ax.set_xlabel("KL(policy || reference), nats per response")
    ax.set_ylabel("mean POSITIVE logit")
    ax.set_title(f"Reward-KL frontier (each point: {window} training steps)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_seed_spread(groups: dict, key: str = "env/reward_mean", ylabel: str = "mean POSITIVE logit"):
    """Training curves of several seeds per method: each seed thin, the mean thick, min-max shaded.

    ``groups``: ``{method label: [records of seed 0, records of seed 1, ...]}``.
    Returns the figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if not groups or any(not g for g in groups.values()):
        raise ValueError("every method needs at least one run")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (label, seeds) in enumerate(groups.items()):
        n = min(len(r) for r in seeds)
        ys = np.array([[rec[key] for rec in recs[:n]] for recs in seeds])
        xs = np.arange(1, n + 1)
        colour = f"C{i}"
        for y in ys:
            ax.plot(xs, y, color=colour, alpha=0.25, lw=0.8)
        ax.fill_between(xs, ys.min(0), ys.max(0), color=colour, alpha=0.12)
        ax.plot(xs, ys.mean(0), color=colour, lw=2, label=f"{label} (mean of {len(ys)} seeds)")
    ax.set_xlabel("PPO step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


#: distinct-2 below this fraction of the reference's marks a run whose texts lost their variety (the course's floor)
DEGENERATE_BELOW = 0.7


def plot_methods_frontier(rows: Sequence[dict], reference: dict | None = None):
    """Two judges against the KL to the reference, one marker per method (notebook 5, the DPO paper's Figure 2).

    ``rows``: one dict per run with ``method`` (one curve per method, or per
    ``curve`` when the rows have it: ``online-dpo`` apart from ``dpo``), ``kl_to_reference`` (nats),
    ``reward`` (mean POSITIVE logit), ``vader_positive_rate`` and a ``label``
    (``frontier-runs``' ``summary``); a run whose ``distinct_2_ratio`` is
    below :data:`DEGENERATE_BELOW` gets a hollow marker.  ``reference``: the untuned model's
    ``mean`` and ``vader_positive_rate``, drawn at KL 0.  Returns the figure.
    """
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no runs to plot")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = {"ppo": "o", "dpo": "s", "online-dpo": "D", "grpo": "^"}
    names = {"dpo": "DPO (offline)", "online-dpo": "DPO (online)"}
    panels = (("reward", "classifier: mean POSITIVE logit"), ("vader_positive_rate", "VADER: share positive"))
    for ax, (key, ylabel) in zip(axes, panels):
        for i, method in enumerate(dict.fromkeys(r.get("curve", r["method"]) for r in rows)):
            pts = sorted((r for r in rows if r.get("curve", r["method"]) == method),
                         key=lambda r: r["kl_to_reference"])
            ax.plot([r["kl_to_reference"] for r in pts], [r[key] for r in pts], markers.get(method, "o") + "-",
                    color=f"C{i}", label=names.get(method, method.upper()))
            worn = [r for r in pts if r.get("distinct_2_ratio", 1.0) < DEGENERATE_BELOW]
            if worn:  # texts that lost their variety: a white fill inside the marker
                ax.scatter([r["kl_to_reference"] for r in worn], [r[key] for r in worn], s=14,
                           marker=markers.get(method, "o"), color="white", zorder=3)
            for r in pts:
                ax.annotate(r.get("label", ""), (r["kl_to_reference"], r[key]), textcoords="offset points",
                            xytext=(4, -10), fontsize=7, color=f"C{i}")
        if reference is not None:
            ref_y = reference["mean"] if key == "reward" else reference["vader_positive_rate"]
            ax.plot([0], [ref_y], "k*", markersize=10, label="reference")
        ax.set_xlabel("KL(policy || reference), nats per response")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    handles, _ = axes[0].get_legend_handles_labels()
    if any(r.get("distinct_2_ratio", 1.0) < DEGENERATE_BELOW for r in rows):
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle="none",
                              label=f"hollow: distinct-2 < {DEGENERATE_BELOW:g}x reference"))
    axes[0].legend(handles=handles, fontsize=8)
    fig.suptitle("Reward against KL on held-out prompts: PPO, DPO, GRPO")
    fig.tight_layout()
    return fig
