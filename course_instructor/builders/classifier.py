"""Train ``distilbert-imdb-mini``: the IMDb sentiment classifier used as reward model.

Maintainer tool (``make assets``).  A small DistilBertForSequenceClassification
with the real uncased BERT vocabulary, trained from scratch on IMDb *train*
(labelled) and *unsupervised* (unlabelled) reviews; the test split is never seen.

Recipe: knowledge distillation from two bag-of-bigrams teachers.

1. Two logistic regressions on WordPiece tokens and token pairs
   (``teacher.py``), each giving a log-odds of POSITIVE:
   - the *whole-review teacher*, fitted on the labelled train reviews (about
     91% on whole test reviews);
   - the *opening teacher*, fitted on review openings (the first 4-24 GPT-2
     tokens, what the lab's prompts are cut from) of the labelled reviews and
     of the unlabelled reviews the whole-review teacher is sure about
     (|log-odds| > ``--pseudo-margin``), labelled with its verdict.  An
     opening says less than its review; the unlabelled reviews triple the
     openings it learns from (measured: 69.1% -> 71.1% on test openings).
2. The student is trained with soft targets (cross-entropy against a
   probability of POSITIVE) on, every epoch:
   - each labelled review, whole (first ``train_len`` tokens): target
     ``--label-weight`` x its label + the rest x the whole-review teacher;
   - one opening of each labelled review (4-24 GPT-2 tokens): the same mix
     with the opening teacher judging the opening itself, so an opening
     without sentiment gets a target nearer 0.5 than its review's label;
   - one window from inside each labelled review (4-24 words): the same mix
     with the whole-review teacher judging the window;
   - ``--unsup`` unlabelled reviews as an opening (target: the mix of the
     whole-review teacher's verdict on the review and the opening teacher's
     on the opening), ``--unsup-whole`` of them also whole (the whole-review
     teacher's probability);
   - ``--phrases`` short verdicts from word lists (``phrases.py``: praise,
     pans, negations), half of them after a review's first 2-8 words (as the
     lab's prompt + response), with sharp targets: what a reader knows and the
     review labels do not teach.
   A small penalty ``--sym`` on (POSITIVE + NEGATIVE logit)^2 keeps the two
   logits opposite, so the POSITIVE logit alone (the lab's reward) carries the
   whole margin.

The lab scores short texts (a 2-8 token prompt plus a 4-16 token response):
the windows and verdicts are for them.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_instructor.builders.common import (
    bert_tokenizer_from_shared,
    builder_parser,
    clean_review,
    gpt2_tokenizer_from_shared,
    log,
    read_imdb_split,
    set_build_seed,
)

ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}


#: Openings are the first 4-24 GPT-2 tokens of a cleaned review (the metric uses 16).
OPENING_TOKENS = (4, 24)


def opening_ids(gtok, texts: list[str]) -> list[list[int]]:
    """The GPT-2 token ids of each text's start (its first 400 characters: more than any opening needs)."""
    return gtok([t[:400] for t in texts])["input_ids"]


def openings(gtok, texts: list[str], rng: np.random.Generator | None, n: int | None = None,
             ids: list[list[int]] | None = None) -> list[str]:
    """The first ``n`` GPT-2 tokens of each text, decoded (``n`` drawn per text from OPENING_TOKENS if None).

    ``ids``: the texts' :func:`opening_ids`, when already computed.
    """
    lo, hi = OPENING_TOKENS
    ids = opening_ids(gtok, texts) if ids is None else ids
    return [gtok.decode(i[:n if n is not None else int(rng.integers(lo, hi + 1))]) for i in ids]


def inner_window(words: list[str], rng: np.random.Generator, lo: int = 4, hi: int = 24) -> str:
    """A window of ``lo``-``hi`` words that starts after the review's first word (shorter if the review is)."""
    if len(words) < 2:
        return " ".join(words)
    n = min(int(rng.integers(lo, hi + 1)), len(words) - 1)
    start = int(rng.integers(1, len(words) - n + 1))
    return " ".join(words[start:start + n])


def batches_by_length(enc_lens: np.ndarray, batch: int, rng: np.random.Generator):
    """Shuffled batches of similar length (less padding), in random order."""
    order = rng.permutation(len(enc_lens))
    chunks = [order[i:i + batch * 50] for i in range(0, len(order), batch * 50)]
    out = []
    for c in chunks:
        c = c[np.argsort(enc_lens[c], kind="stable")]
        out += [c[i:i + batch] for i in range(0, len(c), batch)]
    rng.shuffle(out)
    return out


