"""course_lib.models: loading the policy, tokenizer and reward pipeline from a verified folder."""
import pytest
import torch

from course_lib.assets import AssetError
from course_lib.models import default_device, load_policy, load_sentiment_pipeline, load_tokenizer


def test_tokenizer_pads_with_eos(tiny_policy_dir):
    tok = load_tokenizer(str(tiny_policy_dir))
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 50256
    assert tok.pad_token == tok.eos_token and tok.pad_token_id == 50256
    assert tok.encode("This movie") == [1212, 3807]


def test_policy_with_and_without_value_head(tiny_policy_dir):
    from transformers import GPT2LMHeadModel
    from trl import AutoModelForCausalLMWithValueHead

    with_head = load_policy(str(tiny_policy_dir))
    plain = load_policy(str(tiny_policy_dir), value_head=False, device="cpu")
    assert isinstance(with_head, AutoModelForCausalLMWithValueHead)
    assert isinstance(plain, GPT2LMHeadModel)
    assert next(plain.parameters()).dtype == torch.float32
    assert torch.equal(with_head.pretrained_model.transformer.wte.weight, plain.transformer.wte.weight)


def test_corrupt_folder_is_refused(tmp_path, tiny_policy_dir):
    import shutil

    copy = tmp_path / "policy"
    shutil.copytree(tiny_policy_dir, copy)
    with open(copy / "config.json", "a") as f:
        f.write(" ")
    with pytest.raises(AssetError, match="config.json is corrupt"):
        load_policy(str(copy))
    with pytest.raises(AssetError, match="config.json is corrupt"):
        load_sentiment_pipeline(str(copy))


def test_sentiment_pipeline_on_cpu(tiny_classifier_dir):
    pipe = load_sentiment_pipeline(str(tiny_classifier_dir))
    assert pipe.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    out = pipe("great film", top_k=None, function_to_apply="none")
    assert sorted(o["label"] for o in out) == ["NEGATIVE", "POSITIVE"]


def test_default_device():
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
