"""Padding helpers.

``left_pad`` stacks
prompts of different lengths for batched generation (with ``position_ids``
for the padded rows).  ``pad_to_batch_size``
fills a list up to a batch size with all-pad sequences; the original lab used
it to feed PPO fake samples with zero reward.  The course's training loop does
not do that (fake samples bias the reward statistics and the advantage
normalisation); the helper stays for the exercise that shows why.
(Right-padding one sequence to a length is exercise 1: students write it.)
"""
from __future__ import annotations

from typing import Sequence


def pad_to_batch_size(seqs: Sequence, batch_size: int, pad_token_id: int) -> list:
    """Append all-pad sequences (as long as the longest one) until there are ``batch_size``.

    Returns a new list; the input is not modified.  More sequences than
    ``batch_size`` raise ``ValueError``; an empty list raises ``ValueError`` too
    (there is no length to copy).
    """
    seqs = list(seqs)
    if not seqs:
        raise ValueError("cannot pad an empty list: there is no sequence length to copy")
    if len(seqs) > batch_size:
        raise ValueError(f"{len(seqs)} sequences exceed the batch size {batch_size}")
    longest = max(len(s) for s in seqs)
    template = seqs[0]
    while len(seqs) < batch_size:
        if isinstance(template, list):
            seqs.append([pad_token_id] * longest)
        else:
            import torch

            seqs.append(torch.full((longest,), pad_token_id, dtype=template.dtype, device=template.device))
    return seqs


def left_pad(seqs: Sequence, pad_token_id: int):
    """Stack 1-D id tensors into ``(ids, attention_mask)``, left-padded so every row ends at the last column.

    Left padding is what batched generation needs: each row's next token
    follows its own last token.  Tensors go to the device of ``seqs[0]``.
    """
    import torch

    width = max(len(s) for s in seqs)
    device = seqs[0].device
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(seqs), width), dtype=torch.long, device=device)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = s
        mask[i, width - len(s):] = 1
    return ids, mask


def position_ids(mask):
    """Positions counted from each row's first real token (0 on the padding), as GPT-2 expects them."""
    return (mask.cumsum(-1) - 1).clamp_(min=0)
