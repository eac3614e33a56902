"""Open-weight diffusion coders from a local Hugging Face folder.

One module per family (dream, dreamon, llada, sdar, open_dcoder) says how that family's
folder looks and how it infills; checkpoint.py reads any such folder, transformer.py is
the network they share, decoding.py the threshold-decoding loops and backend.py the
`Backend` that ties them together. This module only recognises folders, without torch.
docs/models.md lists the models, their sizes and where each convention was checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .dream import FAMILY as DREAM
from .dreamon import FAMILY as DREAMON
from .family import Family, architectures, model_type
from .llada import FAMILY as LLADA
from .open_dcoder import FAMILY as OPEN_DCODER
from .sdar import FAMILY as SDAR

# Most specific first: DreamOn is a Dream folder with an <|expand|> token.
FAMILIES: dict[str, Family] = {f.kind: f for f in (DREAMON, DREAM, LLADA, SDAR, OPEN_DCODER)}

# model_type values of autoregressive models people may point fim-server at by mistake.
_AUTOREGRESSIVE = {
    "llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mistral", "mixtral", "gemma",
    "gemma2", "gemma3", "phi", "phi3", "gpt2", "gpt_neox", "gpt_bigcode", "starcoder2",
    "codegen", "deepseek_v2", "deepseek_v3", "falcon", "olmo", "olmo2", "stablelm",
}  # fmt: skip


def detect_family(config: dict[str, Any], folder: Path) -> Family | None:
    for family in FAMILIES.values():
        if family.matches(config, folder):
            return family
    return None


def unsupported_reason(config: dict[str, Any]) -> str:
    """Why a folder no family claims cannot be served, in a few words."""
    kind = model_type(config)
    archs = architectures(config)
    if kind in _AUTOREGRESSIVE or any(a.endswith("ForCausalLM") for a in archs):
        return (
            f"is a plain autoregressive model (model_type {config.get('model_type')!r}, "
            "no mask token): fim-server serves masked-diffusion coders, see docs/models.md"
        )
    what = config.get("model_type") or (archs[0] if archs else None)
    return (
        f"has model_type {what!r}, not a supported architecture "
        f"({', '.join(FAMILIES)}; see docs/models.md)"
    )
