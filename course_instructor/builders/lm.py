"""Pre-train ``gpt2-imdb-mini``: a small GPT-2 that writes IMDb movie reviews.

Maintainer tool (``make assets``); students never run it.  It reads the full
IMDb data from ``../shared/data`` and writes a standard Hugging Face folder.

Why the training vocabulary is smaller than GPT-2's
---------------------------------------------------
With 128-wide hidden states most of the compute goes into the 50,257-way
output softmax.  IMDb text uses far fewer tokens: the most frequent
``keep - 1`` GPT-2 tokens cover ~96% of it.  We therefore train with a
``keep``-way softmax whose last class is a *rare-token bucket*, then export an
exact full-vocabulary GPT-2:

* One hidden dimension ``r`` (the last one) is pinned to the constant ``C``
  at the final layer norm (weight 0, bias ``C``, frozen).  With tied input and
  output embeddings, ``C * E[token, r]`` is then a per-token output bias.
* A rare token ``t`` gets the bucket's embedding with ``E[t, r]`` shifted by
  ``log q(t) / C``, where ``q(t)`` is its smoothed frequency among rare
  tokens.  Its logit is the bucket's logit plus ``log q(t)``; the bucket's
  probability is spread over the rare tokens by unigram frequency and the
  full-vocabulary softmax sums to exactly the same normaliser.
* Training feeds rare tokens through exactly that exported input embedding,
  so the exported model computes the same function it was trained as.

The perplexity reported in the model card is measured on the exported
full-vocabulary model with the real GPT-2 tokenizer.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course_instructor.builders.common import (
    builder_parser,
    clean_review,
    gpt2_tokenizer_from_shared,
    log,
    read_imdb_split,
    set_build_seed,
)

PIN_VALUE = 8.0  # the constant C of the pinned hidden dimension (see module doc)


def chunk_reviews(token_lists: list[list[int]], eos: int, ctx: int, min_len: int = 16) -> list[list[int]]:
    """Split each review (token ids + EOS) into windows of at most ``ctx`` tokens.

    Every window starts at position 0, and one window in three or so is the
    start of a review: the lab prompts the model with review openings.
    Windows shorter than ``min_len`` tokens are dropped.
    """
    windows = []
    for ids in token_lists:
        ids = list(ids) + [eos]
        for start in range(0, len(ids), ctx):
            w = ids[start:start + ctx]
            if len(w) >= min_len:
                windows.append(w)
    return windows


def pad_windows(windows: list[list[int]], ctx: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack windows into an int32 array; the mask marks real tokens."""
    arr = np.zeros((len(windows), ctx), dtype=np.int32)
    mask = np.zeros((len(windows), ctx), dtype=bool)
    for i, w in enumerate(windows):
        arr[i, : len(w)] = w
        mask[i, : len(w)] = True
    return arr, mask


class ReducedVocab:
    """Maps GPT-2 ids to the training vocabulary (kept tokens + one bucket)."""

    def __init__(self, counts: np.ndarray, keep: int, eos: int):
        order = np.argsort(-counts, kind="stable")
        kept = [int(t) for t in order if counts[t] > 0][: keep - 1]
        if eos not in kept:
            kept = kept[:-1] + [eos]
        self.keep = keep
        self.bucket = keep - 1
        self.kept = np.array(kept, dtype=np.int64)
        self.to_small = np.full(len(counts), self.bucket, dtype=np.int64)
        self.to_small[self.kept] = np.arange(len(kept))
        rare = np.ones(len(counts), dtype=bool)
        rare[self.kept] = False
        smoothed = (counts + 0.5) * rare  # add-half smoothing over rare tokens only
        self.log_q = np.zeros(len(counts), dtype=np.float64)
        self.log_q[rare] = np.log(smoothed[rare] / smoothed[rare].sum())
        self.coverage = counts[self.kept].sum() / counts.sum()

    def input_shift(self) -> torch.Tensor:
        """Per GPT-2 id: the shift added to embedding dim ``r`` (0 for kept tokens)."""
        return torch.tensor(self.log_q / PIN_VALUE, dtype=torch.float32)


