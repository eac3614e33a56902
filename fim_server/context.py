"""What the model sees: the text around the cursor, trimmed to a token budget, and the
kind of completion the syntax at the cursor calls for."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import tree_sitter
import tree_sitter_python

PYTHON = tree_sitter.Language(tree_sitter_python.language())

CountTokens = Callable[[str], int]


class Mode(StrEnum):
    NONE = "none"  # no completion offered here
    SINGLE_LINE = "single_line"  # the rest of the current line
    MULTI_LINE = "multi_line"  # a block body


@dataclass(frozen=True)
class ContextSettings:
    # A window longer than the contexts the model trained on puts positions it has never
    # seen in front of it: `sized_for` fits the window to the model.
    prefix_tokens: int = 320
    suffix_tokens: int = 128
    single_line_tokens: int = 48
    # Four blocks: a few statements, within a second on one CPU thread at ~1 token per
    # forward pass; the embedded model trained on middles of up to 48 tokens.
    multi_line_tokens: int = 64

    @classmethod
    def sized_for(cls, context_tokens: int, **kw: int) -> ContextSettings:
        """Split a model's trained context length: 3/4 prefix, 1/4 suffix (the cursor's
        own line and what leads to it matter most)."""
        prefix = context_tokens * 3 // 4
        return cls(prefix_tokens=prefix, suffix_tokens=context_tokens - prefix, **kw)

    def max_tokens(self, mode: Mode) -> int:
        if mode is Mode.MULTI_LINE:
            return self.multi_line_tokens
        if mode is Mode.SINGLE_LINE:
            return self.single_line_tokens
        return 0


@dataclass(frozen=True)
class CompletionContext:
    prefix: str  # window before the cursor; ends at the cursor
    suffix: str  # window after the cursor; starts at the cursor
    mode: Mode
    max_tokens: int
    line_prefix: str  # the cursor line up to the cursor
    line_suffix: str  # the cursor line after the cursor, without its line break
    # Multi-line only: completion lines after the first that are indented less than this
    # have left the block being written.
    block_indent: int
    reason: str  # why this mode, for logs


def trim_prefix(prefix: str, budget: int, count_tokens: CountTokens) -> str:
    """Keep the last whole lines of `prefix` that fit in `budget` tokens.

    The partial line before the cursor is always kept whole, even over budget: cutting it
    would hide the very statement being completed. Lines are counted one by one, which
    slightly over-counts merges across line breaks; the model guards its hard limit.
    """
    pos = prefix.rfind("\n") + 1
    used = count_tokens(prefix[pos:])
    while pos > 0:
        start = prefix.rfind("\n", 0, pos - 1) + 1
        cost = count_tokens(prefix[start:pos])
        if used + cost > budget:
            break
        used += cost
        pos = start
    return prefix[pos:]


def trim_suffix(suffix: str, budget: int, count_tokens: CountTokens) -> str:
    """Keep the first whole lines of `suffix` that fit in `budget` tokens; the rest of the
    cursor line is always kept whole."""
    pos = suffix.find("\n") + 1 or len(suffix)
    used = count_tokens(suffix[:pos])
    while pos < len(suffix):
        end = suffix.find("\n", pos) + 1 or len(suffix)
        cost = count_tokens(suffix[pos:end])
        if used + cost > budget:
            break
        used += cost
        pos = end
    return suffix[:pos]


@dataclass(frozen=True)
class ModeDecision:
    mode: Mode
    block_indent: int
    reason: str


def _indent_width(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _statements(block: tree_sitter.Node) -> list[tree_sitter.Node]:
    return [c for c in block.named_children if c.type != "comment"]


def _last_token_before(root: tree_sitter.Node, source: bytes, end: int) -> tree_sitter.Node | None:
    """The syntax leaf holding the last non-blank byte before `end`, skipping comments."""
    while True:
        stripped = source[:end].rstrip()
        if not stripped:
            return None
        last = len(stripped) - 1
        node = root.descendant_for_byte_range(last, last + 1)
        if node is None:
            return None
        if node.type != "comment":
            return node
        end = node.start_byte


def _in_comment(root: tree_sitter.Node, source: bytes, cursor: int) -> bool:
    line_start = source.rfind(b"\n", 0, cursor) + 1
    typed = source[line_start:cursor].rstrip()
    if not typed:
        return False
    last = line_start + len(typed) - 1
    node = root.descendant_for_byte_range(last, last + 1)
    return node is not None and node.type == "comment"


def _block_after_colon(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The body opened by `node` if it is the colon of a compound statement."""
    if node.type != ":" or node.parent is None:
        return None
    # Not next_sibling: tree-sitter skips the zero-width block of an empty body there.
    after = [c for c in node.parent.children if c.start_byte >= node.end_byte]
    after = [c for c in after if c.type != "comment"]
    return after[0] if after and after[0].type == "block" else None


