"""course_lib.rollout: generating responses in one batched call, and free text from one prompt."""
import copy
from types import SimpleNamespace

import pytest
import torch

from course_lib.config import make_config
from course_lib.models import load_policy
from course_instructor.reference import generate_one_by_one
from course_lib.rollout import decoding_mode, generate_responses, generate_some_text, sample_from_logits

PROMPTS = ["This movie", "I watched this film last night and I have to say that", "Great", "The acting was"]
LENGTHS = [5, 12, 8, 16]
EOS = 50256


@pytest.fixture(scope="module")
def policy(tiny_policy_dir):
    """The tiny GPT-2 wrapped with trl's value head, as the training loop uses it."""
    return load_policy(str(tiny_policy_dir)).eval()


@pytest.fixture(scope="module")
def queries(gpt2_tokenizer):
    qs = [torch.tensor(gpt2_tokenizer.encode(p)) for p in PROMPTS]
    assert len({len(q) for q in qs}) == 4  # all of different lengths, so the batch needs padding
    return qs


@pytest.fixture(scope="module")
def sampling_kwargs(gpt2_tokenizer):
    return make_config("cpu").generation_kwargs(gpt2_tokenizer)


@pytest.fixture(scope="module")
def greedy_kwargs(gpt2_tokenizer):
    return {"do_sample": False, "min_length": -1, "pad_token_id": gpt2_tokenizer.eos_token_id}


def test_one_response_per_query_within_its_length(policy, gpt2_tokenizer, queries, sampling_kwargs):
    torch.manual_seed(0)
    responses = generate_responses(policy, gpt2_tokenizer, queries, LENGTHS, sampling_kwargs)
    assert len(responses) == len(queries)
    for r, n in zip(responses, LENGTHS):
        assert isinstance(r, torch.Tensor) and r.dim() == 1 and r.dtype == torch.long
        assert 1 <= len(r) <= n
        assert r.device == queries[0].device
        if len(r) < n:  # stopped early: only after an EOS
            assert r[-1].item() == EOS
        assert (r[:-1] != EOS).all()  # nothing after the first EOS
    assert len(responses[3]) == 16 or responses[3][-1].item() == EOS


def test_sampling_repeats_with_the_same_seed(policy, gpt2_tokenizer, queries, sampling_kwargs):
    torch.manual_seed(3)
    first = generate_responses(policy, gpt2_tokenizer, queries, LENGTHS, sampling_kwargs)
    torch.manual_seed(3)
    second = generate_responses(policy, gpt2_tokenizer, queries, LENGTHS, sampling_kwargs)
    torch.manual_seed(4)
    third = generate_responses(policy, gpt2_tokenizer, queries, LENGTHS, sampling_kwargs)
    assert [r.tolist() for r in first] == [r.tolist() for r in second]
    assert [r.tolist() for r in first] != [r.tolist() for r in third]


def test_left_padding_does_not_change_greedy_continuations(policy, gpt2_tokenizer, queries, greedy_kwargs):
    assert decoding_mode(policy, greedy_kwargs) == "greedy"  # the cached loop, checked against HF generate
    batched = generate_responses(policy, gpt2_tokenizer, queries, LENGTHS, greedy_kwargs)
    single = generate_one_by_one(policy, gpt2_tokenizer, queries, LENGTHS, greedy_kwargs)
    assert [len(r) for r in single] == LENGTHS  # the random tiny model does not emit EOS here
    for b, s in zip(batched, single):
        assert b.tolist() == s.tolist()


def test_plain_model_without_value_head(tiny_policy_dir, gpt2_tokenizer, queries, greedy_kwargs, policy):
    plain = load_policy(str(tiny_policy_dir), value_head=False).eval()
    assert not hasattr(plain, "v_head")
    a = generate_responses(plain, gpt2_tokenizer, queries[:2], [6, 6], greedy_kwargs)
    b = generate_responses(policy, gpt2_tokenizer, queries[:2], [6, 6], greedy_kwargs)
    assert [r.tolist() for r in a] == [r.tolist() for r in b]


