"""Shared fixtures of the course_lib tests, and the guards every test runs under.

* No network: any connection (or name lookup) to a non-loopback address raises
  ``RuntimeError`` for the whole session.  Loopback and Unix sockets stay
  allowed: the notebook tests talk to Jupyter kernels through them.  The same
  guard (``tests/netguard.py``) reaches the processes a test starts when it
  runs them with ``netguard.guarded_env()``.
* The Hugging Face libraries are switched offline and their caches point to a
  temporary folder *before* anything imports them (that is why it happens at
  import time of this file, not in a fixture).
* Tiny random models (a 2-layer GPT-2 with the real GPT-2 tokenizer, a 1-layer
  DistilBERT classifier) and a few IMDb-shaped parquet files stand in for the
  bundled assets; building them takes a second.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# ---- offline Hugging Face, private caches (before any HF import) ------------
_HF_TMP = tempfile.mkdtemp(prefix="course_lib-tests-hf-")
os.environ.update({
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HOME": _HF_TMP,
    "HF_DATASETS_CACHE": os.path.join(_HF_TMP, "datasets"),
})
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest-xdist workers on the two cores: each, and every kernel or
    # process it starts, computes with one thread (two threads per process would fight for cores)
    os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})

import pytest  # noqa: E402

# graded courses (run A: honest students; run B: attacks), shared by the grading test modules
from grading_fixtures import attack_run, graded_course  # noqa: E402,F401
import netguard  # noqa: E402  (tests/ is on sys.path: pytest puts a conftest's folder there)

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR / "data"
# the real GPT-2 tokenizer files (vocab.json, merges.txt) ship with the bundled policy
GPT2_TOKENIZER_DIR = TESTS_DIR.parent / "course_lib" / "assets" / "gpt2-imdb-mini"

# ---- no network (tests/netguard.py; processes the tests start get it via guarded_site/) ----
_GUARD: pytest.MonkeyPatch | None = None


def pytest_configure(config):
    """Install the network guard before collection, so imports are covered too."""
    global _GUARD
    _GUARD = pytest.MonkeyPatch()
    netguard.install(_GUARD.setattr)


def pytest_collection_modifyitems(session, config, items):
    """Slow tests first (a stable sort): with pytest-xdist the long ones start at once instead of ending the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_unconfigure(config):
    if _GUARD is not None:
        _GUARD.undo()
    shutil.rmtree(_HF_TMP, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """The models here are tiny: one thread is faster than two fighting other jobs for the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- tokenizers and tiny models ------------------------------------------------
@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """The real GPT-2 tokenizer (50,257 tokens), pad = EOS as in the lab."""
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast(vocab_file=str(GPT2_TOKENIZER_DIR / "vocab.json"),
                            merges_file=str(GPT2_TOKENIZER_DIR / "merges.txt"))
    tok.pad_token = tok.eos_token
    return tok


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory, gpt2_tokenizer):
    """A 2-layer random GPT-2 (GPT-2 vocabulary) and its tokenizer, saved with a SHA256SUMS manifest.

    With the manifest, ``course_lib.models`` verifies the folder before loading
    it (``assets.resolve``), exactly as it does the bundled assets.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from course_lib.assets import write_manifest

    folder = tmp_path_factory.mktemp("tiny-policy")
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=50257, n_layer=2, n_embd=32, n_head=2, n_positions=64)
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    gpt2_tokenizer.save_pretrained(folder)
    write_manifest(folder)
    return folder


CLASSIFIER_WORDS = ("the a an and of to is was it this that i movie film great good bad terrible "
                    "awful wonderful loved hated boring acting plot story . , ! ?").split()
#: Half-way between the texts' POSITIVE evidence, so some texts come out POSITIVE-first
#: and some NEGATIVE-first (the order the sentiment pipeline reports them in).
CLASSIFIER_THRESHOLD = 3.0


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory):
    """A 1-layer random DistilBERT sentiment classifier (NEGATIVE/POSITIVE) and a tiny WordPiece tokenizer.

    Its head is set so that logit(NEGATIVE) = -logit(POSITIVE) and the sign
    varies from text to text; a random head alone puts POSITIVE first for
    every text, which would hide an index-based lookup.
    """
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

    from course_lib.assets import write_manifest

    folder = tmp_path_factory.mktemp("tiny-classifier")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CLASSIFIER_WORDS]) + "\n",
                     encoding="utf-8")
    tok = DistilBertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(0)
    cfg = DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=1, n_heads=2, hidden_dim=64,
                           initializer_range=0.5,
                           id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = DistilBertForSequenceClassification(cfg)
    with torch.no_grad():
        model.classifier.weight[0] = -model.classifier.weight[1]
        model.classifier.bias.copy_(torch.tensor([CLASSIFIER_THRESHOLD, -CLASSIFIER_THRESHOLD]))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_manifest(folder)
    return folder


# ---- IMDb-shaped data -----------------------------------------------------------
SHORT_REVIEWS = [
    "Loved it. The cast is great and the ending made me smile.",
    "Dull, slow and far too long. I fell asleep twice before the halfway mark.",
    "An okay film with one good scene; the rest is forgettable filler.",
]
# exactly 200 characters: not "longer than 200", so it must be dropped
REVIEW_200 = ("I expected a lot more from this director. The story starts well, the first twenty "
              "minutes are tense and funny, but then it loses its way and never really recovers. "
              "Worth a rental, but not a lot more!!")
