"""A local stand-in for the Hugging Face Hub: what the gpu profile loads, in a temporary ``HF_HOME``.

:func:`build` writes, under one folder used as ``HF_HOME``:

* ``hub/models--lvwerra--gpt2-imdb``: a tiny random GPT-2 (2 layers x 32, the
  real 50,257-token GPT-2 tokenizer, 1,024 positions);
* ``hub/models--lvwerra--distilbert-imdb``: a copy of the bundled DistilBERT
  sentiment classifier (real uncased BERT vocabulary, labels
  ``{0: "NEGATIVE", 1: "POSITIVE"}``): the lab's own tests need a reward
  model that tells "loved it" from "hated it", which random weights do not;
* ``hub/datasets--stanfordnlp--imdb``: the data set repository as the Hub
  serves it (``README.md`` whose YAML declares the ``plain_text`` config, and
  ``plain_text/{train,test,unsupervised}-00000-of-00001.parquet``) with a few
  hundred real IMDb reviews from the bundled subset;
* ``datasets/stanfordnlp___imdb/plain_text/0.0.0/<revision>``: what
  ``load_dataset("stanfordnlp/imdb")`` leaves in the datasets cache after an
  online load, prepared from those parquet files by datasets' own parquet
  builder with the online load's config name, data set name and revision.

Each repository has the hub cache layout that ``huggingface_hub`` writes:
``refs/main`` holds the revision, the files sit in ``snapshots/<revision>/``.

Why both copies of the data set: with ``HF_HUB_OFFLINE=1``, datasets 5.0.1
never reads a data set repository from the hub cache (``dataset_module_factory``
raises ``OfflineModeIsEnabled`` before looking there); it falls back to
``CachedDatasetModuleFactory``, which reloads the Arrow files an earlier online
``load_dataset`` prepared under ``$HF_DATASETS_CACHE/stanfordnlp___imdb/``.
transformers, by contrast, reads models straight from the hub cache.

Run a process against it with :func:`standin_env`: ``HF_HOME`` set, the three
offline switches on, no other Hugging Face cache variable.  course_lib then
takes its gpu path unchanged; nothing in it knows this is not the Hub.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "course_lib" / "assets"
POLICY_REPO = "lvwerra/gpt2-imdb"
REWARD_REPO = "lvwerra/distilbert-imdb"
DATASET_REPO = "stanfordnlp/imdb"
#: rows of the stand-in's splits (train: enough long reviews for several batches of 8 or one of 128)
SPLIT_ROWS = {"train": 300, "test": 100, "unsupervised": 20}
#: the labels of stanfordnlp/imdb, in ``ClassLabel`` order
IMDB_LABELS = ["neg", "pos"]

_HF_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE",
                 "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def revision_of(repo_id: str) -> str:
    """A fixed 40-hex "commit" per repository, as ``refs/main`` holds on the real Hub cache."""
    return hashlib.sha1(f"course_lib stand-in of {repo_id}".encode()).hexdigest()


def snapshot_dir(hf_home: Path, repo_id: str, repo_type: str = "model") -> Path:
    """``<HF_HOME>/hub/<type>s--<owner>--<name>/snapshots/<revision>``, with ``refs/main`` written."""
    repo = Path(hf_home) / "hub" / f"{repo_type}s--{repo_id.replace('/', '--')}"
    rev = revision_of(repo_id)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(rev, encoding="utf-8")  # no newline, as huggingface_hub writes it
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def _card(folder: Path, what: str) -> None:
    (folder / "README.md").write_text(f"# Stand-in (tests/hub_standin.py)\n\n{what}\n", encoding="utf-8")


def write_policy(hf_home: Path) -> Path:
    """The ``lvwerra/gpt2-imdb`` stand-in: random GPT-2 weights, GPT-2's real tokenizer files."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    snap = snapshot_dir(hf_home, POLICY_REPO)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_layer=2, n_embd=32, n_head=2, n_positions=1024)
    GPT2LMHeadModel(cfg).save_pretrained(snap, safe_serialization=True)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        shutil.copyfile(ASSETS / "gpt2-imdb-mini" / name, snap / name)
    tok_cfg = json.loads((ASSETS / "gpt2-imdb-mini" / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_cfg["model_max_length"] = 1024  # GPT-2's context, as in the real repository
    (snap / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2), encoding="utf-8")
    _card(snap, f"Plays `{POLICY_REPO}`: a random GPT-2 with the real 50,257-token tokenizer.")
    return snap


def write_reward(hf_home: Path) -> Path:
    """The ``lvwerra/distilbert-imdb`` stand-in: the bundled DistilBERT sentiment classifier under the Hub name.

    Not random weights, unlike the policy: the lab's own tests (notebook 3's
    exercise 8) check that the reward model scores "twice and loved it."
    above "twice and hated it.", which only a trained classifier does.  The
    bundled one is a DistilBERT with the real uncased BERT vocabulary and the
    labels ``{0: "NEGATIVE", 1: "POSITIVE"}``, 7 MB.
    """
    snap = snapshot_dir(hf_home, REWARD_REPO)
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                 "special_tokens_map.json"):
        shutil.copyfile(ASSETS / "distilbert-imdb-mini" / name, snap / name)
    _card(snap, f"Plays `{REWARD_REPO}`: a copy of the bundled classifier `distilbert-imdb-mini`.")
    return snap


