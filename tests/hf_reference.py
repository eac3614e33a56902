"""Independent references for the diffusion backends' tests: transformers' own Qwen2,
Qwen3 and Llama models built from a tiny folder's config and loaded strictly from its
safetensors, and a plain decoding loop that runs the whole sequence every pass.

Nothing here imports fim_server's network or decoding code: the tests compare the two.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

LLADA_TO_LLAMA = {
    "attn_norm": "input_layernorm",
    "ff_norm": "post_attention_layernorm",
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ff_proj": "mlp.gate_proj",
    "up_proj": "mlp.up_proj",
    "ff_out": "mlp.down_proj",
}


def checkpoint_tensors(folder: Path) -> dict[str, torch.Tensor]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(load_file(folder / shard))
    return {name: t.float() for name, t in tensors.items()}


def _llama_names(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in tensors.items():
        if name == "model.transformer.wte.weight":
            out["model.embed_tokens.weight"] = t
        elif name == "model.transformer.ln_f.weight":
            out["model.norm.weight"] = t
        elif name == "model.transformer.ff_out.weight":
            out["lm_head.weight"] = t
        else:
            layer, module = name.removeprefix("model.transformer.blocks.").split(".")[:2]
            out[f"model.layers.{layer}.{LLADA_TO_LLAMA[module]}.weight"] = t
    return out


@lru_cache(maxsize=8)
def reference_model(folder: Path) -> torch.nn.Module:
    """transformers' implementation of the folder's network, weights loaded strictly."""
    config = json.loads((folder / "config.json").read_text())
    tensors = checkpoint_tensors(folder)
    kind = config["model_type"].lower()
    if kind == "llada":
        hf = LlamaConfig(
            vocab_size=config["embedding_size"],
            hidden_size=config["d_model"],
            intermediate_size=config["mlp_hidden_size"],
            num_hidden_layers=config["n_layers"],
            num_attention_heads=config["n_heads"],
            num_key_value_heads=config["n_kv_heads"],
            rms_norm_eps=config["rms_norm_eps"],
            rope_parameters={"rope_type": "default", "rope_theta": config["rope_theta"]},
            tie_word_embeddings=False,
            attention_bias=False,
        )
        model, tensors = LlamaForCausalLM(hf), _llama_names(tensors)
    else:
        common = dict(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            intermediate_size=config["intermediate_size"],
            num_hidden_layers=config["num_hidden_layers"],
            num_attention_heads=config["num_attention_heads"],
            num_key_value_heads=config["num_key_value_heads"],
            rms_norm_eps=config["rms_norm_eps"],
            rope_parameters={"rope_type": "default", "rope_theta": float(config["rope_theta"])},
            tie_word_embeddings=config["tie_word_embeddings"],
        )
        if kind == "sdar":
            model = Qwen3ForCausalLM(
                Qwen3Config(**common, head_dim=config["head_dim"], attention_bias=False)
            )
        else:  # Dream, DreamOn, Open-dCoder: Qwen2 shapes and names
            model = Qwen2ForCausalLM(Qwen2Config(**common))
    model.config._attn_implementation = "sdpa"
    if model.config.tie_word_embeddings:
        model.load_state_dict(tensors, strict=False)  # lm_head is the embedding
        missing = set(model.state_dict()) - set(tensors)
        assert missing == {"lm_head.weight"}, missing
    else:
        model.load_state_dict(tensors, strict=True)
    return model.float().eval()


@torch.no_grad()
def reference_logits(model: torch.nn.Module, ids: list[int], allowed: torch.Tensor | None):
    """Logits of every position; `allowed` (T, T) bool, None: every position sees all."""
    x = torch.tensor([ids])
    if allowed is None:
        allowed = torch.ones(len(ids), len(ids), dtype=torch.bool)
    return model(input_ids=x, attention_mask=allowed[None, None]).logits[0].float()


def block_causal(length: int, block: int) -> torch.Tensor:
    allowed = torch.zeros(length, length, dtype=torch.bool)
    for i in range(length):
        allowed[i, : (i // block + 1) * block] = True
    return allowed[:, :length]


def _commit(logits_rows, canvas, slots, mask, banned, threshold):
    """One pass over `slots` (canvas indices, each predicted by its row in logits_rows):
    commit every masked slot above the threshold, else the single most confident one."""
    best = None
    committed = []
    for slot, row in zip(slots, logits_rows, strict=True):
        if canvas[slot] != mask:
            continue
        row = row.clone()
        row[banned] = float("-inf")
        probs = torch.softmax(row, dim=-1)
        p, token = float(probs.max()), int(probs.argmax())
        if best is None or p > best[0]:
            best = (p, slot, token)
        if p > threshold:
            committed.append((slot, token))
    if not committed and best is not None:
        committed = [(best[1], best[2])]
    for slot, token in committed:
        canvas[slot] = token
    return committed


def _done(middle, mask, stops, line_end) -> bool:
    for token in middle:
        if token == mask:
            return False
        if token in stops or (line_end is not None and line_end(token)):
            return True
    return True


def _kept(middle, mask, stops):
    out = []
    for token in middle:
        if token in stops or token == mask:
            break
        out.append(token)
    return out


def reference_bidirectional(
    model, before, length, after, *, mask, shifted, threshold, stops, block=32, line_end=None,
    banned=None,
):  # fmt: skip
    canvas = list(before) + [mask] * length + list(after)
    start = len(before)
    passes = 0
    for b0 in range(start, start + length, block):
        slots = list(range(b0, min(b0 + block, start + length)))
        while any(canvas[s] == mask for s in slots):
            logits = reference_logits(model, canvas, None)
            rows = [logits[s - 1] if shifted else logits[s] for s in slots]
            _commit(rows, canvas, slots, mask, banned or [mask], threshold)
            passes += 1
            if _done(canvas[start : start + length], mask, stops, line_end):
                return _kept(canvas[start : start + length], mask, stops), passes
    return _kept(canvas[start : start + length], mask, stops), passes


def reference_block_causal(model, before, length, *, mask, block, threshold, stops):
    start = len(before)
    total = ((start + length + block - 1) // block) * block
    canvas = list(before) + [mask] * (total - start)
    allowed = block_causal(total, block)
    for b0 in range(start // block * block, total, block):
        slots = list(range(b0, b0 + block))
        while any(canvas[s] == mask for s in slots):
            logits = reference_logits(model, canvas, allowed)
            _commit([logits[s] for s in slots], canvas, slots, mask, [mask], threshold)
            if _done(canvas[start:], mask, stops, None):
                return _kept(canvas[start:], mask, stops)[:length]
    return _kept(canvas[start:], mask, stops)[:length]


def reference_dreamon(model, before, max_length, after, *, mask, expand, eos, threshold, stops):
    """DreamOn's loop as DreamLM/DreamOn eval/generator.py describes it, from 4 masks."""
    middle = [mask] * min(4, max_length)
    expansions = 0
    start = len(before)
    while mask in middle:
        canvas = list(before) + middle + list(after)
        logits = reference_logits(model, canvas, None)
        banned = [mask]
        if len(middle) >= max_length or expansions >= max_length:
            banned.append(expand)
        slots = list(range(len(middle)))
        _commit([logits[start + s - 1] for s in slots], middle, slots, mask, banned, threshold)
        # expand, right to left, while the middle is shorter than allowed
        i = len(middle) - 1
        while i >= 0:
            if middle[i] == expand and len(middle) < max_length:
                middle[i : i + 1] = [mask, mask]
                expansions += 1
            i -= 1
        if eos in middle:
            first = middle.index(eos)
            middle = [t for j, t in enumerate(middle) if t != eos and not (t == mask and j > first)]
        if _done(middle, mask, stops, None):
            break
    return _kept(middle, mask, stops)


