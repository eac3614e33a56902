"""Block-diffusion sampling with an exact key/value cache.

The middle is written one block of B tokens at a time. A block starts all <mask>; each
denoising step predicts every open position at once and commits those whose confidence
exceeds the threshold (at least one per step, Fast-dLLM style). Tokens that became final
since the last step (new context, a finished block) are written into the cache just
before it, as part of that step, so the step itself attends to the cache with no mask.
Blocks follow one another until <eom>, a newline (single-line mode), the token budget, or
a middle that has fallen into a loop (the same few tokens over and over).

Every step costs a forward pass, so no step is spent on tokens that cannot end up in the
answer. The answer ends at the first stop of the block (<eom> or <pad>, which both mean
"the middle ends here" and count as one outcome, or a newline in single-line mode):

- only positions before the first predicted stop (and that stop itself, if it is a
  newline) are candidates for the answer; what the model guesses after it is dropped
  anyway, so it stays masked;
- an end token is committed when it clears the threshold or, when nothing does, when it
  is the surest guess of the block; with it the first predicted stop, if that is an end
  too: the middle ends at the first position predicted to end;
- a step that would commit no token of the answer and not end the middle also commits
  the candidate whose token is likeliest to be right and kept (its probability times
  the chance that no open position before it is a stop), or, with
  fallback="left_to_right", the leftmost one. A step that
  sets where the middle ends is the exception: the text before the end is better guessed
  by the next step, which sees it;
- in single-line mode a step commits only the leftmost open positions, as many in a row
  as clear the threshold (at least one): a newline may land anywhere to their left, and
  cut whatever was committed after it.

So every step writes a token of the answer, ends the middle, or sets where it ends
(usually once, where the old rule moved the end one position per step). A middle of n
tokens takes at most n + 1 passes, <eom> counted as the (n + 1)th token the model
writes: the extra pass writes <eom>, or sets the end, after which the step that writes
the last token also ends the middle; fewer when the model is sure of several positions
at once.
Positions past the token budget are never predicted at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from .masks import group_mask, token_groups
from .tokenizer import SpecialIds
from .transformer import KVCache, ModelConfig


class DecodingCancelled(Exception):
    """The caller's should_cancel() returned True between two denoising steps."""


@dataclass(frozen=True)
class SamplerSettings:
    # Commit every masked position whose confidence clears this (the server hands in its
    # user setting, fim_server.config.defaults.THRESHOLD, the same 0.9 by default).
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
    # For each forward pass, how many of `tokens` it committed (0: it only ended the
    # middle, or committed nothing that was kept).
    tokens_per_pass: list[int]


@dataclass(frozen=True)
class StopTokens:
    end_of_middle: int
    newlines: frozenset[int]  # token ids whose text contains "\n"


