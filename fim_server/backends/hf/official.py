"""The authors' decoding loops (see recipes.py for which recipe runs which, with what
settings), written for fim-server's network: one function per official loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..base import BackendError, InfillCancelled
from .decoding import Decoded, block_causal_mask
from .family import Prompt, SpecialTokens
from .recipes import Recipe
from .transformer import Transformer


@dataclass(frozen=True)
class Run:
    """What one decode needs besides the recipe."""

    model: Transformer
    special: SpecialTokens
    shifted: bool
    device: torch.device
    should_cancel: Callable[[], bool]
    seed: int
    pad: int | None = None  # config.json's pad_token_id (Open-dCoder's attention quirk)
    block: int = 4  # SDAR's block size


def _check(run: Run) -> None:
    if run.should_cancel():
        raise InfillCancelled("cancelled between passes")


def _generator(run: Run) -> torch.Generator:
    return torch.Generator(device=run.device).manual_seed(run.seed)


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches top_p (and the first one
    past it), as Dream's and DreamOn's `top_p_logits` do, filling the rest with the
    dtype's minimum."""
    ordered, order = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(torch.softmax(ordered, dim=-1), dim=-1)
    drop = cumulative > top_p
    drop[..., 1:] = drop[..., :-1].clone()
    drop[..., 0] = False
    dropped = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, order, drop)
    return logits.masked_fill(dropped, torch.finfo(logits.dtype).min)


