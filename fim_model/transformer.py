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
        """The config in `path`, checked against sane bounds before anything is sized
        from it; ValueError names the file and the value."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"{path}: not readable JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: not a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in raw.items() if k in known}
        problem = _config_problem(values)
        if problem is not None:
            raise ValueError(f"{path}: {problem}")
        return cls(**values)


# Bounds of each size in a config.json, checked before the network or its key/value cache
# is allocated: `max_seq_len: 2000000` alone would size a cache of gigabytes. Far beyond
# any small embedded model, well short of what would exhaust a machine.
_INT_BOUNDS = {
    "vocab_size": (2, 1_000_000),
    "dim": (1, 16_384),
    "n_layers": (1, 256),
    "n_heads": (1, 256),
    "ffn_dim": (1, 131_072),
    "max_seq_len": (1, 32_768),
    "block_size": (1, 1_024),
    "context_tokens": (0, 32_768),
}
# The key/value cache (n_layers x max_seq_len x 2 x dim, fp32) allocated with the model.
MAX_CACHE_BYTES = 4 * 1024**3


def _config_problem(values: dict[str, object]) -> str | None:
    for name, (low, high) in _INT_BOUNDS.items():
        value = values.get(name, ModelConfig.__dataclass_fields__[name].default)
        if not isinstance(value, int) or isinstance(value, bool):
            return f"{name} must be an integer, got {value!r}"
        if not low <= value <= high:
            return f"{name} {value} is outside {low}-{high}"
    for name in ("rope_theta", "norm_eps"):
        value = values.get(name, ModelConfig.__dataclass_fields__[name].default)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value <= 0
        ):
            return f"{name} must be a positive number, got {value!r}"
    cfg = ModelConfig(**values)  # type: ignore[arg-type]
    if cfg.dim % cfg.n_heads or cfg.head_dim % 2:
        return f"dim {cfg.dim} must split into {cfg.n_heads} heads of an even size"
    if cfg.block_size > cfg.max_seq_len or cfg.context_tokens > cfg.max_seq_len:
        return f"block_size and context_tokens must fit in max_seq_len {cfg.max_seq_len}"
    cache = cfg.n_layers * cfg.max_seq_len * 2 * cfg.dim * 4
    if cache > MAX_CACHE_BYTES:
        return (
            f"max_seq_len {cfg.max_seq_len} with {cfg.n_layers} layers of {cfg.dim} needs "
            f"a {cache / 1024**3:.1f} GiB key/value cache (at most {MAX_CACHE_BYTES >> 30})"
        )
    return None


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
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(b, t, -1))


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

    def forward(self, x, cos, sin, mask):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask)
        return x + self.ffn(self.ffn_norm(x))


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
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        return self.logits(self.hidden_states(ids, positions, mask))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden, self.embed.weight)

    def hidden_states(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Final normalised hidden states for `ids` ([batch, T]) at `positions`.

        `mask` is a boolean [batch or 1, 1, T, T] (True = may attend). This is the
        training (and reference) path; inference runs through `Decoder`.
        """
        cos = self.rope_cos[positions].unsqueeze(1)
        sin = self.rope_sin[positions].unsqueeze(1)
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)


class KVCache:
    """Keys and values of already-encoded tokens, for `rows` sequences that share a
    beginning (the context) and may differ after it (candidate middles decoded together).

    Per layer, row and position the buffer holds the key then the value ([n_layers, rows,
    max_seq_len, 2, n_heads, head_dim]), so that one copy stores both. Positions from
    `length` on are scratch: a pass writes its not-yet-committed tokens there and attends
    to them in place. `token_ids` records what row 0's cached positions hold so a later
    request can keep the longest common prefix and encode only what changed.
    """

    def __init__(
        self, cfg: ModelConfig, dtype: torch.dtype, device: torch.device, rows: int = 1
    ) -> None:
        shape = (cfg.n_layers, rows, cfg.max_seq_len, 2, cfg.n_heads, cfg.head_dim)
        self.buffer = torch.zeros(shape, dtype=dtype, device=device)
        self.rows = rows
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


@dataclass(frozen=True)
class _LayerWeights:
    attn_norm: torch.Tensor
    qkv: torch.Tensor  # [3 * dim, dim]
    out_t: torch.Tensor  # [dim, dim], transposed for addmm
    ffn_norm: torch.Tensor
    gate_up: torch.Tensor  # [2 * ffn_dim, dim]
    down_t: torch.Tensor  # [ffn_dim, dim], transposed for addmm


