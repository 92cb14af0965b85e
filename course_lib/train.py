"""PPO training of the Happy and the Pessimistic LLM with trl 0.11's ``PPOTrainer``.

Every trl-specific call of the course lives here (and in ``config.ppo_config``),
so a migration to another trl touches one place.

One PPO step, as the notebooks show it:

1. **rollout**   sample a response of 4-16 tokens for every query of the batch
                 (one batched ``generate`` call, see ``rollout.generate_responses``);
2. **reward**    score ``query + response`` with the sentiment pipeline and read
                 the logit of the wanted label by name (``reward.sentiment_rewards``);
3. **optimise**  ``ppo_trainer.step(queries, responses, rewards)``: trl adds the
                 KL penalty to the reference model, computes advantages and runs
                 ``ppo_epochs`` passes of clipped policy and value updates.

Command line (also under ``accelerate launch`` on several GPUs)::

    python -m course_lib.train --sentiment POSITIVE --profile cpu --steps 40 --output build/happy
"""
from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from pathlib import Path

from course_lib.config import PROFILES, SENTIMENTS, LabConfig, make_config
from course_lib.jsonio import load_json, save_json

STATS_FILE = "training_stats.json"


def set_seed(seed: int) -> None:
    """One seed for Python, NumPy and torch (CPU runs then repeat exactly)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_sentiment(label: str) -> str:
    if label not in SENTIMENTS:
        raise ValueError(f"unknown sentiment {label!r}; valid: {', '.join(SENTIMENTS)}")
    return label


def make_trainer(cfg: LabConfig, model, ref_model, tokenizer, dataset):
    """A ``PPOTrainer`` over ``dataset`` with the course's collator.

    Raises ``ValueError`` if the dataset holds fewer prompts than one batch
    (trl drops incomplete batches: the lab's padding with fake samples is not
    needed and would bias the statistics).
    """
    from trl import PPOTrainer

    from course_lib.data import collator

    if len(dataset) < cfg.batch_size:
        raise ValueError(f"the dataset has {len(dataset)} prompts, fewer than one batch of {cfg.batch_size}")
    return PPOTrainer(cfg.ppo_config(), model, ref_model, tokenizer, dataset=dataset, data_collator=collator)


def response_length_sampler(cfg: LabConfig):
    """trl's ``LengthSampler`` over ``response_min_tokens``..``response_max_tokens`` (inclusive)."""
    from trl.core import LengthSampler

    return LengthSampler(cfg.response_min_tokens, cfg.response_max_tokens + 1)


def ppo_step(ppo_trainer, tokenizer, sentiment_pipe, batch: dict, cfg: LabConfig, length_sampler) -> dict:
    """Rollout, reward and optimisation for one batch; returns the step's record.

    The record is JSON-serialisable: trl's scalar statistics under their own
    names (``ppo/loss/total``, ``objective/kl``, ...) plus ``env/reward_mean``
    and ``env/reward_std`` (the classifier's logit for ``cfg.target_label``,
    before ``reward_scale``) and the time of each part in seconds.
    """
    import numpy as np
    import torch

    from course_lib.reward import sentiment_scores
    from course_lib.rollout import generate_responses

    t0 = time.perf_counter()
    query_tensors = batch["input_ids"]
    lengths = [length_sampler() for _ in query_tensors]
    model = ppo_trainer.accelerator.unwrap_model(ppo_trainer.model)
    response_tensors = generate_responses(model, tokenizer, query_tensors, lengths, cfg.generation_kwargs(tokenizer))
    batch["response"] = tokenizer.batch_decode(response_tensors, skip_special_tokens=True)
    t1 = time.perf_counter()

    texts = [q + r for q, r in zip(batch["query"], batch["response"])]
    scores = sentiment_scores(sentiment_pipe, texts, cfg.target_label, cfg.sent_kwargs)
    rewards = [torch.tensor(cfg.reward_scale * s) for s in scores]
    t2 = time.perf_counter()

    stats = ppo_trainer.step(query_tensors, response_tensors, rewards)
    ppo_trainer.log_stats(stats, batch, rewards)
    t3 = time.perf_counter()

    scores_t = torch.tensor(scores, device=ppo_trainer.accelerator.device)
    all_scores = ppo_trainer.accelerator.gather(scores_t).float().cpu()
    record = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in stats.items() if np.asarray(v).size == 1}
    record.update({
        "env/reward_mean": float(all_scores.mean()),
        "env/reward_std": float(all_scores.std()) if len(all_scores) > 1 else 0.0,
        "time/rollout/generate": t1 - t0,
        "time/rollout/score": t2 - t1,
        "time/ppo/optimise": t3 - t2,
        "time/step": t3 - t0,
    })
    return record


def train(ppo_trainer, tokenizer, sentiment_pipe, cfg: LabConfig, steps: int | None = None,
          progress: bool = True, on_step=None) -> list[dict]:
    """Run ``steps`` PPO steps (default ``cfg.steps``; ``None`` = one epoch). Returns the records.

    The progress bar (tqdm.auto: a widget in JupyterLab, plain lines in logs)
    shows the running mean reward.  ``on_step(step, record, batch)`` is called
    after each step.
    """
    from tqdm.auto import tqdm

    check_sentiment(cfg.target_label)
    steps = cfg.steps if steps is None else steps
    n_batches = len(ppo_trainer.dataloader)
    if n_batches == 0:
        raise ValueError("the PPO dataloader yields no batch: the dataset is smaller than one batch")
    total = n_batches if steps is None else steps
    length_sampler = response_length_sampler(cfg)
    records: list[dict] = []
    bar = tqdm(total=total, desc=f"PPO {cfg.target_label}", disable=not progress)
    while len(records) < total:
        for batch in ppo_trainer.dataloader:
            record = ppo_step(ppo_trainer, tokenizer, sentiment_pipe, batch, cfg, length_sampler)
            record["step"] = len(records) + 1
            records.append(record)
            if on_step is not None:
                on_step(record["step"], record, batch)
            recent = records[-10:]
            bar.set_postfix(reward=f"{sum(r['env/reward_mean'] for r in recent) / len(recent):+.2f}",
                            kl=f"{record.get('objective/kl', float('nan')):.2f}")
            bar.update(1)
            if len(records) >= total:
                break
    bar.close()
    return records


