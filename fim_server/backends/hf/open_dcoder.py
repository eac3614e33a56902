"""Open-dCoder: fredzzp/open-dcoder-0.5B, masked diffusion trained from
Qwen2.5-Coder-0.5B (the laptop-sized one).

Checked against: pengzhangzhi/Open-dLLM README.md (config model_type "qwen2"; the
weights under stock Qwen2 names, loaded into veomni's own Qwen2ForCausalLM in
veomni/models/transformers/qwen2/modeling_qwen2.py, which the sampler calls with
`is_causal=False`: bidirectional attention, not transformers' causal Qwen2),
veomni/models/transformers/qwen2/generation_utils.py (`_mdm_sample`: "Shift logits to
predict the next token, aligning with training": logits shifted by one like Dream; the
mask is the tokenizer's mask_token_id) and eval/eval_infill/eval_infill.py (infilling
prompt: the prefix as the tokenizer encodes it, the masks, then the suffix, no end token;
alg p2; HumanEval-Infill pass@1 32.5 at a fixed middle length, 77.4 at the true length).
Its config.json is an ordinary Qwen2 one, so the folder is told apart from an
autoregressive Qwen2 by its tokenizer, which defines a mask token. The mask is read from
the folder's tokenizer, never assumed: <M> at 151665 is unverified (the published
tokenizer_config.json was not found; tasks/train_torch.py adds <M> when a tokenizer has
no mask, which on Qwen2.5's 151,665 tokens would give it that id).

Decoding: the fast path (decoding.decode_bidirectional, shifted) equals no published
Open-dCoder decoder; `open-dcoder-official` (official.decode_p2) equals `_mdm_sample` with
alg p2 as eval/eval_infill/run_eval.sh runs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..base import BackendError
from .architecture import Architecture
from .checkpoint import TokenizerFiles, read_json
from .family import (
    Family,
    Prompt,
    SpecialTokens,
    end_tokens,
    model_type,
    qwen_architecture,
    require_mask,
)


def _declared_mask(folder: Path) -> str | None:
    try:
        config = read_json(folder, "tokenizer_config.json", required=False) or {}
    except BackendError:
        return None
    value = config.get("mask_token")
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


class OpenDCoder(Family):
    kind = "open-dcoder"
    title = "Open-dCoder (Qwen2.5-Coder-shaped masked diffusion, shifted logits)"
    shifted = True
    trained_context = 4096
    infilling = "bidirectional masked diffusion: prefix, masked middle, suffix"
    reference = "pengzhangzhi/Open-dLLM generation_utils.py and eval/eval_infill/eval_infill.py"

    def matches(self, config: dict[str, Any], folder: Path) -> bool:
        return model_type(config) == "qwen2" and _declared_mask(folder) is not None

    def architecture(self, config: dict[str, Any]) -> Architecture:
        return qwen_architecture(config, qkv_bias=True, qk_norm=False)

    def special_tokens(
        self, folder: Path, config: dict[str, Any], tok: TokenizerFiles
    ) -> SpecialTokens:
        mask = require_mask(folder, tok, None, tok.named("mask_token"))
        bos, eos, stops = end_tokens(config, tok)
        return SpecialTokens(mask=mask, bos=None, eos=eos, stops=stops)

    def prompt(self, special: SpecialTokens, prefix: list[int], suffix: list[int]) -> Prompt:
        return Prompt(prefix, suffix)


FAMILY = OpenDCoder()