def build_model(vocab: int, layers: int, dim: int, heads: int, ctx: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        vocab_size=vocab, n_positions=ctx, n_embd=dim, n_layer=layers, n_head=heads,
        bos_token_id=50256, eos_token_id=50256, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        model.transformer.ln_f.weight[-1] = 0.0
        model.transformer.ln_f.bias[-1] = PIN_VALUE
    return model


def pin_grads(model) -> None:
    """Keep the pinned dimension constant: no gradient on its ln_f entries."""
    model.transformer.ln_f.weight.grad[-1] = 0.0
    model.transformer.ln_f.bias.grad[-1] = 0.0


def forward_loss(model, big_ids: torch.Tensor, mask: torch.Tensor, rv_small: torch.Tensor,
                 shift: torch.Tensor, log_q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token loss in nats, in the full GPT-2 vocabulary, and the token count."""
    small = rv_small[big_ids]
    emb = model.transformer.wte(small)
    emb = emb.clone()
    emb[..., -1] = emb[..., -1] + shift[big_ids]
    logits = model(inputs_embeds=emb, attention_mask=mask.long()).logits[:, :-1].float()
    target_small = small[:, 1:]
    tmask = mask[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_small.reshape(-1), reduction="none")
    nll = nll - log_q[big_ids[:, 1:]].reshape(-1)  # rare tokens: -log p(bucket) - log q(t)
    nll = nll * tmask.reshape(-1)
    n = tmask.sum()
    return nll.sum() / n, n


def export_full(model, rv: ReducedVocab, out_dir: Path, tokenizer) -> None:
    """Write the exact full-vocabulary GPT2LMHeadModel (see module doc)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    small_cfg = model.config
    cfg = GPT2Config(**{**small_cfg.to_dict(), "vocab_size": len(tokenizer)})
    cfg.pad_token_id = tokenizer.eos_token_id
    full = GPT2LMHeadModel(cfg)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(("transformer.wte", "lm_head"))}
    small_wte = model.transformer.wte.weight.detach()
    wte = small_wte[torch.as_tensor(rv.to_small)].clone()
    wte[:, -1] += rv.input_shift()
    sd["transformer.wte.weight"] = wte
    sd["lm_head.weight"] = wte
    full.load_state_dict(sd, strict=True)
    full.tie_weights()
    full.generation_config.pad_token_id = tokenizer.eos_token_id
    full.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)


@torch.no_grad()
def perplexity(model, tokenizer, texts: list[str], ctx: int, batch: int = 64) -> float:
    """Token perplexity of a full-vocabulary causal LM on ``texts``.

    Each review (+EOS) is cut into windows of ``ctx`` tokens starting at
    position 0, as in training; every token after a window's first counts.
    """
    ids = tokenizer([clean_review(t) for t in texts])["input_ids"]
    windows = chunk_reviews(ids, tokenizer.eos_token_id, ctx, min_len=2)
    arr, mask = pad_windows(windows, ctx)
    total, count = 0.0, 0
    model.eval()
    for i in range(0, len(arr), batch):
        x = torch.as_tensor(arr[i:i + batch], dtype=torch.long)
        m = torch.as_tensor(mask[i:i + batch])
        logits = model(input_ids=x, attention_mask=m.long()).logits[:, :-1].float()
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="none")
        tm = m[:, 1:].reshape(-1)
        total += float((nll * tm).sum())
        count += int(tm.sum())
    return math.exp(total / count)


def load_full_into_small(model, rv: ReducedVocab, full_dir: Path) -> None:
    """Inverse of :func:`export_full`: load an exported full-vocabulary model into the training model.

    Kept tokens map row for row; the bucket's row is any rare token's row with
    its frequency shift on the pinned dimension taken off again (all rare rows
    are the bucket's row plus that shift, up to float16 rounding).
    """
    from transformers import GPT2LMHeadModel

    full = GPT2LMHeadModel.from_pretrained(full_dir, torch_dtype=torch.float32)
    for key in ("n_layer", "n_embd", "n_head", "n_positions"):
        if getattr(full.config, key) != getattr(model.config, key):
            raise ValueError(f"{full_dir}: {key}={getattr(full.config, key)} but the run asks for "
                             f"{getattr(model.config, key)}; pass matching --layers/--dim/--heads/--ctx")
    sd = {k: v for k, v in full.state_dict().items() if not k.startswith(("transformer.wte", "lm_head"))}
    big = full.transformer.wte.weight.detach()
    small = big[torch.as_tensor(rv.kept)]
    rare = np.flatnonzero(rv.to_small == rv.bucket)
    t = int(rare[np.argmax(rv.log_q[rare])])  # the most frequent rare token
    bucket = big[t].clone()
    bucket[-1] -= float(rv.log_q[t]) / PIN_VALUE
    sd["transformer.wte.weight"] = torch.cat([small, bucket[None]], 0)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict(sd, strict=True)
    model.tie_weights()


