"""The text window around the cursor: a token budget shared between the prefix and the
suffix, cut at syntactic boundaries, with the headers of the enclosing scopes kept.

- Cuts fall on whole lines. Above the cursor's own top-level node (a function, a class),
  the window holds whole top-level nodes only: a window starting in the middle of an
  unrelated function shows the model a body without its signature.
- The suffix gets a quarter of the budget by default and the prefix the rest; what one
  side does not use goes to the other.
- The first lines of the enclosing scopes (`class Cart:`, `def total(self) -> float:`,
  `impl Cart {`) are put back in front of the window when the cut falls below them, so
  the model always knows which function and class it is writing in.
- With `middle_lines` (a backend whose server keeps a prompt cache, llama.cpp), the lines
  from the last row that is a multiple of it down to the cursor are the middle written so
  far: they go after the model's FIM middle token, and the window before them is sized
  from that row, outside the budget. Writing new lines then only appends to the prompt,
  whose start and suffix stay the same, until the cursor passes the next multiple.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import tree_sitter

from .documents import line_start_at
from .languages import LanguageSpec

CountTokens = Callable[[str], int]


class LineTokenCounter:
    """`count_tokens` with a memory: successive requests count mostly the same lines.

    Bounded by entries and by characters held, least recently used dropped first; a text
    longer than `max_text_chars` is counted every time (a long line being edited is a new
    key on every keystroke and would only push the useful entries out). Lone surrogates
    (an editor can send them) are counted as U+FFFD: tokenizers cannot encode them."""

    def __init__(
        self,
        count_tokens: CountTokens,
        max_entries: int = 4_096,  # a request counts a few hundred lines at most
        max_chars: int = 512_000,
        max_text_chars: int = 20_000,
    ) -> None:
        self._count = count_tokens
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._max_text_chars = max_text_chars
        self._chars = 0

    @property
    def chars(self) -> int:
        return self._chars

    def __len__(self) -> int:
        return len(self._seen)

    def __call__(self, text: str) -> int:
        n = self._seen.get(text)
        if n is not None:
            self._seen.move_to_end(text)
            return n
        n = self._count(encodable(text))
        if len(text) <= self._max_text_chars:
            self._seen[text] = n
            self._chars += len(text)
            while len(self._seen) > self._max_entries or self._chars > self._max_chars:
                old, _ = self._seen.popitem(last=False)
                self._chars -= len(old)
        return n


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> str:
    """`text` with lone surrogates as U+FFFD: the same length in code points (offsets stay
    valid) and the same UTF-8 length as `surrogatepass` gives them, but encodable. For the
    model and the parsers only; the user's text is never changed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


# A cursor line longer than this (minified code, data) gets no completion: the parse, the
# window and the model would cost seconds per keystroke for text no model completes well.
LONG_LINE_CHARS = 5_000


# A document longer than this is not parsed whole (its parse tree would take some 30 bytes
# per character, kept for as long as the document is open): each request parses the lines
# around the cursor instead, from a line at the top level where there is one.
LARGE_DOCUMENT_CHARS = 1_000_000
_SLICE_BEFORE = 100_000
_SLICE_AFTER = 20_000


def around_cursor(text: str, offset: int) -> tuple[str, int]:
    """The whole lines of a large `text` around `offset` (the window only ever needs a few
    thousand characters of them) and the offset in that slice; `text` itself if small."""
    if len(text) <= LARGE_DOCUMENT_CHARS:
        return text, offset
    floor = max(offset - _SLICE_BEFORE, 0)
    start = line_start_at(text, floor)
    top = re.compile(r"\n(?=[^\s])").search(text, start, offset)  # a top-level line
    if top is not None and start > 0:
        start = top.end()
    end = text.find("\n", min(offset + _SLICE_AFTER, len(text)))
    end = len(text) if end < 0 else end + 1
    return text[start:end], offset - start


def cursor_line_chars(text: str, offset: int) -> int:
    """Length of the line holding `offset`."""
    end = text.find("\n", offset)
    return (len(text) if end < 0 else end) - line_start_at(text, offset)


@dataclass(frozen=True)
class HeaderLine:
    row: int
    text: str  # with its line break


@dataclass(frozen=True)
class Window:
    prefix: str  # kept scope headers, then the text before the cursor
    suffix: str
    tokens: int  # estimated tokens of prefix + suffix
    # Characters at the end of `prefix` that are the middle written so far (the lines
    # from the layout's anchor row to the cursor); 0 without `middle_lines`.
    middle: int = 0


# The middle written so far takes at most this share of the budget: past it (long lines)
# the cursor's own line is the middle, as without `middle_lines`.
_MIDDLE_SHARE = 4


def _line_bounds(source: bytes, byte: int) -> tuple[int, int]:
    start = source.rfind(b"\n", 0, byte) + 1
    end = source.find(b"\n", byte)
    return start, len(source) if end < 0 else end + 1


