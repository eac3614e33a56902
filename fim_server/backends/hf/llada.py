"""LLaDA: GSAI-ML/LLaDA-8B-Base, LLaDA-8B-Instruct and LLaDA-1.5.

Checked against: ML-GSAI/LLaDA generate.py (mask id 126336, logits used unshifted: the
prediction for position i is row i; full bidirectional attention) and the Hugging Face
modeling_llada.py / configuration_llada.py shipped with the checkpoints (copies read in
QuentinFitteRey/LLada-Reasoning modeling_llada.py): config keys d_model, n_layers,
n_heads, n_kv_heads, mlp_hidden_size, embedding_size, rope_theta, rms_norm_eps,
include_bias, include_qkv_bias, weight_tying, block_type "llama"; parameters
model.transformer.wte, model.transformer.blocks.N.{attn_norm, q_proj, k_proj, v_proj,
attn_out, ff_norm, ff_proj (the SiLU gate), up_proj, ff_out (down)}, model.transformer.ln_f
and model.transformer.ff_out (the output head). LLaDALlamaBlock computes
ff_out(silu(ff_proj(x)) * up_proj(x)) and the same half-split rotary embedding as Llama.
Special tokens (LLaDA tokenizer): <|startoftext|> 126080, <|endoftext|> 126081,
<|eot_id|> 126348, <|mdm_mask|> 126336.

Decoding: the fast path (decoding.decode_bidirectional, unshifted) is Fast-dLLM's
`generate_with_dual_cache` at 0.9 (issue 30's outside check); `llada-official`
(official.decode_llada_generate) equals generate.py's `generate()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import BackendError
from .architecture import Architecture
from .checkpoint import TokenizerFiles, config_int
from .family import (
    Family,
    Prompt,
    SpecialTokens,
    architectures,
    end_tokens,
    model_type,
    require_mask,
)

_NAMES = {
    "attn_norm": "attn_norm",
    "mlp_norm": "ff_norm",
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "attn_out",
    "gate": "ff_proj",
    "up": "up_proj",
    "down": "ff_out",
}


class LLaDA(Family):
    kind = "llada"
    title = "LLaDA (LLaMA-shaped masked diffusion, unshifted logits)"
    shifted = False
    trained_context = 4096
    infilling = "bidirectional masked diffusion: prefix, masked middle, suffix"
    reference = "ML-GSAI/LLaDA generate.py; modeling_llada.py (LLaDALlamaBlock)"

    def matches(self, config: dict[str, Any], folder: Path) -> bool:
        return model_type(config) == "llada" or "LLaDAModelLM" in architectures(config)

    def architecture(self, config: dict[str, Any]) -> Architecture:
        unsupported = {
            "block_type": ("llama", config.get("block_type", "llama")),
            "layer_norm_type": ("rms", config.get("layer_norm_type", "rms")),
            "activation_type": ("silu", config.get("activation_type", "silu")),
        }
        for key, (want, have) in unsupported.items():
            if have != want:
                raise BackendError(
                    f"config.json: LLaDA variant with {key} {have!r} (need {want!r})"
                )
        if config.get("alibi") or not config.get("rope", True):
            raise BackendError("config.json: LLaDA variant without rotary embeddings")
        try:
            hidden = int(config["d_model"])
            heads = int(config["n_heads"])
            if heads < 1:
                raise BackendError(f"config.json: n_heads {heads} must be at least 1")
            return Architecture(
                vocab_size=int(config.get("embedding_size") or config["vocab_size"]),
                hidden_size=hidden,
                layers=int(config["n_layers"]),
                heads=heads,
                kv_heads=int(config.get("n_kv_heads") or heads),
                head_dim=hidden // heads,
                intermediate_size=int(config["mlp_hidden_size"]),
                rope_theta=float(config.get("rope_theta", 10000.0)),
                rms_eps=float(config.get("rms_norm_eps", 1e-5)),
                qkv_bias=bool(config.get("include_bias") or config.get("include_qkv_bias")),
                tied_embeddings=bool(config.get("weight_tying", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"config.json lacks or garbles {exc}") from None

    def weight_name(self, internal: str) -> str:
        parts = internal.split(".")
        if parts[0] == "embed":
            return "model.transformer.wte.weight"
        if parts[0] == "norm":
            return "model.transformer.ln_f.weight"
        if parts[0] == "lm_head":
            return "model.transformer.ff_out.weight"
        block = f"model.transformer.blocks.{parts[1]}."
        rest = parts[2:]
        if rest[0] in ("attn_norm", "mlp_norm"):
            return block + _NAMES[rest[0]] + ".weight"
        return block + _NAMES[rest[1]] + "." + rest[2]

    def special_tokens(
        self, folder: Path, config: dict[str, Any], tok: TokenizerFiles
    ) -> SpecialTokens:
        mask = require_mask(
            folder,
            tok,
            config_int(config, "mask_token_id", 126336),
            tok.named("mask_token") or "<|mdm_mask|>",
        )
        bos, eos, stops = end_tokens(config, tok, "<|eot_id|>")
        return SpecialTokens(mask=mask, bos=bos, eos=eos, stops=stops)

    def prompt(self, special: SpecialTokens, prefix: list[int], suffix: list[int]) -> Prompt:
        # Pretraining documents start with <|startoftext|>; the suffix window may be cut
        # short, so no end-of-text is claimed after it.
        return Prompt(([special.bos] if special.bos is not None else []) + prefix, suffix)


FAMILY = LLaDA()
