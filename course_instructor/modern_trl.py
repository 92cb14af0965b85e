"""``make modern-trl``: the course's GRPO through today's trl ``GRPOTrainer``, and the two checked equal.

Runs in its own environment (``.venv-modern``: a current trl and transformers,
the same torch), offline, on the bundled models:

1. **Which logit does trl read?**  A reward given to ``GRPOTrainer`` as a
   sequence classifier is scored as ``model(**inputs).logits[:, 0]``.  For the
   course's two-label classifier (``id2label = {0: NEGATIVE, 1: POSITIVE}``)
   that is the NEGATIVE logit: passed as it is, it would train a Pessimistic
   LLM.  (A model *id* is loaded with ``num_labels=1``: a two-label checkpoint
   does not fit that head.)  The script measures both and prints them.
2. **The reward by name**: :func:`positive_reward`, a plain reward function
   that looks the POSITIVE label up in ``config.label2id``, as the lab does.
3. **A few GRPO steps** through ``GRPOTrainer`` (LoRA on ``gpt2-imdb-mini``,
   groups of 8, ``loss_type="grpo"``, ``beta`` = the k3 KL coefficient); at
   every step (each batch used twice, ``num_iterations=2``, as the course's
   ``epochs_per_step``) the advantages trl computed are compared with
   ``course_instructor.grpo.group_relative_advantages`` of the rewards it
   saw, and trl's loss with ``course_instructor.grpo.grpo_loss`` on the same
   log-probabilities (to ``TOL``).

Prints one JSON report (also written to ``build/modern-trl.json``) and exits
non-zero if a check fails.  Usage: ``.venv-modern/bin/python -m course_instructor.modern_trl``.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                   "HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true"})

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "course_lib" / "assets"
POLICY = ASSETS / "gpt2-imdb-mini"
CLASSIFIER = ASSETS / "distilbert-imdb-mini"
DATA = ASSETS / "imdb-mini" / "train.parquet"
TOL = 1e-5
#: The run's settings: the course's GRPO (course_instructor.grpo.GRPOSettings) in trl's names.
SETTINGS = {"num_generations": 8, "per_device_train_batch_size": 32, "max_completion_length": 16,
            "learning_rate": 1e-3, "beta": 0.04, "epsilon": 0.2, "loss_type": "grpo", "scale_rewards": "group",
            "num_iterations": 2, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_steps": 4, "seed": 0,
            # trl 1.x's default (True) multiplies each token's k3 by its importance ratio; the GRPO paper's
            # loss, and the course's, do not.  The two agree on a batch's first pass (ratio 1) only.
            "use_bias_correction_kl": False}
PROMPTS = 64


def load_classifier():
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # float32, as the course's pipeline: transformers 5 would keep the stored float16
    model = AutoModelForSequenceClassification.from_pretrained(str(CLASSIFIER), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(CLASSIFIER))


_CLASSIFIER = None


def positive_reward(prompts, completions, **kwargs) -> list[float]:
    """The reward: the classifier's POSITIVE logit of ``prompt + completion``, the label looked up by name."""
    import torch

    global _CLASSIFIER
    if _CLASSIFIER is None:
        _CLASSIFIER = load_classifier()
    model, tok = _CLASSIFIER
    positive = model.config.label2id["POSITIVE"]
    texts = [p + c for p, c in zip(prompts, completions)]
    with torch.no_grad():
        logits = model(**tok(texts, return_tensors="pt", padding=True, truncation=True)).logits
    return logits[:, positive].tolist()


def prompt_dataset(tokenizer, n: int = PROMPTS):
    """The lab's prompts: the first 2-8 tokens of reviews longer than 200 characters."""
    import numpy as np
    import pandas as pd
    from datasets import Dataset

    rng = np.random.default_rng(0)
    reviews = [t for t in pd.read_parquet(DATA)["text"] if len(t) > 200][:n]
    prompts = [tokenizer.decode(tokenizer(t)["input_ids"][:int(rng.integers(2, 9))]) for t in reviews]
    return Dataset.from_dict({"prompt": prompts})


def which_logit_trl_reads(trainer, classifier) -> dict:
    """Score two texts through trl's own reward path with the classifier passed as a model."""
    import torch

    model, tok = classifier
    texts = ["This movie was wonderful, a true delight.", "This movie was awful, a waste of time."]
    with torch.no_grad():  # tokenized as trl does it: no [CLS]/[SEP] added, padded on the right
        logits = model(**tok(text=texts, return_tensors="pt", padding=True, padding_side="right",
                             add_special_tokens=False)).logits
    saved = trainer.reward_funcs, trainer.reward_processing_classes, trainer.reward_func_names
    trainer.reward_funcs, trainer.reward_processing_classes, trainer.reward_func_names = [model], [tok], ["clf"]
    try:
        trl_scores = trainer._calculate_rewards([{"prompt": t} for t in texts], ["", ""], texts, [[], []])[:, 0]
    finally:
        trainer.reward_funcs, trainer.reward_processing_classes, trainer.reward_func_names = saved
    reads = {label: bool(torch.allclose(trl_scores.cpu(), logits[:, i], atol=1e-5))
             for i, label in model.config.id2label.items()}
    return {"texts": texts, "trl_scores": trl_scores.tolist(), "id2label": model.config.id2label,
            "logits": logits.tolist(), "trl_reads": [label for label, same in reads.items() if same]}


def model_id_as_reward() -> str:
    """What happens when the classifier's folder is passed as a model id (trl loads it with ``num_labels=1``)."""
    from transformers import AutoModelForSequenceClassification

    try:
        m = AutoModelForSequenceClassification.from_pretrained(str(CLASSIFIER), num_labels=1)
    except Exception as e:  # noqa: BLE001 (the message is the finding)
        return f"refused: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return f"loaded with a new 1-label head ({m.config.num_labels} label): its score is untrained"


