"""Build ``inside-ppo-runs``: the short PPO runs behind notebook 4's two experiments (statistics only).

* **reward-KL frontier**: the same run (batches of 32 prompts) with a fixed
  KL coefficient of 0.03, 0.3 and 1.0; each step's mean reward and KL.
* **value-head ablation**: advantages from the value head (GAE) against
  REINFORCE with a leave-one-out baseline (no value head), seeds 0, 1, 2,
  batches of 16 prompts, KL coefficient 0.3.

Every run uses the course's own step (``course_instructor.ppo.CoursePPO``: trl 0.11's
step for GAE, checked equal in ``tests/test_ppo.py``; trl has no REINFORCE
variant) on the cpu profile's models and data.  Output: one small JSON file
of per-step statistics (no model weights), packaged with a card and a
``SHA256SUMS`` manifest into ``course_lib/assets/inside-ppo-runs/``.

    python -m course_instructor.builders.inside_ppo --runs all            # everything, one process
    python -m course_instructor.builders.inside_ppo --runs frontier-0.03 frontier-0.1 ...   # some runs
    python -m course_instructor.builders.inside_ppo --package             # collect finished runs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from course_instructor.builders.common import build_note, log

NAME = "inside-ppo-runs"
WORK = Path("build/assets-work") / NAME
#: Settings shared by every run (the cpu profile's values otherwise).  Short on purpose: the
#: whole build has to fit a session on a shared 2-core machine (see the card for the time).
SETTINGS = {"steps": 12, "mini_batch_size": 8, "ppo_epochs": 2, "learning_rate": 5e-4,
            "reward_scale": 3.0, "adap_kl_ctrl": False, "target_label": "POSITIVE"}
FRONTIER_KL = (0.03, 0.3, 1.0)
FRONTIER_BATCH = 32
ABLATION_KL = 0.3
ABLATION_BATCH = 16
ABLATION_SEEDS = (0, 1, 2)
#: The statistics kept per step.
KEEP = ("env/reward_mean", "env/reward_std", "objective/kl", "objective/kl_coef", "ppo/loss/policy",
        "ppo/loss/value", "ppo/policy/clipfrac", "ppo/policy/approxkl", "ppo/val/var_explained", "time/step")


def run_specs() -> dict[str, dict]:
    """Every run by name: its advantage estimator, KL coefficient and seed."""
    specs = {f"frontier-{kl:g}": {"advantage": "gae", "init_kl_coef": kl, "seed": 0, "batch_size": FRONTIER_BATCH}
             for kl in FRONTIER_KL}
    for seed in ABLATION_SEEDS:
        for adv in ("gae", "rloo"):
            specs[f"ablation-{adv}-seed{seed}"] = {"advantage": adv, "init_kl_coef": ABLATION_KL, "seed": seed,
                                                   "batch_size": ABLATION_BATCH}
    return specs


def train_run(spec: dict) -> list[dict]:
    """One short run with the course's PPO step; returns per-step records."""
    import torch

    from course_lib.config import make_config
    from course_lib.data import build_dataset
    from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer
    from course_instructor.ppo import CoursePPO
    from course_lib.reward import sentiment_scores
    from course_lib.rollout import generate_responses
    from course_lib.train import make_trainer, response_length_sampler, set_seed

    cfg = make_config("cpu", seed=spec["seed"], init_kl_coef=spec["init_kl_coef"], batch_size=spec["batch_size"],
                      **SETTINGS)
    set_seed(cfg.seed)
    tok = load_tokenizer(cfg.policy_model)
    model, ref = load_policy(cfg.policy_model), load_policy(cfg.policy_model)
    trainer = make_trainer(cfg, model, ref, tok, build_dataset(cfg, tok))
    stepper = CoursePPO.from_trainer(trainer, advantage=spec["advantage"])
    pipe = load_sentiment_pipeline(cfg.reward_model)
    lengths = response_length_sampler(cfg)
    gen = cfg.generation_kwargs(tok)
    records: list[dict] = []
    while len(records) < cfg.steps:
        for batch in trainer.dataloader:
            t0 = time.perf_counter()
            queries = batch["input_ids"]
            responses = generate_responses(model, tok, queries, [lengths() for _ in queries], gen)
            texts = [q + r for q, r in zip(batch["query"], tok.batch_decode(responses, skip_special_tokens=True))]
            scores = sentiment_scores(pipe, texts, cfg.target_label, cfg.sent_kwargs)
            stats = stepper.step(queries, responses, [torch.tensor(cfg.reward_scale * s) for s in scores])
            stats["env/reward_mean"] = float(torch.tensor(scores).mean())
            stats["env/reward_std"] = float(torch.tensor(scores).std())
            stats["time/step"] = time.perf_counter() - t0
            records.append({"step": len(records) + 1, **{k: round(float(stats[k]), 6) for k in KEEP}})
            if len(records) % 5 == 0:
                log(f"  step {len(records)}: reward {stats['env/reward_mean']:+.3f} kl {stats['objective/kl']:.2f}")
            if len(records) >= cfg.steps:
                break
    return records


