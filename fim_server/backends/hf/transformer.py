"""The decoder stack every supported family shares, in plain torch.

Qwen2 (Dream, DiffuCoder, DreamOn, Open-dCoder), Qwen3 (SDAR) and LLaMA (LLaDA) are the
same network: token embedding, N pre-norm blocks of grouped-query attention with rotary
positions (half-split rotation) and a SwiGLU MLP, a final RMSNorm and an output
projection. They differ only in switches (bias on q/k/v in Qwen2, an RMSNorm on each
query/key head in Qwen3, tied output weights in small Qwen2 models) and in the names of
the parameters on disk, which each family module maps onto `Transformer`'s own names.

What the families do differently at run time is not here: the attention pattern arrives
as a mask (None: every query sees every key, which is what the bidirectional families
use), and the logit shift is applied by the decoding loop. Written here rather than
through transformers' model classes so that one forward can (a) return the keys/values
of every layer and (b) recompute a window of rows against a cached full-length key/value
set, which is what the Fast-dLLM-style cache needs; tests check this module against
transformers' Qwen2/Qwen3/Llama implementations on the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import Architecture

# Per layer: keys and values after rotary embedding, (kv_heads, positions, head_dim).
LayerKV = tuple[torch.Tensor, torch.Tensor]


# Parameters are created uninitialised (every value comes from the checkpoint), so that the
# network can be built on the meta device without running initialisers there, which is
# slow (it pulls in torch's reference decompositions).


def _empty(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.empty(*shape), requires_grad=False)


class Linear(nn.Module):
    def __init__(self, inputs: int, outputs: int, bias: bool) -> None:
        super().__init__()
        self.weight = _empty(outputs, inputs)
        self.bias = _empty(outputs) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = _empty(size)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In fp32 whatever the weights' dtype, as the reference implementations do.
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos and sin for `positions`, (len, head_dim), computed in fp32."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    )
    freqs = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


class Attention(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        h, d = arch.hidden_size, arch.head_dim
        self.q = Linear(h, arch.heads * d, bias=arch.qkv_bias)
        self.k = Linear(h, arch.kv_heads * d, bias=arch.qkv_bias)
        self.v = Linear(h, arch.kv_heads * d, bias=arch.qkv_bias)
        self.o = Linear(arch.heads * d, h, bias=False)
        self.q_norm = RMSNorm(d, arch.rms_eps) if arch.qk_norm else None
        self.k_norm = RMSNorm(d, arch.rms_eps) if arch.qk_norm else None

    def forward(
        self,
        x: torch.Tensor,  # (T, hidden)
        cos: torch.Tensor,
        sin: torch.Tensor,
        context: LayerKV | None,
        start: int,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, LayerKV]:
        a = self.arch
        t = x.shape[0]
        q = self.q(x).view(t, a.heads, a.head_dim)
        k = self.k(x).view(t, a.kv_heads, a.head_dim)
        v = self.v(x).view(t, a.kv_heads, a.head_dim)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.transpose(0, 1)  # (heads, T, d)
        k = k.transpose(0, 1)
        v = v.transpose(0, 1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        own: LayerKV = (k, v)
        if context is not None:
            # The window's rows replace rows start..start+T of the cached keys/values
            # (appending where the cache ends there).
            ck, cv = context
            k = torch.cat((ck[:, :start], k, ck[:, start + t :]), dim=1)
            v = torch.cat((cv[:, :start], v, cv[:, start + t :]), dim=1)
        group = a.heads // a.kv_heads
        if group > 1:
            k = k.repeat_interleave(group, dim=0)
            v = v.repeat_interleave(group, dim=0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o(out.transpose(0, 1).reshape(t, a.heads * a.head_dim)), own


class MLP(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.gate = Linear(arch.hidden_size, arch.intermediate_size, bias=False)
        self.up = Linear(arch.hidden_size, arch.intermediate_size, bias=False)
        self.down = Linear(arch.intermediate_size, arch.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Layer(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(arch.hidden_size, arch.rms_eps)
        self.attn = Attention(arch)
        self.mlp_norm = RMSNorm(arch.hidden_size, arch.rms_eps)
        self.mlp = MLP(arch)


class Embedding(nn.Module):
    def __init__(self, vocab: int, hidden: int) -> None:
        super().__init__()
        self.weight = _empty(vocab, hidden)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class Transformer(nn.Module):
    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        self.embed = Embedding(arch.vocab_size, arch.hidden_size)
        self.layers = nn.ModuleList(Layer(arch) for _ in range(arch.layers))
        self.norm = RMSNorm(arch.hidden_size, arch.rms_eps)
        self.lm_head = (
            None if arch.tied_embeddings else Linear(arch.hidden_size, arch.vocab_size, False)
        )

    @torch.no_grad()
    def forward(
        self,
        ids: torch.Tensor,  # (T,) token ids
        positions: torch.Tensor,  # (T,) their positions in the sequence
        *,
        context: list[LayerKV] | None = None,
        start: int = 0,
        mask: torch.Tensor | None = None,  # (T, keys) bool, True: may attend
        rows: tuple[int, int] | None = None,  # logits for rows[0]..rows[1]-1 only
    ) -> tuple[torch.Tensor, list[LayerKV]]:
        """Logits (fp32) of `rows` (default all) and every layer's keys/values of `ids`.

        With `context` (a full key/value set from an earlier forward), `ids` are a window
        of rows start..start+T whose queries attend to the context with these rows
        replaced: the Fast-dLLM way of recomputing one block against a cached sequence.
        """
        x = self.embed(ids)
        cos, sin = rotary(positions, self.arch.head_dim, self.arch.rope_theta, x.dtype)
        kvs: list[LayerKV] = []
        for i, layer in enumerate(self.layers):
            ctx = context[i] if context is not None else None
            att, kv = layer.attn(layer.attn_norm(x), cos, sin, ctx, start, mask)
            x = x + att
            x = x + layer.mlp(layer.mlp_norm(x))
            kvs.append(kv)
        if rows is not None:
            x = x[rows[0] : rows[1]]
        x = self.norm(x)
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(x, weight).float(), kvs


def internal_names(arch: Architecture) -> list[str]:
    """Every parameter name of `Transformer(arch)`, in a stable order."""
    names = ["embed.weight"]
    for i in range(arch.layers):
        p = f"layers.{i}."
        names += [p + "attn_norm.weight", p + "mlp_norm.weight"]
        for proj in ("q", "k", "v", "o"):
            names.append(f"{p}attn.{proj}.weight")
            if arch.qkv_bias and proj != "o":
                names.append(f"{p}attn.{proj}.bias")
        if arch.qk_norm:
            names += [p + "attn.q_norm.weight", p + "attn.k_norm.weight"]
        names += [f"{p}mlp.{m}.weight" for m in ("gate", "up", "down")]
    names.append("norm.weight")
    if not arch.tied_embeddings:
        names.append("lm_head.weight")
    return names
