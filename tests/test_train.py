"""course_lib.train: the PPO loop, checkpoints with JSON statistics, the command line."""
import json

import pytest
import torch

from course_lib import train
from course_lib.config import make_config
from course_lib.data import build_dataset
from course_lib.models import load_policy, load_sentiment_pipeline, load_tokenizer


def tiny_cfg(policy, classifier, data, **over):
    values = dict(policy_model=str(policy), reward_model=str(classifier), dataset=str(data),
                  batch_size=8, mini_batch_size=4, steps=2, learning_rate=1e-4)
    values.update(over)
    return make_config("cpu", **values)


@pytest.fixture(scope="module")
def tiny_run(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir, tmp_path_factory):
    cfg = tiny_cfg(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir)
    out = tmp_path_factory.mktemp("ckpt") / "happy"
    records, trainer = train.run(cfg, out, progress=False)
    return cfg, records, out


def test_run_returns_json_records_with_the_documented_keys(tiny_run):
    cfg, records, _ = tiny_run
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        for key in ("env/reward_mean", "env/reward_std", "ppo/loss/total", "ppo/loss/policy", "ppo/loss/value",
                    "objective/kl", "objective/entropy", "time/rollout/generate", "time/rollout/score",
                    "time/ppo/optimise", "time/step"):
            assert isinstance(r[key], float), key
        assert r["time/step"] >= r["time/rollout/generate"]
    json.dumps(records)  # plain data, no numpy


def test_checkpoint_holds_model_tokenizer_and_stats_that_round_trip(tiny_run):
    cfg, records, out = tiny_run
    assert {"config.json", "model.safetensors", "training_stats.json", "vocab.json", "merges.txt"} <= {
        p.name for p in out.iterdir()}
    assert not list(out.glob("*.pkl")) and not list(out.glob("*.pickle"))
    assert train.load_stats(out) == records
    assert json.loads((out / "training_stats.json").read_text())["config"]["target_label"] == "POSITIVE"
    model, tok = train.load_checkpoint(out)
    assert tok.pad_token_id == tok.eos_token_id
    with_head, _ = train.load_checkpoint(out, value_head=True)
    assert hasattr(with_head, "v_head")


def test_save_checkpoint_with_dtype_keeps_the_model_in_memory_unchanged(tiny_policy_dir, gpt2_tokenizer, tmp_path):
    model = load_policy(str(tiny_policy_dir))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train.save_checkpoint(model, gpt2_tokenizer, tmp_path / "half", dtype=torch.float16)
    assert all(torch.equal(before[k], v) and v.dtype == torch.float32 for k, v in model.state_dict().items())
    from safetensors import safe_open
    with safe_open(str(tmp_path / "half" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
        # tied input/output embeddings are stored once
        assert "lm_head.weight" not in f.keys() or "transformer.wte.weight" not in f.keys()


def test_interrupted_save_leaves_the_previous_checkpoint(tiny_run, tmp_path, monkeypatch):
    cfg, records, out = tiny_run
    import shutil
    target = tmp_path / "ckpt"
    shutil.copytree(out, target)
    before = sorted(p.name for p in target.iterdir())
    model, tok = train.load_checkpoint(target)

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(type(tok), "save_pretrained", boom)
    with pytest.raises(OSError):
        train.save_checkpoint(model, tok, target, records)
    assert sorted(p.name for p in target.iterdir()) == before
    assert train.load_stats(target) == records


def test_wrong_sentiment_missing_checkpoint_and_empty_dataset_give_clear_errors(
        tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir, tmp_path, gpt2_tokenizer):
    with pytest.raises(ValueError, match="POSITIVE, NEGATIVE"):
        make_config("cpu", target_label="HAPPY")
    with pytest.raises(ValueError, match="POSITIVE, NEGATIVE"):
        train.check_sentiment("positive")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train.load_checkpoint(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="no training statistics"):
        train.load_stats(tmp_path)
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="steps"):
        train.load_stats(tmp_path / "bad.json")
    cfg = tiny_cfg(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir, batch_size=64, mini_batch_size=16)
    ds = build_dataset(cfg, gpt2_tokenizer)
    model = load_policy(str(tiny_policy_dir))
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        train.make_trainer(cfg, model, load_policy(str(tiny_policy_dir)), gpt2_tokenizer, ds.select(range(10)))


def test_command_line_rejects_bad_names_with_the_valid_choices(capsys, tmp_path):
    for argv, needle in ((["--sentiment", "HAPPY", "--output", str(tmp_path)], "POSITIVE, NEGATIVE"),
                         (["--sentiment", "POSITIVE", "--profile", "tpu", "--output", str(tmp_path)], "cpu, gpu"),
                         (["--sentiment", "POSITIVE", "--output", str(tmp_path), "--set", "learning_rat=1"],
                          "valid settings")):
        with pytest.raises(SystemExit) as e:
            train.main(argv)
        assert e.value.code == 2
        assert needle in capsys.readouterr().err


def test_command_line_trains_and_saves(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    code = train.main(["--sentiment", "NEGATIVE", "--steps", "1", "--output", str(out), "--set",
                       f"policy_model={tiny_policy_dir}", f"reward_model={tiny_classifier_dir}",
                       f"dataset={imdb_parquet_dir}", "batch_size=8", "mini_batch_size=4"])
    assert code == 0
    assert "1 steps; mean NEGATIVE reward" in capsys.readouterr().out
    assert len(train.load_stats(out)) == 1


def test_same_seed_repeats_the_run_exactly(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir):
    cfg = tiny_cfg(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir, steps=1)
    a, _ = train.run(cfg, None, progress=False)
    b, _ = train.run(cfg, None, progress=False)
    keys = ["env/reward_mean", "ppo/loss/total", "objective/kl"]
    assert [a[0][k] for k in keys] == [b[0][k] for k in keys]
