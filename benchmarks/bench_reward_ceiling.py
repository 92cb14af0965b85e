"""How far can the reward go? Best-of-N sampling from the reference as a yardstick for PPO.

For the model cards' held-out prompts and response lengths, draw N responses
per prompt from the reference model and keep, per prompt, the one the
classifier scores highest for a label.  The mean of that best score is what
selection alone reaches at a KL of at most ``ln N - (N - 1) / N`` nats.  The
bundled tuned models' single-sample means on the same prompts are printed
beside it with their own mean KL, so PPO can be read against best-of-N.

    .venv/bin/python benchmarks/bench_reward_ceiling.py [--samples 32] [--prompts 512] [--threads N]
"""
from __future__ import annotations

import argparse
import time

import torch

from course_lib.assets import ASSETS_DIR
from course_instructor.builders.ppo import EVAL_SEED, NAMES
from course_lib.config import make_config
from course_lib.data import build_dataset
from course_lib.evaluate import LABELS, best_of_n, best_of_n_kl, compare_models
from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", type=int, default=32, help="responses per prompt from the reference")
    p.add_argument("--prompts", type=int, default=512)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    args = p.parse_args()
    if args.samples < 1 or args.prompts < 1:
        raise SystemExit("--samples and --prompts must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = make_config("cpu")
    tok = load_tokenizer(cfg.policy_model)
    ref = load_policy(cfg.policy_model, value_head=False)
    pipe = load_sentiment_pipeline(cfg.reward_model)
    prompts = build_dataset(cfg, tok, split="test", seed=EVAL_SEED)
    n = min(args.prompts, len(prompts))

    t0 = time.perf_counter()
    scores = best_of_n(ref, tok, pipe, prompts, cfg, args.samples, n=n, seed=EVAL_SEED)
    print(f"{n} prompts x {args.samples} reference samples in {time.perf_counter() - t0:.0f} s "
          f"({torch.get_num_threads()} threads)")
    models = {"reference": ref}
    for name in NAMES.values():
        models[name] = load_policy(str(ASSETS_DIR / name), value_head=False)
    table = compare_models(models, tok, pipe, prompts, cfg, n=n, seed=EVAL_SEED)

    ks = sorted({1, 4, 16, args.samples} & set(range(1, args.samples + 1)))
    for label in LABELS:
        s = scores[label]
        base = s.mean()
        print(f"\n{label} logit: reference mean {base:+.3f} over all {s.size} samples; "
              f"highest single score {s.max():+.2f}")
        print(f"{'policy':<30}{'mean':>8}{'gain':>8}{'KL (nats)':>12}")
        for k in ks:
            best = s[:k].max(axis=0).mean()
            print(f"{'best of ' + str(k) + ' (reference)':<30}{best:+8.3f}{best - base:+8.3f}{'<= ':>6}{best_of_n_kl(k):6.2f}")
        for name in NAMES.values():
            m = table[f"{label} [{name}]"].mean()
            print(f"{name + ' (1 sample)':<30}{m:+8.3f}{m - base:+8.3f}{table[f'KL [{name}]'].mean():12.2f}")


if __name__ == "__main__":
    main()