def _docstring_block(node: tree_sitter.Node) -> tree_sitter.Node | None:
    """The block whose only statement is the docstring that `node` ends, if any."""
    string = node
    while string is not None and string.type != "string":
        if string.type not in ("string_end", "string_content", "string_start"):
            return None
        string = string.parent
    if string is None or string.parent is None or string.parent.type != "expression_statement":
        return None
    statement = string.parent
    if statement.named_child_count != 1:
        return None
    block = statement.parent
    if block is None or block.type != "block" or _statements(block) != [statement]:
        return None
    return block


def _line_indent(lines: list[bytes], row: int) -> int:
    line = lines[row] if row < len(lines) else b""
    return len(line) - len(line.lstrip(b" \t"))


def decide_mode(text: str, offset: int) -> ModeDecision:
    """Choose how much to complete at `offset` (a code-point index into `text`)."""
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_prefix = text[line_start:offset]
    line_suffix = text[offset : len(text) if line_end < 0 else line_end].rstrip("\r")

    if offset < len(text) and _is_word_char(text[offset]):
        return ModeDecision(Mode.NONE, 0, "word characters right after the cursor")

    source = text.encode("utf-8")
    cursor = len(text[:offset].encode("utf-8"))
    tree = tree_sitter.Parser(PYTHON).parse(source)
    token = _last_token_before(tree.root_node, source, cursor)
    if token is None:
        return ModeDecision(Mode.SINGLE_LINE, 0, "start of file")

    # A block is worth writing only from a cursor with nothing after it on its line, and
    # not while the user is typing a comment.
    can_open_block = not line_suffix.strip() and not _in_comment(tree.root_node, source, cursor)
    lines = source.split(b"\n")

    block = _block_after_colon(token)
    if block is not None and block.parent is not None:
        if _statements(block):
            if not line_prefix.strip():
                return ModeDecision(Mode.SINGLE_LINE, 0, "new line at the top of a block")
            # Text after the colon would turn the existing body into an invalid suite.
            return ModeDecision(Mode.NONE, 0, "block opener that already has a body")
        if can_open_block:
            opener_indent = _line_indent(lines, block.parent.start_point.row)
            here = len(line_prefix) if not line_prefix.strip() else 0
            indent = here if here > opener_indent else opener_indent + 1
            return ModeDecision(Mode.MULTI_LINE, indent, "empty block after an opener")

    block = _docstring_block(token)
    if block is not None and can_open_block and not line_prefix.strip():
        indent = _line_indent(lines, block.start_point.row)
        return ModeDecision(Mode.MULTI_LINE, indent, "block with only a docstring")

    return ModeDecision(Mode.SINGLE_LINE, 0, "inside a statement")


def build_context(
    text: str,
    offset: int,
    count_tokens: CountTokens,
    settings: ContextSettings | None = None,
) -> CompletionContext:
    """Everything the engine needs to ask for a completion at `offset` in `text`."""
    if not 0 <= offset <= len(text):
        raise ValueError(f"offset {offset} is outside the document (length {len(text)})")
    settings = settings or ContextSettings()
    decision = decide_mode(text, offset)
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    line_suffix = text[offset : len(text) if line_end < 0 else line_end].rstrip("\r")
    if decision.mode is Mode.NONE:
        prefix = suffix = ""  # nothing will be asked; skip the tokenizer work
    else:
        prefix = trim_prefix(text[:offset], settings.prefix_tokens, count_tokens)
        suffix = trim_suffix(text[offset:], settings.suffix_tokens, count_tokens)
    return CompletionContext(
        prefix=prefix,
        suffix=suffix,
        mode=decision.mode,
        max_tokens=settings.max_tokens(decision.mode),
        line_prefix=text[line_start:offset],
        line_suffix=line_suffix,
        block_indent=decision.block_indent,
        reason=decision.reason,
    )
