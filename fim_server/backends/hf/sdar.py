"""SDAR: JetLM/SDAR-1.7B/4B/8B-Chat (block diffusion on Qwen3).

Checked against: JetAstra/SDAR generate.py (`block_diffusion_generate`: the prompt's whole
blocks are prefilled into a DynamicCache, then each block of `block_length` positions is
denoised attending to the cached earlier blocks and to itself; the attention mask is the
block-lower-triangular `tril(ones(blocks, blocks))` repeated per position; logits are used
unshifted; once a block has no masks it is run once more to store its keys/values;
"low_confidence_dynamic" commits every position above `confidence_threshold`, else the
top one) and the SDAR-1.7B-Chat config.json (model_type "sdar", architectures
["SDARForCausalLM"], Qwen3 shape with head_dim, q_norm/k_norm, block_size 4,
mask_token_id 151669) and modeling_sdar.py (transformers' Qwen3 parameter names).

SDAR was never trained on infilling: it continues a prompt. fim-server shows it the
suffix first, inside Qwen's <|fim_suffix|>/<|fim_prefix|> markers, and the prefix last, so
that the middle is a plain continuation of the prefix (what the model does best) with the
suffix in view; post-processing trims what runs past the suffix.

Decoding: the fast path (decoding.decode_block_causal) is low_confidence_dynamic with one
token a step's quota at threshold 0.9, stopping once the middle is settled;
`sdar-official` (official.decode_sdar_block) is generate.py's loop at 0.85 with its
per-block stop and store passes, greedy.
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
    qwen_architecture,
    require_mask,
)


class SDAR(Family):
    kind = "sdar"
    title = "SDAR (Qwen3-shaped block diffusion, exact causal cache across blocks)"
    shifted = False
    block_causal = True
    trained_context = 4096
    infilling = "not trained on infilling: suffix shown first, middle continues the prefix"
    reference = "JetAstra/SDAR generate.py; SDAR-1.7B-Chat config.json and modeling_sdar.py"

    def matches(self, config: dict[str, Any], folder: Path) -> bool:
        return model_type(config) == "sdar" or "SDARForCausalLM" in architectures(config)

    def architecture(self, config: dict[str, Any]) -> Architecture:
        return qwen_architecture(
            config, qkv_bias=bool(config.get("attention_bias", False)), qk_norm=True
        )

    def special_tokens(
        self, folder: Path, config: dict[str, Any], tok: TokenizerFiles
    ) -> SpecialTokens:
        mask = require_mask(
            folder, tok, config_int(config, "mask_token_id"), tok.named("mask_token")
        )
        bos, eos, stops = end_tokens(config, tok, "<|im_end|>")
        named = {
            name: tid
            for name in ("<|fim_prefix|>", "<|fim_suffix|>")
            if (tid := tok.token_id(name)) is not None
        }
        return SpecialTokens(mask=mask, bos=bos, eos=eos, stops=stops, named=named)

    def prompt(self, special: SpecialTokens, prefix: list[int], suffix: list[int]) -> Prompt:
        fim_suffix = special.named.get("<|fim_suffix|>")
        fim_prefix = special.named.get("<|fim_prefix|>")
        if fim_suffix is None or fim_prefix is None:
            return Prompt(prefix, [])  # no markers to set the suffix apart: prefix only
        return Prompt([fim_suffix, *suffix, fim_prefix, *prefix], [])

    def block_size(self, config: dict[str, Any]) -> int:
        block = config_int(config, "block_size", 4) or 4
        if not 1 <= block <= 1_024:
            raise BackendError(f"config.json: block_size {block} is outside 1-1024")
        return block


FAMILY = SDAR()
