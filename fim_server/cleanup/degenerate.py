"""Rule `degenerate`: drop a model stuck in a loop (`_self_self_self...`). The gate reads it
too.
"""

from __future__ import annotations

import zlib

from ..context import CompletionContext
from .rule import Rule


def is_degenerate(text: str, min_bytes: int = 48, max_ratio: float = 0.25) -> bool:
    """Whether `text` is a model stuck in a loop (`_self_self_self...`).

    Measured by how well it compresses: looping output shrinks to a small fraction of its
    size, while even repetitive real code (a run of `self.x = x` lines, an if-chain) keeps
    over a third of it.
    """
    data = text.encode("utf-8")
    return len(data) >= min_bytes and len(zlib.compress(data, 9)) < max_ratio * len(data)


def _drop(text: str, ctx: CompletionContext) -> str:
    return "" if text.strip() and is_degenerate(text) else text


DEGENERATE = Rule("degenerate", _drop)
