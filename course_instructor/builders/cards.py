"""Model cards (README.md) of the bundled assets, filled from the build's figures."""
from __future__ import annotations

import json

IMDB_CITATION = ("Andrew L. Maas, Raymond E. Daly, Peter T. Pham, Dan Huang, Andrew Y. Ng and Christopher Potts. "
                 "2011. Learning Word Vectors for Sentiment Analysis. ACL 2011.")


def _history_table(history: list[dict], keys: list[str]) -> str:
    rows = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for h in history:
        rows.append("| " + " | ".join(f"{h[k]:.4g}" if isinstance(h[k], float) else str(h[k]) for k in keys) + " |")
    return "\n".join(rows)


def imdb_card(info: dict) -> str:
    return f"""# imdb-mini

A balanced, seeded subset of the IMDb Large Movie Review Dataset in the
`stanfordnlp/imdb` schema: `text` (raw review, `<br />` tags kept as in the
original) and `label` (0 = negative, 1 = positive). It plays the role of
`load_dataset("stanfordnlp/imdb")` in the offline `cpu` profile:
`load_dataset("parquet", data_files={{"train": ".../train.parquet"}})`.

| split | rows | per label | reviews > 200 characters |
|---|---|---|---|
| train | {info['train']['rows']} | {info['train']['per_label']} | {info['train']['longer_than_200_chars']} |
| test | {info['test']['rows']} | {info['test']['per_label']} | {info['test']['longer_than_200_chars']} |

Built by `make assets ASSET=imdb-mini` from the full data set in `../shared/data`
(drawn without replacement, label-balanced, seed {info['seed']}, rows shuffled).
Train rows come from the original train split only, test rows from the test
split only.

Citation: {IMDB_CITATION}
"""


def _sentence_table(m: dict) -> str:
    rows = ["| text | label | POSITIVE | NEGATIVE |", "|---|---|---|---|"]
    for r in m["sentence_scores"]:
        mark = "" if r["correct"] else " (wrong)"
        rows.append(f"| {r['text']} | {r['label']}{mark} | {r['POSITIVE']:+.2f} | {r['NEGATIVE']:+.2f} |")
    return "\n".join(rows)


