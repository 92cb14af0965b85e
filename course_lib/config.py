"""One configuration object for the whole lab: every hyperparameter and the profile.

Two profiles share one code path; only names and sizes differ:

``cpu`` (default, offline)
    the bundled ``gpt2-imdb-mini`` policy, ``distilbert-imdb-mini`` reward
    model and IMDb subset; a short live PPO run.  Never touches the network.
``gpu`` (online, full)
    the Hub models ``lvwerra/gpt2-imdb`` and ``lvwerra/distilbert-imdb`` and
    the ``stanfordnlp/imdb`` data set; the lab's full run (batch 128,
    lr 1.41e-5, one epoch).

Build it with :func:`make_config`; the notebooks' parameters cells and the
command line (``python -m course_lib.train``) both do.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

PROFILES = ("cpu", "gpu")
SENTIMENTS = ("POSITIVE", "NEGATIVE")
ASSETS_DIR = Path(__file__).resolve().parent / "assets"

#: The Hub names the gpu profile uses (the lab's originals).
HUB_NAMES = {
    "policy": "lvwerra/gpt2-imdb",
    "reward": "lvwerra/distilbert-imdb",
    "dataset": "stanfordnlp/imdb",
}
#: The bundled folders (inside course_lib/assets) that play their roles offline.
BUNDLED_NAMES = {
    "policy": "gpt2-imdb-mini",
    "reward": "distilbert-imdb-mini",
    "dataset": "imdb-mini",
    "happy": "ppo-happy-mini",
    "pessimistic": "ppo-pessimistic-mini",
}


@dataclass
class LabConfig:
    """Every number of the lab, named once.  Units are in the comments."""

    profile: str = "cpu"
    seed: int = 0

    # models and data: Hub names (gpu) or bundled folders (cpu); filled by make_config
    policy_model: str = ""
    reward_model: str = ""
    dataset: str = ""

    # dataset building (section 3 of the lab)
    min_review_chars: int = 200   # keep reviews strictly longer than this (characters)
    prompt_min_tokens: int = 2    # LengthSampler lower bound (tokens)
    prompt_max_tokens: int = 8    # LengthSampler upper bound (tokens, inclusive)
    train_rows: int | None = None  # None = every training review; an int keeps the first N

    # response generation (section 6): the lab's sampling settings
    response_min_tokens: int = 4
    response_max_tokens: int = 16  # inclusive
    gen_min_length: int = -1       # -1: no minimum besides max_new_tokens
    gen_top_k: int = 0             # 0: no top-k filtering
    gen_top_p: float = 1.0         # 1.0: no nucleus filtering
    gen_do_sample: bool = True     # sample, never greedy

    # PPO (trl.PPOConfig); the lab's values are trl's defaults
    learning_rate: float = 1.41e-5
    batch_size: int = 128          # prompts per PPO step
    mini_batch_size: int = 128     # prompts per gradient step inside a PPO step
    ppo_epochs: int = 4            # optimisation passes over each batch
    init_kl_coef: float = 0.2      # beta of the KL penalty (nats of reward per nat of KL)
    adap_kl_ctrl: bool = True      # trl's adaptive KL controller
    kl_target: float = 6.0         # its target KL (nats)
    kl_horizon: int = 10000        # its horizon (responses): beta moves by at most 20% x batch/horizon a step
    reward_scale: float = 1.0      # reward = reward_scale * classifier logit
    # LoRA (peft): 0 tunes every weight (the lab); r > 0 trains rank-r adapters on every
    # attention and MLP matrix instead, and the adapter-disabled model is the reference
    lora_r: int = 0
    lora_alpha: int = 32           # adapter scale alpha / r
    lora_dropout: float = 0.0
    steps: int | None = None       # PPO steps; None = one epoch over the dataset
    target_label: str = "POSITIVE"

    # evaluation (sections 9-10)
    eval_prompts: int = 512        # held-out prompts from IMDb test reviews

    # sentiment pipeline: raw logits of every label
    sent_kwargs: dict = field(default_factory=lambda: {"top_k": None, "function_to_apply": "none", "batch_size": 16})

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; valid profiles: {', '.join(PROFILES)}")
        if self.target_label not in SENTIMENTS:
            raise ValueError(f"unknown sentiment {self.target_label!r}; valid: {', '.join(SENTIMENTS)}")
        if not 1 <= self.prompt_min_tokens <= self.prompt_max_tokens:
            raise ValueError("need 1 <= prompt_min_tokens <= prompt_max_tokens")
        if not 1 <= self.response_min_tokens <= self.response_max_tokens:
            raise ValueError("need 1 <= response_min_tokens <= response_max_tokens")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be 0 (full fine-tuning) or a positive rank, got {self.lora_r}")
        if self.kl_horizon <= 0:
            raise ValueError(f"kl_horizon must be a positive number of responses, got {self.kl_horizon}")
        if self.batch_size % self.mini_batch_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of mini_batch_size {self.mini_batch_size}")

    # ---- derived views -------------------------------------------------
    def generation_kwargs(self, tokenizer) -> dict:
        """Keyword arguments for ``generate``: the lab's sampling settings.

        Padding uses the tokenizer's EOS id: GPT-2 has no pad token, and EOS
        is what the model was trained to see after a review.
        """
        return {
            "min_length": self.gen_min_length,
            "top_k": self.gen_top_k,
            "top_p": self.gen_top_p,
            "do_sample": self.gen_do_sample,
            "pad_token_id": tokenizer.eos_token_id,
        }

    def ppo_config(self):
        """The matching ``trl.PPOConfig`` (imports trl).

        Without a GPU, trl's ``Accelerator`` is created with ``cpu=True``, as
        ``course_lib.train.join_processes`` creates accelerate's process state:
        only then do processes started by ``torchrun`` or ``accelerate launch``
        form one gloo group (``MULTI_CPU``) instead of each training alone.
        With a GPU, accelerate's defaults apply (nccl).
        """
        import torch
        from trl import PPOConfig

        return PPOConfig(
            accelerator_kwargs={} if torch.cuda.is_available() else {"cpu": True},
            model_name=self.policy_model,
            query_dataset=self.dataset,
            reward_model=f"sentiment-analysis:{self.reward_model}",
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            mini_batch_size=self.mini_batch_size,
            ppo_epochs=self.ppo_epochs,
            init_kl_coef=self.init_kl_coef,
            adap_kl_ctrl=self.adap_kl_ctrl,
            target=self.kl_target,
            horizon=self.kl_horizon,
            seed=self.seed,
            exp_name="course_lib",
            log_with=None,
        )

    def peft_config(self):
        """The ``peft.LoraConfig`` of ``lora_r``/``lora_alpha``/``lora_dropout``; ``None`` when ``lora_r`` is 0."""
        if not self.lora_r:
            return None
        from course_lib.models import lora_config

        return lora_config(self.lora_r, self.lora_alpha, self.lora_dropout)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: What differs between the profiles; everything else is the lab's value.
PROFILE_DEFAULTS = {
    "cpu": {
        "policy_model": str(ASSETS_DIR / BUNDLED_NAMES["policy"]),
        "reward_model": str(ASSETS_DIR / BUNDLED_NAMES["reward"]),
        "dataset": str(ASSETS_DIR / BUNDLED_NAMES["dataset"]),
        # A 7M-parameter policy needs a larger step than GPT-2's 1.41e-5 to move
        # in minutes (measured: 1.41e-5 left the mean reward flat for 60 steps;
        # 1e-4 moved it +0.19 in 10 steps of 32, 5e-4 about +0.25 with KL 5-6 nats).
        # The bundled checkpoints use 1.41e-4 for 180 steps of 64 with 2 PPO
        # epochs per batch (see their cards and course_instructor/builders/ppo.py).
        "learning_rate": 5e-4,
        # The small classifier's logits on short texts spread over about +-1.5
        # (lvwerra/distilbert-imdb: about +-3); scaling them keeps the reward
        # signal above the noise of 64-sample batches.
        "reward_scale": 3.0,
        "init_kl_coef": 0.3,
        "batch_size": 32,
        "mini_batch_size": 8,
        # 2 optimisation passes per batch, as the bundled builds: half the time of the lab's 4
        # and as much learning in a short run (measured 2026-11-29, 10 steps, held-out rise of
        # the target logit on 128 prompts: t = 7.0 POSITIVE and 12.4 NEGATIVE with 2 passes;
        # an earlier session measured t = 6.2 and 6.5 with 4); 12 steps keep `make run` in minutes
        "ppo_epochs": 2,
        "steps": 12,
        "eval_prompts": 512,
    },
    "gpu": {
        "policy_model": HUB_NAMES["policy"],
        "reward_model": HUB_NAMES["reward"],
        "dataset": HUB_NAMES["dataset"],
        "learning_rate": 1.41e-5,
        "batch_size": 128,
        "mini_batch_size": 128,
        "steps": None,  # one epoch: 194 steps of 128 reviews
        "eval_prompts": 1024,
    },
}


def make_config(profile: str | None = None, **overrides) -> LabConfig:
    """Build the configuration of ``profile`` (default: ``$COURSE_PROFILE`` or ``cpu``).

    ``overrides`` replace single values, e.g. ``make_config("cpu", steps=5)``.
    An unknown profile or an unknown setting raises ``ValueError`` naming the
    valid ones.  Choosing ``cpu`` switches the Hugging Face libraries offline
    (see :func:`course_lib.assets.go_offline`) and registers the bundled base
    models in the Hugging Face cache under their names, so the standard loaders
    find the base of a bundled adapter (:func:`course_lib.assets.register_in_hf_cache`).
    """
    profile = profile or os.environ.get("COURSE_PROFILE", "cpu")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}")
    names = {f.name for f in dataclasses.fields(LabConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; valid settings: {', '.join(sorted(names))}")
    values = {**PROFILE_DEFAULTS[profile], **overrides}
    cfg = LabConfig(profile=profile, **values)
    if profile == "cpu":
        from course_lib.assets import go_offline, register_in_hf_cache

        go_offline()
        register_in_hf_cache(quiet=True)
    return cfg
