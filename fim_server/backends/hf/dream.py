"""Dream: Dream-v0-Base/Instruct-7B, Dream-Coder-v0-Base/Instruct-7B and apple's
DiffuCoder-7B-Base/Instruct/cpGRPO.

Checked against: DreamLM/Dream README.md and demo_completion.py (model_type "Dream",
architectures ["DreamModel"], Qwen2.5 weights under transformers' Qwen2 names:
model.embed_tokens, model.layers.N.self_attn.{q,k,v}_proj with bias, o_proj,
mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm, model.norm, lm_head);
Dream's generation_utils.py (`logits = torch.cat([logits[:, :1], logits[:, :-1]], 1)`: the
logits are shifted by one position, as the model was adapted from an autoregressive
Qwen2.5; mask token 151666 <|mask|>); DreamLM/DreamOn demo/quickstart.py for the
infilling prompt ([bos] prefix [mask]*n suffix [eos]); apple/ml-diffucoder
inference_demo.py (DiffuCoder pads with <|dlm_pad|>, which therefore ends a middle).

Decoding: the fast path (decoding.decode_bidirectional: blocks of 32, threshold, dual
cache with the shift) equals no published Dream decoder; `dream-official` /
`dream-maskgit` (official.decode_diffusion_generate) equal Dream's `diffusion_generate`
with alg entropy / maskgit_plus. Fast-dLLM's Dream decoder (generation_utils_block.py)
is not implemented.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


class Dream(Family):
    kind = "dream"
    title = "Dream (Qwen2-shaped masked diffusion, shifted logits)"
    shifted = True
    trained_context = 2048  # DreamOn readme: "the context length (input+output) of Dream is 2048"
    infilling = "bidirectional masked diffusion: prefix, masked middle, suffix"
    reference = "DreamLM/Dream generation_utils.py; DreamLM/DreamOn demo/quickstart.py"

    def matches(self, config: dict[str, Any], folder: Path) -> bool:
        return model_type(config) == "dream" or "DreamModel" in architectures(config)

    def architecture(self, config: dict[str, Any]) -> Architecture:
        return qwen_architecture(config, qkv_bias=True, qk_norm=False)

    def special_tokens(
        self, folder: Path, config: dict[str, Any], tok: TokenizerFiles
    ) -> SpecialTokens:
        mask = require_mask(
            folder, tok, config_int(config, "mask_token_id"), tok.named("mask_token") or "<|mask|>"
        )
        bos, eos, stops = end_tokens(config, tok, "<|dlm_pad|>", "<|im_end|>")
        return SpecialTokens(mask=mask, bos=bos, eos=eos, stops=stops)

    def prompt(self, special: SpecialTokens, prefix: list[int], suffix: list[int]) -> Prompt:
        before = ([special.bos] if special.bos is not None else []) + prefix
        after = suffix + ([special.eos] if special.eos is not None else [])
        return Prompt(before, after)


FAMILY = Dream()