class Decoder:
    """Inference on one sequence with a key/value cache: the same network as
    `Transformer.hidden_states`, with as few tensor operations per pass as it takes.

    A pass over a block of 16 tokens does about 60 MFLOP, little enough that the cost of
    launching each operation rivals the arithmetic, so this path fuses what it can: RMS
    norms are single calls, rotary embeddings are one complex multiplication done in place
    on the fused q/k/v projection with tables prebuilt for every position, keys and values
    go to the cache with one copy and are attended to where they lie, residual additions
    ride along in addmm, and a pass whose tokens see every cached position needs no mask.
    It keeps transposed copies of two weights per layer: build it once the weights are
    final (after loading, after moving to a device or dtype).
    """

    def __init__(self, model: Transformer) -> None:
        cfg = model.cfg
        self.cfg = cfg
        weight = model.embed.weight.detach()
        self.dtype, self.device = weight.dtype, weight.device
        self.embed = weight
        self.eps = cfg.norm_eps
        self.layers = [
            _LayerWeights(
                layer.attn_norm.weight.detach(),
                layer.attn.qkv.weight.detach(),
                layer.attn.out.weight.detach().t().contiguous(),
                layer.ffn_norm.weight.detach(),
                layer.ffn.gate_up.weight.detach(),
                layer.ffn.down.weight.detach().t().contiguous(),
            )
            for layer in model.layers
        ]
        self.norm = model.norm.weight.detach()
        # Rotary tables for q and k side by side, one row per position: complex
        # e^{i * angle} for every (even, odd) pair of features, tiled over the heads.
        self._complex = self.dtype in (torch.float32, torch.float64)
        if self._complex:
            real = model.rope_cos.to(self.dtype), model.rope_sin.to(self.dtype)
            table = torch.complex(*real).repeat(1, 2 * cfg.n_heads)  # [seq, dim]
            self.rope = table.to(self.device)
        else:  # no complex type for bf16: the same rotation in real arithmetic
            cos = model.rope_cos.repeat_interleave(2, dim=-1).repeat(1, 2 * cfg.n_heads)
            sin = model.rope_sin.repeat_interleave(2, dim=-1).repeat(1, 2 * cfg.n_heads)
            self.rope_cos = cos.to(self.device, self.dtype)
            self.rope_sin = sin.to(self.device, self.dtype)

    def _rotate(self, qk: torch.Tensor, start: int, end: int) -> None:
        """Rotary position embedding of q and k ([rows, T, 2 * dim], pairs of features),
        in place."""
        r, t = qk.shape[:2]
        if self._complex:
            torch.view_as_complex(qk.view(r, t, -1, 2)).mul_(self.rope[start:end])
            return
        pairs = qk.view(r, t, -1, 2)
        rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).view(r, t, -1)
        qk.mul_(self.rope_cos[start:end]).addcmul_(rotated, self.rope_sin[start:end])

    def prefill(self, ids: torch.Tensor, cache: KVCache, mask: torch.Tensor | None) -> None:
        """Append `ids` to the cache: [T] is text every row shares (encoded once, stored in
        every row), [rows, T] each row's own. `mask` ([T, cache.length + T], True = may
        attend) shapes their attention; None lets each see all the others of its row."""
        self._run(ids, cache, mask, commit=True)

    def hidden(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Final normalised hidden states of `ids` placed after the cached positions, each
        seeing all of them and all of `ids` of its row: [T] gives [T, dim] (row 0),
        [rows, T] gives [rows, T, dim] (the first `rows` rows of the cache). The cache keeps
        its length (the keys of `ids` are scratch, overwritten by the next call)."""
        hidden = self._run(ids, cache, None, commit=False)
        assert hidden is not None
        return hidden

    def _run(
        self, ids: torch.Tensor, cache: KVCache, mask: torch.Tensor | None, commit: bool
    ) -> torch.Tensor | None:
        cfg = self.cfg
        single = ids.dim() == 1
        r, t = (1, ids.shape[0]) if single else ids.shape
        d = cfg.dim
        start = cache.length
        end = start + t
        if end > cfg.max_seq_len:
            raise ValueError(f"{end} positions exceed the model's {cfg.max_seq_len}")
        if r > cache.rows:
            raise ValueError(f"{r} rows of tokens for a cache of {cache.rows}")
        # Committed shared text goes into every row, so that the rows stay one sequence up
        # to where their middles begin; it is computed once, on row 0.
        written = cache.rows if commit and single else r
        x = F.embedding(ids.reshape(-1), self.embed)  # [r * T, d]
        last = len(self.layers) - 1
        for i, w in enumerate(self.layers):
            qkv = F.linear(F.rms_norm(x, (d,), w.attn_norm, self.eps), w.qkv)  # [r * T, 3d]
            per_row = qkv.view(r, t, 3 * d)
            self._rotate(per_row[..., : 2 * d], start, end)
            kv = cache.buffer[i]  # [rows, seq, 2, heads, head_dim]
            kv[:written, start:end].view(written, t, 2 * d).copy_(per_row[..., d:])
            if commit and i == last:
                break  # a prefill needs the keys and values, not what the last layer makes
            q = per_row[..., :d].view(r, t, cfg.n_heads, cfg.head_dim).transpose(1, 2)
            keys = kv[:r, :end, 0].transpose(1, 2)  # [r, heads, end, head_dim]
            values = kv[:r, :end, 1].transpose(1, 2)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
            x = torch.addmm(x, y.transpose(1, 2).reshape(r * t, d), w.out_t)
            gate, up = F.linear(F.rms_norm(x, (d,), w.ffn_norm, self.eps), w.gate_up).chunk(2, -1)
            x = torch.addmm(x, F.silu(gate).mul_(up), w.down_t)
        if commit:
            cache.length = end
            cache.token_ids.extend((ids if single else ids[0]).tolist())
            return None
        hidden = F.rms_norm(x, (d,), self.norm, self.eps)
        return hidden if single else hidden.view(r, t, d)

    def logits(self, hidden: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits of `hidden` ([n, dim]), plus `bias` ([vocab]) when given."""
        if bias is None:
            return F.linear(hidden, self.embed)
        return torch.addmm(bias, hidden, self.embed.t())