# -- checks shared by the per-family tests ------------------------------------------------


@lru_cache(maxsize=8)
def loaded(folder: Path):
    """fim-server's reading of the folder and its network, in fp32 on the CPU."""
    from fim_server.backends.hf.backend import load_model, read_folder

    info = read_folder(folder)
    return info, load_model(info, "cpu", torch.float32)


def check_weights_load_by_real_names(folder: Path) -> None:
    info, model = loaded(folder)
    tensors = checkpoint_tensors(folder)
    names = info.names()
    assert set(names.values()) == set(tensors), "every checkpoint tensor, and only those"
    state = model.state_dict()
    for ours, theirs in names.items():
        assert torch.equal(state[ours], tensors[theirs]), theirs


def our_logits(model, ids: list[int], allowed: torch.Tensor | None) -> torch.Tensor:
    x = torch.tensor(ids)
    logits, _ = model(x, torch.arange(len(ids)), mask=allowed)
    return logits


def check_matches_reference(folder: Path, ids: list[int], allowed: torch.Tensor | None) -> None:
    _, model = loaded(folder)
    ref = reference_model(folder)
    ours, theirs = our_logits(model, ids, allowed), reference_logits(ref, ids, allowed)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()


# -- the authors' decoding loops, re-implemented a second time ----------------------------
# Written from the official files (named in each docstring) in their own shape: a batch
# dimension, the whole sequence every step, torch's global random generator (seeded by the
# caller with torch.manual_seed) and torch.distributions.Categorical, as the authors wrote
# them. Nothing here is shared with fim_server/backends/hf/recipes.py.