def main() -> int:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    sys.path.insert(0, str(ROOT))
    from course_instructor.grpo import group_relative_advantages, grpo_loss

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    import trl
    import transformers

    tok = AutoTokenizer.from_pretrained(str(POLICY))
    tok.pad_token = tok.eos_token
    # no dropout, as the course's GRPO (which trains in eval mode): trl trains in train mode, and dropout would
    # make its log-probabilities differ from a second forward pass of the same weights
    model = AutoModelForCausalLM.from_pretrained(str(POLICY), dtype=torch.float32, resid_pdrop=0.0, embd_pdrop=0.0,
                                                 attn_pdrop=0.0)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["c_attn", "c_proj", "c_fc"],
                      fan_in_fan_out=True, task_type="CAUSAL_LM")
    out_dir = tempfile.mkdtemp(prefix="modern-trl-")
    args = GRPOConfig(output_dir=out_dir, use_cpu=True, report_to="none", logging_steps=1, save_strategy="no",
                      disable_tqdm=True, dataloader_num_workers=0, **SETTINGS)
    trainer = GRPOTrainer(model=model, reward_funcs=[positive_reward], args=args,
                          train_dataset=prompt_dataset(tok), processing_class=tok, peft_config=lora)

    checks, ours_by_row = [], {}
    original_generate, original_rewards, original_loss = (trainer._generate_and_score_completions,
                                                          trainer._calculate_rewards, trainer._compute_loss)
    seen = {}

    def row_key(prompt_ids, prompt_mask, completion_ids):
        return tuple(prompt_ids[prompt_mask.bool()].tolist()), tuple(completion_ids.tolist())

    def record_rewards(inputs, prompts, completions, completion_ids_list):
        r = original_rewards(inputs, prompts, completions, completion_ids_list)
        seen["rewards"] = r[:, 0].detach().cpu().clone()
        return r

    def checked_generate(*a, **k):
        """trl's rollout; its advantages against the course's, computed from the rewards trl saw."""
        out = original_generate(*a, **k)
        ours = group_relative_advantages(seen["rewards"], SETTINGS["num_generations"])
        checks.append({"advantages_max_diff": float((ours - out["advantages"].cpu()).abs().max()),
                       "reward_mean": float(seen["rewards"].mean()), "losses": []})
        for i, a_i in enumerate(ours):  # trl shuffles the batch afterwards: find each row again by its tokens
            ours_by_row[row_key(out["prompt_ids"][i], out["prompt_mask"][i], out["completion_ids"][i])] = a_i
        return out

    def checked_loss(model, inputs):
        """trl's loss, and the course's on the same log-probabilities, with the course's advantages."""
        loss = original_loss(model, inputs)
        with torch.no_grad():
            ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
            mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
            logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask,
                                                                     inputs["completion_ids"].size(1))
            old = inputs.get("old_per_token_logps")
            old = logps if old is None else old
            adv = torch.stack([ours_by_row[row_key(p, m, c)] for p, m, c in
                               zip(inputs["prompt_ids"], inputs["prompt_mask"], inputs["completion_ids"])])
            ours, _ = grpo_loss(logps, old, inputs["ref_per_token_logps"], adv.to(logps.device),
                                inputs["completion_mask"], SETTINGS["epsilon"], SETTINGS["beta"], SETTINGS["loss_type"])
        trl_loss = float(loss.detach()) * trainer.current_gradient_accumulation_steps
        checks[-1]["losses"].append({"loss_trl": trl_loss, "loss_course": float(ours),
                                     "loss_diff": abs(trl_loss - float(ours)),
                                     # 0 on a batch's first pass (ratio 1); not 0 on its second, after an update
                                     "max_ratio_minus_1": float((logps - old).exp().sub(1).abs()
                                                                .mul(inputs["completion_mask"]).max())})
        return loss

    trainer._generate_and_score_completions = checked_generate
    trainer._compute_loss = checked_loss
    trainer._calculate_rewards = record_rewards
    classifier = load_classifier()
    logit = which_logit_trl_reads(trainer, classifier)
    trainer.train()
    losses = [x for c in checks for x in c["losses"]]
    # every batch is used num_iterations times: the later passes have ratios away from 1, so the clipped
    # surrogate is compared too, not only the KL term (on a first pass the surrogate averages to 0 by design)
    ok = (bool(losses) and all(c["advantages_max_diff"] < TOL for c in checks)
          and all(x["loss_diff"] < TOL for x in losses) and max(x["max_ratio_minus_1"] for x in losses) > 1e-3)
    ok = ok and logit["trl_reads"] == ["NEGATIVE"]
    report = {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
              "settings": SETTINGS, "which_logit": logit, "model_id_as_reward": model_id_as_reward(),
              "checks": checks, "log": [h for h in trainer.state.log_history if "loss" in h], "ok": ok}
    text = json.dumps(report, indent=1, default=str)
    print(text)
    (ROOT / "build").mkdir(exist_ok=True)
    (ROOT / "build" / "modern-trl.json").write_text(text + "\n")
    print(f"modern trl {trl.__version__}: {len(losses)} GRPO steps through GRPOTrainer ({len(checks)} batches, "
          f"{SETTINGS['num_iterations']} passes each; ratios up to 1 +- {max(x['max_ratio_minus_1'] for x in losses):.3f}); "
          f"advantages and loss equal to the course's: {'yes' if ok else 'NO'} (largest differences "
          f"{max(c['advantages_max_diff'] for c in checks):.1e}, {max(x['loss_diff'] for x in losses):.1e}); "
          f"trl reads the logit of {logit['trl_reads']}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
