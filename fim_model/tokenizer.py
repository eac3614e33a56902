"""Byte-level BPE tokenizer for code, with the fill-in-the-middle special tokens.

Byte-level so that any text (non-ASCII identifiers, tabs, odd whitespace) round-trips
exactly: the server must never alter what the user typed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

FIM_SUFFIX = "<fim_suffix>"
FIM_PREFIX = "<fim_prefix>"
FIM_MIDDLE = "<fim_middle>"
END_OF_MIDDLE = "<eom>"
MASK = "<mask>"
PAD = "<pad>"
SPECIAL_TOKENS = [PAD, MASK, FIM_SUFFIX, FIM_PREFIX, FIM_MIDDLE, END_OF_MIDDLE]


@dataclass(frozen=True)
class SpecialIds:
    pad: int
    mask: int
    fim_suffix: int
    fim_prefix: int
    fim_middle: int
    end_of_middle: int

    def fim_context(self, prefix: list[int], suffix: list[int]) -> list[int]:
        """What the model reads before the middle, in suffix-prefix-middle order:
        <fim_suffix> S <fim_prefix> P <fim_middle>. Training and serving both build it
        here, so the two cannot drift."""
        return [self.fim_suffix, *suffix, self.fim_prefix, *prefix, self.fim_middle]


class CodeTokenizer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        # Special-token strings typed by a user are plain text, never control tokens.
        tokenizer.encode_special_tokens = True
        self._tok = tokenizer
        ids = {t: tokenizer.token_to_id(t) for t in SPECIAL_TOKENS}
        missing = [t for t, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks special tokens {missing}")
        self.special = SpecialIds(
            pad=ids[PAD],
            mask=ids[MASK],
            fim_suffix=ids[FIM_SUFFIX],
            fim_prefix=ids[FIM_PREFIX],
            fim_middle=ids[FIM_MIDDLE],
            end_of_middle=ids[END_OF_MIDDLE],
        )
        self._special_set = frozenset(ids.values())
        self.newline_ids = frozenset(
            i
            for t, i in tokenizer.get_vocab().items()
            if "Ċ" in t  # byte-level "\n"
        )

    @classmethod
    def load(cls, path: str | Path) -> CodeTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        self._tok.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([i for i in ids if i not in self._special_set])

    def is_special(self, token_id: int) -> bool:
        return token_id in self._special_set


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> CodeTokenizer:
    tok = Tokenizer(models.BPE())
    # use_regex keeps GPT-2 style splitting (words, numbers, punctuation, whitespace runs),
    # which keeps indentation runs as their own tokens.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return CodeTokenizer(tok)
