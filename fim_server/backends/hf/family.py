"""What a model family is to fim-server: how to recognise its config.json, its network's
shape and on-disk parameter names, its special tokens, its infilling prompt, and its
decoding conventions (logit shift, attention pattern, fixed or growing middle)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import BackendError
from .architecture import Architecture
from .checkpoint import TokenizerFiles, config_int

# Positions decoded together before the bidirectional cache is refreshed (Fast-dLLM's
# block length for Dream and LLaDA is 32).
DECODE_BLOCK = 32


@dataclass(frozen=True)
class SpecialTokens:
    mask: int
    bos: int | None = None
    eos: int | None = None
    stops: frozenset[int] = frozenset()  # tokens that end the middle (eos, pad, end of turn)
    expand: int | None = None  # DreamOn: one position becomes two masks
    named: dict[str, int] = field(default_factory=dict)  # other tokens a prompt uses


@dataclass(frozen=True)
class Prompt:
    before: list[int]  # tokens before the middle (prefix and what frames it)
    after: list[int]  # tokens after the middle (suffix and what frames it)


def qwen_weight_name(internal: str) -> str:
    """transformers' Qwen2/Qwen3 parameter names (also Dream's and SDAR's)."""
    parts = internal.split(".")
    if parts[0] == "embed":
        return "model.embed_tokens.weight"
    if parts[0] == "norm":
        return "model.norm.weight"
    if parts[0] == "lm_head":
        return "lm_head.weight"
    layer = f"model.layers.{parts[1]}."
    rest = parts[2:]
    if rest[0] == "attn_norm":
        return layer + "input_layernorm.weight"
    if rest[0] == "mlp_norm":
        return layer + "post_attention_layernorm.weight"
    if rest[0] == "attn":
        if rest[1] in ("q_norm", "k_norm"):
            return f"{layer}self_attn.{rest[1]}.weight"
        return f"{layer}self_attn.{rest[1]}_proj.{rest[2]}"
    return f"{layer}mlp.{rest[1]}_proj.{rest[2]}"


def rope_theta(config: dict[str, Any], default: float) -> float:
    value = config.get("rope_theta")
    if value is None and isinstance(config.get("rope_parameters"), dict):
        value = config["rope_parameters"].get("rope_theta")
    return float(value) if value is not None else default


def qwen_architecture(config: dict[str, Any], *, qkv_bias: bool, qk_norm: bool) -> Architecture:
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        if heads < 1:
            raise BackendError(f"config.json: num_attention_heads {heads} must be at least 1")
        return Architecture(
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            layers=int(config["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or hidden // heads),
            intermediate_size=int(config["intermediate_size"]),
            rope_theta=rope_theta(config, 10000.0),
            rms_eps=float(config.get("rms_norm_eps", 1e-6)),
            qkv_bias=qkv_bias,
            qk_norm=qk_norm,
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"config.json lacks or garbles {exc}") from None


class Family:
    kind: str  # the backend kind: "dream", "llada", ...
    title: str  # for messages: "Dream (Qwen2-shaped masked diffusion)"
    shifted: bool  # logits at row i predict token i+1 (Dream's AR-initialised heads)
    block_causal: bool = False  # blocks attend to earlier blocks only (exact KV cache)
    variable_length: bool = False  # the middle grows and shrinks (DreamOn)
    trained_context: int = 2048  # tokens the family was trained on (prefix + middle + suffix)
    infilling: str = ""  # how the family learnt (or did not learn) to fill a middle
    reference: str = ""  # where the conventions below come from

    def matches(self, config: dict[str, Any], folder: Path) -> bool:
        raise NotImplementedError

    def architecture(self, config: dict[str, Any]) -> Architecture:
        raise NotImplementedError

    def weight_name(self, internal: str) -> str:
        return qwen_weight_name(internal)

    def special_tokens(
        self, folder: Path, config: dict[str, Any], tok: TokenizerFiles
    ) -> SpecialTokens:
        raise NotImplementedError

    def prompt(self, special: SpecialTokens, prefix: list[int], suffix: list[int]) -> Prompt:
        raise NotImplementedError

    def block_size(self, config: dict[str, Any]) -> int:
        return DECODE_BLOCK


def architectures(config: dict[str, Any]) -> list[str]:
    value = config.get("architectures")
    return [a for a in value if isinstance(a, str)] if isinstance(value, list) else []


def model_type(config: dict[str, Any]) -> str:
    value = config.get("model_type")
    return value.lower() if isinstance(value, str) else ""


def require_mask(folder: Path, tok: TokenizerFiles, mask_id: int | None, name: str | None) -> int:
    """The mask token's id, checked against tokenizer.json."""
    if mask_id is None and name:
        mask_id = tok.token_id(name)
    if mask_id is None:
        raise BackendError(
            f"model folder {folder}: neither config.json (mask_token_id) nor "
            "tokenizer_config.json (mask_token) names a mask token"
        )
    if tok.tokenizer.id_to_token(mask_id) is None:
        label = f" {name}" if name else ""
        raise BackendError(
            f"model folder {folder}: tokenizer.json has no mask token{label} (id {mask_id}); "
            "the tokenizer does not belong to this diffusion model"
        )
    return mask_id


def end_tokens(
    config: dict[str, Any], tok: TokenizerFiles, *extra_names: str
) -> tuple[int | None, int | None, frozenset[int]]:
    """bos, eos, and every token that ends a middle: eos, pad and named end markers."""
    bos = tok.token_id(tok.named("bos_token"))
    if bos is None:
        bos = config_int(config, "bos_token_id")
    eos = tok.token_id(tok.named("eos_token"))
    if eos is None:
        eos = config_int(config, "eos_token_id")
    stops = {eos, tok.token_id(tok.named("pad_token")), config_int(config, "pad_token_id")}
    stops |= {tok.token_id(name) for name in extra_names}
    return bos, eos, frozenset(s for s in stops if s is not None)
