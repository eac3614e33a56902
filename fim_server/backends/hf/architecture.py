"""The shape of a decoder stack, read from config.json (no torch here: detecting and
inspecting a folder must not pay for importing it)."""

from __future__ import annotations

from dataclasses import dataclass


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