class RecordingLM:
    """Stands in for a causal LM: records what ``generate`` got and continues each row with fixed ids."""

    def __init__(self, continuations):
        self.continuations = torch.tensor(continuations)
        self.calls = []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        self.calls.append({"input_ids": input_ids.clone(), "attention_mask": attention_mask.clone(),
                           "max_new_tokens": max_new_tokens, **kwargs})
        return torch.cat([input_ids, self.continuations[:, :max_new_tokens]], dim=1)


def test_batch_layout_and_cut_at_eos():
    tok = SimpleNamespace(pad_token_id=None, eos_token_id=99)  # no pad token: pads with EOS
    lm = RecordingLM([[11, 12, 13, 14, 15], [21, 99, 23, 24, 25]])
    wrapped = SimpleNamespace(module=lm)  # a DDP-style wrapper
    out = generate_responses(wrapped, tok, [torch.tensor([1, 2, 3]), torch.tensor([4])], [3, 5],
                             {"do_sample": True})
    assert [r.tolist() for r in out] == [[11, 12, 13], [21, 99]]
    call = lm.calls[0]
    assert call["input_ids"].tolist() == [[1, 2, 3], [99, 99, 4]]  # left padded
    assert call["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert call["max_new_tokens"] == 5 and call["do_sample"] is True


def test_batch_pads_with_the_pad_token_when_there_is_one():
    tok = SimpleNamespace(pad_token_id=0, eos_token_id=99)
    lm = RecordingLM([[5, 6], [7, 8]])
    generate_responses(lm, tok, [torch.tensor([1, 2]), torch.tensor([3])], [2, 2], {})
    assert lm.calls[0]["input_ids"].tolist() == [[1, 2], [0, 3]]


def test_mismatched_lengths_is_a_value_error(policy, gpt2_tokenizer, queries, sampling_kwargs):
    with pytest.raises(ValueError, match="4 queries but 3 lengths"):
        generate_responses(policy, gpt2_tokenizer, queries, LENGTHS[:3], sampling_kwargs)


def test_no_queries_no_responses(policy, gpt2_tokenizer, sampling_kwargs):
    assert generate_responses(policy, gpt2_tokenizer, [], [], sampling_kwargs) == []


def test_generate_some_text_starts_with_the_prompt(policy, gpt2_tokenizer, sampling_kwargs):
    prompt = "This movie was"
    torch.manual_seed(0)
    text = generate_some_text(policy, gpt2_tokenizer, prompt, sampling_kwargs, max_new_tokens=10)
    assert isinstance(text, str)
    assert text.startswith(prompt) and len(text) > len(prompt)
    torch.manual_seed(0)
    assert generate_some_text(policy, gpt2_tokenizer, prompt, sampling_kwargs, max_new_tokens=10) == text


def test_generate_some_text_respects_max_new_tokens(gpt2_tokenizer):
    tok_calls = []

    class LM:
        def parameters(self):
            yield torch.zeros(1)

        def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
            tok_calls.append(max_new_tokens)
            return torch.cat([input_ids, torch.tensor([[318, 1049]])], dim=1)  # " is great"

    assert generate_some_text(LM(), gpt2_tokenizer, "This movie", {}, max_new_tokens=2) == "This movie is great"
    assert tok_calls == [2]


@pytest.mark.parametrize("prompt", ["", "   ", "\n"])
def test_empty_prompt_is_a_value_error(policy, gpt2_tokenizer, sampling_kwargs, prompt):
    with pytest.raises(ValueError, match="prompt is empty"):
        generate_some_text(policy, gpt2_tokenizer, prompt, sampling_kwargs)


def test_decoding_mode_takes_the_fast_loop_only_for_settings_it_honours(policy, sampling_kwargs, greedy_kwargs):
    assert decoding_mode(policy, sampling_kwargs) == "sample"  # the lab's top_k=0, top_p=1.0
    assert decoding_mode(policy, greedy_kwargs) == "greedy"
    assert decoding_mode(policy, {**sampling_kwargs, "top_k": 50}) is None
    assert decoding_mode(policy, {**sampling_kwargs, "top_p": 0.9}) is None
    assert decoding_mode(policy, {**sampling_kwargs, "temperature": 0.7}) is None
    assert decoding_mode(policy, {**sampling_kwargs, "repetition_penalty": 1.2}) is None
    assert decoding_mode(policy, {**sampling_kwargs, "min_length": 20}) is None
    # generate's own default top_k is 50: sampling without an explicit top_k=0 is not plain sampling
    assert decoding_mode(policy, {"do_sample": True}) is None


def test_inverse_cdf_sampler_matches_the_softmax():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05, 0.0])
    logits = probs.log().expand(20000, -1)  # the last token has logit -inf
    draws = sample_from_logits(logits)
    counts = torch.bincount(draws, minlength=5).double() / len(draws)
    sd = (probs * (1 - probs) / len(draws)).sqrt().double()
    assert counts[4] == 0  # probability zero: never drawn
    assert ((counts - probs.double()).abs() <= 4 * sd + 1e-12).all(), counts