_DATASET_CARD = """---
configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
  - split: unsupervised
    path: plain_text/unsupervised-*
  default: true
dataset_info:
  config_name: plain_text
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': neg
          '1': pos
---
# Stand-in (tests/hub_standin.py)

Plays `stanfordnlp/imdb`: real IMDb reviews from the bundled subset, a few hundred rows per split.
"""


def write_dataset(hf_home: Path) -> Path:
    """The ``stanfordnlp/imdb`` repository in the hub cache, then the datasets cache an online load leaves."""
    import pandas as pd
    from datasets import ClassLabel, Dataset, Features, Value

    snap = snapshot_dir(hf_home, DATASET_REPO, repo_type="dataset")
    (snap / "README.md").write_text(_DATASET_CARD, encoding="utf-8")
    (snap / "plain_text").mkdir(exist_ok=True)
    features = Features({"text": Value("string"), "label": ClassLabel(names=IMDB_LABELS)})
    train = pd.read_parquet(ASSETS / "imdb-mini" / "train.parquet")
    test = pd.read_parquet(ASSETS / "imdb-mini" / "test.parquet")
    frames = {
        "train": train.iloc[: SPLIT_ROWS["train"]],
        "test": test.iloc[: SPLIT_ROWS["test"]],
        # the unsupervised split has no labels: -1, as on the Hub
        "unsupervised": train.iloc[-SPLIT_ROWS["unsupervised"]:].assign(label=-1),
    }
    files = {}
    for split, frame in frames.items():
        ds = Dataset.from_dict({"text": frame["text"].tolist(), "label": frame["label"].astype(int).tolist()},
                               features=features)
        files[split] = snap / "plain_text" / f"{split}-00000-of-00001.parquet"
        ds.to_parquet(str(files[split]))
    _prepare_datasets_cache(hf_home, files)
    return snap


def _prepare_datasets_cache(hf_home: Path, files: dict[str, Path]) -> Path:
    """Run datasets' parquet builder as ``load_dataset("stanfordnlp/imdb")`` does online; place its output.

    Online, ``HubDatasetModuleFactory`` gives the parquet builder the
    repository's ``plain_text`` config (from the card's YAML),
    ``dataset_name="imdb"``, ``repo_id`` and the commit as ``hash``; the
    prepared Arrow files (``imdb-<split>.arrow``) and ``dataset_info.json``
    land in ``<HF_DATASETS_CACHE>/stanfordnlp___imdb/plain_text/0.0.0/<commit>``.
    The builder accepts ``repo_id`` only with ``hf://`` data files, so here it
    prepares the snapshot's local parquet files without it and the result is
    moved to that folder.
    """
    from datasets.data_files import DataFilesDict
    from datasets.load import configure_builder_class, import_main_class
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    staging = Path(hf_home) / "datasets-staging"
    parquet_cls = import_main_class(_PACKAGED_DATASETS_MODULES["parquet"][0])
    data_files = DataFilesDict.from_patterns({split: [str(f)] for split, f in files.items()})
    config = parquet_cls.BUILDER_CONFIG_CLASS(name="plain_text", data_files=data_files)
    builder_cls = configure_builder_class(parquet_cls, builder_configs=[config], default_config_name="plain_text",
                                          dataset_name="imdb")
    rev = revision_of(DATASET_REPO)
    builder = builder_cls(cache_dir=str(staging), dataset_name="imdb", config_name="plain_text", hash=rev)
    builder.download_and_prepare()
    prepared = Path(builder.cache_dir)
    assert prepared.parts[-4:] == ("imdb", "plain_text", "0.0.0", rev), prepared
    target = Path(hf_home) / "datasets" / "stanfordnlp___imdb" / "plain_text" / "0.0.0" / rev
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(prepared), str(target))
    shutil.rmtree(staging)
    return target


def build(hf_home: Path) -> Path:
    """Write the whole stand-in under ``hf_home`` (a few seconds); returns ``hf_home``."""
    hf_home = Path(hf_home)
    write_policy(hf_home)
    write_reward(hf_home)
    write_dataset(hf_home)
    return hf_home


def standin_env(hf_home: Path, base: dict | None = None) -> dict:
    """Environment for a process that must see the stand-in as the Hub, offline.

    Every Hugging Face cache variable of ``base`` (default ``os.environ``) is
    dropped, so the caches derive from ``HF_HOME`` as on a user's machine.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _HF_VARIABLES}
    env.update({"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1"})
    env.pop("COURSE_PROFILE", None)
    env.pop("COURSE_GRADING", None)
    return env