def classifier_card(info: dict, m: dict) -> str:
    hist = _history_table(info["history"], ["epoch", "texts", "train_loss", "val_acc_whole",
                                            "val_acc_16_token_openings", "minutes"])
    tw, to = info["teacher"]["whole"], info["teacher"]["openings"]
    init = info.get("init")
    start = (f"Warm start: the weights of `{init}` ({info['init_note']}), then one distillation stage."
             if init else "Random initialisation.")
    return f"""# distilbert-imdb-mini

A small `DistilBertForSequenceClassification` trained on IMDb **train**
(labelled) and **unsupervised** (unlabelled) reviews (the test split is never
seen) to judge the sentiment of movie-review text. It plays the role of
`lvwerra/distilbert-imdb` (the lab's reward model) in the offline `cpu`
profile, through the same call: `pipeline("sentiment-analysis", model=<this folder>)`.

- Labels: `id2label = {{0: "NEGATIVE", 1: "POSITIVE"}}`. Called with
  `top_k=None, function_to_apply="none"` the pipeline returns the raw logits of
  both labels; the course's reward is the logit of the wanted label. The two
  logits are trained to be opposite (POSITIVE = -NEGATIVE, nearly), so the
  POSITIVE logit alone is half the margin.
- Vocabulary: the real uncased BERT WordPiece vocabulary (30,522 tokens).
- Size: dim {info['dim']}, {info['layers']} layers, {info['heads']} heads,
  max length {info['max_length']} tokens; weights stored in float16.

## Training: distillation from two bag-of-bigrams teachers
1. **Teachers** (`course_instructor/builders/teacher.py`): logistic regressions on
   binary features, the WordPiece tokens and neighbouring token pairs.
   - The *whole-review teacher*: fitted on the labelled train reviews
     ({tw['features']:,} features, bigrams seen in at least {tw['min_df']} reviews, {tw['minutes']} minutes).
   - The *opening teacher*: fitted on openings (the first 6, 10, 14, 18 and 22
     GPT-2 tokens) of the labelled reviews and of the {to['pseudo_labelled']:,} unlabelled reviews
     the whole-review teacher is sure about (|log-odds| > {to['pseudo_margin']}), labelled with
     its verdict ({to['features']:,} features, {to['minutes']} minutes).
   On 1,000 held-out train reviews: whole-review teacher {tw['val_acc_whole']:.1%} on whole reviews and
   {tw['val_acc_16_token_openings']:.1%} on their first 16 GPT-2 tokens; opening teacher {to['val_acc_16_token_openings']:.1%}.
2. **Student** (this model), soft targets (cross-entropy against a
   probability of POSITIVE), per epoch: {info['whole'] or 'all'} labelled reviews whole (first
   {info['train_len']} tokens), target {info['label_weight']} x label + {1 - info['label_weight']:.2g} x the
   whole-review teacher; an opening (4-24 GPT-2 tokens) and a 4-24-word window
   from inside every labelled review, the same mix with the opening teacher
   and the whole-review teacher judging that very text (a text without
   sentiment is not forced to its review's label); {info['unsup']:,} unlabelled
   reviews as an opening, target the mix of the whole-review teacher's
   verdict on the review and the opening teacher's on the opening
   ({info['unsup_whole']:,} of them also whole, target the whole-review teacher);
   {info['phrases']:,} short verdicts composed from word lists
   (`course_instructor/builders/phrases.py`: praise, pans, intensifiers, negations;
   half of them after a review's first 2-8 words, as the lab's prompt +
   response), target 0.998 or 0.002 (0.9 for a negated pan such as "not
   bad"): what a reader knows and review labels do not teach, since in IMDb
   "good" and "not bad" appear in negative reviews about as often as in
   positive ones. A penalty {info['sym']} x (POSITIVE + NEGATIVE)^2 keeps the
   logits opposite.

{start}
Seed {info['seed']}; {info['epochs']} epoch(s), batch {info['batch']}, AdamW lr {info['lr']} with
warm-up and cosine decay, dropout {info.get('dropout', 0.1)}, float32 on CPU (this CPU has no native
bfloat16: autocast was 4x slower), {info['torch_threads']} torch thread(s):
{info['train_minutes']} minutes on the project's 2-core build machine (teachers included), shared with
other jobs. {info.get('build_note', '')} 1,000 train reviews were held out for validation;
reviews are cleaned of `<br />` tags.

Command: `{info.get('command', 'make assets ASSET=distilbert-imdb-mini')}`

{hist}

## Evaluation (IMDb test split, never used in training)
| metric | value |
|---|---|
| accuracy, all {m['test_reviews']:,} test reviews (truncated to {m['max_length']} tokens) | **{m['test_accuracy_whole']:.2%}** |
| accuracy, first 16 GPT-2 tokens of each test review | **{m['test_accuracy_16_token_prefix']:.2%}** |
| accuracy, {m['sentences']} hand-written short sentences (`tests/data/short_sentences.tsv`) | **{m['sentence_accuracy']:.2%}** |
| median / smallest \\|POSITIVE - NEGATIVE\\| on them (logits) | {m['sentence_median_margin']} / {m['sentence_min_margin']} |
| POSITIVE logit on 16-token prefixes: mean / std | {m['prefix_positive_logit_mean']} / {m['prefix_positive_logit_std']} |
| POSITIVE logit on 16-token prefixes: 5th / 95th percentile | {m['prefix_positive_logit_p5_p95'][0]} / {m['prefix_positive_logit_p5_p95'][1]} |
| load time (model + tokenizer, CPU) | {m['load_seconds']} s |

For scale: `lvwerra/distilbert-imdb` reports 92.8% on whole reviews. Many
16-token openings carry no sentiment at all, so prefix accuracy is lower by
nature. The short sentences were written for the tests, not drawn from the
training verdicts (a test checks that none of them is one). Recompute these
figures with `python -m course_instructor.builders.metrics --data-dir ../shared/data`.

The short sentences, scored (raw logits):

{_sentence_table(m)}

Data citation: {IMDB_CITATION}
"""


def lm_card(info: dict, m: dict) -> str:
    hist = _history_table(info["history"][-6:], ["step", "train_loss", "val_ppl", "tokens", "minutes"])
    samples = "\n".join(f"{i + 1}. {s!r}" for i, s in enumerate(m["samples_this_movie"]))
    return f"""# gpt2-imdb-mini

A small `GPT2LMHeadModel` pre-trained from scratch on IMDb review text. It
plays the role of `lvwerra/gpt2-imdb` (the lab's policy and reference model) in
the offline `cpu` profile and loads through the same calls:
`AutoModelForCausalLMWithValueHead.from_pretrained(<this folder>)`,
`AutoModelForCausalLM.from_pretrained(...)`, `AutoTokenizer.from_pretrained(...)`.

- Tokenizer: the real GPT-2 byte-level BPE (50,257 tokens); pad = EOS
  (`<|endoftext|>`, id 50256).
- Size: {info['layers']} layers, {info['dim']} wide, {info['heads']} heads, context
  {info['ctx']} tokens; weights stored in float16 (tied input/output embeddings).

## Training
Data: IMDb train + unsupervised splits (75,000 reviews; the test split is never
seen), `<br />` tags removed; 500 reviews held out for validation. Each review
(+ EOS) is cut into windows of at most {info['ctx']} tokens that start at position 0, so
the model often sees review openings, which is what the lab prompts it with.

Seed {info['seed']}; {info['steps']} steps of {info['batch']} windows ({info['train_tokens']:,} tokens),
AdamW lr {info['lr']} (warm-up, cosine decay to 10%), bf16 autocast on CPU:
{info['train_minutes']} minutes on the project's 2-core build machine (shared with other jobs).
{('Schedule: ' + info['schedule_note'] + '.') if info.get('schedule_note') else ''}

Speed-up, exact: the {info['keep'] - 1:,} most frequent GPT-2 tokens of the training
text (coverage {info['coverage']:.2%}) get their own output class; all other tokens
share one "rare" class whose probability is split among them by unigram
frequency. The last hidden dimension is pinned to a constant at the final layer
norm, which turns it into a per-token output bias in the tied embedding, so the
exported full 50,257-token model computes exactly the trained distribution
(see `course_instructor/builders/lm.py`).

Last validation points:

{hist}

## Evaluation
| metric | value |
|---|---|
| perplexity, {m['ppl_reviews']:,} IMDb test reviews (seeded sample, {m['ppl_window_tokens']}-token windows) | **{m['test_perplexity']}** |
| load time (model + tokenizer, CPU) | {m['load_seconds']} s |

Ten samples from "This movie" (seed {m['sample_seed']}, pure sampling: top_k 0, top_p 1.0, 30 new tokens):

{samples}

Recompute with `python -m course_instructor.builders.metrics --data-dir ../shared/data`.

Data citation: {IMDB_CITATION}
"""


