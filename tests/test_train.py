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


# ---- several processes ---------------------------------------------------------------------
def test_single_process_records_say_so_and_cover_the_batch(tiny_run):
    cfg, records, out = tiny_run
    for r in records:
        assert r["dist/processes"] == 1 and len(r["dist/param_digests"]) == 1
        assert r["env/reward_n"] == cfg.batch_size
        assert r["env/reward_mean_by_process"] == pytest.approx([r["env/reward_mean"]], abs=1e-6)
        # trl's own mean of the scores it was given: reward_scale x our logit mean
        assert r["ppo/mean_scores"] == pytest.approx(cfg.reward_scale * r["env/reward_mean"], rel=1e-5)
    saved = json.loads((out / "training_stats.json").read_text())
    assert saved["processes"] == 1 and saved["saved_by_process"] == 0


def test_param_fingerprint_sees_a_change_in_any_parameter(tiny_policy_dir):
    # without the value head, whose initial weights are drawn afresh at every load
    model = load_policy(str(tiny_policy_dir), value_head=False)
    before = train.fingerprint_digest(train.param_fingerprint(model))
    assert train.fingerprint_digest(train.param_fingerprint(load_policy(str(tiny_policy_dir), value_head=False))) \
        == before
    for name, p in [next(iter(model.named_parameters())), list(model.named_parameters())[-1]]:
        with torch.no_grad():
            p.view(-1)[0] += 1e-3
            changed = train.fingerprint_digest(train.param_fingerprint(model))
            p.view(-1)[0] -= 1e-3
        assert changed != before, name


class _TwoProcesses:
    """An accelerator whose gather returns this process's tensor and another process's, in process order."""
    num_processes = 2
    device = torch.device("cpu")

    def __init__(self, other):
        self.other = other

    def unwrap_model(self, model):
        return model

    def gather(self, t):
        return torch.cat([t, train.param_fingerprint(self.other).unsqueeze(0)])


def test_check_params_in_sync_passes_equal_policies_and_names_the_step_when_they_differ(tiny_policy_dir):
    from types import SimpleNamespace

    mine, same = (load_policy(str(tiny_policy_dir), value_head=False) for _ in range(2))
    digests = train.check_params_in_sync(SimpleNamespace(model=mine, accelerator=_TwoProcesses(same)), step=1)
    assert len(digests) == 2 and digests[0] == digests[1]
    with torch.no_grad():
        next(same.parameters()).view(-1)[3] += 1e-4
    with pytest.raises(RuntimeError, match="parameters differ between processes after PPO step 3"):
        train.check_params_in_sync(SimpleNamespace(model=mine, accelerator=_TwoProcesses(same)), step=3)


def test_a_launch_that_accelerate_did_not_join_is_refused(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="launcher started 2 processes .* accelerate runs 1"):
        train.check_process_group(SimpleNamespace(num_processes=1, distributed_type="DistributedType.NO"))
    train.check_process_group(SimpleNamespace(num_processes=2, distributed_type="DistributedType.MULTI_CPU"))
    monkeypatch.delenv("WORLD_SIZE")
    train.check_process_group(SimpleNamespace(num_processes=1, distributed_type="DistributedType.NO"))


def test_only_process_0_writes_the_checkpoint(tiny_policy_dir, gpt2_tokenizer, tmp_path, monkeypatch):
    model = load_policy(str(tiny_policy_dir))
    waits = []
    monkeypatch.setattr(train, "_barrier", lambda: waits.append(1))
    monkeypatch.setattr(train, "process_rank", lambda: (1, 2))
    assert train.save_checkpoint(model, gpt2_tokenizer, tmp_path / "ckpt", [{"step": 1}]) == tmp_path / "ckpt"
    assert list(tmp_path.iterdir()) == [] and len(waits) == 2  # waited before and after, wrote nothing
    monkeypatch.setattr(train, "process_rank", lambda: (0, 2))
    train.save_checkpoint(model, gpt2_tokenizer, tmp_path / "ckpt", [{"step": 1}])
    saved = json.loads((tmp_path / "ckpt" / "training_stats.json").read_text())
    assert saved["processes"] == 2 and saved["saved_by_process"] == 0 and len(waits) == 4


