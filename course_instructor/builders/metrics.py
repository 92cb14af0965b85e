"""Recompute the figures in the bundled models' cards.

``python -m course_instructor.builders.metrics --data-dir ../shared/data`` prints,
for the bundled assets: classifier accuracy on the full IMDb test split, on
16-token prefixes and on the hand-written short sentences of
``tests/data/short_sentences.tsv`` (with their logit margins), language-model perplexity on 1,000 test reviews, samples
from "This movie", load times and folder sizes.  The builders call the same
functions to write the cards.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from course_lib.assets import ASSETS_DIR
from course_instructor.builders.common import clean_review, gpt2_tokenizer_from_shared, read_imdb_split
from course_instructor.builders.package import folder_size_mb

PPL_REVIEWS = 1000
PPL_SEED = 7
PREFIX_TOKENS = 16
#: Hand-written short sentences with their labels (kept with the tests, never used in training).
SHORT_SENTENCES = Path(__file__).resolve().parents[2] / "tests" / "data" / "short_sentences.tsv"
SENTENCE_LABELS = ("POSITIVE", "NEGATIVE")


def read_sentences(path: Path = SHORT_SENTENCES) -> list[tuple[str, str]]:
    """``(label, text)`` pairs from a ``label<TAB>text`` file; lines starting with ``#`` are comments."""
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        label, sep, text = line.partition("\t")
        if not sep or label not in SENTENCE_LABELS or not text.strip():
            raise ValueError(f"{path}:{n}: expected LABEL<TAB>text with LABEL one of {', '.join(SENTENCE_LABELS)}")
        pairs.append((label, text.strip()))
    return pairs


def sentence_metrics(pipe, pairs: list[tuple[str, str]]) -> dict:
    """Accuracy and |POSITIVE - NEGATIVE| margins (logits) of a sentiment pipeline on labelled sentences."""
    from course_instructor.reference import score_for_label

    outputs = pipe([t for _, t in pairs], top_k=None, function_to_apply="none")
    rows = []
    for (label, text), out in zip(pairs, outputs):
        pos, neg = score_for_label(out, "POSITIVE"), score_for_label(out, "NEGATIVE")
        rows.append({"text": text, "label": label, "POSITIVE": round(pos, 3), "NEGATIVE": round(neg, 3),
                     "correct": (pos > neg) == (label == "POSITIVE")})
    margins = np.abs([r["POSITIVE"] - r["NEGATIVE"] for r in rows])
    return {"sentences": len(rows), "sentence_accuracy": round(float(np.mean([r["correct"] for r in rows])), 4),
            "sentence_median_margin": round(float(np.median(margins)), 3),
            "sentence_min_margin": round(float(margins.min()), 3),
            "sentences_wrong": [r for r in rows if not r["correct"]], "sentence_scores": rows}


def gpt2_prefixes(texts: list[str], tok, n_tokens: int = PREFIX_TOKENS) -> list[str]:
    """The first ``n_tokens`` GPT-2 tokens of each cleaned review, decoded (what the policy sees)."""
    ids = tok([clean_review(t)[:400] for t in texts])["input_ids"]
    return [tok.decode(i[:n_tokens]) for i in ids]


def classifier_metrics(model_dir: Path, data_dir: Path, batch: int = 128) -> dict:
    """Accuracy on all 25,000 test reviews (cleaned, truncated to model_max_length) and on 16-token prefixes."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from course_instructor.builders.classifier import accuracy

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, torch_dtype=torch.float32)
    texts, labels = read_imdb_split(data_dir, "test", with_labels=True)
    cleaned = [clean_review(t) for t in texts]
    acc_whole = accuracy(model, tok, cleaned, labels, tok.model_max_length, batch)
    prefixes = gpt2_prefixes(texts, gpt2_tokenizer_from_shared(data_dir))
    acc_prefix = accuracy(model, tok, prefixes, labels, tok.model_max_length, batch)
    from transformers import pipeline

    sent = sentence_metrics(pipeline("sentiment-analysis", model=model, tokenizer=tok, device=-1), read_sentences())
    # logit scale on short texts: what the PPO reward will look like
    sample = prefixes[:2000]
    enc = tok(sample, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits.float()
    pos = logits[:, 1].numpy()
    return {
        "test_accuracy_whole": round(acc_whole, 4),
        "test_accuracy_16_token_prefix": round(acc_prefix, 4),
        "test_reviews": len(texts),
        "max_length": tok.model_max_length,
        "prefix_positive_logit_mean": round(float(pos.mean()), 3),
        "prefix_positive_logit_std": round(float(pos.std()), 3),
        "prefix_positive_logit_p5_p95": [round(float(np.percentile(pos, 5)), 3), round(float(np.percentile(pos, 95)), 3)],
        **sent,
    }


def lm_metrics(model_dir: Path, data_dir: Path, n_samples: int = 10, seed: int = 0) -> dict:
    """Perplexity on 1,000 seeded test reviews (128-token windows) and samples from "This movie"."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from course_instructor.builders.lm import perplexity

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    texts = read_imdb_split(data_dir, "test")
    idx = np.random.default_rng(PPL_SEED).choice(len(texts), size=PPL_REVIEWS, replace=False)
    ppl = perplexity(model, tok, [texts[i] for i in idx], model.config.n_positions)
    torch.manual_seed(seed)
    enc = tok(["This movie"] * n_samples, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=30, do_sample=True, top_k=0, top_p=1.0,
                             pad_token_id=tok.eos_token_id)
    samples = [tok.decode(o, skip_special_tokens=True) for o in out]
    return {"test_perplexity": round(ppl, 1), "ppl_reviews": PPL_REVIEWS, "ppl_window_tokens": model.config.n_positions,
            "samples_this_movie": samples, "sample_seed": seed}


def load_seconds(model_dir: Path, kind: str) -> float:
    """Wall time to load model + tokenizer from the folder (best of 3), in seconds."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    cls = AutoModelForCausalLM if kind == "lm" else AutoModelForSequenceClassification
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        cls.from_pretrained(model_dir)
        AutoTokenizer.from_pretrained(model_dir)
        best = min(best, time.perf_counter() - t0)
    return round(best, 2)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Recompute the bundled assets' model-card figures.")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--assets", type=Path, default=ASSETS_DIR)
    p.add_argument("--only", choices=("all", "classifier", "lm"), default="all", help="which models to measure")
    args = p.parse_args(argv)
    report = {}
    cls_dir = args.assets / "distilbert-imdb-mini"
    if cls_dir.is_dir() and args.only in ("all", "classifier"):
        report["distilbert-imdb-mini"] = {**classifier_metrics(cls_dir, args.data_dir),
                                          "load_seconds": load_seconds(cls_dir, "classifier")}
    lm_dir = args.assets / "gpt2-imdb-mini"
    if lm_dir.is_dir() and args.only in ("all", "lm"):
        report["gpt2-imdb-mini"] = {**lm_metrics(lm_dir, args.data_dir), "load_seconds": load_seconds(lm_dir, "lm")}
    report["sizes_mb"] = {d.name: round(folder_size_mb(d), 2) for d in sorted(args.assets.iterdir()) if d.is_dir()}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
