"""fim-server's fast path (recipe `fast`): threshold parallel decoding of a masked
middle, one loop per attention pattern. The authors' own loops are in official.py.

Every pass commits each masked position (of the current block) whose most likely token is
more probable than the threshold (strictly, in fp32; Fast-dLLM keeps >= in float64), and
at least the single most confident one, as Fast-dLLM's parallel decoding and SDAR's
"low_confidence_dynamic" do; the mask token (and DreamOn's <|expand|> once the middle is
full) is banned from the predictions, which no official decoder does. Decoding is greedy,
so a completion does not depend on a seed. The middle is settled, and decoding stops,
once every position up to the first end token (or, for one line, the first line break)
is committed: what follows would be thrown away.

- `bidirectional` (Dream, DiffuCoder, LLaDA, Open-dCoder): the middle is decoded in blocks
  of `block` positions, left to right. The first pass of a block runs the whole sequence
  and keeps every layer's keys/values; the block's later passes recompute only the block
  (and, for shifted families, the position before it, whose logits predict the block's
  first token) against those keys/values: the dual cache of Fast-dLLM's LLaDA decoder
  (`generate_with_dual_cache`; issue 30's outside check found LLaDA's tokens equal to it
  at 0.9). For the shifted families it is that same loop with the shift applied, not
  Fast-dLLM's Dream decoder (generation_utils_block.py), whose first full pass commits
  only the block's first position and whose later passes recompute only the block. The
  approximation is that the rest of the sequence keeps the keys/values it had when the
  block started; `refresh_every_pass=True` runs the whole sequence every pass instead
  (exact, slower).
- `block_causal` (SDAR): blocks of the family's size, aligned at absolute positions; the
  prompt's whole blocks are prefilled, each block attends to the cached earlier blocks and
  to itself, and is stored once settled. Earlier blocks never see later ones, so the
  cache is exact.
- `variable_length` (DreamOn): the whole sequence runs every pass because the middle
  changes length: a committed <|expand|> becomes two masks, and an end-of-text deletes
  itself and the masks after it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..base import InfillCancelled
from .family import Prompt, SpecialTokens
from .transformer import LayerKV, Transformer


@dataclass
class Decoded:
    tokens: list[int]  # the middle up to (not including) its first end token
    confidences: list[float] = field(default_factory=list)  # per kept token
    passes: int = 0


@dataclass(frozen=True)
class DecodeCall:
    """What one decode is asked (per call, not a settings type: the backend's settings
    are its BackendSpec)."""

    threshold: float
    single_line: bool
    is_line_end: Callable[[int], bool]  # the token's text holds a line break
    should_cancel: Callable[[], bool]


def pick(
    logits: torch.Tensor, masked: torch.Tensor, banned: list[int], threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which rows to commit, their tokens and confidences (probability of the token)."""
    logits[:, banned] = float("-inf")
    confidence, tokens = torch.softmax(logits, dim=-1).max(dim=-1)
    confidence = torch.where(masked, confidence, torch.full_like(confidence, -1.0))
    chosen = confidence > threshold
    if not bool(chosen.any()):
        chosen[int(confidence.argmax())] = True
    return chosen, tokens, confidence


def settled(
    middle: list[int], mask: int, stops: frozenset[int], settings: DecodeCall
) -> int | None:
    """How many middle tokens are final once the middle needs no more passes, else None."""
    for i, token in enumerate(middle):
        if token == mask:
            return None
        if token in stops:
            return i
        if settings.single_line and settings.is_line_end(token):
            return i + 1  # the text is cut at its line break later
    return len(middle)


def _result(middle: list[int], conf: list[float], special: SpecialTokens, passes: int) -> Decoded:
    kept: list[int] = []
    kept_conf: list[float] = []
    for token, c in zip(middle, conf, strict=True):
        if token in special.stops or token == special.mask:
            break
        kept.append(token)
        kept_conf.append(c)
    return Decoded(kept, kept_conf, passes)


def _check(settings: DecodeCall) -> None:
    if settings.should_cancel():
        raise InfillCancelled("cancelled between passes")


def decode_bidirectional(
    model: Transformer,
    prompt: Prompt,
    length: int,
    special: SpecialTokens,
    settings: DecodeCall,
    *,
    shifted: bool,
    block: int,
    device: torch.device,
    refresh_every_pass: bool = False,
) -> Decoded:
    mask = special.mask
    start = len(prompt.before)
    end = start + length
    x = torch.tensor([*prompt.before, *[mask] * length, *prompt.after], device=device)
    positions = torch.arange(x.shape[0], device=device)
    conf = [0.0] * length
    shift = 1 if shifted else 0
    banned = [mask] + ([special.expand] if special.expand is not None else [])
    passes = 0
    for b0 in range(start, end, block):
        b1 = min(b0 + block, end)
        cache: list[LayerKV] | None = None
        while bool((x[b0:b1] == mask).any()):
            _check(settings)
            lo, hi = b0 - shift, b1 - shift
            if cache is None or refresh_every_pass:
                logits, cache = model(x, positions, rows=(lo, hi))
            else:
                logits, _ = model(
                    x[lo:b1], positions[lo:b1], context=cache, start=lo, rows=(0, hi - lo)
                )
            passes += 1
            window = x[b0:b1]
            chosen, tokens, confidence = pick(logits, window == mask, banned, settings.threshold)
            window[chosen] = tokens[chosen]
            for i in torch.nonzero(chosen).flatten().tolist():
                conf[b0 - start + i] = float(confidence[i])
            middle = x[start:end].tolist()
            if settled(middle, mask, special.stops, settings) is not None:
                return _result(middle, conf, special, passes)
    return _result(x[start:end].tolist(), conf, special, passes)


