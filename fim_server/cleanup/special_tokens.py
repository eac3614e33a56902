"""Rule `special tokens`: cut at an end-of-text marker, drop other special tokens and
control characters (every mode, first).
"""

from __future__ import annotations

import re
import unicodedata

from ..context import CompletionContext
from .rule import Rule

# Stop markers end the useful text; anything after them is the model wandering on.
_END_MARKERS = re.compile(r"<eom>|<eos>|<\|endoftext\|>|<\|im_end\|>|<\|eot_id\|>")


# Control tokens of our model and of the common open FIM vocabularies (StarCoder, Qwen).
_SPECIAL_TOKENS = re.compile(
    r"<(?:fim_prefix|fim_suffix|fim_middle|fim_pad|pad|mask)>|<\|fim_\w+\|>"
)


def strip_special_tokens(text: str) -> str:
    """Cut at an end-of-text marker and drop other special tokens and control characters."""
    end = _END_MARKERS.search(text)
    if end is not None:
        text = text[: end.start()]
    text = _SPECIAL_TOKENS.sub("", text)
    text = text.replace("\r\n", "\n")
    return "".join(
        ch for ch in text if ch in "\n\t" or (unicodedata.category(ch) != "Cc" and ch != "\ufffd")
    )


def _strip(text: str, ctx: CompletionContext) -> str:
    return strip_special_tokens(text)


SPECIAL_TOKENS = Rule("special tokens", _strip)
