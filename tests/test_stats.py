"""course_lib.stats: printing the statistics of one PPO step."""
import io
import warnings

import numpy as np
import pytest
import torch

from course_lib.stats import STAT_GROUPS, format_ppo_stats, print_ppo_stats

REWARDS = [1.0, 2.0, 3.0, 4.0]
PROMPTS = ["This movie", "I watched this film", "The acting was", "Worst"]


@pytest.fixture(scope="session")
def ppo_step_stats(tiny_policy_dir, gpt2_tokenizer):
    """The statistics of ONE real ``PPOTrainer.step`` on the tiny policy (4 prompts, rewards 1..4)."""
    from trl import AutoModelForCausalLMWithValueHead, PPOConfig, PPOTrainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trl 0.11's deprecation notices
        torch.manual_seed(0)
        model = AutoModelForCausalLMWithValueHead.from_pretrained(str(tiny_policy_dir))
        ref = AutoModelForCausalLMWithValueHead.from_pretrained(str(tiny_policy_dir))
        conf = PPOConfig(model_name="tiny", learning_rate=1e-4, batch_size=4, mini_batch_size=2, log_with=None)
        trainer = PPOTrainer(conf, model, ref, gpt2_tokenizer)
        queries = [gpt2_tokenizer.encode(p, return_tensors="pt")[0] for p in PROMPTS]
        responses = trainer.generate(queries, return_prompt=False, max_new_tokens=5, do_sample=True, top_k=0,
                                     top_p=1.0, min_length=-1, pad_token_id=gpt2_tokenizer.eos_token_id)
        return trainer.step(queries, responses, [torch.tensor(r) for r in REWARDS])


def expected_value_text(value) -> str:
    """How a statistic should read: 4 significant digits, or the mean of an array."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return f"{float(arr):.4g}"
    return f"mean {arr.mean():.4g} over {arr.size} values"


def line_of(text: str, key: str) -> str:
    lines = [line for line in text.splitlines() if line.strip().startswith(key + " ")]
    assert len(lines) == 1, f"{key} should be on exactly one line of:\n{text}"
    return lines[0]


def value_of(text: str, key: str) -> str:
    """The value column of ``key``'s line: ``"    <key, 28 wide> <value, 24 wide>   <meaning>"``."""
    line = line_of(text, key)
    assert line[:33] == f"    {key:28s} " and line[57:60] == "   ", line
    return line[33:57].strip()


@pytest.mark.parametrize("group", ["objective", "reward"])
def test_group_prints_every_key_with_its_value(ppo_step_stats, group):
    text = format_ppo_stats(ppo_step_stats, group)
    assert text.splitlines()[0] == f"PPO statistics: {group}"
    for title, keys in STAT_GROUPS[group]:
        assert f"  {title}:" in text.splitlines()
        for key, meaning in keys:
            assert key in ppo_step_stats, f"trl 0.11 reports {key}"
            assert value_of(text, key) == expected_value_text(ppo_step_stats[key])
            assert line_of(text, key).endswith("   " + meaning)
    assert "missing" not in text and "Note:" not in text
    other = {"objective": "reward", "reward": "objective"}[group]
    assert f"PPO statistics: {other}" not in text


def test_groups_have_the_expected_keys():
    keys = {g: [k for _, ks in STAT_GROUPS[g] for k, _ in ks] for g in STAT_GROUPS}
    assert keys["objective"] == ["objective/kl", "objective/kl_coef", "objective/entropy",
                                 "ppo/loss/policy", "ppo/loss/value", "ppo/loss/total",
                                 "ppo/policy/entropy", "ppo/policy/approxkl", "ppo/policy/clipfrac"]
    assert keys["reward"] == ["ppo/mean_scores", "ppo/std_scores", "ppo/mean_non_score_reward",
                              "ppo/val/vpred", "ppo/val/error", "ppo/val/var", "ppo/val/mean",
                              "ppo/val/var_explained", "tokens/queries_len_mean",
                              "tokens/responses_len_mean", "time/ppo/total"]


def test_reward_values_come_from_the_step(ppo_step_stats, gpt2_tokenizer):
    text = format_ppo_stats(ppo_step_stats, "reward")
    # the four rewards were 1, 2, 3, 4: mean 2.5, (unbiased) std 1.291
    assert value_of(text, "ppo/mean_scores") == "2.5"
    assert value_of(text, "ppo/std_scores") == f"{np.std(REWARDS, ddof=1):.4g}" == "1.291"
    query_lengths = [len(gpt2_tokenizer.encode(p)) for p in PROMPTS]
    assert query_lengths == [2, 4, 3, 2]  # "Worst" is "W" + "orst"
    assert value_of(text, "tokens/queries_len_mean") == "2.75"


def test_all_prints_both_groups(ppo_step_stats):
    text = format_ppo_stats(ppo_step_stats, "all")
    assert text == format_ppo_stats(ppo_step_stats, "objective") + "\n" + format_ppo_stats(ppo_step_stats, "reward")


def test_missing_keys_are_listed_not_key_errors():
    stats = {"objective/kl": 0.5, "ppo/loss/total": np.float32(0.25)}
    text = format_ppo_stats(stats, "objective")
    assert value_of(text, "objective/kl") == "0.5"
    assert value_of(text, "ppo/loss/total") == "0.25"
    missing = ["objective/kl_coef", "objective/entropy", "ppo/loss/policy", "ppo/loss/value",
               "ppo/policy/entropy", "ppo/policy/approxkl", "ppo/policy/clipfrac"]
    for key in missing:
        assert line_of(text, key).split()[1] == "(missing)"
    note = text.splitlines()[-1]
    assert note.startswith(f"Note: {len(missing)} key(s) not in these statistics: {', '.join(missing)}")


def test_empty_stats_all_missing():
    text = format_ppo_stats({}, "all")
    n = sum(len(keys) for groups in STAT_GROUPS.values() for _, keys in groups)
    assert text.count("(missing)") == n == 20
    assert text.splitlines()[-1].startswith("Note: 20 key(s)")


def test_value_formats():
    stats = {"objective/kl": [[1.0, 2.0], [3.0, 4.0]], "objective/kl_coef": np.array([]),
             "objective/entropy": 3, "ppo/loss/policy": torch.tensor([0.5, 1.5]),
             "ppo/loss/value": 123456.789}
    text = format_ppo_stats(stats)
    assert value_of(text, "objective/kl") == "mean 2.5 over 4 values"
    assert value_of(text, "objective/kl_coef") == "[] (empty)"
    assert value_of(text, "objective/entropy") == "3"
    assert value_of(text, "ppo/loss/policy") == "mean 1 over 2 values"
    assert value_of(text, "ppo/loss/value") == "1.235e+05"


@pytest.mark.parametrize("group", ["objectives", "Reward", "", "loss"])
def test_unknown_group_names_the_valid_ones(group):
    with pytest.raises(ValueError) as err:
        format_ppo_stats({}, group)
    msg = str(err.value)
    assert repr(group) in msg
    for valid in ("objective", "reward", "all"):
        assert f"{valid}" in msg.split("valid:")[1]


def test_print_to_file_and_stdout(ppo_step_stats, capsys):
    buf = io.StringIO()
    print_ppo_stats(ppo_step_stats, "reward", file=buf)
    assert buf.getvalue() == format_ppo_stats(ppo_step_stats, "reward") + "\n"
    print_ppo_stats(ppo_step_stats)
    assert capsys.readouterr().out == format_ppo_stats(ppo_step_stats, "objective") + "\n"
