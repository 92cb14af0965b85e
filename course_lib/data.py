"""The prompt dataset of the lab.

Each IMDb review becomes a *query*: its first 2-8 GPT-2 tokens, the length
drawn at random per review (as trl's ``LengthSampler`` draws them).  The policy learns to
continue such openings.  (Batching the rows for PPO is exercise 3: the
trainer of :mod:`course_lib.train` takes whole columns from ``datasets``
instead, so this library holds no collator.)
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

IMDB_SPLITS = ("train", "test", "unsupervised")


@contextmanager
def numpy_seed(seed: int | None):
    """Seed NumPy's global generator inside the block, restoring its state after.

    trl's ``LengthSampler`` draws from the global generator, so this is what
    makes the prompt lengths repeatable without disturbing the caller.
    """
    import numpy as np

    if seed is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def load_imdb(source: str | Path, split: str = "train"):
    """One split of IMDb as a ``datasets.Dataset`` with columns ``text`` and ``label``.

    ``source`` is a Hub name (``"stanfordnlp/imdb"``, ``"imdb"``), a folder
    holding ``<split>.parquet`` files (the bundled subset), or one parquet
    file.  Unknown splits raise ``ValueError`` naming the valid ones.
    """
    from datasets import load_dataset

    from course_lib.assets import resolve

    if split not in IMDB_SPLITS:
        raise ValueError(f"unknown IMDb split {split!r}; valid splits: {', '.join(IMDB_SPLITS)}")
    path = Path(source)
    if str(source).endswith(".parquet"):
        if not path.is_file():
            raise FileNotFoundError(f"parquet file {path} not found")
        return load_dataset("parquet", data_files={split: str(path)}, split=split)
    if path.is_dir():
        folder = Path(resolve(str(path))) if (path / "SHA256SUMS").exists() else path
        f = folder / f"{split}.parquet"
        if not f.is_file():
            have = sorted(p.stem for p in folder.glob("*.parquet"))
            raise FileNotFoundError(f"{folder} has no {split}.parquet (splits there: {', '.join(have) or 'none'})")
        return load_dataset("parquet", data_files={split: str(f)}, split=split)
    return load_dataset(str(source), split=split)


def build_dataset(config, tokenizer, split: str = "train", source: str | Path | None = None,
                  seed: int | None = None):
    """Build the lab's prompt dataset.

    Steps: load IMDb (``source`` or ``config.dataset``), rename ``text`` to
    ``review``, keep reviews longer than ``config.min_review_chars``
    characters, cut each review's token ids to a random length between
    ``config.prompt_min_tokens`` and ``config.prompt_max_tokens`` (both
    inclusive; trl's ``LengthSampler`` excludes its upper bound, hence the
    ``+ 1``), decode them to ``query``, and set the torch format.

    The same ``seed`` (default ``config.seed``) gives the same prompts.
    Returns a ``datasets.Dataset`` with ``review``, ``label``, ``input_ids``
    (a 1-D tensor per row) and ``query``.  Raises ``ValueError`` if no review
    is long enough.
    """
    import numpy as np

    ds = load_imdb(source or config.dataset, split)
    if config.train_rows is not None and split == "train":
        ds = ds.select(range(min(config.train_rows, len(ds))))
    ds = ds.rename_columns({"text": "review"})
    min_chars = config.min_review_chars
    ds = ds.filter(lambda row: len(row["review"]) > min_chars, keep_in_memory=True)
    if len(ds) == 0:
        raise ValueError(f"no review in {source or config.dataset} ({split}) is longer than {min_chars} characters")
    # trl's LengthSampler draws np.random.choice(range(min, max + 1)) from NumPy's *global* generator;
    # a private generator seeded the same way draws the same lengths without reading or moving the
    # caller's global state.
    rng = np.random.RandomState(config.seed if seed is None else seed)
    lengths = list(range(config.prompt_min_tokens, config.prompt_max_tokens + 1))

    def cut_batch(batch):
        # Truncating at the longest prompt gives the same first tokens as encoding the
        # whole review, without warnings about reviews longer than the model's context.
        ids = tokenizer(batch["review"], truncation=True, max_length=config.prompt_max_tokens)["input_ids"]
        batch["input_ids"] = [seq[: int(rng.choice(lengths))] for seq in ids]
        batch["query"] = [tokenizer.decode(seq) for seq in batch["input_ids"]]
        return batch

    ds = ds.map(cut_batch, batched=True, batch_size=256, keep_in_memory=True, load_from_cache_file=False)
    ds.set_format(type="torch")
    return ds