def _official_top_p(logits, top_p):
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
    remove = cumulative > top_p
    remove[..., 1:] = remove[..., :-1].clone()
    remove[..., 0] = 0
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, sorted_indices, remove)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


def official_sample_tokens(logits, temperature=0.0, top_p=None, neg_entropy=False):
    """Dream / DreamOn `sample_tokens` (margin left out: no recipe uses it)."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = _official_top_p(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    if temperature > 0:
        x0 = torch.distributions.Categorical(probs=probs).sample()
        confidence = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if neg_entropy:
        confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    return confidence, x0


def _shift(logits):  # (1, T, V): Dream's "logits = torch.cat([logits[:,:1], logits[:, :-1]], 1)"
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def official_diffusion_generate(
    model, x, *, mask_id, steps, alg, temperature=0.0, top_p=None, alg_temp=0.0, eps=1e-3
):
    """Dream generation_utils.py `_sample` (maskgit_plus / entropy), full attention.
    Returns the canvas and the passes run (always `steps`)."""
    x = x.clone()
    timesteps = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        mask_index = x == mask_id
        logits = _shift(reference_logits(model, x[0].tolist(), None)[None])
        mask_logits = logits[mask_index]
        t, s = timesteps[i], timesteps[i + 1]
        if mask_logits.shape[0] == 0:
            continue
        confidence, x0 = official_sample_tokens(
            mask_logits, temperature, top_p=top_p, neg_entropy=alg == "entropy"
        )
        num_mask_token = mask_index.sum() / mask_index.shape[0]
        n = int(num_mask_token * (1 - s / t)) if i < steps - 1 else int(num_mask_token)
        full_confidence = torch.full_like(x, -torch.inf, dtype=logits.dtype)
        full_confidence[mask_index] = confidence
        if n > 0:
            if not alg_temp:
                _, transfer_index = torch.topk(full_confidence, n)
            else:
                weights = torch.softmax(full_confidence / alg_temp, dim=-1)
                transfer_index = torch.multinomial(weights, num_samples=n)
            x_ = torch.zeros_like(x) + mask_id
            x_[mask_index] = x0.clone()
            rows = torch.arange(x.size(0)).unsqueeze(1).expand_as(transfer_index)
            x[rows, transfer_index] = x_[rows, transfer_index]
    return x, steps


def official_llada_generate(model, x, *, start, gen_length, steps, block_length, mask_id):
    """ML-GSAI/LLaDA generate.py `generate()` (temperature 0, no CFG, low_confidence),
    on a canvas whose masked middle starts at `start` (the suffix follows it)."""
    x = x.clone()
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    passes = 0
    for num_block in range(num_blocks):
        b0 = start + num_block * block_length
        block_mask_index = x[:, b0 : b0 + block_length] == mask_id
        mask_num = block_mask_index.sum(dim=1, keepdim=True)
        transfer = torch.zeros(1, steps_per_block, dtype=torch.int64) + mask_num // steps_per_block
        transfer[0, : int(mask_num % steps_per_block)] += 1
        for i in range(steps_per_block):
            mask_index = x == mask_id
            logits = reference_logits(model, x[0].tolist(), None)[None]
            passes += 1
            x0 = torch.argmax(logits, dim=-1)
            p = torch.softmax(logits, dim=-1)
            x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
            x0_p[:, b0 + block_length :] = -float("inf")
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, -float("inf"))
            _, select = torch.topk(confidence[0], k=int(transfer[0, i]))
            x[0, select] = x0[0, select]
    return x, passes


def official_dreamon(
    model, input_ids, *, mask_id, expand_id, eos_id, steps, min_gen_len, max_gen_len,
    temperature, top_p, alg, max_tokens=2048,
):  # fmt: skip
    """DreamLM/DreamOn eval/generator.py `batch_generate_with_expand_as_token` (alg_temp
    0): the canvas padded with masks that the attention mask hides, positions from
    tok_idx. Returns the canvas, the middle's length and the passes run."""
    max_tokens = min(max_tokens, input_ids.shape[1] + max_gen_len - min_gen_len)
    x = torch.nn.functional.pad(input_ids, (0, max_tokens - input_ids.shape[1]), value=mask_id)
    num_generation_tokens = min_gen_len
    expand_budget = max_gen_len
    passes = 0
    for _ in range(steps):
        window = input_ids.shape[1] - min_gen_len + num_generation_tokens
        attention = torch.zeros(max_tokens, dtype=torch.bool)
        attention[:window] = True
        mask_index = (x == mask_id) & attention[None]
        if torch.all(~mask_index[:, :window]):
            break
        allowed = attention[None, :] & attention[:, None]
        allowed[~attention] = True  # rows nobody reads: keep softmax finite
        logits = _dreamon_logits(model, x[0], allowed, window)
        passes += 1
        logits = _shift(logits[None])[mask_index]
        if window == max_tokens or expand_budget == 0:
            logits[:, expand_id] -= 1e9
        confidence, x0 = official_sample_tokens(
            logits, temperature, top_p=top_p, neg_entropy=alg == "entropy"
        )
        _, transfer_index = torch.topk(confidence, 1)
        x0_ = torch.zeros_like(x0) + mask_id
        x0_[transfer_index] = x0[transfer_index].clone()
        x[mask_index] = x0_
        x_seq = x[0]
        eos_indices = (x_seq == eos_id).nonzero(as_tuple=True)
        if len(eos_indices[0]) > 0:
            first = eos_indices[0][0].item()
            replace = (torch.arange(x_seq.size(0)) >= first) & mask_index[0]
            x_seq.masked_fill_(replace, eos_id)
            x = x_seq.unsqueeze(0)
        for idx in sorted((x[0] == expand_id).nonzero(as_tuple=False).squeeze(1).tolist(),
                          reverse=True):  # fmt: skip
            x = torch.cat((x[:, :idx], torch.tensor([[mask_id, mask_id]]), x[:, idx + 1 :]), 1)
            num_generation_tokens += 1
            expand_budget -= 1
            if x.shape[1] > max_tokens:
                x = x[:, :max_tokens]
        eos_at = ((x[0] == eos_id) & (mask_index[0] == 1)).nonzero(as_tuple=False).squeeze(1)
        for idx in sorted(eos_at.tolist(), reverse=True):
            x = torch.cat((x[:, :idx], x[:, idx + 1 :], torch.tensor([[mask_id]])), dim=1)
            num_generation_tokens -= 1
    return x, num_generation_tokens, passes