def block_causal_mask(length: int, block: int, device: torch.device) -> torch.Tensor:
    """(length, length) bool: position i may attend to j when j's block is not after i's."""
    blocks = torch.arange(length, device=device) // block
    return blocks[None, :] <= blocks[:, None]


def decode_block_causal(
    model: Transformer,
    prompt: Prompt,
    length: int,
    special: SpecialTokens,
    settings: DecodeCall,
    *,
    block: int,
    device: torch.device,
) -> Decoded:
    mask = special.mask
    start = len(prompt.before)
    total = -(-(start + length) // block) * block  # whole blocks, as SDAR decodes
    x = torch.full((total,), mask, device=device)
    x[:start] = torch.tensor(prompt.before, device=device)
    positions = torch.arange(total, device=device)
    conf = [0.0] * (total - start)
    banned = [mask]
    passes = 0
    prefill = start // block * block
    cache: list[LayerKV] | None = None
    if prefill > 0:
        _, cache = model(
            x[:prefill],
            positions[:prefill],
            mask=block_causal_mask(prefill, block, device),
            rows=(prefill - 1, prefill),
        )
        passes += 1
    for b0 in range(prefill, total, block):
        b1 = b0 + block
        while bool((x[b0:b1] == mask).any()):
            _check(settings)
            logits, _ = model(x[b0:b1], positions[b0:b1], context=cache, start=b0)
            passes += 1
            window = x[b0:b1]
            chosen, tokens, confidence = pick(logits, window == mask, banned, settings.threshold)
            window[chosen] = tokens[chosen]
            for i in torch.nonzero(chosen).flatten().tolist():
                conf[b0 + i - start] = float(confidence[i])
            middle = x[start:total].tolist()
            if settled(middle, mask, special.stops, settings) is not None:
                return _result(middle[:length], conf[:length], special, passes)
        if b1 < total:  # store the settled block's keys/values for the blocks after it
            _, own = model(x[b0:b1], positions[b0:b1], context=cache, start=b0)
            passes += 1
            cache = (
                own
                if cache is None
                else [
                    (torch.cat((ck, k), dim=1), torch.cat((cv, v), dim=1))
                    for (ck, cv), (k, v) in zip(cache, own, strict=True)
                ]
            )
    middle = x[start:total].tolist()
    return _result(middle[:length], conf[:length], special, passes)


def decode_variable_length(
    model: Transformer,
    prompt: Prompt,
    max_length: int,
    initial: int,
    special: SpecialTokens,
    settings: DecodeCall,
    *,
    device: torch.device,
) -> Decoded:
    mask, expand, eos = special.mask, special.expand, special.eos
    start = len(prompt.before)
    middle = [mask] * min(initial, max_length)
    conf = [0.0] * len(middle)
    expansions = 0
    passes = 0
    while mask in middle:
        _check(settings)
        x = torch.tensor([*prompt.before, *middle, *prompt.after], device=device)
        positions = torch.arange(x.shape[0], device=device)
        logits, _ = model(x, positions, rows=(start - 1, start - 1 + len(middle)))
        passes += 1
        banned = [mask]
        if expand is not None and (len(middle) >= max_length or expansions >= max_length):
            banned.append(expand)
        masked = torch.tensor([t == mask for t in middle], device=device)
        chosen, tokens, confidence = pick(logits, masked, banned, settings.threshold)
        for i in torch.nonzero(chosen).flatten().tolist():
            middle[i] = int(tokens[i])
            conf[i] = float(confidence[i])
        # Grow: each committed <|expand|> becomes two masks (right to left keeps indices).
        for i in reversed(range(len(middle))):
            if expand is not None and middle[i] == expand and len(middle) < max_length:
                middle[i : i + 1] = [mask, mask]
                conf[i : i + 1] = [0.0, 0.0]
                expansions += 1
        # Shrink: the masks after the first end-of-text go, and so do end-of-texts.
        if eos is not None and eos in middle:
            first = middle.index(eos)
            keep = [i for i, t in enumerate(middle) if t != eos and not (t == mask and i > first)]
            middle = [middle[i] for i in keep]
            conf = [conf[i] for i in keep]
        if settled(middle, mask, special.stops, settings) is not None:
            break
    return _result(middle, conf, special, passes)
