"""A small decoder transformer whose attention pattern is supplied by the caller.

The block-diffusion layout (causal across blocks, bidirectional inside one) lives in
`fim_model.masks`; this module only runs the network, with an optional key/value
cache so that tokens already encoded are never encoded again.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 8192
    dim: int = 256
    n_layers: int = 6
    n_heads: int = 4
    ffn_dim: int = 688
    max_seq_len: int = 2048
    block_size: int = 16  # B: tokens denoised together; 1 makes an autoregressive model
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    # Longest context (suffix + prefix tokens) training showed the model; 0 = unknown.
    context_tokens: int = 0

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ModelConfig:
        raw = json.loads(Path(path).read_text())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, cfg.head_dim, 2).float() / cfg.head_dim))
    angles = torch.outer(torch.arange(cfg.max_seq_len).float(), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: [batch, heads, T, head_dim]; cos/sin: [batch or 1, 1, T, head_dim/2]
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2)


class KVCache:
    """Keys and values of already-encoded tokens, for a batch of one sequence.

    `token_ids` records what the cached positions hold so a later request can keep the
    longest common prefix and encode only what changed.
    """

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, device: torch.device) -> None:
        shape = (cfg.n_layers, 2, 1, cfg.n_heads, cfg.max_seq_len, cfg.head_dim)
        self.buffer = torch.zeros(shape, dtype=dtype, device=device)
        self.length = 0
        self.token_ids: list[int] = []

    def truncate(self, length: int) -> None:
        self.length = min(self.length, length)
        del self.token_ids[self.length :]

    def common_prefix(self, ids: list[int]) -> int:
        n = 0
        for a, b in zip(self.token_ids, ids, strict=False):
            if a != b:
                break
            n += 1
        return n


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.out = nn.Linear(cfg.dim, cfg.dim, bias=False)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        past: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if past is not None:  # past: [2, 1, heads, T_past, head_dim]
            keys, values = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        else:
            keys, values = k, v
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, -1)), k, v


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.dim, 2 * cfg.ffn_dim, bias=False)
        self.down = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Layer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = FeedForward(cfg)

    def forward(self, x, cos, sin, mask, past):
        h, k, v = self.attn(self.attn_norm(x), cos, sin, mask, past)
        x = x + h
        return x + self.ffn(self.ffn_norm(x)), k, v


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        # Scaled init of residual projections keeps early training stable in deep stacks.
        for layer in self.layers:
            std = 0.02 / math.sqrt(2 * cfg.n_layers)
            nn.init.normal_(layer.attn.out.weight, std=std)
            nn.init.normal_(layer.ffn.down.weight, std=std)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        cache_commit: int = 0,
    ) -> torch.Tensor:
        return self.logits(self.hidden_states(ids, positions, mask, cache, cache_commit))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.embed.weight)

    def hidden_states(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        cache_commit: int = 0,
    ) -> torch.Tensor:
        """Final normalised hidden states for `ids` ([batch, T]) at `positions`.

        `mask` is a boolean [batch or 1, 1, T, T_past + T] (True = may attend). With a
        cache, the cached keys come first; the first `cache_commit` new tokens are then
        appended to the cache (the rest, e.g. still-masked block positions, are not).
        """
        cos = self.rope_cos[positions].unsqueeze(1)
        sin = self.rope_sin[positions].unsqueeze(1)
        x = self.embed(ids)
        start = cache.length if cache is not None else 0
        for i, layer in enumerate(self.layers):
            past = cache.buffer[i, :, :, :, :start] if cache is not None else None
            x, k, v = layer(x, cos, sin, mask, past)
            if cache is not None and cache_commit:
                cache.buffer[i, 0, :, :, start : start + cache_commit] = k[:, :, :cache_commit]
                cache.buffer[i, 1, :, :, start : start + cache_commit] = v[:, :, :cache_commit]
        if cache is not None and cache_commit:
            cache.length = start + cache_commit
            cache.token_ids.extend(ids[0, :cache_commit].tolist())
        return self.norm(x)