assert len(REVIEW_200) == 200
LONG_REVIEWS = [
    "This movie was a wonderful surprise. I went in expecting another forgettable romantic comedy "
    "and came out having laughed harder than I have in years. The two leads have real chemistry, "
    "the supporting cast steals every scene they are in, and the script actually trusts the "
    "audience to keep up. The last act drags a little, but I would happily watch it again.",
    "I really wanted to like this film. The trailer promised a gritty crime story with a great "
    "cast, but what we got was two hours of characters explaining the plot to each other. The "
    "dialogue is wooden, the twists are obvious from the first scene, and the editing is so "
    "choppy that the action sequences are impossible to follow. A waste of a talented cast.",
    "A quiet, patient drama about a family farm in decline. Nothing much happens for long "
    "stretches, and that is the point: the camera lingers on faces, on weather, on small "
    "gestures that say more than the dialogue ever could. The performances are superb, "
    "especially the grandmother, and the final shot stayed with me for days afterwards.",
    "Terrible. The special effects look like they were finished in a weekend, the villain has "
    "no motivation beyond being evil, and the hero makes one stupid decision after another. "
    "Even the music is annoying, blasting away at full volume to tell you what to feel. I "
    "cannot believe this got a theatrical release when so many better films go straight to video.",
    "One of the best documentaries I have seen. The director follows three musicians over a "
    "decade and lets their stories unfold without narration or easy answers. It is funny, sad "
    "and often surprising, and the concert footage near the end is electrifying. If you care "
    "about music, or about how people keep going when things go wrong, do not miss it.",
    "The first half of this horror movie is genuinely creepy: an old house, strange noises, a "
    "family slowly turning on each other. Then the monster appears and everything falls apart. "
    "The creature design is silly, the rules keep changing, and the ending simply stops rather "
    "than concluding. Great atmosphere, wasted on a script that did not know where to go.",
    "My kids loved it and, to my surprise, so did I. The animation is gorgeous, the jokes work "
    "on two levels without ever getting crude, and the songs are catchy enough that we have been "
    "singing them in the car all week. The story is simple, but it has a real heart and a "
    "message about friendship that never feels preachy. Highly recommended for families.",
    "Overlong, self-important and dull. The lead actor mumbles through every scene as if he "
    "were bored by the material, and frankly I understood why. Three hours of slow tracking "
    "shots and meaningful silences do not add up to a masterpiece, no matter what the critics "
    "say. I checked my watch more often than I did in any film this year.",
]
N_LONG_TRAIN = 40  # enough rows that two seeds cannot draw the same prompt lengths


def imdb_frame(rows: list[tuple[str, int]]):
    import pandas as pd

    return pd.DataFrame({"text": pd.Series([t for t, _ in rows], dtype=object),
                         "label": pd.Series([lbl for _, lbl in rows], dtype="int64")})


def _long_rows(n: int) -> list[tuple[str, int]]:
    # cycle through the reviews, numbering them so rows differ; label: 1 for the even ones (positive)
    return [(f"{LONG_REVIEWS[i % len(LONG_REVIEWS)]} (Review {i + 1}.)", int(i % len(LONG_REVIEWS) in (0, 2, 4, 6)))
            for i in range(n)]


@pytest.fixture(scope="session")
def imdb_parquet_dir(tmp_path_factory):
    """``train.parquet`` and ``test.parquet`` in the stanfordnlp/imdb schema (text: str, label: int64).

    train: the short reviews (<= 200 characters, one exactly 200) interleaved
    with ``N_LONG_TRAIN`` long ones; test: the short ones and the 8 long ones.
    """
    folder = tmp_path_factory.mktemp("imdb")
    short = [(t, i % 2) for i, t in enumerate(SHORT_REVIEWS + [REVIEW_200])]
    long_train = _long_rows(N_LONG_TRAIN)
    train = []
    for i, row in enumerate(long_train):
        train.append(row)
        if i < len(short):
            train.append(short[i])
    imdb_frame(train).to_parquet(folder / "train.parquet", index=False)
    test = short + [(t, int(i % 2 == 0)) for i, t in enumerate(LONG_REVIEWS)]
    imdb_frame(test).to_parquet(folder / "test.parquet", index=False)
    return folder


# ---- a local stand-in for the Hugging Face Hub (tests/hub_standin.py) -------------------------
@pytest.fixture(scope="session")
def hub_standin(tmp_path_factory):
    """An ``HF_HOME`` holding tiny ``lvwerra/gpt2-imdb``, ``lvwerra/distilbert-imdb`` and a small ``stanfordnlp/imdb``.

    Processes started with ``hub_standin.standin_env(path)`` take the gpu
    profile's real code path against it, offline.
    """
    import hub_standin as standin

    return standin.build(tmp_path_factory.mktemp("hf-home"))


@pytest.fixture(scope="session")
def lab_run(tmp_path_factory):
    """One ``make run`` (``course_lib.run_lab``, cpu profile): ``(exit status, output folder)``.

    Shared by every test that reads the executed notebooks (``test_notebooks``,
    ``test_notebook_claims``); those tests carry ``pytest.mark.xdist_group("lab-run")``
    so that pytest-xdist runs them in one worker and the lab runs once.
    ``LAB_RUN_DIR=<folder>`` reuses the output of an earlier ``make run`` (e.g.
    ``build``) instead of running the lab again.
    """
    from course_lib import run_lab

    if os.environ.get("LAB_RUN_DIR"):
        return 0, Path(os.environ["LAB_RUN_DIR"]).resolve()
    out = tmp_path_factory.mktemp("make-run")
    code = run_lab.main(["--profile", "cpu", "--out", str(out)])
    return code, out