def save_checkpoint(model, tokenizer, out_dir: str | Path, records: list[dict] | None = None,
                    cfg: LabConfig | None = None, dtype=None) -> Path:
    """Save the policy (with its value head) and tokenizer; statistics as JSON, never pickle.

    Writes into a temporary folder renamed into place at the end, so an
    interrupted save leaves any previous checkpoint intact.  ``dtype`` (e.g.
    ``torch.float16``) stores a cast copy; the model in memory is unchanged.
    """
    from course_lib.assets import staging_folder, swap_in_folder

    out_dir = Path(out_dir)
    model = getattr(model, "module", model)
    if dtype is not None:
        model = copy.deepcopy(model).to(dtype)
    tmp = staging_folder(out_dir)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "tokenizer.json").unlink(missing_ok=True)  # vocab.json + merges.txt suffice
    if records is not None:
        save_json({"config": cfg.to_dict() if cfg else None, "steps": records}, tmp / STATS_FILE)
    return swap_in_folder(tmp, out_dir)


def load_stats(path: str | Path) -> list[dict]:
    """The per-step records of a checkpoint folder (or of a ``training_stats.json`` file)."""
    path = Path(path)
    f = path / STATS_FILE if path.is_dir() else path
    if not f.is_file():
        raise FileNotFoundError(f"no training statistics at {f}: is {path} a checkpoint saved by save_checkpoint?")
    data = load_json(f)
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ValueError(f"{f} is not a training statistics file (expected a 'steps' list)")
    return data["steps"]


def load_checkpoint(path: str | Path, value_head: bool = False, device=None):
    """Load a tuned policy and its tokenizer from a checkpoint folder (bundled or saved).

    Raises ``FileNotFoundError`` naming the folder when it holds no model.
    """
    from course_lib.assets import resolve
    from course_lib.models import load_policy, load_tokenizer

    p = Path(path)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"no checkpoint at {p} (expected config.json and model.safetensors); "
                                "train one with `python -m course_lib.train` or use a bundled one")
    resolved = resolve(str(p))
    return load_policy(resolved, value_head=value_head, device=device), load_tokenizer(resolved)


def run(cfg: LabConfig, output: str | Path | None, progress: bool = True, dtype=None) -> tuple[list[dict], object]:
    """Everything the command line does: load, build the dataset, train, save. Returns (records, trainer)."""
    from course_lib.data import build_dataset
    from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer

    set_seed(cfg.seed)
    tokenizer = load_tokenizer(cfg.policy_model)
    model = load_policy(cfg.policy_model)
    ref_model = load_policy(cfg.policy_model)
    dataset = build_dataset(cfg, tokenizer)
    trainer = make_trainer(cfg, model, ref_model, tokenizer, dataset)
    pipe = load_sentiment_pipeline(cfg.reward_model, device=trainer.accelerator.device)
    records = train(trainer, tokenizer, pipe, cfg, progress=progress)
    if output is not None and trainer.accelerator.is_main_process:
        save_checkpoint(trainer.model, tokenizer, output, records, cfg, dtype=dtype)
    return records, trainer


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Tune the policy with PPO toward one sentiment.")
    p.add_argument("--sentiment", required=True, help=f"target label: {' or '.join(SENTIMENTS)}")
    p.add_argument("--profile", default="cpu", help=f"one of: {', '.join(PROFILES)}")
    p.add_argument("--steps", type=int, default=None, help="PPO steps (default: the profile's; gpu: one epoch)")
    p.add_argument("--output", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="override any LabConfig value, e.g. --set learning_rate=1e-4 batch_size=64")
    args = p.parse_args(argv)
    if args.sentiment not in SENTIMENTS:
        p.error(f"unknown sentiment {args.sentiment!r}; valid: {', '.join(SENTIMENTS)}")
    if args.profile not in PROFILES:
        p.error(f"unknown profile {args.profile!r}; valid profiles: {', '.join(PROFILES)}")
    overrides = {"target_label": args.sentiment, "seed": args.seed}
    if args.steps is not None:
        overrides["steps"] = args.steps
    for item in args.set:
        if "=" not in item:
            p.error(f"--set takes NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        overrides[name] = _parse_value(value)
    try:
        cfg = make_config(args.profile, **overrides)
    except ValueError as e:
        p.error(str(e))
    records, _ = run(cfg, args.output)
    first, last = records[0]["env/reward_mean"], sum(r["env/reward_mean"] for r in records[-5:]) / len(records[-5:])
    print(f"{len(records)} steps; mean {cfg.target_label} reward {first:+.3f} (first step) -> {last:+.3f} (last 5); "
          f"saved to {args.output}")
    return 0


def _parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    return text


if __name__ == "__main__":
    sys.exit(main())