def _maybe_retune_threads(work: Path) -> None:
    """Let a maintainer change the thread count of a running build (file ``threads`` in the work folder)."""
    f = work / "threads"
    if f.is_file():
        try:
            n = int(f.read_text().strip())
        except ValueError:
            return
        if n > 0 and n != torch.get_num_threads():
            torch.set_num_threads(n)
            log(f"now using {n} threads")


def main(argv=None) -> None:
    p = builder_parser(__doc__.split("\n")[0], "build/assets-work/lm", seed_default=1234)
    p.add_argument("--keep", type=int, default=12288, help="training vocabulary incl. the rare bucket")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ctx", type=int, default=128, help="window length in tokens (= n_positions)")
    p.add_argument("--batch", type=int, default=32, help="windows per step")
    p.add_argument("--steps", type=int, default=4500)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--export-checkpoint", action="store_true",
                   help="only export <work>/last.pt (an unfinished run) to --out, to try it early")
    p.add_argument("--resume", action="store_true",
                   help="continue from <work>/last.pt; the cosine schedule is recomputed for --steps in total")
    p.add_argument("--init-from", type=Path, default=None, metavar="DIR",
                   help="warm start: begin from an exported full-vocabulary model (e.g. the bundled "
                        "gpt2-imdb-mini) with a fresh optimizer, schedule and data order")
    p.add_argument("--order-seed", type=int, default=None, metavar="N",
                   help="seed of the training windows' order with --init-from (default: --seed + 1); "
                        "--seed also draws the validation reviews, so keep it and change this one "
                        "for a further warm-started stage")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward/backward (about 1.35x faster per step on CPU; "
                        "the first steps compile for a minute or so)")
    args = p.parse_args(argv)
    if args.order_seed is not None and args.init_from is None:
        p.error("--order-seed only applies with --init-from")
    if args.init_from is not None and args.resume:
        p.error("--init-from and --resume exclude each other")
    if args.export_checkpoint:
        export_checkpoint(args.data_dir, args.work, args.out, keep=args.keep, seed=args.seed)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    set_build_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    tok = gpt2_tokenizer_from_shared(args.data_dir)
    texts = read_imdb_split(args.data_dir, "train") + read_imdb_split(args.data_dir, "unsupervised")
    texts = [clean_review(t) for t in texts]
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(texts))
    val_texts = [texts[i] for i in order[:500]]
    train_texts = [texts[i] for i in order[500:]]
    log(f"tokenizing {len(train_texts)} reviews")
    ids = tok(train_texts)["input_ids"]
    counts = np.bincount(np.concatenate([np.asarray(i, dtype=np.int64) for i in ids]), minlength=len(tok))
    rv = ReducedVocab(counts, args.keep, tok.eos_token_id)
    log(f"kept {args.keep - 1} tokens + bucket: coverage {rv.coverage:.4f} of {counts.sum()} tokens")
    windows = chunk_reviews(ids, tok.eos_token_id, args.ctx)
    arr, mask = pad_windows(windows, args.ctx)
    log(f"{len(arr)} windows of <= {args.ctx} tokens, {int(mask.sum())} tokens; "
        f"{args.steps} steps x {args.batch} = {args.steps * args.batch / len(arr):.2f} epochs")

    model = build_model(args.keep, args.layers, args.dim, args.heads, args.ctx)
    init_note = None
    if args.init_from is not None:
        load_full_into_small(model, rv, args.init_from)
        # not the data order the initial model was trained on
        rng = np.random.default_rng(args.seed + 1 if args.order_seed is None else args.order_seed)
        init_note = str(args.init_from)
        log(f"warm start from {args.init_from}")
    train_model = torch.compile(model) if args.compile else model
    decay = [p_ for n, p_ in model.named_parameters() if p_.dim() >= 2]
    no_decay = [p_ for n, p_ in model.named_parameters() if p_.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    rv_small = torch.as_tensor(rv.to_small)
    shift = rv.input_shift()
    log_q = torch.tensor(rv.log_q, dtype=torch.float32)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        if start and step < start + 50:  # after a resume the schedule may jump (longer --steps): ramp up again
            return _cosine(step) * (step - start + 1) / 50
        return _cosine(step)

    def _cosine(step):
        frac = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    val_ids = tok(val_texts)["input_ids"]
    val_arr, val_mask = pad_windows(chunk_reviews(val_ids, tok.eos_token_id, args.ctx, min_len=2), args.ctx)

    def val_loss():
        model.eval()
        tot, n = 0.0, 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for i in range(0, len(val_arr), 64):
                x = torch.as_tensor(val_arr[i:i + 64], dtype=torch.long)
                m = torch.as_tensor(val_mask[i:i + 64])
                loss, cnt = forward_loss(model, x, m, rv_small, shift, log_q)
                tot += float(loss) * int(cnt); n += int(cnt)
        model.train()
        return tot / n

    history, start, tokens_seen, prior_minutes = [], 0, 0, 0.0
    if args.resume:
        state = torch.load(args.work / "last.pt", map_location="cpu")
        model.load_state_dict(state["model"])
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        start = state["step"]
        history = state.get("history", [])
        tokens_seen = state.get("tokens", int(start * args.batch * args.ctx * 0.85))
        prior_minutes = state.get("minutes", 0.0)
        init_note = state.get("init_from")
        rng = np.random.default_rng(args.seed + start)  # a fresh data order for the rest of the run
        log(f"resuming at step {start} of {args.steps} (optimizer state {'restored' if 'optimizer' in state else 'new'})")
    perm = rng.permutation(len(arr))
    pos = 0
    model.train()
    from tqdm.auto import tqdm
    bar = tqdm(range(start, args.steps), desc="pre-train LM", mininterval=10)
    for step in bar:
        if pos + args.batch > len(perm):
            perm, pos = rng.permutation(len(arr)), 0
        idx = np.sort(perm[pos:pos + args.batch]); pos += args.batch
        x = torch.as_tensor(arr[idx], dtype=torch.long)
        m = torch.as_tensor(mask[idx])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, n = forward_loss(train_model, x, m, rv_small, shift, log_q)
        loss.backward()
        pin_grads(model)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); opt.zero_grad(set_to_none=False)
        tokens_seen += int(n)
        if step % 50 == 0:
            _maybe_retune_threads(args.work)
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", refresh=False)
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            vl = val_loss()
            rec = {"step": step + 1, "train_loss": float(loss.detach()), "val_loss": vl, "val_ppl": math.exp(vl),
                   "tokens": tokens_seen, "minutes": prior_minutes + (time.time() - t0) / 60}
            history.append(rec)
            log(json.dumps(rec))
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step + 1,
                        "history": history, "tokens": tokens_seen, "init_from": init_note,
                        "minutes": prior_minutes + (time.time() - t0) / 60},
                       args.work / "last.pt")

    train_minutes = prior_minutes + (time.time() - t0) / 60
    args.out.mkdir(parents=True, exist_ok=True)
    export_full(model, rv, args.out, tok)
    tok.save_pretrained(args.out)
    info = {
        "seed": args.seed, "layers": args.layers, "dim": args.dim, "heads": args.heads, "ctx": args.ctx,
        "batch": args.batch, "steps": args.steps, "lr": args.lr, "keep": args.keep,
        "coverage": float(rv.coverage), "train_tokens": tokens_seen, "train_minutes": round(train_minutes, 1),
        "history": history, "torch_threads": torch.get_num_threads(), "resumed_at": start or None,
        "init_from": init_note, "compiled": bool(args.compile),
    }
    (args.work / "train_info.json").write_text(json.dumps(info, indent=1))
    log(f"done in {train_minutes:.1f} min -> {args.out}")



