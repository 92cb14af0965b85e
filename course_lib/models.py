"""Loading the models of a profile through the standard Hugging Face calls.

The same calls load the bundled folders (cpu profile, verified against their
manifests first) and the Hub models (gpu profile).
"""
from __future__ import annotations

from course_lib.assets import resolve


def load_tokenizer(name: str):
    """The policy's tokenizer, with the pad token set to EOS.

    GPT-2 has no pad token; the lab pads with EOS, the token the model
    already knows as "end of review", and masks the padding out.
    """
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve(name))
    tok.pad_token = tok.eos_token
    # The lab encodes whole reviews and keeps their first tokens; the "sequence longer
    # than the model's maximum" warning does not apply to that (transformers shows it
    # once per tokenizer, so marking it shown silences it, and nothing else).
    if hasattr(tok, "deprecation_warnings"):
        tok.deprecation_warnings["sequence-length-is-longer-than-the-specified-maximum"] = True
    return tok


def load_policy(name: str, value_head: bool = True, device=None):
    """A causal LM, by default wrapped with trl's value head (``AutoModelForCausalLMWithValueHead``)."""
    import torch

    path = resolve(name)
    if value_head:
        from trl import AutoModelForCausalLMWithValueHead

        model = AutoModelForCausalLMWithValueHead.from_pretrained(path, torch_dtype=torch.float32)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    return model.to(device) if device is not None else model


def load_sentiment_pipeline(name: str, device=None):
    """The reward model as a ``sentiment-analysis`` pipeline (call it with ``top_k=None, function_to_apply="none"``)."""
    import torch
    from transformers import pipeline

    if device is None:
        device = 0 if torch.cuda.is_available() else -1
    path = resolve(name)
    return pipeline("sentiment-analysis", model=path, tokenizer=path, device=device, torch_dtype=torch.float32)


def default_device():
    """``cuda`` when a GPU is there, else ``cpu``."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
