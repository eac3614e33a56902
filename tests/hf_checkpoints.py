"""Tiny random-weight checkpoints in each diffusion family's real on-disk layout.

Each builder writes what a user's download holds: config.json with the family's own keys
(tiny sizes, real vocabulary size and special-token ids), generation_config.json,
tokenizer.json and tokenizer_config.json, and the weights in bf16 under the family's real
parameter names, split over two safetensors shards listed in model.safetensors.index.json.

The tokenizer is byte-level (one token per byte), and its special tokens sit at their real
ids (<|mask|> at 151666 for Dream, <|mdm_mask|> at 126336 for LLaDA, ...). `tokenizers`
numbers added tokens consecutively after the model's vocabulary whatever ids a file gives
them, so the vocabulary is padded with unused filler entries up to the first special id
and the gaps between special ids are filled with unused added tokens: the ids are then the
real ones, and the files stay a few MB, written at test time and never committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

QWEN_SPECIALS = {
    151643: "<|endoftext|>",
    151644: "<|im_start|>",
    151645: "<|im_end|>",
    151659: "<|fim_prefix|>",
    151660: "<|fim_middle|>",
    151661: "<|fim_suffix|>",
    151662: "<|fim_pad|>",
    151663: "<|repo_name|>",
    151664: "<|file_sep|>",
}
DREAM_SPECIALS = {**QWEN_SPECIALS, 151665: "<|beginoftext|>", 151666: "<|mask|>"}
DREAMON_SPECIALS = {**DREAM_SPECIALS, 151667: "<|expand|>"}
LLADA_SPECIALS = {
    126080: "<|startoftext|>",
    126081: "<|endoftext|>",
    126336: "<|mdm_mask|>",
    126348: "<|eot_id|>",
}
SDAR_SPECIALS = {
    **QWEN_SPECIALS,
    151665: "<tool_response>",
    151666: "</tool_response>",
    151667: "<think>",
    151668: "</think>",
    151669: "<|MASK|>",
}
OPEN_DCODER_SPECIALS = {**QWEN_SPECIALS, 151665: "<M>"}

TINY = {"hidden": 32, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 64}


MERGES = [("d", "e"), ("de", "f")]  # "def" is one token
MERGED = ["de", "def"]


def write_tokenizer(folder: Path, specials: dict[int, str], config: dict) -> None:
    base = Tokenizer(models.BPE(vocab={}, merges=[]))
    spec = json.loads(base.to_str())
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for merged in MERGED:
        vocab[merged] = len(vocab)
    first = min(specials)
    for i in range(len(vocab), first):
        vocab[f"<filler_{i}>"] = i
    spec["model"]["vocab"] = vocab
    spec["model"]["merges"] = [list(pair) for pair in MERGES]
    spec["pre_tokenizer"] = json.loads(
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).__getstate__()
    )
    spec["decoder"] = json.loads(decoders.ByteLevel().__getstate__())
    added = []
    for i in range(first, max(specials) + 1):
        content = specials.get(i, f"<|unused_{i}|>")
        added.append(
            {"id": i, "content": content, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
        )  # fmt: skip
    spec["added_tokens"] = added
    (folder / "tokenizer.json").write_text(json.dumps(spec))
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for i, content in specials.items():  # the ids are the real ones
        assert tok.token_to_id(content) == i, (content, tok.token_to_id(content), i)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


def write_shards(folder: Path, tensors: dict[str, torch.Tensor]) -> None:
    names = list(tensors)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    weight_map = {}
    for file, group in shards.items():
        save_file({n: tensors[n].to(torch.bfloat16).contiguous() for n in group}, folder / file)
        weight_map.update({n: file for n in group})
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def _random(shape: tuple[int, ...], gen: torch.Generator, scale: float) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * scale


# Ids of the byte-level tokens for letters, digits, space and a little punctuation.
_ALPHABET = sorted(pre_tokenizers.ByteLevel.alphabet())
PRINTABLE_IDS = [_ALPHABET.index(c) for c in "abcdefghijklmnopqrstuvwxyz0123456789_()+=,:Ġ"]


def _vocab_rows(
    vocab: int, hidden: int, gen: torch.Generator, loud: dict[int, float] | None = None
) -> torch.Tensor:
    # Large rows for printable byte tokens, small ones for the rest: the random model then
    # writes printable text, so the pipeline has something to clean and show. `loud`:
    # other ids given rows of that scale (DreamOn's <|expand|> and end-of-text).
    rows = _random((vocab, hidden), gen, 0.02)
    rows[PRINTABLE_IDS] = _random((len(PRINTABLE_IDS), hidden), gen, 2.0)
    for token, scale in (loud or {}).items():
        rows[token] = _random((hidden,), gen, scale)
    return rows


def qwen_tensors(
    vocab: int,
    *,
    bias: bool,
    qk_norm: bool,
    head_dim: int,
    tied: bool,
    seed: int,
    loud: dict[int, float] | None = None,
) -> dict[str, torch.Tensor]:
    """transformers' Qwen2/Qwen3 parameter names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    h, inter = TINY["hidden"], TINY["intermediate"]
    q_out, kv_out = TINY["heads"] * head_dim, TINY["kv_heads"] * head_dim
    t = {"model.embed_tokens.weight": _vocab_rows(vocab, h, gen, loud)}
    for i in range(TINY["layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = 1 + _random((h,), gen, 0.1)
        t[p + "post_attention_layernorm.weight"] = 1 + _random((h,), gen, 0.1)
        for name, out in (("q", q_out), ("k", kv_out), ("v", kv_out)):
            t[f"{p}self_attn.{name}_proj.weight"] = _random((out, h), gen, 0.3)
            if bias:
                t[f"{p}self_attn.{name}_proj.bias"] = _random((out,), gen, 0.1)
        t[p + "self_attn.o_proj.weight"] = _random((h, q_out), gen, 0.3)
        if qk_norm:
            t[p + "self_attn.q_norm.weight"] = 1 + _random((head_dim,), gen, 0.1)
            t[p + "self_attn.k_norm.weight"] = 1 + _random((head_dim,), gen, 0.1)
        t[p + "mlp.gate_proj.weight"] = _random((inter, h), gen, 0.3)
        t[p + "mlp.up_proj.weight"] = _random((inter, h), gen, 0.3)
        t[p + "mlp.down_proj.weight"] = _random((h, inter), gen, 0.3)
    t["model.norm.weight"] = 1 + _random((h,), gen, 0.1)
    if not tied:
        t["lm_head.weight"] = _vocab_rows(vocab, h, gen, loud)
    return t


def _qwen_config(vocab: int, **extra) -> dict:
    return {
        "hidden_act": "silu",
        "hidden_size": TINY["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": TINY["intermediate"],
        "num_attention_heads": TINY["heads"],
        "num_hidden_layers": TINY["layers"],
        "num_key_value_heads": TINY["kv_heads"],
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "sliding_window": None,
        "use_sliding_window": False,
        "torch_dtype": "bfloat16",
        "vocab_size": vocab,
        **extra,
    }


def _write(folder: Path, config: dict, generation: dict | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if generation is not None:
        (folder / "generation_config.json").write_text(json.dumps(generation))


def build_dream(folder: Path, *, dreamon: bool = False, seed: int = 0) -> Path:
    """Dream-v0 / Dream-Coder / DiffuCoder layout (DreamOn's with `dreamon`)."""
    vocab = 152064
    config = _qwen_config(
        vocab,
        architectures=["DreamModel"],
        auto_map={
            "AutoConfig": "configuration_dream.DreamConfig",
            "AutoModel": "modeling_dream.DreamModel",
        },
        model_type="Dream",
        attention_dropout=0.0,
        bos_token_id=151643,
        eos_token_id=151643,
        pad_token_id=151643,
        mask_token_id=151666,
        max_position_embeddings=131072,
        max_window_layers=28,
        rope_theta=1000000.0,
        tie_word_embeddings=False,
        use_cache=True,
    )
    _write(folder, config, {"bos_token_id": 151643, "eos_token_id": 151643})
    specials = DREAMON_SPECIALS if dreamon else DREAM_SPECIALS
    write_tokenizer(
        folder,
        specials,
        {
            "bos_token": "<|beginoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
            "mask_token": "<|mask|>",
            "tokenizer_class": "DreamTokenizer",
        },
    )
    # DreamOn's random model is pushed to write <|expand|> and end-of-text now and then,
    # so that tests see the middle grow and shrink.
    loud = {151667: 3.0, 151643: 2.5} if dreamon else None
    write_shards(
        folder,
        qwen_tensors(vocab, bias=True, qk_norm=False, head_dim=8, tied=False, seed=seed, loud=loud),
    )
    return folder


def build_dreamon(folder: Path, seed: int = 3) -> Path:
    return build_dream(folder, dreamon=True, seed=seed)


def llada_tensors(vocab: int, seed: int) -> dict[str, torch.Tensor]:
    """modeling_llada.py's parameter names (LLaDALlamaBlock) and shapes."""
    qwen = qwen_tensors(vocab, bias=False, qk_norm=False, head_dim=8, tied=False, seed=seed)
    rename = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ff_norm",
        "self_attn.q_proj": "q_proj",
        "self_attn.k_proj": "k_proj",
        "self_attn.v_proj": "v_proj",
        "self_attn.o_proj": "attn_out",
        "mlp.gate_proj": "ff_proj",
        "mlp.up_proj": "up_proj",
        "mlp.down_proj": "ff_out",
    }
    out = {}
    for name, tensor in qwen.items():
        if name == "model.embed_tokens.weight":
            out["model.transformer.wte.weight"] = tensor
        elif name == "model.norm.weight":
            out["model.transformer.ln_f.weight"] = tensor
        elif name == "lm_head.weight":
            out["model.transformer.ff_out.weight"] = tensor
        else:
            layer, rest = name.removeprefix("model.layers.").split(".", 1)
            module = rest.removesuffix(".weight")
            out[f"model.transformer.blocks.{layer}.{rename[module]}.weight"] = tensor
    return out


def build_llada(folder: Path, seed: int = 1) -> Path:
    vocab = 126464
    config = {
        "activation_type": "silu",
        "alibi": False,
        "alibi_bias_max": 8.0,
        "architectures": ["LLaDAModelLM"],
        "attention_dropout": 0.0,
        "attention_layer_norm": False,
        "attention_layer_norm_with_affine": True,
        "auto_map": {
            "AutoConfig": "configuration_llada.LLaDAConfig",
            "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
            "AutoModel": "modeling_llada.LLaDAModelLM",
        },
        "bias_for_layer_norm": False,
        "block_group_size": 1,
        "block_type": "llama",
        "d_model": TINY["hidden"],
        "embedding_dropout": 0.0,
        "embedding_size": vocab,
        "eos_token_id": 126081,
        "flash_attention": False,
        "include_bias": False,
        "include_qkv_bias": False,
        "init_device": "meta",
        "init_fn": "mitchell",
        "init_std": 0.02,
        "input_emb_norm": False,
        "layer_norm_type": "rms",
        "layer_norm_with_affine": True,
        "mask_token_id": 126336,
        "max_sequence_length": 4096,
        "mlp_hidden_size": TINY["intermediate"],
        "mlp_ratio": 4,
        "model_type": "llada",
        "multi_query_attention": None,
        "n_heads": TINY["heads"],
        "n_kv_heads": TINY["kv_heads"],
        "n_layers": TINY["layers"],
        "pad_token_id": 126081,
        "precision": "amp_bf16",
        "residual_dropout": 0.0,
        "rms_norm_eps": 1e-05,
        "rope": True,
        "rope_full_precision": True,
        "rope_theta": 500000.0,
        "scale_logits": False,
        "use_cache": False,
        "vocab_size": vocab,
        "weight_tying": False,
    }
    _write(folder, config, {"bos_token_id": 126080, "eos_token_id": 126081})
    write_tokenizer(
        folder,
        LLADA_SPECIALS,
        {
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "pad_token": "<|endoftext|>",
        },
    )
    write_shards(folder, llada_tensors(vocab, seed))
    return folder


SDAR_HEAD_DIM = 16  # Qwen3 states head_dim; here it differs from hidden/heads (8) on purpose


def build_sdar(folder: Path, seed: int = 2) -> Path:
    vocab = 151936
    config = _qwen_config(
        vocab,
        architectures=["SDARForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_sdar.SDARConfig",
            "AutoModel": "modeling_sdar.SDARModel",
            "AutoModelForCausalLM": "modeling_sdar.SDARForCausalLM",
        },
        attention_bias=False,
        attention_dropout=0.0,
        bos_token_id=151643,
        eos_token_id=151643,
        block_size=4,
        mask_token_id=151669,
        head_dim=SDAR_HEAD_DIM,
        max_position_embeddings=32768,
        max_window_layers=28,
        model_type="sdar",
        rope_theta=1000000,
        tie_word_embeddings=False,
        use_cache=False,
    )
    _write(folder, config, {"bos_token_id": 151643, "eos_token_id": 151643})
    write_tokenizer(
        folder,
        SDAR_SPECIALS,
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "mask_token": "<|MASK|>"},
    )
    write_shards(
        folder,
        qwen_tensors(
            vocab, bias=False, qk_norm=True, head_dim=SDAR_HEAD_DIM, tied=False, seed=seed
        ),
    )
    return folder


def build_open_dcoder(folder: Path, seed: int = 4) -> Path:
    vocab = 151936
    config = _qwen_config(
        vocab,
        architectures=["Qwen2ForCausalLM"],
        attention_dropout=0.0,
        bos_token_id=151643,
        eos_token_id=151643,
        pad_token_id=151643,
        max_position_embeddings=32768,
        max_window_layers=24,
        model_type="qwen2",
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        use_cache=True,
    )
    _write(folder, config, {"bos_token_id": 151643, "eos_token_id": 151643})
    write_tokenizer(
        folder,
        OPEN_DCODER_SPECIALS,
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "mask_token": "<M>"},
    )
    write_shards(
        folder, qwen_tensors(vocab, bias=True, qk_norm=False, head_dim=8, tied=True, seed=seed)
    )
    return folder


BUILDERS = {
    "dream": build_dream,
    "dreamon": build_dreamon,
    "llada": build_llada,
    "sdar": build_sdar,
    "open-dcoder": build_open_dcoder,
}


_SHARED: dict[str, Path] = {}

# The final norm's weight scaled by this multiplies every logit by it: a random tiny model
# then writes tokens far above a 0.9 threshold, so the fast path's parallel commits and
# the recipes' schedules are both exercised (unscaled, nearly every probability is tiny).
PEAK = 64.0
_FINAL_NORM = {"llada": "model.transformer.ln_f.weight"}


def peak(folder: Path, kind: str) -> Path:
    """`folder` with its final norm's weight x PEAK, in place (every logit x PEAK)."""
    from safetensors.torch import load_file

    name = _FINAL_NORM.get(kind.removesuffix("-peaked"), "model.norm.weight")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"][name]
    tensors = load_file(shard)
    tensors[name] = (tensors[name].float() * PEAK).to(torch.bfloat16)
    save_file(tensors, shard)
    return folder


def shared_folder(kind: str) -> Path:
    """A tiny folder of `kind` built once per test process, for tests that only read it
    (tests that break a folder build their own); "KIND-peaked": its peaked copy."""
    if kind not in _SHARED:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix=f"fim-hf-{kind}-"))
        atexit.register(shutil.rmtree, root, True)
        base = kind.removesuffix("-peaked")
        _SHARED[kind] = BUILDERS[base](root / kind)
        if kind != base:
            peak(_SHARED[kind], base)
    return _SHARED[kind]


def as_slow_tokenizer(folder: Path) -> None:
    """Replace tokenizer.json by what a slow (DreamTokenizer-style) checkpoint ships:
    vocab.json, merges.txt, and the added tokens in tokenizer_config.json."""
    spec = json.loads((folder / "tokenizer.json").read_text())
    (folder / "vocab.json").write_text(json.dumps(spec["model"]["vocab"]))
    merges = ["#version: 0.2", *(" ".join(pair) for pair in spec["model"]["merges"])]
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["added_tokens_decoder"] = {
        str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in spec["added_tokens"]
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").unlink()