@pytest.mark.slow
def test_the_training_command_runs_as_two_processes(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir,
                                                     tmp_path):
    """torchrun starts 2 ranks on this CPU (gloo); every claim of the multi-process path is checked."""
    import subprocess
    import sys

    import netguard

    out, log = tmp_path / "happy", tmp_path / "net.log"
    env = netguard.guarded_env(log=log)
    env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")  # gloo on the loopback interface
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "course_lib.train", "--sentiment", "POSITIVE", "--steps", "3", "--output", str(out), "--set",
           f"policy_model={tiny_policy_dir}", f"reward_model={tiny_classifier_dir}", f"dataset={imdb_parquet_dir}",
           "batch_size=8", "mini_batch_size=4", "learning_rate=1e-3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # both processes finished, in one group of 2
    for rank in (0, 1):
        assert f"process {rank} of 2 finished 3 PPO steps" in proc.stdout, proc.stdout
    assert "over 16 prompts a step; saved to" in proc.stdout
    saved = json.loads((out / "training_stats.json").read_text())
    assert saved["processes"] == 2 and saved["saved_by_process"] == 0
    steps = saved["steps"]
    assert [r["step"] for r in steps] == [1, 2, 3]
    for r in steps:
        assert r["dist/processes"] == 2
        # parameters identical on both processes after every step (checked by the run itself)
        assert len(r["dist/param_digests"]) == 2 and r["dist/param_digests"][0] == r["dist/param_digests"][1]
        # the mean reward covers all prompts of both processes, which saw different prompts
        assert r["env/reward_n"] == 16
        by_process = r["env/reward_mean_by_process"]
        assert len(by_process) == 2 and by_process[0] != by_process[1]
        assert r["env/reward_mean"] == pytest.approx(sum(by_process) / 2, abs=1e-6)
        # trl's statistics are averaged over both processes (trl 0.11 alone reported process 0's half)
        assert r["ppo/mean_scores"] == pytest.approx(3.0 * r["env/reward_mean"], rel=1e-5)
    assert len({r["dist/param_digests"][0] for r in steps}) > 1  # the policy did move
    # the checkpoint is the policy both processes held after the last step
    model, _ = train.load_checkpoint(out, value_head=True)
    assert train.fingerprint_digest(train.param_fingerprint(model)) == steps[-1]["dist/param_digests"][0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["happy"]  # no staging folder left behind
    assert netguard.attempts(log) == []


# ---- PPO with LoRA adapters (lora_r > 0) ---------------------------------------------------
@pytest.fixture(scope="module")
def lora_run(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir, tmp_path_factory):
    cfg = tiny_cfg(tiny_policy_dir, tiny_classifier_dir, imdb_parquet_dir, lora_r=4, lora_alpha=8,
                   learning_rate=5e-2)
    out = tmp_path_factory.mktemp("lora") / "happy"
    records, trainer = train.run(cfg, out, progress=False)
    return cfg, records, trainer, out


def test_lora_run_trains_adapters_against_the_adapter_disabled_reference(lora_run):
    cfg, records, trainer, _ = lora_run
    assert trainer.ref_model is None and trainer.is_peft_model
    assert records[-1]["objective/kl"] > 0  # the adapters moved the policy away from the reference


def test_lora_checkpoint_is_an_adapter_folder_that_loads_as_the_trained_model(lora_run, tiny_policy_dir):
    from course_lib.assets import sha256_of

    cfg, records, trainer, out = lora_run
    files = {p.name for p in out.iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", "model.safetensors",
                     "base_model.json", "training_stats.json"}
    assert json.loads((out / "base_model.json").read_text())["sha256"] == sha256_of(
        tiny_policy_dir / "model.safetensors")
    assert train.load_stats(out) == records
    loaded, tok = train.load_checkpoint(out, value_head=True)  # merged into the base: a plain GPT-2
    assert type(loaded.pretrained_model).__name__ == "GPT2LMHeadModel"
    assert tok.pad_token_id == tok.eos_token_id
    trained = trainer.model.eval()
    ids = tok(["a good film", "the plot was"], return_tensors="pt", padding=True)
    with torch.no_grad():
        want_logits, _, want_values = trained(**ids)
        got_logits, _, got_values = loaded.eval()(**ids)
    assert torch.allclose(got_logits, want_logits, atol=1e-4)
    assert torch.allclose(got_values, want_values, atol=1e-5)
    with torch.no_grad():  # and the adapter is not a no-op: the base model gives other logits
        base_logits = load_policy(str(tiny_policy_dir), value_head=False)(**ids).logits
    assert (base_logits - want_logits).abs().max() > 1e-3
    plain, _ = train.load_checkpoint(out)
    assert not hasattr(plain, "v_head")


def test_an_adapter_on_other_base_weights_is_refused(lora_run, tiny_policy_dir, tmp_path):
    import shutil

    from course_lib.assets import write_manifest

    _, _, _, out = lora_run
    other_base = tmp_path / "base"
    shutil.copytree(tiny_policy_dir, other_base)
    model = load_policy(str(other_base), value_head=False)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    model.save_pretrained(other_base)
    write_manifest(other_base)
    moved = tmp_path / "adapter"
    shutil.copytree(out, moved)
    cfg_file = moved / "adapter_config.json"
    cfg_file.write_text(json.dumps({**json.loads(cfg_file.read_text()), "base_model_name_or_path": str(other_base)}))
    with pytest.raises(ValueError, match="trained on .* differs"):
        train.load_checkpoint(moved)


def test_lora_settings_are_checked(tiny_policy_dir):
    with pytest.raises(ValueError, match="lora_r must be 0"):
        make_config("cpu", lora_r=-1)
    assert make_config("cpu").peft_config() is None
    assert make_config("cpu", lora_r=8).peft_config().r == 8
    with pytest.raises(ValueError, match="needs value_head=True"):
        load_policy(str(tiny_policy_dir), value_head=False, peft_config=make_config("cpu", lora_r=2).peft_config())
