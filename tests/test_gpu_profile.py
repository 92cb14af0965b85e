"""The gpu profile, run for real on this CPU against a local stand-in for the Hub (tests/hub_standin.py).

Each test starts Python processes with ``HF_HOME`` pointing at the stand-in
and the Hub's offline switches on, under the tests' network guard
(``netguard.guarded_env``): ``make_config("gpu")``, the loading calls,
``build_dataset``, the training command and the five lab notebooks run
their unchanged code with the Hub names ``lvwerra/gpt2-imdb``,
``lvwerra/distilbert-imdb`` and ``stanfordnlp/imdb``.  Only sizes are
overridden (steps, batch, evaluation prompts), through the command line and
the notebooks' papermill parameters.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import hub_standin as standin
import netguard
from course_lib import run_lab

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").rglob("*.ipynb"))


def _env(hf_home, log):
    env = netguard.guarded_env(standin.standin_env(hf_home), log=log)
    env["OMP_NUM_THREADS"] = "1"  # tiny models: one thread beats two fighting other jobs (as in conftest)
    return env


def _python(code: str, hf_home, log, timeout=300):
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=_env(hf_home, log), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_gpu_profile_loads_the_hub_models_and_builds_the_dataset(hub_standin, tmp_path):
    log = tmp_path / "net.log"
    proc = _python("""
        import json
        from course_lib.config import make_config
        from course_lib.data import build_dataset, load_imdb
        from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer
        from course_lib.reward import labels_of, sentiment_scores

        cfg = make_config("gpu")
        tok = load_tokenizer(cfg.policy_model)
        model = load_policy(cfg.policy_model)
        pipe = load_sentiment_pipeline(cfg.reward_model)
        ds = build_dataset(cfg, tok)
        splits = {s: load_imdb(cfg.dataset, s) for s in ("train", "test", "unsupervised")}
        print(json.dumps({
            "names": [cfg.policy_model, cfg.reward_model, cfg.dataset],
            "batch": [cfg.batch_size, cfg.learning_rate, cfg.steps],
            "tokenizer": [len(tok), tok.eos_token_id, tok.pad_token_id, tok.model_max_length],
            "policy": [model.pretrained_model.config._name_or_path, model.pretrained_model.config.n_layer,
                       hasattr(model, "v_head")],
            "labels": labels_of(pipe),
            "scores": sentiment_scores(pipe, ["A wonderful film.", "A dreadful film."], "POSITIVE"),
            "rows": {s: len(d) for s, d in splits.items()},
            "label_names": splits["train"].features["label"].names,
            "prompts": len(ds),
            "columns": sorted(ds.column_names),
            "queries": [[r["review"], r["input_ids"].tolist(), r["query"]] for r in ds.select(range(20))],
        }))
        """, hub_standin, log)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["names"] == ["lvwerra/gpt2-imdb", "lvwerra/distilbert-imdb", "stanfordnlp/imdb"]
    assert got["batch"] == [128, 1.41e-5, None]
    # GPT-2's tokenizer with the lab's pad = EOS, and the stand-in's own files (1,024-token context)
    assert got["tokenizer"] == [50257, 50256, 50256, 1024]
    assert got["policy"] == ["lvwerra/gpt2-imdb", 2, True]
    assert got["labels"] == ["NEGATIVE", "POSITIVE"]
    assert len(got["scores"]) == 2 and all(isinstance(s, float) for s in got["scores"])
    assert got["rows"] == standin.SPLIT_ROWS
    assert got["label_names"] == standin.IMDB_LABELS
    train = pd.read_parquet(ROOT / "course_lib" / "assets" / "imdb-mini" / "train.parquet").iloc[:300]
    assert got["prompts"] == int((train["text"].str.len() > 200).sum())
    assert got["columns"] == ["input_ids", "label", "query", "review"]
    from transformers import GPT2TokenizerFast
    tok = GPT2TokenizerFast.from_pretrained(str(ROOT / "course_lib" / "assets" / "gpt2-imdb-mini"))
    for review, ids, query in got["queries"]:
        assert 2 <= len(ids) <= 8 and ids == tok(review)["input_ids"][:len(ids)] and query == tok.decode(ids)
    assert netguard.attempts(log) == []


@pytest.mark.slow
def test_gpu_profile_training_command_runs_two_ppo_steps(hub_standin, tmp_path):
    log, out = tmp_path / "net.log", tmp_path / "happy"
    proc = subprocess.run([sys.executable, "-m", "course_lib.train", "--sentiment", "POSITIVE", "--profile", "gpu",
                           "--steps", "2", "--output", str(out), "--set", "batch_size=8", "mini_batch_size=8"],
                          capture_output=True, text=True, timeout=600, env=_env(hub_standin, log), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 steps; mean POSITIVE reward" in proc.stdout
    saved = json.loads((out / "training_stats.json").read_text())
    cfg = saved["config"]
    assert (cfg["profile"], cfg["policy_model"], cfg["reward_model"], cfg["dataset"]) == (
        "gpu", "lvwerra/gpt2-imdb", "lvwerra/distilbert-imdb", "stanfordnlp/imdb")
    assert cfg["learning_rate"] == 1.41e-5 and cfg["batch_size"] == 8
    assert [r["step"] for r in saved["steps"]] == [1, 2]
    assert all(r["env/reward_n"] == 8 for r in saved["steps"])
    assert json.loads((out / "config.json").read_text())["n_layer"] == 2  # the stand-in's weights, tuned
    assert netguard.attempts(log) == []


@pytest.mark.slow
def test_every_lab_notebook_runs_on_the_gpu_profile(hub_standin, tmp_path, monkeypatch):
    log = tmp_path / "net.log"
    env = _env(hub_standin, log)
    for key in set(os.environ) - set(env):
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # papermill's kernels inherit this process's environment
    happy, pessimistic, results = tmp_path / "happy", tmp_path / "pessimistic", tmp_path / "results"
    results.mkdir()
    params = {
        "1_reward_and_data": {},
        "2_ppo_happy": {"live_steps": 2, "batch_size": 8, "output_dir": str(happy)},
        "3_evaluate_and_pessimistic": {"eval_prompts": 16, "live_steps": 2, "batch_size": 8,
                                       "happy_dir": str(happy), "output_dir": str(pessimistic),
                                       "results_dir": str(results)},
        "4_inside_ppo": {"batch_size": 8},
        "5_beyond_ppo": {"n_prompts": 8},
    }
    assert [p.stem for p in SOLUTIONS] == list(params)
    for nb in SOLUTIONS:
        status, seconds, err = run_lab.execute(nb, tmp_path / "executed", {"profile": "gpu", **params[nb.stem]},
                                               cell_timeout=600)
        assert status == "ok", f"{nb.name} failed on the gpu profile: {err}"
        executed = nbformat.read(tmp_path / "executed" / nb.name, as_version=4)
        injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert 'profile = "gpu"' in injected[0].source
    first = nbformat.read(tmp_path / "executed" / "1_reward_and_data.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in first.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "policy model    : lvwerra/gpt2-imdb" in printed and "dataset         : stanfordnlp/imdb" in printed
    for folder, label in ((happy, "POSITIVE"), (pessimistic, "NEGATIVE")):
        saved = json.loads((folder / "training_stats.json").read_text())
        assert saved["config"]["profile"] == "gpu" and saved["config"]["target_label"] == label
        assert len(saved["steps"]) == 2
    summary = json.loads((results / "part3_comparison.json").read_text())
    assert summary["profile"] == "gpu" and summary["n_prompts"] == 16
    assert netguard.attempts(log) == []
