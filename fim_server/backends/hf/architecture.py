"""The shape of a decoder stack, read from config.json (no torch here: detecting and
inspecting a folder must not pay for importing it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..base import BackendError

# Sane bounds of each size config.json gives, checked before the network is built from
# it: far beyond any released diffusion coder, far short of a nonsense value that would
# only fail (or exhaust memory) later with a message that names nothing.
_BOUNDS = {
    "vocab_size": (2, 1_000_000),
    "hidden_size": (1, 65_536),
    "layers": (1, 512),
    "heads": (1, 1_024),
    "kv_heads": (1, 1_024),
    "head_dim": (2, 1_024),
    "intermediate_size": (1, 1_048_576),
}


@dataclass(frozen=True)
class Architecture:
    vocab_size: int
    hidden_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate_size: int
    rope_theta: float
    rms_eps: float
    qkv_bias: bool = False  # Qwen2
    qk_norm: bool = False  # Qwen3
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise BackendError(f"config.json: {name} {value} is outside {low}-{high}")
        if self.heads % self.kv_heads or self.head_dim % 2:
            raise BackendError(
                f"config.json: {self.heads} attention heads cannot share {self.kv_heads} "
                f"key/value heads, or head size {self.head_dim} is odd"
            )
        for name in ("rope_theta", "rms_eps"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise BackendError(f"config.json: {name} must be a positive number, got {value}")

    @property
    def parameters(self) -> int:
        h, kv = self.hidden_size, self.kv_heads * self.head_dim
        attn = h * self.heads * self.head_dim * 2 + h * kv * 2
        if self.qkv_bias:
            attn += self.heads * self.head_dim + 2 * kv
        mlp = 3 * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h + (2 * self.head_dim if self.qk_norm else 0)
        head = 0 if self.tied_embeddings else self.vocab_size * h
        return self.vocab_size * h + self.layers * per_layer + h + head
