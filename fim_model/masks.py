"""Attention patterns of block diffusion.

Every token carries a *group*: each context token is a group of its own (so context is
plain causal text) and each block of B middle tokens is one group. A token may attend
to every token of an earlier or the same group: causal across blocks, bidirectional
inside a block. Because no token sees a later group, the keys and values of finished
groups never change: the cache is exact.
"""

from __future__ import annotations

import torch


def token_groups(n_context: int, n_middle: int, block_size: int) -> torch.Tensor:
    ctx = torch.arange(n_context)
    mid = n_context + torch.arange(n_middle) // block_size
    return torch.cat((ctx, mid))


def group_mask(query_groups: torch.Tensor, key_groups: torch.Tensor) -> torch.Tensor:
    """Boolean [Tq, Tk]: query may attend key."""
    return key_groups.unsqueeze(0) <= query_groups.unsqueeze(1)


def two_copy_mask(n_context: int, n_middle: int, block_size: int, seq_len: int) -> torch.Tensor:
    """The BD3-LM training layout: [context | clean middle | noisy middle | padding].

    The clean copy is what inference caches once a block is committed; the noisy copy of
    block k sees the context, the clean copy of blocks < k and its own noisy block, and
    never the clean tokens of its own or later blocks. Padding attends only to itself.
    """
    ctx_mid = token_groups(n_context, n_middle, block_size)
    clean = group_mask(ctx_mid, ctx_mid)  # context + clean copy: ordinary block-causal
    noisy_groups = ctx_mid[n_context:]
    noisy_to_ctx_clean = ctx_mid.unsqueeze(0) < noisy_groups.unsqueeze(1)
    noisy_to_noisy = noisy_groups.unsqueeze(0) == noisy_groups.unsqueeze(1)

    n_real = n_context + 2 * n_middle
    if n_real > seq_len:
        raise ValueError(f"example of {n_real} tokens exceeds seq_len {seq_len}")
    mask = torch.zeros(seq_len, seq_len, dtype=torch.bool)
    a = n_context + n_middle
    mask[:a, :a] = clean
    mask[a:n_real, :a] = noisy_to_ctx_clean
    mask[a:n_real, a:n_real] = noisy_to_noisy
    pad = torch.arange(n_real, seq_len)
    mask[pad, pad] = True
    return mask
