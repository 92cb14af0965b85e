"""course_lib.config: the cpu/gpu profiles, overrides, and the derived generate/PPO settings."""
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

import course_lib
from course_lib.config import BUNDLED_NAMES, HUB_NAMES, LabConfig, make_config

ASSETS = Path(course_lib.__file__).resolve().parent / "assets"


def test_cpu_profile():
    cfg = make_config("cpu")
    assert cfg.profile == "cpu" and cfg.seed == 0
    assert cfg.policy_model == str(ASSETS / "gpt2-imdb-mini")
    assert cfg.reward_model == str(ASSETS / "distilbert-imdb-mini")
    assert cfg.dataset == str(ASSETS / "imdb-mini")
    assert (cfg.learning_rate, cfg.batch_size, cfg.mini_batch_size, cfg.steps, cfg.ppo_epochs) == (5e-4, 32, 8, 12, 2)
    assert (cfg.reward_scale, cfg.init_kl_coef) == (3.0, 0.3)
    assert cfg.eval_prompts == 512
    assert cfg.target_label == "POSITIVE"


def test_gpu_profile_is_the_labs_full_run():
    cfg = make_config("gpu")
    assert cfg.profile == "gpu"
    assert cfg.policy_model == "lvwerra/gpt2-imdb"
    assert cfg.reward_model == "lvwerra/distilbert-imdb"
    assert cfg.dataset == "stanfordnlp/imdb"
    assert cfg.learning_rate == 1.41e-5
    assert cfg.batch_size == 128 and cfg.mini_batch_size == 128
    assert cfg.steps is None and cfg.eval_prompts == 1024
    assert (cfg.reward_scale, cfg.init_kl_coef) == (1.0, 0.2)  # the lab's reward: the raw logit


def test_shared_lab_values():
    for profile in ("cpu", "gpu"):
        cfg = make_config(profile)
        assert (cfg.min_review_chars, cfg.prompt_min_tokens, cfg.prompt_max_tokens) == (200, 2, 8)
        assert (cfg.response_min_tokens, cfg.response_max_tokens) == (4, 16)
        assert (cfg.adap_kl_ctrl, cfg.kl_target) == (True, 6.0)
        assert cfg.ppo_epochs == {"cpu": 2, "gpu": 4}[profile]     # the lab's 4 at full scale
        assert cfg.sent_kwargs == {"top_k": None, "function_to_apply": "none", "batch_size": 16}


def test_names_tables():
    assert HUB_NAMES == {"policy": "lvwerra/gpt2-imdb", "reward": "lvwerra/distilbert-imdb",
                         "dataset": "stanfordnlp/imdb"}
    assert BUNDLED_NAMES["policy"] == "gpt2-imdb-mini" and BUNDLED_NAMES["dataset"] == "imdb-mini"


def test_sent_kwargs_are_not_shared_between_configs():
    a, b = make_config("cpu"), make_config("cpu")
    a.sent_kwargs["batch_size"] = 1
    assert b.sent_kwargs["batch_size"] == 16


def test_generation_kwargs_use_the_tokenizers_eos():
    fake_tokenizer = SimpleNamespace(eos_token_id=7)
    kwargs = make_config("cpu").generation_kwargs(fake_tokenizer)
    assert kwargs == {"min_length": -1, "top_k": 0, "top_p": 1.0, "do_sample": True, "pad_token_id": 7}


def test_generation_kwargs_with_gpt2(gpt2_tokenizer):
    assert make_config("gpu").generation_kwargs(gpt2_tokenizer)["pad_token_id"] == 50256


def test_overrides():
    cfg = make_config("cpu", steps=5, seed=3, target_label="NEGATIVE", learning_rate=2e-5)
    assert (cfg.steps, cfg.seed, cfg.target_label, cfg.learning_rate) == (5, 3, "NEGATIVE", 2e-5)
    assert cfg.batch_size == 32  # untouched values keep the profile's


def test_default_profile_from_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    assert make_config().profile == "gpu"
    monkeypatch.delenv("COURSE_PROFILE")
    assert make_config().profile == "cpu"


@pytest.mark.parametrize("profile", ["tpu", "CPU", "full"])
def test_unknown_profile_names_cpu_and_gpu(profile):
    with pytest.raises(ValueError) as err:
        make_config(profile)
    assert str(err.value) == f"unknown profile {profile!r}; valid profiles: cpu, gpu"
    with pytest.raises(ValueError, match="valid profiles: cpu, gpu"):
        LabConfig(profile=profile)


def test_unknown_profile_from_environment(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "colab")
    with pytest.raises(ValueError, match="'colab'; valid profiles: cpu, gpu"):
        make_config()


def test_unknown_override_names_the_valid_settings():
    with pytest.raises(ValueError) as err:
        make_config("cpu", stepz=5, lr=1.0)
    msg = str(err.value)
    assert msg.startswith("unknown setting(s) lr, stepz; valid settings: ")
    for name in ("steps", "learning_rate", "batch_size", "target_label"):
        assert name in msg.split("valid settings: ")[1].split(", ")


@pytest.mark.parametrize("label", ["positive", "NEUTRAL", ""])
def test_bad_target_label(label):
    with pytest.raises(ValueError) as err:
        make_config("cpu", target_label=label)
    assert str(err.value) == f"unknown sentiment {label!r}; valid: POSITIVE, NEGATIVE"


@pytest.mark.parametrize("overrides, message", [
    ({"prompt_min_tokens": 9}, "prompt_min_tokens <= prompt_max_tokens"),
    ({"prompt_min_tokens": 0}, "1 <= prompt_min_tokens"),
    ({"response_min_tokens": 20}, "response_min_tokens <= response_max_tokens"),
    ({"batch_size": 30}, "batch_size 30 is not a multiple of mini_batch_size 8"),
    ({"kl_horizon": 0}, "kl_horizon must be a positive"),
    ({"lora_r": -2}, "lora_r must be 0"),
])
def test_inconsistent_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config("cpu", **overrides)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_ppo_config_matches(profile):
    from trl import PPOConfig

    cfg = make_config(profile, seed=4, kl_horizon=640)
    with pytest.warns(FutureWarning):  # trl 0.11 marks PPOConfig deprecated
        ppo = cfg.ppo_config()
    assert ppo.horizon == 640
    assert isinstance(ppo, PPOConfig)
    assert ppo.learning_rate == cfg.learning_rate
    assert (ppo.batch_size, ppo.mini_batch_size) == (cfg.batch_size, cfg.mini_batch_size)
    assert (ppo.ppo_epochs, ppo.init_kl_coef, ppo.adap_kl_ctrl, ppo.target) == (cfg.ppo_epochs, cfg.init_kl_coef,
                                                                                True, 6.0)
    assert ppo.seed == 4 and ppo.log_with is None
    assert ppo.model_name == cfg.policy_model
    assert ppo.reward_model == f"sentiment-analysis:{cfg.reward_model}"


def test_to_dict():
    d = make_config("gpu", steps=3).to_dict()
    assert d["profile"] == "gpu" and d["steps"] == 3 and d["learning_rate"] == 1.41e-5
    assert set(d) == {f for f in LabConfig.__dataclass_fields__}


def test_cpu_profile_goes_offline(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    make_config("cpu")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"


def test_gpu_profile_stays_online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    make_config("gpu")
    assert "HF_HUB_OFFLINE" not in os.environ
