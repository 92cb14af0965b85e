"""Part 5's bundled assets: the frontier's statistics and the DPO and GRPO Happy LLMs, as their cards claim."""
from __future__ import annotations

import json

import pytest

from course_lib.assets import ASSETS_DIR, verify_asset

FRONTIER = ASSETS_DIR / "frontier-runs"


@pytest.fixture(scope="module")
def frontier():
    verify_asset(FRONTIER)
    return json.loads((FRONTIER / "runs.json").read_text())


def test_the_frontier_has_every_method_at_several_settings(frontier):
    methods = [r["method"] for r in frontier["runs"].values()]
    assert methods.count("ppo") >= 3 and methods.count("dpo") >= 3 and methods.count("grpo") >= 2
    assert frontier["eval_prompts"] == 512
    for name, r in frontier["runs"].items():
        t = r["evaluation"]["tuned"]
        assert t["n"] == 512, name
        for key in ("mean", "vader_positive_rate", "kl_to_reference", "distinct_2_ratio"):
            assert key in t, (name, key)
        assert r["train_seconds"] > 0 and r["samples"] > 0 and r["records"], name
    rows = {row["run"]: row for row in frontier["summary"]}
    assert set(rows) == set(frontier["runs"])


def test_every_tuned_run_beats_the_reference_on_both_judges_unless_it_degenerated(frontier):
    ref = frontier["reference"]
    for name, r in frontier["runs"].items():
        t = r["evaluation"]["tuned"]
        assert t["mean"] > ref["ci95"][1], name
        if t["distinct_2_ratio"] >= 0.7:
            assert t["vader_positive_rate"] > ref["vader_positive_rate"], name
    # the over-optimised DPO run is the one VADER sees through: degenerate texts the classifier still rates up
    long_run = frontier["runs"]["dpo-beta0.01-long"]["evaluation"]["tuned"]
    assert long_run["distinct_2_ratio"] < 0.7 and long_run["vader_positive_rate"] < ref["vader_positive_rate"]


def test_sampling_pairs_from_the_policy_is_what_lifts_dpo(frontier):
    """Notebook 5's finding: offline DPO stops short of 92% VADER-positive; online DPO (same loss) gets past it."""
    rows = frontier["summary"]
    healthy = [r for r in rows if r["distinct_2_ratio"] >= 0.7]
    offline = [r["vader_positive_rate"] for r in healthy if r["curve"] == "dpo"]
    online = [r["vader_positive_rate"] for r in healthy if r["curve"] == "online-dpo"]
    assert len(offline) >= 3 and online
    assert max(offline) < 0.92 <= max(online)
    assert {r["curve"] for r in rows} == {"ppo", "dpo", "online-dpo", "grpo"}


@pytest.mark.parametrize("name", ["dpo-happy-mini", "grpo-happy-mini"])
def test_the_bundled_models_meet_the_course_aims_as_built(name, frontier):
    """Item 4 of Part 5: VADER-positive >= 92%, distinct-2 >= 0.7x the reference's, built in <= 20 minutes."""
    run = next(r for r in frontier["runs"].values()
               if r["evaluation"]["tuned"]["mean"] == json.loads(
                   (ASSETS_DIR / name / "evaluation.json").read_text())["tuned"]["mean"])
    t = run["evaluation"]["tuned"]
    assert t["vader_positive_rate"] >= 0.92 and t["distinct_2_ratio"] >= 0.7, (name, t)
    minutes = (run["train_seconds"] + run["eval_seconds"]) / 60
    assert minutes <= 20, (name, minutes)
    assert f"**{minutes:.1f} minutes**" in (ASSETS_DIR / name / "README.md").read_text()


@pytest.mark.parametrize("name", ["dpo-happy-mini", "grpo-happy-mini"])
def test_the_bundled_models_are_adapters_with_their_measured_cards(name, frontier):
    folder = verify_asset(ASSETS_DIR / name)
    files = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "base_model.json", "README.md",
            "evaluation.json", "training_stats.json", "SHA256SUMS"} <= files
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "gpt2-imdb-mini"
    ev = json.loads((folder / "evaluation.json").read_text())["tuned"]
    card = (folder / "README.md").read_text()
    assert f"{ev['vader_positive_rate']:.3f}" in card and f"{ev['distinct_2_ratio']:.2f}" in card
    # the bundled model is one of the frontier's runs, with the same evaluation
    same = [r for r in frontier["runs"].values() if r["evaluation"]["tuned"]["mean"] == ev["mean"]]
    assert len(same) == 1