class Network(Protocol):
    """What the sampler needs of a model: `fim_model.transformer.Decoder` provides it."""

    cfg: ModelConfig
    dtype: torch.dtype
    device: torch.device

    def prefill(self, ids: torch.Tensor, cache: KVCache, mask: torch.Tensor | None) -> None: ...

    def hidden(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor: ...

    def logits(self, hidden: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor: ...


def _pick(
    logits: torch.Tensor,
    settings: SamplerSettings,
    generator: torch.Generator | None,
    end_ids: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's token, its probability, and the whole distribution. <eom> and <pad>
    both say "the middle ends here", so they count as one outcome: a position whose
    ending probability (the two together) is at least that of its likeliest token
    predicts <eom>, with that probability as its confidence."""
    # Confidence is the model's own probability: greedy decoding must not sharpen it.
    scale = settings.temperature if settings.temperature > 0 else 1.0
    probs = torch.softmax(logits if scale == 1.0 else logits / scale, dim=-1)
    ending = probs[:, end_ids].sum(dim=-1)
    if settings.temperature > 0:
        tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        confidence = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        is_end = torch.isin(tokens, end_ids)
    else:
        confidence, tokens = probs.max(dim=-1)
        is_end = ending >= confidence
    tokens = torch.where(is_end, end_ids[0], tokens)
    return torch.where(is_end, ending, confidence), tokens, probs


@dataclass
class _Block:
    """The block being denoised: what each position holds and when it was committed."""

    tokens: list[int]
    committed: list[bool]
    probabilities: list[float]
    committed_at: list[int]  # the pass that committed each position
    stop: int | None = None  # leftmost committed stop


def _commits(
    predicted: list[int],
    confidence: list[float],
    stopping: list[float],
    *,
    ends: set[int],
    newlines: frozenset[int],
    settings: SamplerSettings,
) -> list[int]:
    """Which open positions (indices into `predicted`, the model's guesses for the open
    positions from left to right; `stopping`: the probability that each is a stop) to
    commit this step; see the module docstring."""
    n = len(predicted)
    first_stop = next((j for j, t in enumerate(predicted) if t in ends or t in newlines), n)
    # Positions whose token can be part of the answer: those before the first predicted
    # stop, and that stop when it is a newline (single-line mode keeps it).
    answer = list(range(first_stop))
    if first_stop < n and predicted[first_stop] in newlines:
        answer.append(first_stop)
    end_at = [j for j in range(n) if predicted[j] in ends]
    chosen = {j for j in (*answer, *end_at) if confidence[j] > settings.threshold}
    if newlines:
        # One line: a token is kept only if no open position before it becomes the line's
        # end, so a step commits the leftmost open positions, as many in a row as clear
        # the threshold, at least one. (Surer tokens further right cost passes whenever a
        # newline lands before them, and wrote worse lines: results/speed/README.md.)
        run = 0
        while run in chosen:
            run += 1
        return list(range(max(run, 1)))
    if not chosen and settings.fallback == "confidence" and end_at:
        best = max(range(n), key=lambda j: confidence[j])
        if predicted[best] in ends:
            chosen.add(best)  # the model is surest that the middle ends
    pinned = bool(chosen.intersection(end_at))
    if pinned and first_stop in end_at:
        # Once the middle is to end, it ends at the first position predicted to end.
        # (Committing only the surer end further right moves the end left one step at a
        # time, each step writing nothing.)
        chosen.add(first_stop)
    # An end committed with every open position to its left ends the middle now.
    ends_now = any(j in chosen and all(i in chosen for i in range(j)) for j in end_at)
    # A step that sets where the middle ends writes no unsure text with it: the text
    # is better guessed in the next step, which sees the end.
    if not ends_now and not pinned and not chosen.intersection(answer):
        # Every step writes a token of the answer or ends it. Nothing to write before
        # the first predicted stop means that stop is an end at the leftmost position.
        pool = answer or [first_stop]
        if settings.fallback == "left_to_right":
            chosen.add(min(pool))
        else:
            # The surest token that is also likely to be kept: a guess far right is cut
            # off if any open position before it turns out to be a stop.
            kept, chance = [], 1.0
            for j in range(max(pool) + 1):
                kept.append(chance)
                chance *= 1.0 - stopping[j]
            chosen.add(max(pool, key=lambda j: confidence[j] * kept[j]))
    return sorted(chosen)


# A middle that ends with one unit of up to LOOP_UNIT tokens repeated over at least
# LOOP_SPAN tokens (and three times) is a model stuck in a loop: more blocks of it would be
# cut by post-processing or hidden by the gate, at one pass per token.
LOOP_UNIT = 8
LOOP_SPAN = 12


def _commit_pass(
    block: _Block,
    row_ids: torch.Tensor,
    opened: list[int],
    predicted: torch.Tensor,
    confidence: torch.Tensor,
    stopping: torch.Tensor,
    *,
    ends: set[int],
    newlines: frozenset[int],
    settings: SamplerSettings,
    pass_index: int,
    pad: int,
    limit: int,
) -> bool:
    """Commit what one pass chose (`_commits`) of its predictions at the `opened`
    positions into `block` and its row of ids; True when every position before the
    block's stop (or `limit`) is committed."""
    predicted_ids, confidences = predicted.tolist(), confidence.tolist()
    chosen = _commits(
        predicted_ids,
        confidences,
        stopping.tolist(),
        ends=ends,
        newlines=newlines,
        settings=settings,
    )
    for j in chosen:
        i = opened[j]
        block.tokens[i] = predicted_ids[j]
        block.probabilities[i] = confidences[j]
        block.committed[i] = True
        block.committed_at[i] = pass_index
        if predicted_ids[j] in ends or predicted_ids[j] in newlines:
            block.stop = i if block.stop is None else min(block.stop, i)
    row_ids[[opened[j] for j in chosen]] = predicted[chosen]
    if block.stop is not None and block.tokens[block.stop] in ends:
        # After the end, training puts padding: the text before it is guessed knowing
        # that the middle ends there, not with masks after it.
        row_ids[block.stop + 1 :] = pad
    bound = limit if block.stop is None else min(limit, block.stop)
    return all(block.committed[:bound])


def _loops(tokens: list[int]) -> bool:
    for unit in range(1, LOOP_UNIT + 1):
        span = unit * max(3, -(-LOOP_SPAN // unit))
        if len(tokens) >= span and tokens[-span:] == tokens[-unit:] * (span // unit):
            return True
    return False


def _causal_after(past: int, n: int, device: torch.device) -> torch.Tensor:
    """Attention mask of `n` new context tokens after `past` cached ones."""
    new = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    return torch.cat((torch.ones(n, past, dtype=torch.bool, device=device), new), dim=1)


@torch.no_grad()
@torch.no_grad()
def generate_candidates(
    net: Network,
    context: list[int],
    special: SpecialIds,
    stops: StopTokens,
    *,
    max_tokens: int,
    single_line: bool = False,
    settings: list[SamplerSettings],
    cache: KVCache | None = None,
    should_cancel: Callable[[], bool] | None = None,
    seed: int = 0,
) -> list[Generation]:
    """Fill the middle after `context` (which ends with <fim_middle>) once per entry of
    `settings`, all middles decoded together: every forward pass runs one block of each
    (rows of one batch) over the context they share, encoded once. Middle r samples with
    seed `seed + r`. A candidate that has finished its block waits for the others (its
    rows ride along, unused), so each pass counts for every candidate. Several candidates
    need a `cache` with as many rows. With `cache`, only context tokens not already
    cached are encoded; without, every step recomputes the whole sequence (slow, for
    checking the cache is exact).
    """
    cfg = net.cfg
    B = cfg.block_size
    device = net.device
    rows = len(settings)
    n_ctx = len(context)
    if n_ctx + max_tokens + B > cfg.max_seq_len:
        raise ValueError(
            f"context ({n_ctx}) + budget ({max_tokens}) exceeds the model's {cfg.max_seq_len}"
        )
    generators = [
        torch.Generator(device=device).manual_seed(seed + r) if s.temperature else None
        for r, s in enumerate(settings)
    ]
    # Training pads the block after <eom> with <pad>, so a committed <pad> also says the
    # middle has ended; banning it would force junk into those slots, which the rest of the
    # block then conditions on.
    ends = {stops.end_of_middle, special.pad}
    end_ids = torch.tensor([stops.end_of_middle, special.pad], device=device)
    newlines = stops.newlines if single_line else frozenset()
    stop_ids = torch.tensor(sorted({*ends, *newlines}), device=device)
    # Context markers and <mask> are never content: they get no probability at all.
    banned = torch.zeros(cfg.vocab_size, dtype=net.dtype, device=device)
    banned[[special.mask, special.fim_suffix, special.fim_prefix, special.fim_middle]] = -torch.inf

    reference = cache is None
    if reference:
        if rows > 1:
            raise ValueError("several candidates are decoded with a key/value cache only")
        cache = KVCache(cfg, net.dtype, device)  # scratch: emptied before every pass
    else:
        assert cache is not None
        if cache.rows < rows:
            raise ValueError(f"{rows} candidates need a cache of as many rows ({cache.rows})")
        cache.truncate(cache.common_prefix(context))
    pending: list[int] | torch.Tensor = context[cache.length :]
    # New context tokens are plain causal text; a finished block sees all of itself.
    pending_mask = _causal_after(cache.length, len(pending), device)
    block_ids = torch.full((rows, B), special.mask, dtype=torch.long, device=device)
    middles: list[list[int]] = [[] for _ in range(rows)]
    probs: list[list[float]] = [[] for _ in range(rows)]
    made_by: list[list[int]] = [[] for _ in range(rows)]  # the pass that committed each token
    finished = [False] * rows
    live = list(range(rows))  # candidates still writing; all have written as many blocks
    passes = 0
    while live and len(middles[live[0]]) < max_tokens:
        written = len(middles[live[0]])
        limit = min(B, max_tokens - written)  # positions past the budget are never kept
        blocks = {r: _Block([special.mask] * B, [False] * B, [0.0] * B, [-1] * B) for r in live}
        block_ids.fill_(special.mask)
        open_rows = set(live)
        while open_rows:
            if should_cancel is not None and should_cancel():
                raise DecodingCancelled()
            if reference:  # recompute every committed key from nothing
                cache.truncate(0)
                pending = context + middles[0]
                groups = token_groups(n_ctx, written, B)
                pending_mask = group_mask(groups, groups).to(device)
            if len(pending):
                # Tokens that became final since the last pass (new context, finished
                # blocks) go into the cache first; the step itself then needs no mask.
                ids = pending if isinstance(pending, torch.Tensor) else torch.tensor(pending)
                net.prefill(ids.to(device), cache, pending_mask)
                pending = []
            hidden = net.hidden(block_ids[0] if rows == 1 else block_ids, cache)
            hidden = hidden.view(rows, B, -1)
            passes += 1
            # The vocabulary projection is the costliest matmul of a pass: only open
            # positions of unfinished blocks need it, in one matmul for all of them. On one
            # line only the leftmost open positions can be committed, as far as they clear
            # the threshold: the first is projected, the others only if it clears it (a row
            # of the projection costs a quarter of sixteen rows).
            order = sorted(open_rows)
            open_at: dict[int, list[int]] = {}
            for r in order:
                block = blocks[r]
                bound = limit if block.stop is None else min(limit, block.stop)
                open_at[r] = [i for i in range(bound) if not block.committed[i]]
            wanted = {r: open_at[r][:1] if newlines else open_at[r] for r in order}
            if len(order) == 1 and len(wanted[order[0]]) == B:
                selected = hidden[order[0]]
            else:
                selected = torch.cat([hidden[r, wanted[r]] for r in order])
            all_logits = net.logits(selected, banned)
            first = 0
            for r in order:
                block, opened = blocks[r], wanted[r]
                logits = all_logits[first : first + len(opened)]
                first += len(opened)
                confidence, predicted, probs_now = _pick(
                    logits, settings[r], generators[r], end_ids
                )
                rest = open_at[r][len(opened) :]
                if rest and confidence[0] > settings[r].threshold:
                    more = _pick(
                        net.logits(hidden[r, rest], banned), settings[r], generators[r], end_ids
                    )
                    confidence, predicted, probs_now = (
                        torch.cat(pair)
                        for pair in zip((confidence, predicted, probs_now), more, strict=True)
                    )
                    opened = open_at[r]
                stopping = probs_now[:, stop_ids].sum(dim=-1)
                done = _commit_pass(
                    block,
                    block_ids[r],
                    opened,
                    predicted,
                    confidence,
                    stopping,
                    ends=ends,
                    newlines=newlines,
                    settings=settings[r],
                    pass_index=passes - 1,
                    pad=special.pad,
                    limit=limit,
                )
                if done:
                    open_rows.discard(r)
        for r in list(live):
            block = blocks[r]
            bound = limit if block.stop is None else min(limit, block.stop)
            stopped = block.stop is not None
            ended = stopped and block.tokens[block.stop] in ends
            # Keep a newline (single-line mode cuts its text later); drop <eom>.
            kept = bound + (0 if ended or not stopped else 1)
            middles[r].extend(block.tokens[:kept])
            probs[r].extend(block.probabilities[:kept])
            made_by[r].extend(block.committed_at[:kept])
            if stopped or _loops(middles[r]):
                finished[r] = ended
                live.remove(r)
        if live and not reference:
            # Every row's block goes into its own row of the cache (a finished row's too:
            # it is never read again), so the rows stay the same length.
            if rows == 1:
                pending = blocks[0].tokens
            else:
                pending = torch.tensor(
                    [blocks[r].tokens if r in blocks else [special.pad] * B for r in range(rows)]
                )
            pending_mask = None
    if rows > 1 and not reference:
        # The rows now differ after the context; row 0's tokens are what the cache
        # records, so keep only what all rows share.
        cache.truncate(n_ctx)
    generations = []
    for r in range(rows):
        counts = Counter(made_by[r][:max_tokens])
        generations.append(
            Generation(
                tokens=middles[r][:max_tokens],
                forward_passes=passes,
                finished=finished[r],
                probabilities=probs[r][:max_tokens],
                tokens_per_pass=[counts[p] for p in range(passes)],
            )
        )
    return generations