def test_batched_sampling_follows_the_models_next_token_distribution(gpt2_tokenizer, sampling_kwargs):
    """Many copies of one prompt, one token each: the draws' frequencies match the model's softmax.

    Uses the bundled review model, whose next-token distribution is peaked
    enough for the frequencies to say something.
    """
    from course_lib.assets import bundled

    lm = load_policy(str(bundled("gpt2-imdb-mini")), value_head=False).eval()
    q = torch.tensor(gpt2_tokenizer.encode("This movie is a waste of"))
    n = 3000
    torch.manual_seed(1)
    draws = torch.cat(generate_responses(lm, gpt2_tokenizer, [q] * n, [1] * n, sampling_kwargs))
    with torch.no_grad():
        probs = torch.softmax(lm(q[None]).logits[0, -1].double(), -1)
    top = probs.topk(5).indices
    assert probs[top[0]] > 0.2  # a real, peaked distribution (' time')
    freq = torch.stack([(draws == t).double().mean() for t in top])
    sd = (probs[top] * (1 - probs[top]) / n).sqrt()
    assert ((freq - probs[top]).abs() <= 4 * sd).all(), (freq, probs[top])


def test_a_zero_length_is_refused(policy, gpt2_tokenizer, queries, sampling_kwargs):
    with pytest.raises(ValueError, match="at least 1 token"):
        generate_responses(policy, gpt2_tokenizer, queries, [0, 3, 3, 3], sampling_kwargs)


def test_a_lora_policy_decodes_as_its_merged_model_does(tiny_policy_dir, gpt2_tokenizer, queries, sampling_kwargs):
    """A PEFT model's ``base_model`` is the whole LM: the fast loop must find the transformer by name."""
    from course_lib.models import lora_config
    from course_lib.rollout import transformer_body

    lora = load_policy(str(tiny_policy_dir), peft_config=lora_config(4, 8)).eval()
    with torch.no_grad():  # move the adapters away from 0, so the adapter does something
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    body = transformer_body(lora.pretrained_model)
    assert type(body).__name__ == "GPT2Model"
    assert decoding_mode(lora, sampling_kwargs) == "sample"
    merged = copy.deepcopy(lora.pretrained_model).merge_and_unload().eval()
    plain = load_policy(str(tiny_policy_dir), value_head=False).eval()
    out = {}
    for name, model in (("lora", lora), ("merged", merged), ("base", plain)):
        torch.manual_seed(7)
        out[name] = [r.tolist() for r in generate_responses(model, gpt2_tokenizer, queries, [8] * 4, sampling_kwargs)]
    assert out["lora"] == out["merged"]
    assert out["lora"] != out["base"]