def _header_range(node: tree_sitter.Node, source: bytes) -> tuple[int, int]:
    """Byte range of the whole lines holding a scope's header."""
    start, first_end = _line_bounds(source, node.start_byte)
    body = node.child_by_field_name("body")
    if body is not None and body.start_point.row > node.start_point.row:
        body_start, body_end = _line_bounds(source, body.start_byte)
        if source[body_start:body_end].strip() == b"{":  # a brace on a line of its own
            return start, body_end
        return start, max(first_end, body_start)
    if body is None and (params := node.child_by_field_name("parameters")) is not None:
        return start, _line_bounds(source, max(params.end_byte - 1, params.start_byte))[1]
    return start, first_end


def scope_headers(
    tree: tree_sitter.Tree,
    source: bytes,
    cursor_byte: int,
    spec: LanguageSpec,
    cursor_indent: int,
) -> list[HeaderLine]:
    """Header lines of the scopes enclosing the cursor, outermost first."""
    root = tree.root_node
    # Python bodies end at their last statement, so a cursor on a blank line after it is
    # outside the function's node: start from the last token before the cursor and keep
    # the scopes indented less than the cursor instead.
    at = cursor_byte
    if spec.indented_blocks:
        at = cursor_byte - 1
        while at > 0 and source[at] in b" \t\r\n":
            at -= 1
    node: tree_sitter.Node | None = root.descendant_for_byte_range(max(at, 0), max(at, 0))
    rows: dict[int, str] = {}
    while node is not None and node.parent is not None:
        if node.type in spec.scope_types and node.start_byte < cursor_byte:
            start, end = _header_range(node, source)
            line = source[start:end]
            indent = len(line) - len(line.lstrip(b" \t"))
            inside = (
                cursor_indent > indent if spec.indented_blocks else cursor_byte <= node.end_byte
            )
            if inside and end <= cursor_byte:
                row = node.start_point.row
                for i, piece in enumerate(line.decode("utf-8", "replace").splitlines(True)):
                    rows[row + i] = piece if piece.endswith("\n") else piece + "\n"
        node = node.parent
    return [HeaderLine(row, rows[row]) for row in sorted(rows)]


class _TopLevel:
    """Which top-level node holds a row."""

    def __init__(self, tree: tree_sitter.Tree) -> None:
        self.root = tree.root_node

    def span(self, row: int) -> tuple[int, int] | None:
        """(first row, last row) of the top-level node covering `row`, if any."""
        node = self.root.descendant_for_point_range((row, 0), (row, 0))
        if node is None or node == self.root:
            return None
        top = self.root.child_with_descendant(node) or node
        while top.parent is not None and top.parent != self.root:
            top = top.parent
        end_row = top.end_point.row - (1 if top.end_point.column == 0 else 0)
        if not top.start_point.row <= row <= end_row:
            return None
        return top.start_point.row, end_row


def _extend_suffix(text: str, offset: int, budget: int, count: CountTokens) -> tuple[int, int, int]:
    """(end offset, tokens used, rows added after the cursor row) of the longest run of
    whole lines after the cursor within `budget`; the cursor line's rest always."""
    pos = text.find("\n", offset) + 1 or len(text)
    used = count(text[offset:pos])
    rows = 0
    while pos < len(text):
        end = text.find("\n", pos) + 1 or len(text)
        cost = count(text[pos:end])
        if used + cost > budget:
            break
        used += cost
        pos = end
        rows += 1
    return pos, used, rows


def _line_from(text: str, start: int) -> str:
    """The line starting at `start`, with its line break."""
    return text[start : text.find("\n", start) + 1 or len(text)]


def _starts_top_level_block(line: str) -> bool:
    """A line at column 0 that is code, not only closers (`}`, `});`): where a top-level
    definition or statement starts."""
    return bool(line.strip()) and not line[0].isspace() and line.strip(_CLOSERS) != ""


_CLOSERS = "})];, \t\r"


def _cut_top_level_block(text: str, offset: int, end: int) -> int:
    """Where the suffix ending at `end` should end instead so as not to stop inside a
    top-level block after the cursor's line: the start of that block (its first line at
    column 0, with the decorator lines right above it), or `end` itself. From the text's
    indentation, not its parse: the code being typed breaks the parse of what follows it
    (an unclosed bracket swallows the rest of the file) differently at each keystroke, and
    a suffix that changed with it would make the model's server read it all again."""
    following = _NON_BLANK_LINE.search(text, end)
    if following is None or _starts_top_level_block(_line_from(text, following.start())):
        return end  # the window ends between top-level blocks
    after_cursor_line = text.find("\n", offset) + 1 or len(text)
    cut = line_start_at(text, end - 1)  # the window's last line, then up
    while not _starts_top_level_block(_line_from(text, cut)):
        if cut <= after_cursor_line:
            return end  # the block is the cursor's own
        cut = line_start_at(text, cut - 1)
    while cut > after_cursor_line:  # decorators belong to the definition below them
        start = line_start_at(text, cut - 1)
        if not text.startswith("@", start):
            break
        cut = start
    return cut


