"""Batched rollout vs the original lab's one-query-at-a-time loop, in one run.

Same 64 prompts, same per-prompt response lengths, same model, CPU.  Prints
the time of each and their ratio, then the time split of full PPO steps
(generate / score / optimise) with the batched rollout.

    .venv/bin/python benchmarks/bench_rollout.py [--batch 64] [--repeats 3] [--ppo-steps 2] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from course_lib.config import make_config
from course_lib.data import build_dataset, numpy_seed
from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer
from course_lib.rollout import generate_one_by_one, generate_responses
from course_lib.train import make_trainer, ppo_step, response_length_sampler, set_seed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ppo-steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = make_config("cpu", batch_size=args.batch, mini_batch_size=16)
    set_seed(0)
    tok = load_tokenizer(cfg.policy_model)
    model = load_policy(cfg.policy_model, value_head=False)
    ds = build_dataset(cfg, tok)
    queries = [ds[i]["input_ids"] for i in range(args.batch)]
    with numpy_seed(0):
        sampler = response_length_sampler(cfg)
        lengths = [sampler() for _ in queries]
    gen = cfg.generation_kwargs(tok)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.batch} prompts, "
          f"response lengths {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / len(lengths):.1f})")
    t_one, t_bat = [], []
    for r in range(args.repeats):  # interleaved, so machine noise hits both alike
        torch.manual_seed(r)
        t0 = time.perf_counter(); generate_one_by_one(model, tok, queries, lengths, gen); t_one.append(time.perf_counter() - t0)
        torch.manual_seed(r)
        t0 = time.perf_counter(); generate_responses(model, tok, queries, lengths, gen); t_bat.append(time.perf_counter() - t0)
    one, bat = statistics.median(t_one), statistics.median(t_bat)
    print(f"one query at a time : {one:7.2f} s  (median of {args.repeats}: {', '.join(f'{t:.2f}' for t in t_one)})")
    print(f"batched             : {bat:7.2f} s  (median of {args.repeats}: {', '.join(f'{t:.2f}' for t in t_bat)})")
    print(f"speed-up            : {one / bat:7.1f}x")

    if args.ppo_steps:
        set_seed(0)
        policy, ref = load_policy(cfg.policy_model), load_policy(cfg.policy_model)
        trainer = make_trainer(cfg, policy, ref, tok, ds)
        pipe = load_sentiment_pipeline(cfg.reward_model)
        it = iter(trainer.dataloader)
        print(f"\nPPO step time split (batch {cfg.batch_size}, mini-batch {cfg.mini_batch_size}, {cfg.ppo_epochs} PPO epochs):")
        for s in range(args.ppo_steps):
            rec = ppo_step(trainer, tok, pipe, next(it), cfg, response_length_sampler(cfg))
            total = rec["time/step"]
            print(f"  step {s + 1}: total {total:5.2f} s = generate {rec['time/rollout/generate']:5.2f} s "
                  f"({rec['time/rollout/generate'] / total:4.0%}) + score {rec['time/rollout/score']:5.2f} s "
                  f"({rec['time/rollout/score'] / total:4.0%}) + optimise {rec['time/ppo/optimise']:5.2f} s "
                  f"({rec['time/ppo/optimise'] / total:4.0%})")


if __name__ == "__main__":
    main()