@torch.no_grad()
def accuracy(model, tok, texts: list[str], labels: list[int], max_length: int, batch: int = 128) -> float:
    """Fraction of ``texts`` classified as their label (texts truncated to ``max_length`` tokens)."""
    model.eval()
    enc = tok(texts, truncation=True, max_length=max_length)["input_ids"]
    lens = np.array([len(e) for e in enc])
    order = np.argsort(lens)
    correct = 0
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        b = tok.pad({"input_ids": [enc[j] for j in idx]}, return_tensors="pt")
        logits = model(**b).logits.float()
        correct += int((logits.argmax(-1).numpy() == np.asarray(labels)[idx]).sum())
    return correct / len(texts)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def _cached_teacher(path: Path, fit):
    """A teacher from ``path`` (npz), or ``fit()`` -> (teacher, info) saved there atomically."""
    from course_instructor.builders import teacher

    if path.is_file():
        d = np.load(path)
        log(f"teacher loaded from {path}")
        return teacher.Teacher(int(d["vocab_size"]), d["pair_codes"], d["weights"], float(d["bias"])), \
            json.loads(str(d["info"]))
    t, info = fit()
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, vocab_size=t.vocab_size, pair_codes=t.pair_codes, weights=t.weights, bias=t.bias,
             info=json.dumps(info))
    tmp.replace(path)
    return t, info


def fit_teachers(tok, gtok, texts: list[str], labels: list[int], unsup: list[str], args, work: Path):
    """The whole-review and the opening teacher (see the module docstring), cached in ``work``.

    Returns ``(whole, opening, info, unsup_log_odds)``: the last is the whole-review
    teacher's verdict on every unlabelled review.
    """
    from course_instructor.builders import teacher

    def ids(xs):
        return tok(xs, add_special_tokens=False)["input_ids"]

    def fit_whole():
        t0 = time.time()
        t = teacher.fit(ids(texts), labels, tok.vocab_size, min_df=args.teacher_min_df,
                        epochs=args.teacher_epochs, seed=args.seed, log=log)
        return t, {"features": int(len(t.weights)), "min_df": args.teacher_min_df, "epochs": args.teacher_epochs,
                   "minutes": round((time.time() - t0) / 60, 1)}

    whole, whole_info = _cached_teacher(work / "teacher-whole.npz", fit_whole)
    z_unsup = whole.log_odds(ids(unsup))

    def fit_opening():
        t0 = time.time()
        sure = np.flatnonzero(np.abs(z_unsup) > args.pseudo_margin)
        lo, hi = OPENING_TOKENS
        starts = opening_ids(gtok, texts + [unsup[i] for i in sure])  # tokenised once for the five lengths
        targets = [float(y) for y in labels] + [float(z > 0) for z in z_unsup[sure]]
        xs, ys = [], []
        for n in range(lo + 2, hi + 1, 4):  # 6, 10, 14, 18, 22 tokens
            xs += openings(gtok, texts, None, n, ids=starts)
            ys += targets
        t = teacher.fit(ids(xs), ys, tok.vocab_size, min_df=2, epochs=args.teacher_epochs, seed=args.seed, log=log)
        return t, {"features": int(len(t.weights)), "min_df": 2, "epochs": args.teacher_epochs,
                   "pseudo_labelled": int(len(sure)), "pseudo_margin": args.pseudo_margin,
                   "minutes": round((time.time() - t0) / 60, 1)}

    opening, opening_info = _cached_teacher(work / "teacher-openings.npz", fit_opening)
    return whole, opening, {"whole": whole_info, "openings": opening_info}, z_unsup


def teacher_accuracy(t, tok, texts: list[str], labels: list[int]) -> float:
    z = t.log_odds(tok(texts, add_special_tokens=False)["input_ids"])
    return float(((z > 0).astype(int) == np.asarray(labels)).mean())