_NON_BLANK_LINE = re.compile(r"^[^\S\n]*\S", re.M)


def build_window(
    text: str,
    offset: int,
    count_tokens: CountTokens,
    *,
    prefix_tokens: int,
    suffix_tokens: int,
    tree: tree_sitter.Tree | None = None,
    source: bytes | None = None,
    spec: LanguageSpec | None = None,
    middle_lines: int = 0,
) -> Window:
    """The window around `offset` within `prefix_tokens + suffix_tokens` tokens (and,
    with `middle_lines`, the middle written so far besides).

    Without a tree (plain text) only the whole-line rule applies.
    """
    count = count_tokens
    budget = prefix_tokens + suffix_tokens
    line_start = line_start_at(text, offset)
    cursor_row = text.count("\n", 0, offset)
    # Where the window before the cursor is measured from: the cursor's line, or the
    # anchor row of the middle written so far.
    anchor, anchor_row = line_start, cursor_row
    lines_above_tokens = 0  # of the middle's whole lines above the cursor's
    if middle_lines > 0:
        anchor_row = cursor_row - cursor_row % middle_lines
        for _ in range(cursor_row - anchor_row):
            anchor = line_start_at(text, anchor - 1)
        lines_above_tokens = count(text[anchor:line_start])
        if lines_above_tokens > budget // _MIDDLE_SHARE:
            anchor, anchor_row, lines_above_tokens = line_start, cursor_row, 0
    tops = _TopLevel(tree) if tree is not None else None

    headers: list[HeaderLine] = []
    if tree is not None and spec is not None:
        source = source if source is not None else text.encode("utf-8")
        line = text[line_start : (text.find("\n", offset) + 1 or len(text) + 1) - 1]
        cursor_indent = len(line) - len(line.lstrip(" \t"))
        if not text[line_start:offset].strip():
            cursor_indent = max(cursor_indent, offset - line_start)
        headers = scope_headers(tree, source, len(text[:offset].encode()), spec, cursor_indent)
        # Headers may take at most half the prefix budget; the innermost matter most.
        kept: list[HeaderLine] = []
        spent = 0
        for header in reversed(headers):
            spent += count(header.text)
            if spent > prefix_tokens // 2:
                break
            kept.append(header)
        headers = kept[::-1]
    header_costs = [count(h.text) for h in headers]

    def header_cost(first_row: int) -> int:
        return sum(c for h, c in zip(headers, header_costs, strict=True) if h.row < first_row)

    def fill_prefix(room: int) -> tuple[int, int, int]:
        """(start offset, first row, tokens of the lines) of the prefix within `room`."""
        pos, row = anchor, anchor_row
        used = 0 if middle_lines > 0 else count(text[line_start:offset])
        while pos > 0:
            start = line_start_at(text, pos - 1)
            cost = count(text[start:pos])
            if used + cost + header_cost(row - 1) > room:
                break
            used += cost
            pos, row = start, row - 1
        if tops is not None and pos > 0:
            span = tops.span(row)
            if span is not None and span[0] < row and span[1] < anchor_row:
                # Mid-way into a whole top-level node above the cursor's: drop its tail.
                while row <= span[1]:
                    end = text.find("\n", pos) + 1
                    used -= count(text[pos:end])
                    pos, row = end, row + 1
        return pos, row, used

    def fill_suffix(room: int) -> tuple[int, int]:
        end, used, rows = _extend_suffix(text, offset, room, count)
        if tops is not None and rows > 0:
            cut = _cut_top_level_block(text, offset, end)
            while end > cut:
                # The window would end inside a top-level block after the cursor's: leave
                # the whole block out.
                start = line_start_at(text, end - 1)
                used -= count(text[start:end])
                end = start
        return end, used

    suffix_end, suffix_used = fill_suffix(suffix_tokens)
    prefix_start, first_row, prefix_used = fill_prefix(budget - suffix_used)
    prefix_used += header_cost(first_row)
    if prefix_start == 0 and suffix_end < len(text):
        # The whole file above fits: the suffix may have the rest.
        suffix_end, suffix_used = fill_suffix(budget - prefix_used)
    kept_headers = tuple(h for h in headers if h.row < first_row)
    prefix = "".join(h.text for h in kept_headers) + text[prefix_start:offset]
    middle = offset - anchor if middle_lines > 0 else 0
    if middle:
        # Whole lines and the cursor's line apart: the counter remembers lines, and the
        # middle as one text would be a new entry at every keystroke.
        prefix_used += lines_above_tokens + count(text[line_start:offset])
    return Window(prefix, text[offset:suffix_end], prefix_used + suffix_used, middle)
