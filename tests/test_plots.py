"""course_lib.plots.plot_methods_frontier: one curve per method (offline and online DPO apart), both judges."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from course_lib.plots import plot_methods_frontier  # noqa: E402


def _row(run, method, kl, reward, vader, curve=None):
    row = {"run": run, "method": method, "kl_to_reference": kl, "reward": reward, "vader_positive_rate": vader,
           "label": run}
    if curve:
        row["curve"] = curve
    return row


def test_one_curve_per_method_sorted_by_kl_on_both_panels():
    rows = [_row("ppo-a", "ppo", 20.0, 1.9, 0.98), _row("ppo-b", "ppo", 2.0, 0.4, 0.6),
            _row("dpo-a", "dpo", 18.0, 1.2, 0.87), _row("dpo-on", "dpo", 40.0, 1.7, 0.96, curve="online-dpo"),
            _row("grpo-a", "grpo", 21.0, 1.9, 0.99)]
    fig = plot_methods_frontier(rows, {"mean": -0.08, "vader_positive_rate": 0.37})
    reward_ax, vader_ax = fig.axes
    labels = [line.get_label() for line in reward_ax.get_lines()]
    assert labels == ["PPO", "DPO (offline)", "DPO (online)", "GRPO", "reference"]
    ppo = reward_ax.get_lines()[0]
    assert list(ppo.get_xdata()) == [2.0, 20.0] and list(ppo.get_ydata()) == [0.4, 1.9]
    online = vader_ax.get_lines()[2]
    assert list(online.get_xdata()) == [40.0] and list(online.get_ydata()) == [0.96]
    assert list(vader_ax.get_lines()[-1].get_ydata()) == [0.37]


def test_without_curves_the_method_decides():
    fig = plot_methods_frontier([_row("d1", "dpo", 5.0, 0.6, 0.7), _row("d2", "dpo", 13.0, 1.0, 0.8)])
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["DPO (offline)"]


def test_no_rows_is_an_error():
    with pytest.raises(ValueError, match="no runs"):
        plot_methods_frontier([])


def test_runs_that_lost_their_variety_get_hollow_markers():
    rows = [_row("g1", "grpo", 20.0, 1.9, 0.99), _row("g2", "grpo", 60.0, 2.6, 1.0)]
    rows[0]["distinct_2_ratio"], rows[1]["distinct_2_ratio"] = 0.76, 0.03
    fig = plot_methods_frontier(rows)
    for ax in fig.axes:
        hollow = [c.get_offsets().tolist() for c in ax.collections]
        assert len(hollow) == 1 and hollow[0][0][0] == 60.0   # only the degenerate run, on both panels
    assert "hollow" in fig.axes[0].get_legend().get_texts()[-1].get_text()
    healthy = plot_methods_frontier(rows[:1])
    assert not healthy.axes[0].collections
    assert not any("hollow" in t.get_text() for t in healthy.axes[0].get_legend().get_texts())