def make_epoch(whole_t, open_t, tok, gtok, tr_t, tr_y, unsup, z_unsup, args, rng):
    """One epoch's texts and target probabilities of POSITIVE (see the module docstring)."""
    from course_instructor.builders import phrases

    w = args.label_weight
    texts, targets = [], []

    def judged(t, batch_texts):
        return sigmoid(t.log_odds(tok(batch_texts, add_special_tokens=False)["input_ids"]))

    y = np.asarray(tr_y, dtype=float)
    pick = rng.permutation(len(tr_t))[:args.whole or len(tr_t)]
    whole = [tr_t[i] for i in pick]
    opens = openings(gtok, tr_t, rng)
    inner = [inner_window(x.split(), rng) for x in tr_t]
    texts += whole + opens + inner
    targets += list(w * y[pick] + (1 - w) * judged(whole_t, whole))
    targets += list(w * y + (1 - w) * judged(open_t, opens)) + list(w * y + (1 - w) * judged(whole_t, inner))
    if args.unsup:
        pick = rng.choice(len(unsup), size=min(args.unsup, len(unsup)), replace=False)
        u = [unsup[i] for i in pick]
        uo = openings(gtok, u, rng)
        texts += uo + u[:args.unsup_whole]
        targets += list(w * sigmoid(z_unsup[pick]) + (1 - w) * judged(open_t, uo))
        targets += list(sigmoid(z_unsup[pick[:args.unsup_whole]]))
    ph, pp = phrases.phrases(args.phrases, rng)
    for i in range(len(ph)):
        if rng.random() < 0.5:
            opening = tr_t[int(rng.integers(len(tr_t)))].split()[:int(rng.integers(2, 9))]
            ph[i] = " ".join(opening) + " " + ph[i]
    texts += ph
    targets += pp
    return texts, np.asarray(targets, dtype=np.float32)


