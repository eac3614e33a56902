"""The masked-diffusion training objective over fill-in-the-middle examples.

MDLM/LLaDA loss: for every middle block draw t ~ U(0, 1), replace each of its tokens by
<mask> with probability t, and score the cross-entropy of the masked positions weighted
by 1/t, which is an upper bound on the negative log-likelihood of the middle. All blocks
of a sequence train in one pass with the two-copy layout of `masks.two_copy_mask`.
With B = 1 every middle token is always masked (t = 1): the autoregressive twin.

Two choices for small models trained briefly on a CPU: t is drawn from U(0.15, 1)
rather than U(0, 1) (a clipped schedule in the spirit of BD3-LM: weights 1/t stay below
7, which cuts the variance of the gradient), and the causal context tokens also get an
ordinary next-token loss. Only the middle (perhaps 15% of a sequence) feeds the
diffusion loss; the auxiliary loss lets every context token teach the model code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .masks import two_copy_mask
from .tokenizer import SpecialIds
from .transformer import Transformer

MIN_MASK_RATE = 0.15


@dataclass(frozen=True)
class FimExample:
    context: list[int]  # <fim_suffix> S <fim_prefix> P <fim_middle>
    middle: list[int]  # M, then <eom> if the middle is complete, padded to a multiple of B


@dataclass
class DiffusionBatch:
    ids: torch.Tensor  # [batch, T]
    positions: torch.Tensor  # [batch, T]
    mask: torch.Tensor  # [batch, 1, T, T]
    targets: torch.Tensor  # [batch, T], -100 where no loss
    weights: torch.Tensor  # [batch, T], 1/t on masked noisy positions, else 0
    n_middle_tokens: int
    context_targets: torch.Tensor  # [batch, T], next context token, -100 elsewhere


def pad_middle(middle: list[int], block_size: int, pad_id: int) -> list[int]:
    return middle + [pad_id] * (-len(middle) % block_size)


def make_batch(
    examples: list[FimExample],
    block_size: int,
    seq_len: int,
    special: SpecialIds,
    generator: torch.Generator,
) -> DiffusionBatch:
    n = len(examples)
    ids = torch.full((n, seq_len), special.pad, dtype=torch.long)
    positions = torch.zeros((n, seq_len), dtype=torch.long)
    targets = torch.full((n, seq_len), -100, dtype=torch.long)
    context_targets = torch.full((n, seq_len), -100, dtype=torch.long)
    weights = torch.zeros((n, seq_len))
    masks = []
    n_middle_tokens = 0
    for row, ex in enumerate(examples):
        c, m = len(ex.context), len(ex.middle)
        if m % block_size:
            raise ValueError("middle must be padded to a multiple of the block size")
        middle = torch.tensor(ex.middle, dtype=torch.long)
        n_blocks = m // block_size
        if block_size == 1:
            rate = torch.ones(n_blocks)
        else:
            u = torch.rand(n_blocks, generator=generator)
            rate = MIN_MASK_RATE + (1 - MIN_MASK_RATE) * u
        rate_per_token = rate.repeat_interleave(block_size)
        masked = torch.rand(m, generator=generator) < rate_per_token
        noisy = torch.where(masked, torch.tensor(special.mask), middle)

        ids[row, :c] = torch.tensor(ex.context)
        context_targets[row, : c - 1] = ids[row, 1:c]
        ids[row, c : c + m] = middle
        ids[row, c + m : c + 2 * m] = noisy
        positions[row, : c + m] = torch.arange(c + m)
        positions[row, c + m : c + 2 * m] = torch.arange(c, c + m)
        targets[row, c + m : c + 2 * m] = torch.where(masked, middle, torch.tensor(-100))
        weights[row, c + m : c + 2 * m] = masked.float() / rate_per_token
        masks.append(two_copy_mask(c, m, block_size, seq_len))
        n_middle_tokens += m
    return DiffusionBatch(
        ids=ids,
        positions=positions,
        mask=torch.stack(masks).unsqueeze(1),
        targets=targets,
        weights=weights,
        n_middle_tokens=n_middle_tokens,
        context_targets=context_targets,
    )


@dataclass(frozen=True)
class LossParts:
    nelbo: torch.Tensor  # diffusion bound per middle token (nats): the figure to compare
    context_ce: torch.Tensor  # next-token cross-entropy on context tokens (auxiliary)

    def total(self, context_weight: float) -> torch.Tensor:
        return self.nelbo + context_weight * self.context_ce


def diffusion_loss(model: Transformer, batch: DiffusionBatch) -> LossParts:
    device = next(model.parameters()).device
    hidden = model.hidden_states(
        batch.ids.to(device), batch.positions.to(device), batch.mask.to(device)
    )
    weights = batch.weights.to(device)
    keep = weights > 0
    # Project only the scored positions: the vocabulary projection is the costliest matmul.
    logits = model.logits(hidden[keep]).float()
    ce = F.cross_entropy(logits, batch.targets.to(device)[keep], reduction="none")
    nelbo = (ce * weights[keep]).sum() / max(batch.n_middle_tokens, 1)
    ctx_targets = batch.context_targets.to(device)
    ctx = ctx_targets >= 0
    if ctx.any():
        ctx_logits = model.logits(hidden[ctx]).float()
        context_ce = F.cross_entropy(ctx_logits, ctx_targets[ctx])
    else:
        context_ce = hidden.new_zeros(())
    return LossParts(nelbo, context_ce)