def ppo_card(sentiment: str, info: dict, ev: dict) -> str:
    name = "ppo-happy-mini" if sentiment == "POSITIVE" else "ppo-pessimistic-mini"
    role = "Happy LLM" if sentiment == "POSITIVE" else "Pessimistic LLM"
    rows = "\n".join(f"| {k} | {v} |" for k, v in ev["table"].items())
    lora = info["config"].get("lora_r", 0)
    if lora:
        stored = f"""Stored as what it is, a small change to the shared base: a LoRA adapter of
rank {lora} (alpha {info['config']['lora_alpha']}) on every attention and MLP matrix of
`gpt2-imdb-mini` (`adapter_config.json`, `adapter_model.safetensors`, float16),
the trained value head (`model.safetensors`: `v_head.*` weights only, where trl reads them) and the SHA-256 of the base
weights it was trained on (`base_model.json`). During PPO the reference was the
same model with its adapter disabled. `course_lib.models.load_policy` and
`course_lib.train.load_checkpoint` load the folder on its bundled base and merge
the adapter (an ordinary `GPT2LMHeadModel`, with the value head when asked);
the standard calls load it too, from any working directory, offline: peft's
`AutoPeftModelForCausalLM.from_pretrained(folder)` and trl's
`AutoModelForCausalLMWithValueHead.from_pretrained(folder)` (trained value head
included). `adapter_config.json` names the base `gpt2-imdb-mini`, which those
calls look up in the Hugging Face cache: `course_lib.assets.register_in_hf_cache()`
(called by the cpu profile's `make_config`) registers the bundled base there
under that name (links to the verified files, nothing copied). The tokenizer is the base's."""
    else:
        stored = """Loads like the base model
(`AutoModelForCausalLM.from_pretrained`, `AutoModelForCausalLMWithValueHead.from_pretrained`);
the value head is stored too."""
    return f"""# {name}

The course's **{role}**: `gpt2-imdb-mini` tuned with trl 0.11.4's `PPOTrainer`
to write reviews that the reward model (`distilbert-imdb-mini`) scores as
**{sentiment}**. {stored} `training_stats.json` holds the per-step
statistics (mean reward, KL, losses, entropy, times).

## Training
```json
{json.dumps(info['config'], indent=1)}
```

{info['steps']} PPO steps in {info['train_minutes']} minutes on the project's 2-core build machine
({info['torch_threads']} torch thread(s)); seed {info['config']['seed']}. {_engine_note(info)}
{info.get('build_note', '')}

## Evaluation ({ev['n']} held-out prompts from IMDb test reviews, same seed for every model)
Two judges read each prompt + response: the reward model (logits) and VADER
(`vaderSentiment` 3.3.2, rule-based, never seen by PPO), whose compound score
calls a text positive above 0.05 and negative below -0.05.

| metric | value |
|---|---|
{rows}
{_best_of_n_note(ev, sentiment)}"""


def _engine_note(info: dict) -> str:
    if info.get("engine", "trl") == "course":
        return ("The step: `course_instructor.ppo.CoursePPO.step` on the `PPOTrainer`'s model, optimizer and KL "
                "controller, the same algorithm checked equal to trl's `PPOTrainer.step` "
                "(tests/test_ppo.py) and faster (docs/benchmarks.md).")
    return "The step: trl's `PPOTrainer.step`."


def _best_of_n_note(ev: dict, sentiment: str) -> str:
    bon = ev.get("best_of_n")
    if not bon:
        return ""
    return f"""
The last row is a yardstick: drawing {bon['n']} responses per prompt from the
reference and keeping the one the classifier scores highest raises the mean
{sentiment} logit by {bon['gain']:+.2f} over the reference's mean, at a KL of at most
{bon['kl_bound']:.2f} nats. Recompute it, with more samples, by
`python benchmarks/bench_reward_ceiling.py`.
"""