def export_checkpoint(data_dir: Path, work: Path, out: Path, keep: int = 12288, seed: int = 1234) -> None:
    """Export ``work/last.pt`` (an unfinished run) as a full-vocabulary model, for trying things early."""
    tok = gpt2_tokenizer_from_shared(data_dir)
    rv_file = work / "reduced_vocab_counts.npy"
    if rv_file.exists():
        counts = np.load(rv_file)
    else:
        texts = read_imdb_split(data_dir, "train") + read_imdb_split(data_dir, "unsupervised")
        texts = [clean_review(t) for t in texts]
        order = np.random.default_rng(seed).permutation(len(texts))
        ids = tok([texts[i] for i in order[500:]])["input_ids"]
        counts = np.bincount(np.concatenate([np.asarray(i, dtype=np.int64) for i in ids]), minlength=len(tok))
        np.save(rv_file, counts)
    rv = ReducedVocab(counts, keep, tok.eos_token_id)
    state = torch.load(work / "last.pt", map_location="cpu")
    sd = state["model"]
    cfg = sd["transformer.wte.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("transformer.h."))
    model = build_model(keep, layers, cfg[1], 4, sd["transformer.wpe.weight"].shape[0])
    model.load_state_dict(sd)
    out.mkdir(parents=True, exist_ok=True)
    export_full(model, rv, out, tok)
    tok.save_pretrained(out)
    log(f"exported step {state['step']} -> {out}")


if __name__ == "__main__":
    main()