def main(argv=None) -> None:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    p = builder_parser(__doc__.split("\n")[0], "build/assets-work/classifier", seed_default=4321)
    p.add_argument("--dim", type=int, default=96)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--max-length", type=int, default=512, help="model_max_length and position embeddings")
    p.add_argument("--train-len", type=int, default=256, help="tokens of a whole review during training")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--dropout", type=float, default=0.0, help="dropout of every layer and of the classifier head")
    p.add_argument("--label-weight", type=float, default=0.5,
                   help="weight of the review's label in a labelled text's target (the rest: the teacher's)")
    p.add_argument("--whole", type=int, default=0, help="labelled reviews used whole per epoch (0 = all of them)")
    p.add_argument("--unsup", type=int, default=12000, help="unlabelled reviews per epoch, one window of each")
    p.add_argument("--unsup-whole", type=int, default=12000, help="how many of those are also used whole")
    p.add_argument("--init", type=Path, default=None,
                   help="warm start: a classifier folder of the same shape to start from (default: random init)")
    p.add_argument("--phrases", type=int, default=16000, help="word-list verdicts per epoch (phrases.py)")
    p.add_argument("--sym", type=float, default=0.01, help="penalty on (POSITIVE + NEGATIVE logit)^2")
    p.add_argument("--teacher-min-df", type=int, default=3,
                   help="whole-review teacher: keep bigrams seen in at least this many texts")
    p.add_argument("--pseudo-margin", type=float, default=1.0,
                   help="opening teacher: unlabelled reviews whose whole-review log-odds exceed this, labelled")
    p.add_argument("--teacher-epochs", type=int, default=6)
    p.add_argument("--init-note", default="", help="one line for the model card about the --init weights")
    p.add_argument("--limit", type=int, default=0, help="use only this many reviews per split (smoke tests)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_build_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rng = np.random.default_rng(args.seed)

    tok = bert_tokenizer_from_shared(args.data_dir, args.max_length)
    texts, labels = read_imdb_split(args.data_dir, "train", with_labels=True)
    unsup = read_imdb_split(args.data_dir, "unsupervised")
    if args.limit:
        keep = np.random.default_rng(0).permutation(len(texts))[:args.limit]
        texts, labels, unsup = [texts[i] for i in keep], [labels[i] for i in keep], unsup[:args.limit]
    texts = [clean_review(t) for t in texts]
    unsup = [clean_review(t) for t in unsup]
    order = rng.permutation(len(texts))
    n_val = min(1000, len(texts) // 10)
    val_idx, train_idx = order[:n_val], order[n_val:]
    tr_t, tr_y = [texts[i] for i in train_idx], [labels[i] for i in train_idx]
    va_t, va_y = [texts[i] for i in val_idx], [labels[i] for i in val_idx]
    gtok = gpt2_tokenizer_from_shared(args.data_dir)
    va_open = openings(gtok, va_t, None, 16)  # as the metric: the first 16 GPT-2 tokens

    whole_t, open_t, teacher_info, z_unsup = fit_teachers(tok, gtok, tr_t, tr_y, unsup, args, args.work)
    teacher_info["whole"]["val_acc_whole"] = teacher_accuracy(whole_t, tok, va_t, va_y)
    for name, t in (("whole", whole_t), ("openings", open_t)):
        teacher_info[name]["val_acc_16_token_openings"] = teacher_accuracy(t, tok, va_open, va_y)
    log(f"teachers: {json.dumps(teacher_info)}")

    cfg = DistilBertConfig(
        vocab_size=tok.vocab_size, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
        hidden_dim=4 * args.dim, max_position_embeddings=args.max_length,
        id2label=dict(ID2LABEL), label2id={v: k for k, v in ID2LABEL.items()},
        dropout=args.dropout, attention_dropout=args.dropout, seq_classif_dropout=args.dropout,
        pad_token_id=tok.pad_token_id,
    )
    if args.init is not None:
        model = DistilBertForSequenceClassification.from_pretrained(args.init, torch_dtype=torch.float32)
        if model.config.dim != args.dim or model.config.n_layers != args.layers:
            raise ValueError(f"--init {args.init} has dim {model.config.dim} and {model.config.n_layers} layers; "
                             f"expected dim {args.dim} and {args.layers} layers")
        model.config.update({"dropout": args.dropout, "attention_dropout": args.dropout,
                             "seq_classif_dropout": args.dropout})
        args.init = str(args.init)
    else:
        model = DistilBertForSequenceClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    n_unsup = min(args.unsup, len(unsup))
    n_epoch = (min(args.whole or len(tr_t), len(tr_t)) + 2 * len(tr_t) + n_unsup + min(args.unsup_whole, n_unsup)
               + args.phrases)
    steps_per_epoch = math.ceil(n_epoch / args.batch)
    total = steps_per_epoch * args.epochs
    warm = min(300, max(1, total // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
    history, start_epoch, spent = [], 0, 0.0
    ckpt = args.work / "checkpoint.pt"
    if ckpt.is_file():  # resume after the last finished epoch
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        history, start_epoch, spent = state["history"], state["epoch"], state["minutes"]
        log(f"resumed after epoch {start_epoch} ({spent:.1f} min spent)")
    from tqdm.auto import tqdm
    for epoch in range(start_epoch, args.epochs):
        ep_t, ep_p = make_epoch(whole_t, open_t, tok, gtok, tr_t, tr_y, unsup, z_unsup, args, rng)
        enc = tok(ep_t, truncation=True, max_length=args.train_len)["input_ids"]
        lens = np.array([len(e) for e in enc])
        ps = torch.from_numpy(ep_p)
        model.train()
        run_loss = 0.0
        bar = tqdm(batches_by_length(lens, args.batch, rng), desc=f"classifier epoch {epoch + 1}", mininterval=30)
        for i, idx in enumerate(bar):
            b = tok.pad({"input_ids": [enc[j] for j in idx]}, return_tensors="pt")
            logits = model(**b).logits.float()
            target = torch.stack([1 - ps[idx], ps[idx]], dim=1)
            loss = -(target * F.log_softmax(logits, dim=-1)).sum(-1).mean()
            loss = loss + args.sym * logits.sum(-1).pow(2).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); sched.step(); opt.zero_grad()
            run_loss = 0.98 * run_loss + 0.02 * float(loss.detach()) if i else float(loss.detach())
            if i % 50 == 0:
                bar.set_postfix(loss=f"{run_loss:.3f}", refresh=False)
        rec = {"epoch": epoch + 1, "texts": len(ep_t), "train_loss": run_loss,
               "val_acc_whole": accuracy(model, tok, va_t, va_y, args.max_length),
               "val_acc_16_token_openings": accuracy(model, tok, va_open, va_y, args.max_length),
               "minutes": spent + (time.time() - t0) / 60}
        history.append(rec)
        log(json.dumps(rec))
        tmp = args.work / "checkpoint.tmp.pt"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "rng": rng.bit_generator.state, "history": history, "epoch": epoch + 1,
                    "minutes": rec["minutes"]}, tmp)
        tmp.replace(ckpt)
    train_minutes = spent + (time.time() - t0) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(args.out, safe_serialization=True)
    tok.save_pretrained(args.out)
    info = {k: v for k, v in vars(args).items() if k not in ("data_dir", "out", "work")}
    info.update({"train_minutes": round(train_minutes, 1), "history": history, "torch_threads": torch.get_num_threads(),
                 "teacher": teacher_info,
                 "command": "python -m course_instructor.builders.classifier " + " ".join(sys.argv[1:] if argv is None else argv)})
    tmp = args.work / "train_info.tmp.json"
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(args.work / "train_info.json")
    log(f"done in {train_minutes:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
