"""Shared pieces of the asset builders: reading ../shared/data, seeding, logging."""
from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import numpy as np

IMDB_SPLITS = ("train", "test", "unsupervised")


LOG_FILE: Path | None = None  # set by the orchestrator: every log line is also appended there


def log(msg: str) -> None:
    """Timestamped line on stderr, and in the build log file when one is set."""
    line = f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {msg}"
    print(line, file=sys.stderr, flush=True)
    if LOG_FILE is not None:
        with open(LOG_FILE, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def build_note() -> str:
    """The maintainer's sentence for the model cards (environment variable ``BUILD_NOTE``), or ''."""
    return os.environ.get("BUILD_NOTE", "")


def set_build_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def clean_review(text: str) -> str:
    """IMDb reviews keep the HTML line breaks of the original pages; make them spaces."""
    return " ".join(text.replace("<br />", " ").split())


def read_imdb_split(data_dir: Path, split: str, with_labels: bool = False):
    """Texts (and labels) of one split of the full IMDb parquet files in ``data_dir/imdb``."""
    import pandas as pd

    if split not in IMDB_SPLITS:
        raise ValueError(f"unknown IMDb split {split!r}; valid: {', '.join(IMDB_SPLITS)}")
    path = Path(data_dir) / "imdb" / f"{split}.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: `make assets` needs ../shared/data (see its README)")
    df = pd.read_parquet(path)
    if with_labels:
        return df["text"].tolist(), df["label"].tolist()
    return df["text"].tolist()


def gpt2_tokenizer_from_shared(data_dir: Path):
    """The real GPT-2 tokenizer (50,257 tokens); pad = EOS as in the lab."""
    from transformers import GPT2TokenizerFast

    d = Path(data_dir) / "tokenizers" / "gpt2"
    tok = GPT2TokenizerFast(vocab_file=str(d / "vocab.json"), merges_file=str(d / "merges.txt"))
    tok.pad_token = tok.eos_token
    tok.model_max_length = 1024
    return tok


def bert_tokenizer_from_shared(data_dir: Path, max_length: int):
    """The real uncased BERT WordPiece tokenizer (30,522 tokens)."""
    from transformers import DistilBertTokenizerFast

    d = Path(data_dir) / "tokenizers" / "bert-base-uncased"
    return DistilBertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True, model_max_length=max_length)


def builder_parser(description: str, work_default: str, seed_default: int):
    """The arguments every model builder takes: data, output, work folder, seed, threads."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-dir", type=Path, required=True, help="../shared/data")
    p.add_argument("--out", type=Path, required=True, help="output model folder")
    p.add_argument("--work", type=Path, default=Path(work_default), help="checkpoints, logs, train_info.json")
    p.add_argument("--seed", type=int, default=seed_default)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    return p
