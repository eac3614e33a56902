"""Block-diffusion sampling with an exact key/value cache.

The middle is written one block of B tokens at a time. A block starts all <mask>; each
denoising step predicts every masked position at once and commits those whose
confidence exceeds the threshold (at least one per step, Fast-dLLM style). When a block
is complete its clean tokens ride along with the first step of the next block, which
writes their keys/values into the cache: no extra forward pass per block. Blocks follow
one another until <eom>, a newline (single-line mode), or the token budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from .masks import group_mask, token_groups
from .tokenizer import SpecialIds
from .transformer import KVCache, Transformer


class InfillCancelled(Exception):
    """The caller's should_cancel() returned True between two denoising steps."""


@dataclass(frozen=True)
class SamplerSettings:
    threshold: float = 0.9
    temperature: float = 0.0  # 0 = greedy; otherwise sampled with the seeded generator
    # When no position clears the threshold: "confidence" commits the most confident one,
    # "left_to_right" the leftmost open one (steadier for weak models).
    fallback: Literal["confidence", "left_to_right"] = "confidence"


@dataclass(frozen=True)
class Generation:
    tokens: list[int]  # middle tokens, without <eom> and padding
    forward_passes: int
    finished: bool  # True when the model wrote <eom>
    # The probability each of `tokens` had when it was committed.
    probabilities: list[float]


@dataclass(frozen=True)
class StopTokens:
    end_of_middle: int
    newlines: frozenset[int]  # token ids whose text contains "\n"


def _pick(logits: torch.Tensor, settings: SamplerSettings, generator: torch.Generator | None):
    # Confidence is the model's own probability: greedy decoding must not sharpen it.
    scale = settings.temperature if settings.temperature > 0 else 1.0
    probs = torch.softmax(logits.float() / scale, dim=-1)
    if settings.temperature > 0:
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        confidence = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    else:
        confidence, tokens = probs.max(dim=-1)
    return confidence, tokens


def _stop_index(block: list[int], committed: list[bool], stops: set[int] | frozenset[int]) -> int:
    """Index of the first stop token whose left side is fully committed, or -1."""
    for i, (token, done) in enumerate(zip(block, committed, strict=True)):
        if not done:
            return -1
        if token in stops:
            return i
    return -1


@torch.no_grad()
def generate(
    model: Transformer,
    context: list[int],
    special: SpecialIds,
    stops: StopTokens,
    *,
    max_tokens: int,
    single_line: bool = False,
    settings: SamplerSettings = SamplerSettings(),
    cache: KVCache | None = None,
    should_cancel: Callable[[], bool] | None = None,
    seed: int = 0,
) -> Generation:
    """Fill the middle after `context` (which ends with <fim_middle>).

    With `cache`, only context tokens not already cached are encoded; without, every
    step recomputes the whole sequence (slow, for checking the cache is exact).
    """
    cfg = model.cfg
    B = cfg.block_size
    device = next(model.parameters()).device
    n_ctx = len(context)
    if n_ctx + max_tokens + B > cfg.max_seq_len:
        raise ValueError(
            f"context ({n_ctx}) + budget ({max_tokens}) exceeds the model's {cfg.max_seq_len}"
        )
    generator = torch.Generator(device=device).manual_seed(seed) if settings.temperature else None
    # Training pads the block after <eom> with <pad>, so a committed <pad> also says the
    # middle has ended; banning it would force junk into those slots, which the rest of the
    # block then conditions on.
    end_ids = {stops.end_of_middle, special.pad}
    stop_ids = end_ids | (set(stops.newlines) if single_line else set())
    # Context markers and <mask> are never content.
    banned = torch.tensor(
        [special.mask, special.fim_suffix, special.fim_prefix, special.fim_middle], device=device
    )

    if cache is not None:
        cache.truncate(cache.common_prefix(context))
        pending = context[cache.length :]
        pending_groups = list(range(len(pending)))  # context: one group per token
    middle: list[int] = []
    probs: list[float] = []
    passes = 0
    finished = False
    while len(middle) < max_tokens:
        block = [special.mask] * B
        committed = [False] * B
        block_probs = [0.0] * B
        block_start = n_ctx + len(middle)
        stop_at = -1
        while not all(committed):
            if should_cancel is not None and should_cancel():
                raise InfillCancelled()
            if cache is not None:
                ids = pending + block
                past = cache.length
                new_groups = torch.tensor(pending_groups + [len(pending) + 1] * B)
                mask = torch.cat(
                    (
                        torch.ones(len(ids), past, dtype=torch.bool),
                        group_mask(new_groups, new_groups),
                    ),
                    dim=1,
                )
                positions = torch.arange(past, past + len(ids))
                assert past + len(pending) == block_start
                hidden = model.hidden_states(
                    torch.tensor([ids], device=device),
                    positions.unsqueeze(0).to(device),
                    mask.to(device),
                    cache=cache,
                    cache_commit=len(pending),
                )[0, len(pending) :]
                pending, pending_groups = [], []
            else:
                ids = context + middle + block
                groups = token_groups(n_ctx, len(middle) + B, B)
                hidden = model.hidden_states(
                    torch.tensor([ids], device=device),
                    torch.arange(len(ids), device=device).unsqueeze(0),
                    group_mask(groups, groups).to(device),
                )[0, -B:]
            passes += 1
            # The vocabulary projection is the costliest matmul of a pass: only still-masked
            # positions need it.
            open_at = [i for i, done in enumerate(committed) if not done]
            logits = model.logits(hidden[open_at])
            logits[:, banned] = float("-inf")
            confidence, predicted = _pick(logits, settings, generator)
            chosen = confidence > settings.threshold
            if not chosen.any():
                fallback = 0 if settings.fallback == "left_to_right" else int(confidence.argmax())
                chosen[fallback] = True
            for j in chosen.nonzero().flatten().tolist():
                block[open_at[j]] = int(predicted[j])
                block_probs[open_at[j]] = float(confidence[j])
                committed[open_at[j]] = True
            stop_at = _stop_index(block, committed, stop_ids)
            if stop_at >= 0:
                break
        if stop_at >= 0:
            finished = block[stop_at] in end_ids
            # Keep a newline token (single-line mode cuts its text later); drop <eom>.
            kept = stop_at + (0 if finished else 1)
            middle.extend(block[:kept])
            probs.extend(block_probs[:kept])
            break
        middle.extend(block)
        probs.extend(block_probs)
        if cache is not None:
            pending, pending_groups = block, [0] * B
    return Generation(
        tokens=middle[:max_tokens],
        forward_passes=passes,
        finished=finished,
        probabilities=probs[:max_tokens],
    )
