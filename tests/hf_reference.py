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


@lru_cache(maxsize=2)
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


@lru_cache(maxsize=2)
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