def package(out_dir: Path) -> Path:
    """Collect the finished runs into one JSON file with a card and a manifest."""
    from course_lib.assets import write_manifest
    from course_lib.jsonio import save_json

    specs = run_specs()
    missing = [n for n in specs if not (WORK / f"{n}.json").exists()]
    if missing:
        raise FileNotFoundError(f"runs not built yet: {', '.join(missing)} (python -m course_instructor.builders.inside_ppo "
                                f"--runs {' '.join(missing)})")
    runs = {n: json.loads((WORK / f"{n}.json").read_text()) for n in specs}
    data = {"settings": SETTINGS, "frontier_kl": list(FRONTIER_KL), "frontier_batch": FRONTIER_BATCH,
            "ablation_kl": ABLATION_KL, "ablation_batch": ABLATION_BATCH,
            "ablation_seeds": list(ABLATION_SEEDS), "runs": runs}
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    save_json(data, tmp / "runs.json")
    minutes = sum(r["minutes"] for r in runs.values())
    lines = [f"# {NAME}", "",
             "Per-step statistics of the short PPO runs behind notebook 4's experiments (no model weights).",
             f"Built by `python -m course_instructor.builders.inside_ppo` with the course's PPO step (`course_instructor.ppo`).",
             "", "Settings (cpu profile models and data; fixed KL coefficient): `" + json.dumps(SETTINGS) + "`", "",
             "| run | advantage | KL coefficient | batch | seed | mean reward, first 5 steps | last 5 steps | KL, last 5 steps | minutes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n, r in runs.items():
        recs = r["records"]
        first = sum(x["env/reward_mean"] for x in recs[:5]) / 5
        last = sum(x["env/reward_mean"] for x in recs[-5:]) / 5
        kl = sum(x["objective/kl"] for x in recs[-5:]) / 5
        lines.append(f"| {n} | {r['advantage']} | {r['init_kl_coef']:g} | {r['batch_size']} | {r['seed']} | {first:+.3f} | {last:+.3f} | "
                     f"{kl:.2f} | {r['minutes']:.1f} |")
    lines += ["", f"Total training time {minutes:.0f} min (one torch thread per run)."]
    if build_note():
        lines += ["", build_note()]
    (tmp / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_manifest(tmp)
    for f in tmp.iterdir():  # readable by everyone: the grading sandbox runs as another user
        f.chmod(0o644)
    tmp.chmod(0o755)
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def main(argv=None) -> int:
    import torch

    from course_lib.assets import ASSETS_DIR
    from course_lib.jsonio import save_json

    specs = run_specs()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="*", default=[], help=f"all, or some of: {', '.join(specs)}")
    p.add_argument("--package", action="store_true", help="collect the finished runs into course_lib/assets")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    names = list(specs) if args.runs == ["all"] else args.runs
    unknown = [n for n in names if n not in specs]
    if unknown:
        p.error(f"unknown run(s) {', '.join(unknown)}; valid: all, {', '.join(specs)}")
    if not names and not args.package:
        p.error("nothing to do: give --runs and/or --package")
    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    for n in names:
        log(f"== {NAME}: run {n} {specs[n]}")
        t0 = time.time()
        records = train_run(specs[n])
        save_json({**specs[n], "minutes": round((time.time() - t0) / 60, 2), "records": records}, WORK / f"{n}.json")
        log(f"== {n} done in {(time.time() - t0) / 60:.1f} min")
    if args.package:
        log(f"packaged {package(ASSETS_DIR / NAME)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
