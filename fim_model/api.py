"""The model as the server sees it: load a checkpoint folder, fill a middle."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Required, TypedDict, Unpack

import torch

from .sampler import (
    DecodingCancelled,
    Generation,
    SamplerSettings,
    StopTokens,
    generate_candidates,
)
from .tokenizer import CodeTokenizer
from .transformer import Decoder, KVCache, Transformer
from .weights import load_transformer

EMBEDDED_CHECKPOINT = Path(__file__).parent / "checkpoint"
# Of several candidates the first is the greedy answer; the others are sampled at this
# temperature (unless the settings sample already), so that they differ from it where the
# model is unsure.
CANDIDATE_TEMPERATURE = 0.8

__all__ = ["EMBEDDED_CHECKPOINT", "DecodingCancelled", "InfillModel", "Middle"]


class DecodeOptions(TypedDict, total=False):
    """The keyword options of every decoding call, as `generate_candidates` takes them."""

    max_tokens: Required[int]
    single_line: bool
    should_cancel: Callable[[], bool] | None
    seed: int
    use_cache: bool


@dataclass(frozen=True)
class Middle:
    """What the model wrote between a prefix and a suffix."""

    text: str
    tokens: int
    forward_passes: int
    # Mean probability of the committed tokens when they were committed; None: no tokens.
    confidence: float | None
    ended: bool = False  # the model wrote <eom>


class InfillModel:
    """A block-diffusion FIM model with a key/value cache kept across requests.

    Successive keystrokes share most of their context (suffix first, then a prefix that
    grows at its end), so each request re-encodes only what changed. Calls are serialised
    by a lock: the cache belongs to one sequence at a time.
    """

    def __init__(
        self, model: Transformer, tokenizer: CodeTokenizer, settings: SamplerSettings
    ) -> None:
        self.model = model
        self.decoder = Decoder(model)
        self.tokenizer = tokenizer
        self.settings = settings
        self._cache = KVCache(model.cfg, self.decoder.dtype, self.decoder.device)
        self._stops = StopTokens(tokenizer.special.end_of_middle, tokenizer.newline_ids)
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        settings: SamplerSettings | None = None,
    ) -> InfillModel:
        folder = Path(path) if path is not None else EMBEDDED_CHECKPOINT
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"model folder {folder} has no {name}")
        model = load_transformer(folder, device)  # ValueError names the file
        if device.startswith("cuda"):
            model = model.to(torch.bfloat16)  # fp32 on CPU: bf16 there is far slower
        try:
            tokenizer = CodeTokenizer.load(folder / "tokenizer.json")
        except Exception as exc:  # tokenizers raises its own Exception type
            raise ValueError(f"{folder / 'tokenizer.json'}: does not load ({exc})") from None
        return cls(model, tokenizer, settings or SamplerSettings())

    @property
    def block_size(self) -> int:
        return self.model.cfg.block_size

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def context_ids(self, prefix: str, suffix: str, max_context: int) -> list[int]:
        sp = self.tokenizer.special
        prefix_ids = self.tokenizer.encode(prefix)
        suffix_ids = self.tokenizer.encode(suffix)
        room = max_context - 3
        # The caller trims at line boundaries; this only guards the model's hard limit,
        # keeping the text nearest the cursor.
        suffix_ids = suffix_ids[: max(room - len(prefix_ids), room // 4)]
        prefix_ids = prefix_ids[max(0, len(prefix_ids) - (room - len(suffix_ids))) :]
        return sp.fim_context(prefix_ids, suffix_ids)

    def infill(self, prefix: str, suffix: str, **options: Unpack[DecodeOptions]) -> Middle:
        """The middle between `prefix` and `suffix` (options: `generate_candidates`)."""
        return self.to_middle(self.generate(prefix, suffix, **options))

    def infill_candidates(
        self, prefix: str, suffix: str, *, count: int, **options: Unpack[DecodeOptions]
    ) -> list[Middle]:
        """`count` middles decoded together in one batch: the first is `infill`'s answer,
        the others are sampled at CANDIDATE_TEMPERATURE. They may coincide."""
        return [
            self.to_middle(gen)
            for gen in self.generate_candidates(prefix, suffix, count=count, **options)
        ]

    def generate(self, prefix: str, suffix: str, **options: Unpack[DecodeOptions]) -> Generation:
        """`infill` before decoding: the tokens and how each pass went (benchmarks)."""
        (only,) = self.generate_candidates(prefix, suffix, count=1, **options)
        return only

    def generate_candidates(
        self,
        prefix: str,
        suffix: str,
        *,
        count: int,
        max_tokens: int,
        single_line: bool = False,
        should_cancel: Callable[[], bool] | None = None,
        seed: int = 0,
        use_cache: bool = True,
    ) -> list[Generation]:
        """`infill_candidates` before decoding (benchmarks): at most `max_tokens` tokens
        each, ending at the first line break when `single_line`; `should_cancel` is asked
        between passes (True: DecodingCancelled). Without `use_cache`, every step
        recomputes the whole sequence (for checking that the cache is exact)."""
        cfg = self.model.cfg
        max_tokens = max(1, min(max_tokens, cfg.max_seq_len // 4))
        context = self.context_ids(prefix, suffix, cfg.max_seq_len - max_tokens - cfg.block_size)
        sampled = self.settings
        if sampled.temperature == 0:
            sampled = replace(sampled, temperature=CANDIDATE_TEMPERATURE)
        with self._lock:
            if use_cache and self._cache.rows < count:
                # One row per candidate; the context cached so far is encoded again once.
                self._cache = KVCache(cfg, self.decoder.dtype, self.decoder.device, rows=count)
            return generate_candidates(
                self.decoder,
                context,
                self.tokenizer.special,
                self._stops,
                max_tokens=max_tokens,
                single_line=single_line,
                settings=[self.settings] + [sampled] * (count - 1),
                cache=self._cache if use_cache else None,
                should_cancel=should_cancel,
                seed=seed,
            )

    def to_middle(self, gen: Generation) -> Middle:
        text = self.tokenizer.decode(gen.tokens)
        # A budget can cut a multi-byte character in half; never hand out the fragment.
        text = text.rstrip("\ufffd")
        confidence = sum(gen.probabilities) / len(gen.probabilities) if gen.tokens else None
        return Middle(text, len(gen.tokens), gen.forward_passes, confidence, gen.finished)
