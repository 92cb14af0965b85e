"""The course's PPO step (``course_instructor.ppo``) against trl's ``PPOTrainer.step``, in one run.

Same real batch (64 bundled IMDb prompts, responses sampled from
``gpt2-imdb-mini``, rewards from ``distilbert-imdb-mini``), same starting
weights, same shuffling seed, the bundled builds' settings (mini-batch 16,
2 PPO epochs, lr 1.41e-4).  The two steps alternate, each from a fresh copy
of the weights and a fresh optimizer, so machine noise hits both alike.
Prints each step's time, their ratio, and how far the results differ.

    .venv/bin/python benchmarks/bench_ppo_step.py [--batch 64] [--epochs 2] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import torch


def main() -> None:
    from course_instructor import ppo as course_ppo
    from course_lib.rollout import rollout_batch
    from course_lib.config import make_config
    from course_lib.data import build_dataset
    from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer
    from course_lib.train import make_trainer, set_seed

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mini-batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's own choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = make_config("cpu", batch_size=args.batch, mini_batch_size=args.mini_batch, ppo_epochs=args.epochs,
                      learning_rate=1.41e-4)
    set_seed(0)
    tok = load_tokenizer(cfg.policy_model)
    start = load_policy(cfg.policy_model)
    ref = load_policy(cfg.policy_model)
    ds = build_dataset(cfg, tok)
    pipe = load_sentiment_pipeline(cfg.reward_model)
    batch = rollout_batch(start, tok, pipe, ds, cfg, args.batch, seed=0)
    n_tokens = sum(len(r) for r in batch["responses"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {args.batch} prompts, "
          f"{n_tokens} response tokens, mini-batch {args.mini_batch}, {args.epochs} PPO epochs")

    times = {"trl": [], "course": []}
    results = {}
    for r in range(args.repeats):
        for engine in ("trl", "course"):
            model = copy.deepcopy(start)
            trainer = make_trainer(cfg, model, copy.deepcopy(ref), tok, ds)
            step = trainer.step if engine == "trl" else course_ppo.CoursePPO.from_trainer(trainer).step
            np.random.seed(r)
            t0 = time.perf_counter()
            stats = step(list(batch["queries"]), list(batch["responses"]), list(batch["scores"]))
            times[engine].append(time.perf_counter() - t0)
            if r == 0:
                results[engine] = (stats, [p.detach().clone() for p in model.parameters()])
    t_trl, t_course = statistics.median(times["trl"]), statistics.median(times["course"])
    for engine, ts in times.items():
        print(f"{engine:7s} step: {statistics.median(ts):6.2f} s  (median of {args.repeats}: "
              f"{', '.join(f'{t:.2f}' for t in ts)})")
    print(f"speed-up: {t_trl / t_course:.2f}x")
    (s_trl, p_trl), (s_course, p_course) = results["trl"], results["course"]
    worst = max(abs(float(np.asarray(s_trl[k])) - s_course[k]) / max(abs(float(np.asarray(s_trl[k]))), 1e-6)
                for k in course_ppo.STAT_NAMES)
    close = sum(int(torch.isclose(a, b, rtol=1e-5, atol=1e-8).sum()) for a, b in zip(p_trl, p_course))
    total = sum(a.numel() for a in p_trl)
    print(f"equal results: largest relative difference of the {len(course_ppo.STAT_NAMES)} statistics {worst:.1e}; "
          f"{close} of {total} parameters within 1e-5 relative ({total - close} outside)")


if __name__ == "__main__":
    main()
