"""Build ``imdb-mini``: a balanced, seeded IMDb subset in the ``stanfordnlp/imdb`` schema.

Columns ``text`` (raw review, ``<br />`` tags kept as in the original) and
``label`` (0 = negative, 1 = positive), one parquet file per split.  The
train split feeds the cpu profile's prompts and PPO; the test split gives
held-out prompts for evaluation.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from course_instructor.builders.common import log, read_imdb_split


def balanced_sample(texts: list[str], labels: list[int], per_label: int, rng: np.random.Generator):
    """``per_label`` rows of each label, shuffled together."""
    labels_arr = np.asarray(labels)
    picked = []
    for lab in (0, 1):
        idx = np.flatnonzero(labels_arr == lab)
        if len(idx) < per_label:
            raise ValueError(f"only {len(idx)} reviews with label {lab}, need {per_label}")
        picked.append(rng.choice(idx, size=per_label, replace=False))
    order = rng.permutation(np.concatenate(picked))
    return [texts[i] for i in order], [int(labels[i]) for i in order]


def build(data_dir: Path, out: Path, train_per_label: int = 2000, test_per_label: int = 500, seed: int = 2024) -> dict:
    import pandas as pd

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    info = {"seed": seed}
    for split, per_label in (("train", train_per_label), ("test", test_per_label)):
        texts, labels = read_imdb_split(data_dir, split, with_labels=True)
        t, y = balanced_sample(texts, labels, per_label, rng)
        df = pd.DataFrame({"text": t, "label": pd.Series(y, dtype="int64")})
        tmp = out / f".{split}.parquet.tmp"
        df.to_parquet(tmp, index=False, compression="zstd")
        tmp.replace(out / f"{split}.parquet")
        info[split] = {"rows": len(df), "per_label": per_label,
                       "longer_than_200_chars": int((df.text.str.len() > 200).sum())}
        log(f"imdb-mini {split}: {len(df)} rows")
    return info
