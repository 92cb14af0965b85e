"""course_lib.data: the prompt dataset (IMDb reviews cut to 2-8 token queries); the reference collator."""
import numpy as np
import pandas as pd
import pytest
import torch

from course_lib.assets import AssetError, write_manifest
from course_lib.config import make_config
from course_instructor.reference import collator
from course_lib.data import IMDB_SPLITS, build_dataset, load_imdb, numpy_seed


@pytest.fixture(scope="module")
def cpu_config():
    return make_config("cpu")


@pytest.fixture(scope="module")
def train_frame(imdb_parquet_dir):
    return pd.read_parquet(imdb_parquet_dir / "train.parquet")


@pytest.fixture(scope="module")
def prompts(cpu_config, gpt2_tokenizer, imdb_parquet_dir):
    """The training prompts built with the config's seed (0)."""
    return build_dataset(cpu_config, gpt2_tokenizer, source=imdb_parquet_dir)


def lengths(ds) -> list[int]:
    return [len(ids) for ids in ds["input_ids"]]


def col(ds, name) -> list:
    """A column as a plain list (datasets 4+ return a lazy ``Column``); tensors become Python values."""
    return [v.tolist() if isinstance(v, torch.Tensor) else v for v in ds[name]]


def test_fixture_has_the_imdb_schema_and_both_kinds_of_review(train_frame):
    assert list(train_frame.columns) == ["text", "label"]
    assert train_frame["label"].dtype == np.int64
    chars = train_frame["text"].str.len()
    assert (chars <= 200).sum() == 4 and (chars == 200).sum() == 1 and (chars > 200).sum() == 40


def test_keeps_only_reviews_longer_than_200_characters(prompts, train_frame):
    long = train_frame[train_frame["text"].str.len() > 200]
    assert col(prompts, "review") == long["text"].tolist()  # same reviews, same order
    assert col(prompts, "label") == long["label"].tolist()
    assert all(len(r) > 200 for r in col(prompts, "review"))
    assert set(prompts.column_names) == {"review", "label", "input_ids", "query"}


def test_prompts_are_2_to_8_tokens_both_ends_included(prompts):
    n = lengths(prompts)
    assert min(n) == 2 and max(n) == 8  # LengthSampler's upper bound is exclusive: the +1 matters
    assert set(n) <= set(range(2, 9))


def test_prompts_are_the_start_of_the_review_and_decode_to_query(prompts, gpt2_tokenizer):
    for row in prompts:
        ids = row["input_ids"]
        assert isinstance(ids, torch.Tensor) and ids.dim() == 1 and ids.dtype == torch.int64
        full = gpt2_tokenizer(row["review"])["input_ids"]
        assert ids.tolist() == full[: len(ids)]
        assert gpt2_tokenizer.decode(ids) == row["query"]
        assert row["review"].startswith(row["query"])


def test_same_seed_repeats_exactly(cpu_config, gpt2_tokenizer, imdb_parquet_dir, prompts):
    again = build_dataset(cpu_config, gpt2_tokenizer, source=imdb_parquet_dir, seed=0)
    assert lengths(again) == lengths(prompts)
    assert col(again, "query") == col(prompts, "query")


def test_different_seed_differs(cpu_config, gpt2_tokenizer, imdb_parquet_dir, prompts):
    other = build_dataset(cpu_config, gpt2_tokenizer, source=imdb_parquet_dir, seed=1)
    assert len(other) == len(prompts) == 40
    assert lengths(other) != lengths(prompts)


def test_seed_defaults_to_the_config_seed(gpt2_tokenizer, imdb_parquet_dir):
    by_config = build_dataset(make_config("cpu", seed=1), gpt2_tokenizer, source=imdb_parquet_dir)
    explicit = build_dataset(make_config("cpu", seed=5), gpt2_tokenizer, source=imdb_parquet_dir, seed=1)
    assert lengths(by_config) == lengths(explicit)


def test_numpy_global_state_is_unchanged(cpu_config, gpt2_tokenizer, imdb_parquet_dir):
    np.random.seed(1234)
    before = np.random.get_state()
    build_dataset(cpu_config, gpt2_tokenizer, source=imdb_parquet_dir)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    draw = np.random.random(3)
    np.random.seed(1234)
    assert np.array_equal(draw, np.random.random(3))


def test_numpy_seed_restores_state_even_on_error():
    np.random.seed(7)
    expected = np.random.random()
    np.random.seed(7)
    with pytest.raises(RuntimeError):
        with numpy_seed(99):
            np.random.random()
            raise RuntimeError("boom")
    assert np.random.random() == expected
    with numpy_seed(None):  # no seed: the global stream simply continues
        np.random.seed(3)
    assert np.random.random() == np.random.RandomState(3).random_sample()


