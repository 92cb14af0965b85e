"""``make assets``: rebuild the bundled assets from ../shared/data with fixed seeds.

    python -m course_instructor.builders --data-dir ../shared/data --asset all
    python -m course_instructor.builders --data-dir ../shared/data --asset distilbert-imdb-mini

Each asset is trained into ``build/assets-work/<name>/`` (checkpoints, logs,
``train_info.json``), measured, and packaged into ``course_lib/assets/<name>/``
with its model card and ``SHA256SUMS``.  ``--package-only`` re-measures and
re-packages an already trained work folder.  The log of every run is appended
to ``build/assets-work/build.log``.  ``BUILD_NOTE`` (environment variable), if
set, is added to the model cards, e.g. to say that two builds shared the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from course_lib.assets import ASSETS_DIR
from course_instructor.builders import cards, common
from course_instructor.builders.common import build_note, log

ASSETS = ("imdb-mini", "distilbert-imdb-mini", "gpt2-imdb-mini", "ppo-happy-mini", "ppo-pessimistic-mini",
          "inside-ppo-runs", "frontier-runs", "dpo-happy-mini", "grpo-happy-mini")
WORK = Path("build/assets-work")


def build_imdb(data_dir: Path, package_only: bool) -> None:
    from course_instructor.builders import data
    from course_instructor.builders.package import assemble

    work = WORK / "imdb-mini"
    info = data.build(data_dir, work)
    assemble(work, ASSETS_DIR / "imdb-mini", cards.imdb_card(info))


def _train_measure_package(name: str, trainer, work_sub: str, measure, card, kind: str, data_dir: Path,
                           package_only: bool, model_max_length_key: str | None = None) -> None:
    """Train (unless ``package_only``) into WORK/name, measure the model, package it with its card."""
    from course_instructor.builders import metrics
    from course_instructor.builders.package import assemble

    model_dir = WORK / name
    if not package_only:
        trainer.main(["--data-dir", str(data_dir), "--out", str(model_dir), "--work", str(WORK / work_sub)])
    info = json.loads((WORK / work_sub / "train_info.json").read_text())
    if build_note():
        info["build_note"] = build_note()
    m = measure(model_dir, data_dir)
    m["load_seconds"] = metrics.load_seconds(model_dir, kind)
    log(f"{name} metrics: {json.dumps(m)}")
    mml = info[model_max_length_key] if model_max_length_key else None
    log(f"packaged {assemble(model_dir, ASSETS_DIR / name, card(info, m), model_max_length=mml)}")


def build_classifier(data_dir: Path, package_only: bool) -> None:
    from course_instructor.builders import classifier, metrics

    _train_measure_package("distilbert-imdb-mini", classifier, "classifier", metrics.classifier_metrics,
                           cards.classifier_card, "classifier", data_dir, package_only)


def build_lm(data_dir: Path, package_only: bool) -> None:
    from course_instructor.builders import lm, metrics

    _train_measure_package("gpt2-imdb-mini", lm, "lm", metrics.lm_metrics, cards.lm_card, "lm", data_dir,
                           package_only, model_max_length_key="ctx")


ENGINE = "course"  # set by --engine


def build_ppo(sentiment: str, data_dir: Path, package_only: bool) -> None:
    from course_instructor.builders import ppo

    ppo.build(sentiment, WORK, ASSETS_DIR, package_only=package_only, engine=ENGINE)


def build_inside_ppo_runs(package_only: bool) -> None:
    """Notebook 4's experiments: statistics of short PPO runs (reads only the bundled assets)."""
    from course_instructor.builders import inside_ppo

    inside_ppo.main(["--package"] if package_only else ["--runs", "all", "--package"])


def build_beyond_ppo(name: str, package_only: bool) -> None:
    """Part 5: the frontier's runs (statistics only) or one of the DPO/GRPO Happy LLMs, picked from them."""
    from course_instructor.builders import beyond_ppo

    if name == "frontier-runs":
        beyond_ppo.main(["--package"] if package_only else ["--runs", "all", "--package"])
    else:
        beyond_ppo.main(["--model", name])


BUILDERS = {
    "imdb-mini": build_imdb,
    "distilbert-imdb-mini": build_classifier,
    "gpt2-imdb-mini": build_lm,
    "ppo-happy-mini": lambda d, p: build_ppo("POSITIVE", d, p),
    "ppo-pessimistic-mini": lambda d, p: build_ppo("NEGATIVE", d, p),
    "inside-ppo-runs": lambda d, p: build_inside_ppo_runs(p),
    "frontier-runs": lambda d, p: build_beyond_ppo("frontier-runs", p),
    "dpo-happy-mini": lambda d, p: build_beyond_ppo("dpo-happy-mini", p),
    "grpo-happy-mini": lambda d, p: build_beyond_ppo("grpo-happy-mini", p),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="../shared/data (full IMDb + tokenizer files)")
    p.add_argument("--asset", default="all", help=f"all or one of: {', '.join(ASSETS)}")
    p.add_argument("--package-only", action="store_true", help="re-measure and re-package trained work folders")
    p.add_argument("--engine", default="course", help="PPO step of the ppo-* builds: course (default: "
                   "course_instructor.ppo, checked equal to trl's and faster, as the bundled models were built; see "
                   "docs/benchmarks.md) or trl (PPOTrainer.step)")
    args = p.parse_args(argv)
    if args.engine not in ("trl", "course"):
        p.error(f"unknown engine {args.engine!r}; valid: trl, course")
    global ENGINE
    ENGINE = args.engine
    if args.asset != "all" and args.asset not in ASSETS:
        p.error(f"unknown asset {args.asset!r}; valid: all, {', '.join(ASSETS)}")
    if not (args.data_dir / "imdb" / "train.parquet").is_file():
        p.error(f"{args.data_dir} does not hold imdb/train.parquet: point --data-dir (SHARED=...) at ../shared/data")
    WORK.mkdir(parents=True, exist_ok=True)
    common.LOG_FILE = WORK / "build.log"
    names = ASSETS if args.asset == "all" else (args.asset,)
    for name in names:
        t0 = time.time()
        log(f"== building {name}")
        BUILDERS[name](args.data_dir, args.package_only)
        log(f"== {name} done in {(time.time() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
