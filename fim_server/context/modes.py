"""How much to complete at the cursor, read from the syntax node there.

- none: the cursor is inside a word (completing there would split an identifier), or
  after a block opener whose body already exists on the same line (Python);
- multi-line (block), where code naturally continues with several lines:
  - right after a block opener (`{`, `:`, `then`, `do`, ...) with nothing after the cursor
    on its line but closers the editor inserted (`{|}`, `(data) => {|})`);
  - a new statement line inside a body: blank up to the cursor and after it (the top of a
    body, the rest of a function after its first statement, between methods);
  - a member being started in a class-like body: only words before the cursor (`get |`,
    `public int |`, `def |`);
  - inside brackets that end the line (`(|)`, `[|]`, `foo(a, |)`): a callback or a
    multi-line argument list may follow;
  - at the end of a line a body may follow (`def area(r)|`, `get name()|`, `(a) =>|`):
    a block only when the model's first line opens one, else that line (BLOCK_MAY_OPEN);
- rest of line: other code after the cursor on its line (`foo(a|) + 1`);
- single line: the cursor ends its line anywhere else (`total = a +|`, the top level).

A block's `block_indent` says how far it may run (the cleanup cuts the rest): lines after
the first must be indented at least that much. A block started mid-line (the last three
cases) continues the cursor's statement: `block_indent` is one more than the cursor line's
indentation, so the next statement at that level ends it. Inside comments and strings only
the line modes apply, with a shorter budget (`literal`). docs/modes.md has the rules with
examples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import tree_sitter

from .documents import line_start_at
from .languages import LANGUAGES, LanguageSpec, parse


class Mode(StrEnum):
    NONE = "none"  # no completion offered here
    REST_OF_LINE = "rest_of_line"  # up to the code that follows the cursor on its line
    SINGLE_LINE = "single_line"  # the rest of the current line, which is empty
    MULTI_LINE = "multi_line"  # a block body

    @property
    def is_line(self) -> bool:
        return self in (Mode.REST_OF_LINE, Mode.SINGLE_LINE)


class Literal(StrEnum):
    NONE = ""
    COMMENT = "comment"
    STRING = "string"


@dataclass(frozen=True)
class ModeDecision:
    mode: Mode
    block_indent: int
    reason: str
    literal: Literal = Literal.NONE  # the cursor is inside a comment or a string


LanguageArg = str | LanguageSpec | None

# Code inside a string literal: `${x}` in a template, `$(cmd)` in a shell string, `{x}` in
# an f-string.
_CODE_IN_STRING = frozenset(
    {"template_substitution", "interpolation", "command_substitution", "expansion"}
)
_NON_BLANK = re.compile(r"\S")
_WORD = re.compile(r"[A-Za-z_]\w*|\S")
# The rest of a line that only closes what is open, as editors auto-insert it: `)`, `")`,
# `})`, `]);`.
_ONLY_CLOSERS = re.compile(r"\s*[)\]}\"'`]+[;,:]?\s*")
# A member being started: words only (`get `, `public static int `, `async def `).
_WORDS_ONLY = re.compile(r"\s*[A-Za-z_]\w*(?:\s+[A-Za-z_]\w*)*\s*")
_BRACKETS = {"(": ")", "[": "]", "{": "}"}
# The reason of a block asked for where the cursor's line may open one (a signature, `get
# x()`, an arrow, `if ...`): the cleanup keeps the lines after the first only when the
# model's first line does open a block, else the answer is the line.
BLOCK_MAY_OPEN = "the line may open a block"
# Python statements whose header ends with the colon that opens their body.
_PY_COMPOUND = re.compile(
    r"\s*(?:async\s+)?(?:def|class|if|elif|else|for|while|with|try|except|finally|match|case)\b"
)
# The end of a line that a body may follow in the brace languages: the `)` of a signature
# or a condition, an arrow, a word that takes a block.
_BLOCK_MAY_FOLLOW = re.compile(r"(?:\)|=>|\belse|\btry|\bdo|\bfinally)\s*$")
# Bodies whose members are mostly blocks (methods, nested types): a word typed at the start
# of a member's line begins a block.
_MEMBER_BODIES = frozenset(
    {"class_body", "interface_body", "enum_body", "declaration_list", "field_declaration_list"}
)


def only_closers(line_suffix: str) -> bool:
    """Whether the rest of the line only closes brackets and quotes (and maybe ends the
    statement): the layout of editors that auto-close what the user opens."""
    return bool(line_suffix.strip()) and _ONLY_CLOSERS.fullmatch(line_suffix) is not None


def spec_of(language: LanguageArg) -> LanguageSpec | None:
    if isinstance(language, str):
        return LANGUAGES[language]
    return language


def _indent_width(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _is_comment(node: tree_sitter.Node) -> bool:
    return "comment" in node.type


def _is_string(node: tree_sitter.Node) -> bool:
    kind = node.type
    return "string" in kind or kind in ("char_literal", "heredoc_body", "rune_literal")


def _comment_ancestor(node: tree_sitter.Node | None) -> tree_sitter.Node | None:
    for _ in range(3):  # a comment's own children: content, markers
        if node is None:
            return None
        if _is_comment(node):
            return node
        node = node.parent
    return None


def _last_token_before(root: tree_sitter.Node, source: bytes, end: int) -> tree_sitter.Node | None:
    """The syntax leaf holding the last non-blank byte before `end`, skipping comments."""
    while True:
        last = end - 1
        while last >= 0 and source[last] in b" \t\r\n\f\v":
            last -= 1
        if last < 0:
            return None
        node = root.descendant_for_byte_range(last, last + 1)
        if node is None:
            return None
        comment = _comment_ancestor(node)
        if comment is None:
            return node
        end = comment.start_byte


def _literal_at(root: tree_sitter.Node, source: bytes, cursor: int) -> Literal:
    """Whether the cursor is inside a comment or a string literal."""
    if cursor == 0:
        return Literal.NONE
    node: tree_sitter.Node | None = root.descendant_for_byte_range(cursor - 1, cursor)
    while node is not None and node.parent is not None:
        if node.type in _CODE_IN_STRING:
            return Literal.NONE
        if _is_comment(node):
            # A line comment runs to the end of its line; a closed block comment ends at
            # its closing marker, and the cursor right after that is outside it.
            closed = source[node.end_byte - 2 : node.end_byte] in (b"*/", b"]]", b"-}")
            inside = cursor < node.end_byte or not closed
            return Literal.COMMENT if inside and node.start_byte < cursor else Literal.NONE
        if _is_string(node):
            while node.parent is not None and _is_string(node.parent):
                node = node.parent  # string content -> the whole literal, quotes included
            if node.start_byte >= cursor:
                return Literal.NONE
            if cursor < node.end_byte or node.has_error or _ends_missing(node):
                return Literal.STRING
            return Literal.NONE
        node = node.parent
    return Literal.NONE


def _ends_missing(node: tree_sitter.Node) -> bool:
    last = node.child(node.child_count - 1) if node.child_count else None
    return last is not None and last.is_missing


# -- Python: blocks by indentation ---------------------------------------------------


def _statements(block: tree_sitter.Node) -> list[tree_sitter.Node]:
    return [c for c in block.named_children if c.type != "comment"]


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


def _row_indent(text: str, row_start: int) -> int:
    end = text.find("\n", row_start)
    return _indent_width(text[row_start : len(text) if end < 0 else end])


def _node_indent(source: bytes, node: tree_sitter.Node) -> int:
    """Indentation width of the line where `node` starts (blanks are single bytes)."""
    start = source.rfind(b"\n", 0, node.start_byte) + 1
    end = source.find(b"\n", start)
    line = source[start : len(source) if end < 0 else end]
    return len(line) - len(line.lstrip(b" \t"))


def _body_indent(opener_indent: int, line_prefix: str) -> int:
    """Where the lines of a body go: the cursor's column when it is on a blank line deeper
    than the opener, else one past the opener (the editor did not indent yet)."""
    here = len(line_prefix) if not line_prefix.strip() else 0
    return here if here > opener_indent else opener_indent + 1


def _python_block(
    source: bytes, token: tree_sitter.Node, line_prefix: str, can_open_block: bool
) -> ModeDecision | None:
    block = _block_after_colon(token)
    if block is not None and block.parent is not None:
        opener_indent = _node_indent(source, block.parent)
        if _statements(block):
            if not line_prefix.strip() and can_open_block:
                indent = _body_indent(opener_indent, line_prefix)
                return ModeDecision(Mode.MULTI_LINE, indent, "new line at the top of a body")
            if not line_prefix.strip():
                return None
            # Text after the colon would turn the existing body into an invalid suite.
            return ModeDecision(Mode.NONE, 0, "block opener that already has a body")
        if can_open_block:
            indent = _body_indent(opener_indent, line_prefix)
            return ModeDecision(Mode.MULTI_LINE, indent, "empty block after an opener")
    block = _docstring_block(token)
    if block is not None and can_open_block and not line_prefix.strip():
        indent = _node_indent(source, block)
        return ModeDecision(Mode.MULTI_LINE, indent, "block with only a docstring")
    return None


def _python_body_at(source: bytes, token: tree_sitter.Node, column: int) -> tree_sitter.Node | None:
    """The block whose statements start at `column` among those enclosing `token` (the end
    of the code above a blank line): in Python the cursor's column says which block a new
    line belongs to."""
    node: tree_sitter.Node | None = token
    while node is not None:
        if node.type == "block" and _node_indent(source, node) == column:
            return node
        node = node.parent
    return None


def _next_code_indent(source: bytes, cursor: int) -> int | None:
    """Indentation width of the first line below the cursor's that holds code (not blank,
    not only a comment); None at the end of the file."""
    start = source.find(b"\n", cursor)
    while start >= 0:
        end = source.find(b"\n", start + 1)
        line = source[start + 1 : len(source) if end < 0 else end]
        code = line.lstrip(b" \t")
        if code.strip() and not code.startswith(b"#"):
            return len(line) - len(code)
        start = end
    return None


def _python_scope_at(source: bytes, token: tree_sitter.Node, column: int) -> str | None:
    """The kind of definition (`class_definition`, `function_definition`) whose body a line
    indented `column` belongs to, from the code at the end of the line."""
    node: tree_sitter.Node | None = token
    while node is not None:
        if node.type in ("class_definition", "function_definition"):
            if _node_indent(source, node) < column:
                return node.type
        node = node.parent
    return None


# -- other languages: bodies between an opener and a closer ---------------------------


def _is_opener(spec: LanguageSpec, token: tree_sitter.Node) -> bool:
    if token.type not in spec.block_openers:
        return False
    parents = spec.block_openers[token.type]
    return parents is None or (token.parent is not None and token.parent.type in parents)


def _starts_with_closer(spec: LanguageSpec, text: str, at: int) -> bool:
    match = _WORD.match(text, at)
    return match is not None and match.group() in spec.block_closers


def _delimited_block(
    spec: LanguageSpec,
    text: str,
    offset: int,
    source: bytes,
    token: tree_sitter.Node,
    line_prefix: str,
) -> ModeDecision | None:
    if not _is_opener(spec, token):
        return None
    opener_indent = _node_indent(source, token)
    indent = _body_indent(opener_indent, line_prefix)
    line_end = text.find("\n", offset)
    after_line = len(text) if line_end < 0 else line_end
    following = _NON_BLANK.search(text, offset)
    if following is None:
        return ModeDecision(Mode.MULTI_LINE, indent, "block opened at the end of the file")
    if _starts_with_closer(spec, text, following.start()):
        return ModeDecision(Mode.MULTI_LINE, indent, "empty block after an opener")
    if following.start() < after_line:  # closers of something else: `{|)]`
        return None
    if _row_indent(text, line_start_at(text, following.start())) > opener_indent:
        if not line_prefix.strip():
            return ModeDecision(Mode.MULTI_LINE, indent, "new line at the top of a body")
        return ModeDecision(Mode.SINGLE_LINE, 0, "end of an opener line above its body")
    # The next code is not indented under the opener: the body has not been written yet
    # (its closer is missing too).
    return ModeDecision(Mode.MULTI_LINE, indent, "block opener without a body")


def _opens_body(spec: LanguageSpec, node: tree_sitter.Node) -> bool:
    """Whether `node` opens a body: an opener token, or a node ending with one (Lua's
    parameter list, whose `)` starts the function body)."""
    if _is_opener(spec, node):
        return True
    last = node.child(node.child_count - 1) if node.child_count else None
    return last is not None and _is_opener(spec, last)


@dataclass(frozen=True)
class _Enclosing:
    """What the cursor sits in: a body (statements), brackets (an expression) or neither
    (the top level)."""

    kind: str  # "body", "brackets" or "top"
    node: tree_sitter.Node | None = None
    opener: tree_sitter.Node | None = None


def _enclosing(spec: LanguageSpec, root: tree_sitter.Node, cursor: int) -> _Enclosing:
    node: tree_sitter.Node | None = root.descendant_for_byte_range(cursor, cursor)
    while node is not None and node.parent is not None:
        if node.start_byte < cursor and node.child_count >= 2:
            first = node.child(0)
            last = node.child(node.child_count - 1)
            assert first is not None and last is not None
            open_after = last.start_byte >= cursor or last.is_missing
            if first.type in _BRACKETS and first.end_byte <= cursor and open_after:
                if not spec.indented_blocks and _is_opener(spec, first):
                    return _Enclosing("body", node, first)
                if last.type == _BRACKETS[first.type] or last.is_missing or node.has_error:
                    return _Enclosing("brackets", node, first)
            if not spec.indented_blocks and node.end_byte > cursor:
                for child in node.children:
                    if child.end_byte > cursor:
                        break
                    if _opens_body(spec, child):
                        return _Enclosing("body", node, child)
        node = node.parent
    return _Enclosing("top")


def _general_block(
    spec: LanguageSpec,
    root: tree_sitter.Node,
    source: bytes,
    cursor: int,
    token: tree_sitter.Node,
    line_prefix: str,
    line_suffix: str,
) -> ModeDecision | None:
    """A block where no opener precedes the cursor: a new statement line in a body, a
    member being started, or the inside of brackets that end the line."""
    line_indent = _indent_width(line_prefix)
    continuation = line_indent + 1  # deeper than the cursor's own line
    if only_closers(line_suffix):
        if token.type in _BRACKETS or token.type == ",":
            return ModeDecision(Mode.MULTI_LINE, continuation, "inside brackets that end the line")
        return None
    if line_suffix.strip():
        return None
    where = _enclosing(spec, root, cursor)
    if where.kind == "brackets":
        return None
    if not line_prefix.strip():
        if spec.indented_blocks:
            if line_indent > 0 and _python_body_at(source, token, line_indent) is not None:
                return ModeDecision(Mode.MULTI_LINE, line_indent, "new statement line in a body")
            if line_indent == 0 and (_next_code_indent(source, cursor) or 0) > 0:
                # Code at column 0 would end the body the next line belongs to: what goes
                # here is indented, and may be several lines (any line at column 0 ends it).
                reason = "blank line at column 0 above indented code"
                return ModeDecision(Mode.MULTI_LINE, 1, reason)
            return None
        if where.kind == "body" and where.opener is not None:
            indent = _body_indent(_node_indent(source, where.opener), line_prefix)
            return ModeDecision(Mode.MULTI_LINE, indent, "new statement line in a body")
        return None
    if not _WORDS_ONLY.fullmatch(line_prefix):
        return None
    if spec.indented_blocks:
        if _python_scope_at(source, token, line_indent) != "class_definition":
            return None
    elif where.kind != "body" or where.node is None or where.node.type not in _MEMBER_BODIES:
        return None
    return ModeDecision(Mode.MULTI_LINE, continuation, "member started in a class body")


def decide_mode(
    text: str,
    offset: int,
    *,
    language: LanguageArg = "python",
    tree: tree_sitter.Tree | None = None,
    source: bytes | None = None,
) -> ModeDecision:
    """Choose how much to complete at `offset` (a code-point index into `text`).

    `language` None is plain text: line modes only. `tree` is the parse of `text` when the
    caller keeps one (the document store); `source` its UTF-8 bytes.
    """
    line_start = line_start_at(text, offset)
    line_end = text.find("\n", offset)
    line_prefix = text[line_start:offset]
    line_suffix = text[offset : len(text) if line_end < 0 else line_end].rstrip("\r")
    line_mode = Mode.REST_OF_LINE if line_suffix.strip() else Mode.SINGLE_LINE

    if offset < len(text) and _is_word_char(text[offset]):
        return ModeDecision(Mode.NONE, 0, "word characters right after the cursor")
    spec = spec_of(language)
    if spec is None:
        return ModeDecision(line_mode, 0, "plain text")

    source = source if source is not None else text.encode("utf-8")
    cursor = len(text[:offset].encode("utf-8"))
    tree = tree if tree is not None else parse(spec, source)
    root = tree.root_node
    literal = _literal_at(root, source, cursor)
    if literal is not Literal.NONE:
        return ModeDecision(line_mode, 0, f"inside a {literal}", literal)

    token = _last_token_before(root, source, cursor)
    if token is None:
        return ModeDecision(line_mode, 0, "start of file")

    if spec.indented_blocks:
        # Python bodies have no closer: a block opens only at the end of a line.
        decision = _python_block(source, token, line_prefix, not line_suffix.strip())
    elif not line_suffix.strip() or only_closers(line_suffix):
        decision = _delimited_block(spec, text, offset, source, token, line_prefix)
    else:
        decision = None
    if decision is None:
        decision = _general_block(spec, root, source, cursor, token, line_prefix, line_suffix)
    if decision is not None:
        return decision
    if _may_open_block(spec, root, cursor, line_prefix, line_suffix):
        return ModeDecision(Mode.MULTI_LINE, _indent_width(line_prefix) + 1, BLOCK_MAY_OPEN)
    return ModeDecision(line_mode, 0, "inside a statement")


def _may_open_block(
    spec: LanguageSpec, root: tree_sitter.Node, cursor: int, line_prefix: str, line_suffix: str
) -> bool:
    """Whether the cursor ends a line whose statement a real model often finishes by opening
    a block: a Python compound statement's header (`def f(x)`, `if x > 0`), or in the brace
    languages a signature, a condition, an arrow (`get name()`, `(a, b) =>`). Only at the
    end of the line or before closers the editor inserted, and not inside an argument list
    (`foo(a, b)` there is an argument, not a header) unless the editor closed them."""
    if line_suffix.strip() and not only_closers(line_suffix):
        return False
    if spec.indented_blocks:
        header = _PY_COMPOUND.match(line_prefix) is not None
        return header and not line_prefix.rstrip().endswith(":")
    if _BLOCK_MAY_FOLLOW.search(line_prefix) is None:
        return False
    # Before the editor's closers the brackets are the ones they close (`map((x) =>|)`).
    if line_suffix.strip():
        return True
    open_on_line = sum(line_prefix.count(o) - line_prefix.count(c) for o, c in ("()", "[]"))
    return open_on_line <= 0 and _enclosing(spec, root, cursor).kind != "brackets"
