"""Train ``distilbert-imdb-mini``: the IMDb sentiment classifier used as reward model.

Maintainer tool (``make assets``).  A small DistilBertForSequenceClassification
with the real uncased BERT vocabulary, trained on IMDb *train* only.

The lab scores short texts (a 2-8 token prompt plus a 4-16 token response), so a
fraction (``--short-frac``) of the training examples are short word windows of
a review, labelled with the review's label; the rest are whole reviews (first
``train_len`` tokens).  Short windows mostly taken from a review's opening, like the lab's
prompts.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.builders.common import (
    bert_tokenizer_from_shared,
    builder_parser,
    clean_review,
    log,
    read_imdb_split,
    set_build_seed,
)

ID2LABEL = {0: "NEGATIVE", 1: "POSITIVE"}


def short_window(words: list[str], rng: np.random.Generator, lo: int = 4, hi: int = 24) -> str:
    """A window of ``lo``-``hi`` words; half the time the review's opening."""
    n = int(rng.integers(lo, hi + 1))
    if len(words) <= n:
        return " ".join(words)
    start = 0 if rng.random() < 0.5 else int(rng.integers(0, len(words) - n + 1))
    return " ".join(words[start:start + n])


def make_epoch(texts: list[str], labels: list[int], rng: np.random.Generator, short_frac: float):
    out_t, out_y = [], []
    for t, y in zip(texts, labels):
        if rng.random() < short_frac:
            out_t.append(short_window(t.split(), rng))
        else:
            out_t.append(t)
        out_y.append(y)
    return out_t, out_y


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
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(**b).logits.float()
        correct += int((logits.argmax(-1).numpy() == np.asarray(labels)[idx]).sum())
    return correct / len(texts)


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
    p.add_argument("--short-frac", type=float, default=0.3)
    p.add_argument("--dropout", type=float, default=0.0, help="dropout of every layer and of the classifier head")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    set_build_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rng = np.random.default_rng(args.seed)

    tok = bert_tokenizer_from_shared(args.data_dir, args.max_length)
    texts, labels = read_imdb_split(args.data_dir, "train", with_labels=True)
    texts = [clean_review(t) for t in texts]
    order = rng.permutation(len(texts))
    val_idx, train_idx = order[:1000], order[1000:]
    tr_t, tr_y = [texts[i] for i in train_idx], [labels[i] for i in train_idx]
    va_t, va_y = [texts[i] for i in val_idx], [labels[i] for i in val_idx]
    va_short = [short_window(t.split(), np.random.default_rng(i), 16, 16) for i, t in enumerate(va_t)]

    cfg = DistilBertConfig(
        vocab_size=tok.vocab_size, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
        hidden_dim=4 * args.dim, max_position_embeddings=args.max_length,
        id2label=dict(ID2LABEL), label2id={v: k for k, v in ID2LABEL.items()},
        dropout=args.dropout, attention_dropout=args.dropout, seq_classif_dropout=args.dropout,
        pad_token_id=tok.pad_token_id,
    )
    model = DistilBertForSequenceClassification(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(tr_t) / args.batch)
    total = steps_per_epoch * args.epochs
    warm = min(300, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
    history = []
    from tqdm.auto import tqdm
    for epoch in range(args.epochs):
        ep_t, ep_y = make_epoch(tr_t, tr_y, rng, args.short_frac)
        enc = tok(ep_t, truncation=True, max_length=args.train_len)["input_ids"]
        lens = np.array([len(e) for e in enc])
        ys = torch.tensor(ep_y)
        model.train()
        run_loss = 0.0
        bar = tqdm(batches_by_length(lens, args.batch, rng), desc=f"classifier epoch {epoch + 1}", mininterval=10)
        for i, idx in enumerate(bar):
            b = tok.pad({"input_ids": [enc[j] for j in idx]}, return_tensors="pt")
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(**b).logits.float()
            loss = F.cross_entropy(logits, ys[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(); sched.step(); opt.zero_grad()
            run_loss = 0.98 * run_loss + 0.02 * float(loss.detach()) if i else float(loss.detach())
            if i % 50 == 0:
                bar.set_postfix(loss=f"{run_loss:.3f}", refresh=False)
        rec = {"epoch": epoch + 1, "train_loss": run_loss,
               "val_acc_whole": accuracy(model, tok, va_t, va_y, args.max_length),
               "val_acc_16_words": accuracy(model, tok, va_short, va_y, args.max_length),
               "minutes": (time.time() - t0) / 60}
        history.append(rec)
        log(json.dumps(rec))
    train_minutes = (time.time() - t0) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    model.to(torch.float16).save_pretrained(args.out, safe_serialization=True)
    tok.save_pretrained(args.out)
    info = {k: v for k, v in vars(args).items() if k not in ("data_dir", "out", "work")}
    info.update({"train_minutes": round(train_minutes, 1), "history": history, "torch_threads": torch.get_num_threads()})
    (args.work / "train_info.json").write_text(json.dumps(info, indent=1))
    log(f"done in {train_minutes:.1f} min -> {args.out}")


if __name__ == "__main__":
    main()