@torch.no_grad()
def _dreamon_logits(model, ids, allowed, window):
    """The padded canvas through transformers' model: tok_idx positions (cumsum - 1 over
    the attended window, 1 on padding) and the 2-D mask made 4-D, as DreamOn passes."""
    attention = torch.zeros(ids.shape[0], dtype=torch.long)
    attention[:window] = 1
    tok_idx = attention.cumsum(-1) - 1
    tok_idx.masked_fill_(attention == 0, 1)
    out = model(input_ids=ids[None], attention_mask=allowed[None, None], position_ids=tok_idx[None])
    return out.logits[0].float()


def official_p2(model, x, *, mask_id, steps, temperature, top_p, pad_id):
    """pengzhangzhi/Open-dLLM veomni qwen2 generation_utils.py `_mdm_sample`, alg p2; the
    attention as veomni's Qwen2 under sdpa builds it from (x != pad_token_id): all ones
    -> no mask (bidirectional), any zero -> transformers' causal mask with padding."""
    x = x.clone()
    fix_mask = x != mask_id
    passes = 0
    for i in range(steps):
        mask_index = x == mask_id
        if not mask_index.any():
            break
        keys = x[0] != pad_id if pad_id is not None else torch.ones_like(x[0], dtype=torch.bool)
        allowed = None
        if not bool(keys.all()):
            n = x.shape[1]
            allowed = torch.tril(torch.ones(n, n, dtype=torch.bool)) & keys[None, :]
        logits = _shift(reference_logits(model, x[0].tolist(), allowed)[None])
        passes += 1
        kappa_t = (i + 1) / steps
        if temperature > 0:
            logits = logits / temperature
        if top_p is not None and top_p < 1:
            logits = _official_top_p(logits, top_p)
        probs = torch.softmax(logits.float(), dim=-1)
        if temperature > 0:
            x0_full = torch.distributions.Categorical(probs=probs).sample()
        else:
            _, x0_full = probs.max(dim=-1)
        conf_full = torch.gather(probs, -1, x0_full.unsqueeze(-1)).squeeze(-1)
        full_conf = conf_full.clone()
        full_conf[fix_mask] = float("inf")
        full_conf = torch.where(
            torch.isfinite(full_conf), full_conf, torch.full_like(full_conf, float("inf"))
        )
        num_positions = (~fix_mask).sum(dim=1)
        num_to_mask = (num_positions.float() * (1.0 - kappa_t)).floor().to(torch.long)
        num_to_mask = torch.minimum(num_to_mask.clamp_min(0), num_positions)
        sorted_idx = torch.argsort(full_conf, dim=1, descending=False)
        to_mask = torch.zeros_like(x, dtype=torch.bool)
        k = int(num_to_mask.max().item())
        if k > 0:
            to_mask[0, sorted_idx[0, :k]] = True
        x[to_mask] = mask_id
        keep_unmask = mask_index & (~to_mask)
        x[keep_unmask] = x0_full[keep_unmask]
    return x, passes