def test_train_rows_keeps_the_first_rows(gpt2_tokenizer, imdb_parquet_dir, train_frame):
    ds = build_dataset(make_config("cpu", train_rows=10), gpt2_tokenizer, source=imdb_parquet_dir)
    head = train_frame.head(10)
    assert col(ds, "review") == head[head["text"].str.len() > 200]["text"].tolist()
    assert len(ds) == 6


def test_test_split(cpu_config, gpt2_tokenizer, imdb_parquet_dir):
    frame = pd.read_parquet(imdb_parquet_dir / "test.parquet")
    ds = build_dataset(cpu_config, gpt2_tokenizer, split="test", source=imdb_parquet_dir)
    assert col(ds, "review") == frame[frame["text"].str.len() > 200]["text"].tolist()
    assert len(ds) == 8


def test_no_long_review_is_a_value_error(tmp_path, cpu_config, gpt2_tokenizer):
    short = ["Great film, loved every minute.", "Boring.", "x" * 200]
    pd.DataFrame({"text": short, "label": np.array([1, 0, 0], dtype=np.int64)}).to_parquet(
        tmp_path / "train.parquet", index=False)
    with pytest.raises(ValueError, match="longer than 200 characters"):
        build_dataset(cpu_config, gpt2_tokenizer, source=tmp_path)


@pytest.mark.parametrize("split", ["validation", "Train", ""])
def test_unknown_split_names_the_valid_ones(cpu_config, gpt2_tokenizer, imdb_parquet_dir, split):
    with pytest.raises(ValueError) as err:
        build_dataset(cpu_config, gpt2_tokenizer, split=split, source=imdb_parquet_dir)
    assert f"valid splits: {', '.join(IMDB_SPLITS)}" in str(err.value)
    assert IMDB_SPLITS == ("train", "test", "unsupervised")


def test_load_imdb_from_a_parquet_file(imdb_parquet_dir, train_frame):
    ds = load_imdb(imdb_parquet_dir / "train.parquet")
    assert ds.column_names == ["text", "label"]
    assert col(ds, "text") == train_frame["text"].tolist() and col(ds, "label") == train_frame["label"].tolist()


def test_load_imdb_missing_parquet_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        load_imdb(tmp_path / "nope.parquet")


def test_load_imdb_folder_without_the_split_names_the_splits_there(imdb_parquet_dir):
    with pytest.raises(FileNotFoundError) as err:
        load_imdb(imdb_parquet_dir, split="unsupervised")
    assert "no unsupervised.parquet" in str(err.value)
    assert "splits there: test, train" in str(err.value)


def test_folder_with_manifest_is_verified(tmp_path, imdb_parquet_dir):
    folder = tmp_path / "imdb-copy"
    folder.mkdir()
    data = (imdb_parquet_dir / "test.parquet").read_bytes()
    (folder / "test.parquet").write_bytes(data)
    write_manifest(folder)
    assert len(load_imdb(folder, split="test")) == 12
    (folder / "test.parquet").write_bytes(data[:-10] + b"\0" * 10)  # same size, other bytes
    import os
    st = (folder / "test.parquet").stat()
    os.utime(folder / "test.parquet", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssetError, match="test.parquet is corrupt"):
        load_imdb(folder, split="test")


def test_collator_on_the_lab_example():
    a = {"input_ids": torch.tensor([1212, 3807]), "query": "This movie", "review": "This movie was great."}
    b = {"input_ids": torch.tensor([40, 373, 845]), "query": "I was very", "review": "I was very bored."}
    out = collator([a, b])
    assert list(out) == ["input_ids", "query", "review"]
    assert out["query"] == ["This movie", "I was very"]
    assert out["review"] == ["This movie was great.", "I was very bored."]
    assert out["input_ids"][0] is a["input_ids"] and out["input_ids"][1] is b["input_ids"]  # not stacked


def test_collator_on_dataset_rows(prompts):
    rows = [prompts[i] for i in range(3)]
    out = collator(rows)
    assert out["query"] == col(prompts, "query")[:3]
    assert [t.tolist() for t in out["input_ids"]] == col(prompts, "input_ids")[:3]


def test_collator_accepts_keys_in_another_order():
    assert collator([{"a": 1, "b": 2}, {"b": 4, "a": 3}]) == {"a": [1, 3], "b": [2, 4]}


def test_collator_empty_batch_is_a_value_error():
    with pytest.raises(ValueError, match="empty batch"):
        collator([])


def test_collator_different_keys_is_a_value_error():
    with pytest.raises(ValueError, match=r"sample 1 has keys \['a'\], expected \['a', 'b'\]"):
        collator([{"a": 1, "b": 2}, {"a": 3}])
