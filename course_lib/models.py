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


#: A PEFT adapter folder: the tuned model stored as a small change to a base model.
ADAPTER_CONFIG = "adapter_config.json"
#: trl's value head of an adapter checkpoint (the base model has none), under the name trl 0.11's
#: ``AutoModelForCausalLMWithValueHead.from_pretrained(folder)`` reads its ``v_head.*`` weights from.
VALUE_HEAD_FILE = "model.safetensors"
#: The name earlier checkpoints of the course used for it (still read).
OLD_VALUE_HEAD_FILE = "value_head.safetensors"
#: Which base an adapter checkpoint was trained on: its name and the SHA-256 of its weights.
BASE_RECORD = "base_model.json"
#: The GPT-2 modules that carry LoRA adapters: attention (``c_attn``, ``attn.c_proj``) and MLP (``c_fc``, ``mlp.c_proj``).
LORA_TARGETS = ["c_attn", "c_proj", "c_fc"]


def is_adapter_folder(path) -> bool:
    """True for a folder holding a PEFT adapter (``adapter_config.json``) instead of a whole model."""
    from pathlib import Path

    return (Path(path) / ADAPTER_CONFIG).is_file()


def lora_config(r: int, alpha: int, dropout: float = 0.0):
    """``peft.LoraConfig`` of rank ``r`` on every attention and MLP matrix of a GPT-2."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(LORA_TARGETS),
                      bias="none", task_type="CAUSAL_LM", fan_in_fan_out=True)


def load_policy(name: str, value_head: bool = True, device=None, peft_config=None):
    """A causal LM, by default wrapped with trl's value head (``AutoModelForCausalLMWithValueHead``).

    ``name`` is a Hub name, a bundled asset or a checkpoint folder.  A folder
    holding a LoRA adapter (the bundled Happy and Pessimistic LLMs) is loaded
    on its base model and merged into it (:func:`load_adapter`): the result is
    an ordinary model, as a full checkpoint would give.  ``peft_config`` (a
    ``peft.LoraConfig``) adds a new, trainable adapter for PPO with LoRA.
    """
    import torch

    path = resolve(name)
    if is_adapter_folder(path):
        if peft_config is not None:
            raise ValueError(f"{path} already holds an adapter; peft_config adds a new one to a base model only")
        model = load_adapter(path, value_head=value_head)
    elif value_head:
        from trl import AutoModelForCausalLMWithValueHead

        model = AutoModelForCausalLMWithValueHead.from_pretrained(path, torch_dtype=torch.float32,
                                                                  peft_config=peft_config)
    else:
        if peft_config is not None:
            raise ValueError("peft_config trains an adapter with PPO, which needs value_head=True")
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    return model.to(device) if device is not None else model


def adapter_base_location(path) -> str:
    """Where the base model of an adapter folder is, as ``from_pretrained`` takes it (no weight check).

    A bundled base is recorded by its name (see :func:`save_adapter`) and
    resolved to its verified folder; a Hub name or a path is returned as it is.
    """
    import json
    from pathlib import Path

    from course_lib.assets import ASSETS_DIR, bundled_names

    folder = Path(path)
    base = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{folder / ADAPTER_CONFIG} names no base_model_name_or_path")
    return resolve(str(ASSETS_DIR / base) if base in bundled_names() else base)


def adapter_base(path) -> str:
    """:func:`adapter_base_location`, checked against the weights the adapter was trained on.

    When the folder records the SHA-256 of its base's weights
    (``base_model.json``), a base that differs raises ``ValueError``: an
    adapter only means something on the weights it was trained on.
    """
    import json
    from pathlib import Path

    from course_lib.assets import sha256_of

    folder = Path(path)
    base = adapter_base_location(folder)
    record = folder / BASE_RECORD
    weights = Path(base) / "model.safetensors"
    if record.is_file() and weights.is_file():
        want = json.loads(record.read_text(encoding="utf-8"))
        if sha256_of(weights) != want.get("sha256"):
            raise ValueError(f"the adapter in {folder} was trained on {want.get('name')!r} with weights of SHA-256 "
                             f"{want.get('sha256')}, but {weights} differs; load it on the base it was trained on")
    return base


def save_adapter(model, folder) -> None:
    """Write a LoRA policy (trl's value-head model around a PEFT model, or a PEFT model) as an adapter folder.

    The adapter (``adapter_config.json``, ``adapter_model.safetensors``), the
    value head (``model.safetensors``, when the policy has one: where trl reads it) and ``base_model.json``, the
    SHA-256 of the base's weights that :func:`adapter_base` checks.  A bundled
    base is named by its bundled name, so the folder loads wherever the course
    is installed.  Everything is safetensors or JSON.
    """
    import json
    from pathlib import Path

    from safetensors.torch import save_file

    from course_lib.assets import ASSETS_DIR, sha256_of
    from course_lib.jsonio import save_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # a policy without a value head (DPO, GRPO) is the PEFT model itself
    getattr(model, "pretrained_model", model).save_pretrained(folder, safe_serialization=True)
    (folder / "README.md").unlink(missing_ok=True)  # peft's template card, not a card of this model
    if hasattr(model, "v_head"):
        save_file({f"v_head.{k}": v.detach().contiguous().cpu() for k, v in model.v_head.state_dict().items()},
                  folder / VALUE_HEAD_FILE)
    cfg_file = folder / ADAPTER_CONFIG
    adapter_cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    base = Path(adapter_cfg["base_model_name_or_path"])
    if base.is_dir():
        if base.resolve().parent == ASSETS_DIR:
            adapter_cfg["base_model_name_or_path"] = base.name
            cfg_file.write_text(json.dumps(adapter_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if (base / "model.safetensors").is_file():
            save_json({"name": adapter_cfg["base_model_name_or_path"],
                       "sha256": sha256_of(base / "model.safetensors")}, folder / BASE_RECORD)


def load_adapter(path, value_head: bool = True, merge: bool = True):
    """A LoRA checkpoint folder loaded on its base model.

    ``merge=True`` (default) folds the adapter into the base weights
    (``merge_and_unload``) and returns a plain ``GPT2LMHeadModel``, or trl's
    value-head model around it with the trained value head of
    ``model.safetensors``: every function of the course takes it as it
    takes a full checkpoint.  ``merge=False`` keeps the ``PeftModel``.
    """
    import torch
    from pathlib import Path

    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    folder = Path(path)
    base = AutoModelForCausalLM.from_pretrained(adapter_base(folder), torch_dtype=torch.float32)
    lm = PeftModel.from_pretrained(base, str(folder))
    lm = lm.float()
    if merge:
        lm = lm.merge_and_unload()
    if not value_head:
        return lm
    from trl import AutoModelForCausalLMWithValueHead

    head_file = folder / VALUE_HEAD_FILE
    if not head_file.is_file() and (folder / OLD_VALUE_HEAD_FILE).is_file():
        head_file = folder / OLD_VALUE_HEAD_FILE
    if not head_file.is_file():
        raise FileNotFoundError(f"{folder} holds an adapter but no {VALUE_HEAD_FILE}; load it with value_head=False")
    model = AutoModelForCausalLMWithValueHead.from_pretrained(lm)
    state = {k.removeprefix("v_head."): v.float() for k, v in load_file(head_file).items()}
    model.v_head.load_state_dict(state)
    return model


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