def official_sdar(model, prompt_ids, *, mask_id, gen_length, block_length, steps, threshold, stops):
    """JetAstra/SDAR generate.py `block_diffusion_generate`, low_confidence_dynamic, with
    the argmax in place of its sampler (the README's greedy evaluation); the key/value
    cache replaced by the whole prefix under the block-causal mask, which it equals."""
    prompt_length = len(prompt_ids)
    num_blocks = (prompt_length + gen_length + block_length - 1) // block_length
    total = num_blocks * block_length
    allowed = block_causal(total, block_length)
    x = torch.full((1, total), mask_id, dtype=torch.long)
    x[0, :prompt_length] = torch.tensor(prompt_ids)
    prefill_blocks = prompt_length // block_length
    passes = 1 if prefill_blocks > 0 else 0
    base, rem = block_length // steps, block_length % steps
    transfer = [base + (1 if j < rem else 0) for j in range(steps)]
    for num_block in range(prefill_blocks, num_blocks):
        b0, b1 = num_block * block_length, (num_block + 1) * block_length
        for step in range(steps + 1):
            cur_x = x[:, b0:b1]
            mask_index = cur_x == mask_id
            passes += 1  # the denoising pass, or the one that stores the block's keys/values
            if mask_index.sum() == 0:
                break
            logits = reference_logits(model, x[0, :b1].tolist(), allowed[:b1, :b1])[b0:b1][None]
            probs = torch.softmax(logits, dim=-1)
            x0_p, x0 = probs.max(dim=-1)
            confidence = torch.where(mask_index, x0_p, -torch.inf)
            transfer_index = torch.zeros_like(x0, dtype=torch.bool)
            high = confidence[0] > threshold
            if high.sum() >= transfer[step]:
                transfer_index[0] = high
            else:
                _, idx = torch.topk(confidence[0], transfer[step])
                transfer_index[0, idx] = True
            cur_x[transfer_index] = x0[transfer_index]
        if any(int(t) in stops for t in x[0, prompt_length:].tolist()):
            break
    return x, passes