def sample_tokens(
    logits: torch.Tensor, recipe: Recipe, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(confidence, token, probability of the token) per row, Dream's `sample_tokens`:
    temperature, top-p, then a categorical draw (temperature > 0) or the most likely
    token; the confidence is the token's probability (maskgit_plus, p2), top-1 minus
    top-2 (topk_margin) or the negative entropy (entropy)."""
    if recipe.temperature > 0:
        logits = logits / recipe.temperature
    if recipe.top_p is not None and recipe.top_p < 1:
        logits = top_p_filter(logits, recipe.top_p)
    probs = torch.softmax(logits.float(), dim=-1)
    if recipe.temperature > 0:
        # torch.distributions.Categorical normalises, then draws one sample per row.
        normalised = probs / probs.sum(-1, keepdim=True)
        tokens = torch.multinomial(normalised, 1, True, generator=generator).squeeze(-1)
        probability = probs.gather(-1, tokens[:, None]).squeeze(-1)
    else:
        probability, tokens = probs.max(dim=-1)
    confidence = probability
    if recipe.alg == "topk_margin":
        top = torch.sort(probs, dim=-1, descending=True).values
        confidence = top[:, 0] - top[:, 1]
    elif recipe.alg == "entropy":
        confidence = (probs * torch.log(probs + 1e-10)).sum(dim=-1)
    return confidence, tokens, probability


def _shifted_rows(logits: torch.Tensor) -> torch.Tensor:
    """Dream's shift over a whole sequence: row i becomes the prediction for position i."""
    return torch.cat((logits[:1], logits[:-1]), dim=0)


def _middle(
    x: list[int], start: int, end: int, probability: list[float], special: SpecialTokens,
    recipe: Recipe, passes: int,
) -> Decoded:  # fmt: skip
    ends = special.stops | {special.mask}
    if special.expand is not None:
        ends = ends | {special.expand}
    tokens: list[int] = []
    kept: list[float] = []
    for token, p in zip(x[start:end], probability, strict=True):
        if token in ends:
            if recipe.keep_after_end:
                continue  # the authors' evaluations drop special tokens, keep what follows
            break
        tokens.append(token)
        kept.append(p)
    return Decoded(tokens, kept, passes)


def decode_diffusion_generate(run: Run, recipe: Recipe, prompt: Prompt, length: int) -> Decoded:
    """Dream's `diffusion_generate` (`_sample`) on the infilling canvas: `steps` passes of
    the whole sequence whatever happens; pass i commits the int(masks * (1 - s/t)) most
    confident masks (s, t on linspace(1, eps, steps + 1)), the last pass all that remain."""
    mask = run.special.mask
    x = torch.tensor([*prompt.before, *[mask] * length, *prompt.after], device=run.device)
    start, end = len(prompt.before), len(prompt.before) + length
    positions = torch.arange(x.shape[0], device=run.device)
    steps = recipe.steps or length
    timesteps = torch.linspace(1, recipe.eps, steps + 1, device=run.device)
    generator = _generator(run)
    probability = [0.0] * length
    shift = 1 if run.shifted else 0
    for i in range(steps):
        _check(run)
        masked = x == mask
        # Masks are only ever in the middle: its rows are the only ones read.
        logits, _ = run.model(x, positions, rows=(start - shift, end - shift))
        if not bool(masked.any()):
            continue  # Dream still runs the pass; nothing is left to commit or draw
        confidence, tokens, prob = sample_tokens(logits[masked[start:end]], recipe, generator)
        t, s = timesteps[i], timesteps[i + 1]
        count = masked.sum() / 1  # a float tensor, as Dream divides by the batch size
        transfer = int(count * (1 - s / t)) if i < steps - 1 else int(count)
        if transfer <= 0:
            continue
        full = torch.full(x.shape, float("-inf"), device=run.device, dtype=logits.dtype)
        full[masked] = confidence.to(logits.dtype)
        if recipe.alg_temp:
            weights = torch.softmax(full / recipe.alg_temp, dim=-1)
            chosen = torch.multinomial(weights, transfer, generator=generator)
        else:
            chosen = torch.topk(full, transfer).indices
        proposal = torch.full_like(x, mask)
        proposal[masked] = tokens
        proposal_p = torch.zeros(x.shape, device=run.device)
        proposal_p[masked] = prob
        x[chosen] = proposal[chosen]
        for pos in chosen.tolist():
            if start <= pos < end:
                probability[pos - start] = float(proposal_p[pos])
    return _middle(x.tolist(), start, end, probability, run.special, recipe, steps)


def decode_llada_generate(run: Run, recipe: Recipe, prompt: Prompt, length: int) -> Decoded:
    """LLaDA's `generate()` on the infilling canvas: the middle in blocks of
    block_length, each given steps / blocks passes of the whole sequence; each pass
    commits the k most confident masks of the current block (k from
    get_num_transfer_tokens: the block's masks spread evenly over its steps)."""
    mask = run.special.mask
    block = recipe.block_length or 32
    length = -(-length // block) * block  # generate() asserts whole blocks
    blocks = length // block
    steps = recipe.steps or length
    steps = -(-steps // blocks) * blocks  # generate() asserts steps % blocks == 0
    per_block = steps // blocks
    x = torch.tensor([*prompt.before, *[mask] * length, *prompt.after], device=run.device)
    start, end = len(prompt.before), len(prompt.before) + length
    positions = torch.arange(x.shape[0], device=run.device)
    probability = [0.0] * length
    passes = 0
    for b in range(blocks):
        b0, b1 = start + b * block, start + (b + 1) * block
        masks = int((x[b0:b1] == mask).sum())
        counts = [
            masks // per_block + (1 if j < masks % per_block else 0) for j in range(per_block)
        ]
        for j in range(per_block):
            _check(run)
            masked = x == mask
            shift = 1 if run.shifted else 0
            # Masks are only in the middle: the other rows' confidence is -inf anyway.
            logits, _ = run.model(x, positions, rows=(start - shift, end - shift))
            passes += 1
            tokens = torch.full_like(x, mask)
            tokens[start:end] = torch.argmax(logits, dim=-1)
            prob = torch.zeros(x.shape, device=run.device)
            prob[start:end] = (
                torch.softmax(logits, dim=-1).gather(-1, tokens[start:end, None]).squeeze(-1)
            )
            confidence = torch.where(masked, prob, torch.full_like(prob, float("-inf")))
            confidence[b1:] = float("-inf")
            chosen = torch.topk(confidence, counts[j]).indices
            x[chosen] = tokens[chosen]
            for pos in chosen.tolist():
                probability[pos - start] = float(prob[pos])
    return _middle(x.tolist(), start, end, probability, run.special, recipe, passes)


def decode_dreamon_expand(run: Run, recipe: Recipe, prompt: Prompt, max_length: int) -> Decoded:
    """DreamOn's `batch_generate_with_expand_as_token` (batch of one): from min_gen_len
    masks, each pass (at most `steps`) commits one mask; a committed <|expand|> becomes
    two masks while the budget lasts (its logit is lowered by 1e9 once the middle is
    max_gen_len long or the budget is spent); an end-of-text turns the masks after it
    into end-of-text (pad_eos_to_right) and every end-of-text written into a mask this
    pass is deleted (delete_eos_token). The official code pads the sequence to its
    largest length with masks that no query or key attends to; this runs the unpadded
    sequence, which is the same computation."""
    special = run.special
    mask, eos, expand = special.mask, special.eos, special.expand
    if eos is None or expand is None:
        raise BackendError("the DreamOn recipe needs end-of-text and <|expand|> tokens")
    before, after = list(prompt.before), list(prompt.after)
    start = len(before)
    middle = [mask] * min(recipe.min_length, max_length)
    probability = [0.0] * len(middle)
    budget = max_length  # expand_budget = max_gen_len
    generator = _generator(run)
    steps = recipe.steps or 256
    passes = 0
    for _ in range(steps):
        masked_at = [i for i, t in enumerate(middle) if t == mask]
        if not masked_at:
            break
        _check(run)
        x = torch.tensor([*before, *middle, *after], device=run.device)
        logits, _ = run.model(
            x,
            torch.arange(x.shape[0], device=run.device),
            rows=(start - 1, start - 1 + len(middle)),
        )
        passes += 1
        logits = logits[masked_at]
        if len(middle) >= max_length or budget == 0:
            logits[:, expand] -= 1e9
        confidence, tokens, prob = sample_tokens(logits, recipe, generator)
        if recipe.alg_temp:
            weights = torch.softmax(confidence / recipe.alg_temp, dim=-1)
            pick = int(torch.multinomial(weights, 1, generator=generator))
        else:
            pick = int(torch.topk(confidence, 1).indices)
        middle[masked_at[pick]] = int(tokens[pick])
        probability[masked_at[pick]] = float(prob[pick])
        sequence = [*before, *middle, *after]
        if eos in sequence:  # pad_eos_to_right: the first end-of-text in the sequence
            first = sequence.index(eos) - start
            for i in masked_at:
                if i >= first:
                    middle[i] = eos
        for i in reversed(range(len(middle))):  # right to left keeps the indices
            if middle[i] == expand:
                middle[i : i + 1] = [mask, mask]
                probability[i : i + 1] = [0.0, 0.0]
                budget -= 1
        # delete_eos_token: end-of-texts where this pass began with a mask. Only one
        # token is committed a pass, so an expansion and a deletion never share one.
        was_masked = set(masked_at)
        keep = [i for i, t in enumerate(middle) if not (t == eos and i in was_masked)]
        middle = [middle[i] for i in keep]
        probability = [probability[i] for i in keep]
    x_list = [*before, *middle, *after]
    return _middle(x_list, start, start + len(middle), probability, special, recipe, passes)


def _veomni_mask(x: torch.Tensor, pad: int | None) -> torch.Tensor | None:
    """Open-dLLM passes attention_mask = (x != pad_token_id) with is_causal=False; under
    sdpa, veomni's Qwen2 ignores an all-ones mask (bidirectional), but one with a zero
    becomes transformers' causal mask plus padding: once the sequence holds the pad id
    (end-of-text, when config.json names it the pad), those passes are causal."""
    if pad is None or not bool((x == pad).any()):
        return None
    n = x.shape[0]
    causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
    return causal & (x != pad)[None, :]


def decode_p2(run: Run, recipe: Recipe, prompt: Prompt, length: int) -> Decoded:
    """Open-dLLM's `_mdm_sample` with alg p2: each pass samples a token for every
    position of the sequence, re-masks the floor(n * (1 - (i+1)/steps)) least confident
    of the n middle positions (committed ones included) and fills the other masks with
    their samples; it stops early once no mask is left."""
    mask = run.special.mask
    x = torch.tensor([*prompt.before, *[mask] * length, *prompt.after], device=run.device)
    start, end = len(prompt.before), len(prompt.before) + length
    positions = torch.arange(x.shape[0], device=run.device)
    fixed = x != mask
    variable = int((~fixed).sum())
    steps = recipe.steps or length
    generator = _generator(run)
    probability = torch.zeros(x.shape, device=run.device)
    passes = 0
    for i in range(steps):
        masked = x == mask
        if not bool(masked.any()):
            break
        _check(run)
        logits, _ = run.model(x, positions, mask=_veomni_mask(x, run.pad))
        passes += 1
        logits = _shifted_rows(logits)
        confidence, tokens, prob = sample_tokens(logits, recipe, generator)
        kappa = (i + 1) / steps
        full = confidence.clone()
        full[fixed] = float("inf")
        full = torch.where(torch.isfinite(full), full, torch.full_like(full, float("inf")))
        # In float32, as Open-dLLM computes it, so that the floor falls the same way.
        share = torch.tensor(float(variable), dtype=torch.float32) * (1.0 - kappa)
        remask_count = min(max(int(share.floor()), 0), variable)
        remask = torch.zeros_like(masked)
        if remask_count > 0:
            order = torch.argsort(full[None], dim=1, descending=False)[0]
            remask[order[:remask_count]] = True
        x[remask] = mask
        fill = masked & ~remask
        x[fill] = tokens[fill]
        probability[fill] = prob[fill]
    return _middle(
        x.tolist(), start, end, probability[start:end].tolist(), run.special, recipe, passes
    )


def decode_sdar_block(run: Run, recipe: Recipe, prompt: Prompt, length: int) -> Decoded:
    """SDAR's `block_diffusion_generate`: the prompt's whole blocks prefilled, then each
    block denoised for up to denoising_steps passes against the cached earlier blocks
    (low_confidence_dynamic: every mask above the threshold if there are at least the
    step's quota of them, else the quota most confident), then run once more to store its
    keys/values; generation stops after the first block that holds a stop token."""
    mask = run.special.mask
    block = run.block
    start = len(prompt.before)
    total = -(-(start + length) // block) * block
    x = torch.full((total,), mask, device=run.device)
    x[:start] = torch.tensor(prompt.before, device=run.device)
    positions = torch.arange(total, device=run.device)
    steps = recipe.steps or block
    quota = [block // steps + (1 if j < block % steps else 0) for j in range(steps)]
    threshold = recipe.threshold if recipe.threshold is not None else 0.85
    probability = [0.0] * (total - start)
    passes = 0
    prefill = start // block * block
    cache = None
    if prefill > 0:
        _, cache = run.model(
            x[:prefill], positions[:prefill], mask=block_causal_mask(prefill, block, run.device),
            rows=(prefill - 1, prefill),
        )  # fmt: skip
        passes += 1
    for b0 in range(prefill, total, block):
        b1 = b0 + block
        for step in range(steps + 1):
            _check(run)
            window = x[b0:b1]
            masked = window == mask
            logits, own = run.model(window, positions[b0:b1], context=cache, start=b0)
            passes += 1
            if not bool(masked.any()):  # the block is whole: this pass stored its keys/values
                cache = own if cache is None else [
                    (torch.cat((ck, k), dim=1), torch.cat((cv, v), dim=1))
                    for (ck, cv), (k, v) in zip(cache, own, strict=True)
                ]  # fmt: skip
                break
            prob, tokens = torch.softmax(logits, dim=-1).max(dim=-1)
            confidence = torch.where(masked, prob, torch.full_like(prob, float("-inf")))
            high = confidence > threshold
            if int(high.sum()) >= quota[step]:
                chosen = high
            else:
                chosen = torch.zeros_like(high)
                chosen[torch.topk(confidence, quota[step]).indices] = True
            window[chosen] = tokens[chosen]
            for i in torch.nonzero(chosen).flatten().tolist():
                if b0 + i >= start:
                    probability[b0 + i - start] = float(prob[i])
        written = x[start:b1].tolist()
        if any(t in run.special.stops for t in written):
            break
    middle = x.tolist()[: start + length]
    return _middle(middle, start, start + length, probability[:length], run.special, recipe, passes)


LOOPS: dict[str, Callable[[Run, Recipe, Prompt, int], Decoded]] = {
    "diffusion_generate": decode_diffusion_generate,
    "llada_generate": decode_llada_generate,
    "dreamon_expand": decode_dreamon_expand,
    "p2": decode_p2,
    "sdar_block": decode_sdar_block,
}


def decode(run: Run, recipe: Recipe, prompt: Prompt, max_tokens: int) -> Decoded:
    return LOOPS[recipe.loop](run, recipe, prompt, max_tokens)
