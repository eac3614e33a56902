"""Turn the model's raw middle into the edit worth showing as ghost text.

Each rule is one function over strings; `clean_edit` chains them in the order the
completion mode calls for (docs/modes.md lists them). Everything works on "\\n" line
breaks.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache

import tree_sitter

from .context import CompletionContext, Literal, Mode
from .languages import LANGUAGES, LanguageSpec, parse
from .modes import BLOCK_MAY_OPEN, only_closers

# Stop markers end the useful text; anything after them is the model wandering on.
_END_MARKERS = re.compile(r"<eom>|<eos>|<\|endoftext\|>|<\|im_end\|>|<\|eot_id\|>")
# Control tokens of our model and of the common open FIM vocabularies (StarCoder, Qwen).
_SPECIAL_TOKENS = re.compile(
    r"<(?:fim_prefix|fim_suffix|fim_middle|fim_pad|pad|mask)>|<\|fim_\w+\|>"
)
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}
_QUOTES = "'\"`"
# A word or a single non-blank character: the first token of a line that may only close.
_CLOSER_TOKEN = re.compile(r"[A-Za-z_]\w*|\S")


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


def opens_block(line: str, spec: LanguageSpec | None) -> bool:
    """Whether `line` ends by opening a block: Python's `:`, a `{`, or the language's block
    word (`then`, `do`)."""
    end = line.rstrip()
    if spec is None or not end:
        return False
    if spec.indented_blocks:
        return end.endswith(":")
    words = _CLOSER_TOKEN.findall(end)
    return end.endswith("{") or (bool(words) and words[-1] in spec.nesting_words[0])


def block_not_opened(text: str, ctx: CompletionContext) -> bool:
    """Whether `text` (a completion so far) asked for where a block may open has finished a
    first line that opens none: the answer is that line."""
    if ctx.reason != BLOCK_MAY_OPEN or "\n" not in text:
        return False
    spec = LANGUAGES.get(ctx.language) if ctx.language else None
    return not opens_block(text.split("\n", 1)[0], spec)


def body_exists_below(text: str, ctx: CompletionContext) -> bool:
    """Whether `text` (a block asked for on a blank line) opens a block on its first line
    while the code right below the cursor's line is indented deeper than that line: the
    body is already there (`for j in ...:` / `|` / `        largest = ...`), so the answer
    is the header."""
    spec = LANGUAGES.get(ctx.language) if ctx.language else None
    first = text.split("\n", 1)[0]
    if ctx.line_prefix.strip() or "\n" not in text or "\n" not in ctx.suffix:
        return False  # (mid-line the first line goes on with code, not a header of its own)
    if not opens_block(first, spec):
        return False
    below = next((line for line in ctx.suffix.split("\n")[1:] if line.strip()), None)
    return below is not None and _indent_of(below) > _first_line_indent(ctx.line_prefix, first)


def drop_doubled_space(text: str, ctx: CompletionContext) -> str:
    """Drop the spaces a completion starts with when the code before the cursor already
    ends with one (`[1, 2, |]` + ` 3]`): code is not written with two there. Not inside
    comments and strings, whose spacing is the writer's."""
    prefix = ctx.line_prefix
    if ctx.literal is not Literal.NONE or not prefix.strip() or not prefix.endswith((" ", "\t")):
        return text
    return text.lstrip(" \t") if not text.startswith("\n") else text


def cut_at_newline(text: str) -> str:
    """A single-line completion ends at its first line break."""
    return text.split("\n", 1)[0]


def _closes_own_opening(kept: str, dropped: str) -> bool:
    """Whether `dropped` closes a bracket or string that `kept` opened.

    Such characters belong to the completion itself; the suffix's copies close what was
    open before the cursor.
    """
    stack: list[str] = []
    for ch in kept:
        if ch in _OPENERS:
            stack.append(ch)
        elif ch in _CLOSERS and stack and stack[-1] == _CLOSERS[ch]:
            stack.pop()
    for ch in dropped:
        if ch in _OPENERS:
            stack.append(ch)
        elif ch in _CLOSERS:
            if stack and stack[-1] == _CLOSERS[ch]:
                return True
        elif ch in _QUOTES and kept.count(ch) % 2 == 1:
            return True
    return False


def drop_suffix_overlap(text: str, line_suffix: str) -> str:
    """Drop the end of a single-line completion that repeats the start of the rest of the line.

    The model often writes the closing `)` or `:` that already follows the cursor. Only the
    longest overlap that closes nothing the completion itself opened is dropped, so
    `foo(|)` + `bar()` stays `bar()` while `foo(|)` + `x)` becomes `x`.
    """
    for k in range(min(len(text), len(line_suffix)), 0, -1):
        if text.endswith(line_suffix[:k]) and not _closes_own_opening(text[:-k], text[-k:]):
            return text[:-k]
    return text


def _copies_suffix_start(text: str, rest: str) -> int:
    """How many characters of `text` copy the start of `rest`, ending at a token boundary
    of both; 0 when it does not start with such a copy."""
    k = 0
    while k < min(len(text), len(rest)) and text[k] == rest[k]:
        k += 1
    while k and not (
        (k == len(rest) or not (rest[k - 1].isalnum() and rest[k].isalnum()))
        and (k == len(text) or not (text[k - 1].isalnum() and text[k].isalnum()))
    ):
        k -= 1  # back to the end of the last whole token both share
    # A copy of code, not only of punctuation: closers after the cursor are the closer
    # rules' business.
    return k if any(ch.isalnum() for ch in rest[:k]) else 0


def trim_suffix_start(text: str, line_suffix: str) -> Edit | None:
    """A single-line completion that starts by copying the code after the cursor
    (`public |boolean isEmpty()` + `boolean`; `f(| a, b)` + `a, b, c)`): the copy is
    trimmed and what the model wrote after it goes where the copy ends in the line, as an
    edit that rewrites that part of the line unchanged. None when it copies nothing."""
    lead = len(line_suffix) - len(line_suffix.lstrip(" \t"))
    rest = line_suffix[lead:]
    k = _copies_suffix_start(text.lstrip(" \t"), rest)
    if not k:
        return None
    after = text.lstrip(" \t")[k:]
    if k < len(rest) and rest[k] in " \t" and after.startswith((" ", "\t")):
        after = after.lstrip(" \t")  # the line has the blank already
        k += len(rest[k:]) - len(rest[k:].lstrip(" \t"))
    # What the model wrote after its copy may end with the closers that follow it too.
    after = drop_suffix_overlap(after, line_suffix[lead + k :])
    return Edit(line_suffix[: lead + k] + after, lead + k)


def _first_line_indent(line_prefix: str, first: str) -> int:
    # The first line continues the cursor line, so its indentation includes what was typed
    # before the cursor when that was only whitespace.
    lead = len(first) - len(first.lstrip(" \t"))
    return (len(line_prefix) if not line_prefix.strip() else 0) + lead


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


# Clauses that continue a Python compound statement at its own indentation.
_CONTINUATIONS = frozenset({"elif", "else", "except", "finally"})
# What continues a brace statement on the line of the `}` that closes its first part:
# `} else {`, `} else if (x) {`, `} catch (e) {`, `} finally {`.
_BRACE_CONTINUATION = re.compile(r"\}\s*(?:else|catch|finally)\b")


def continues_statement(line: str, spec: LanguageSpec | None) -> bool:
    """Whether `line`, at the indentation of the statement whose body is being written,
    goes on with that statement rather than leaving it: Python's `elif`/`else`/`except`/
    `finally`, a brace language's `} else {` / `} catch (...) {` / `} finally {`."""
    body = line.lstrip()
    if spec is not None and spec.indented_blocks:
        word = _CLOSER_TOKEN.match(body)
        return word is not None and word.group() in _CONTINUATIONS
    return bool(_BRACE_CONTINUATION.match(body)) and opens_block(body, spec)


def _inside_own_brackets(above: str, spec: LanguageSpec | None) -> bool:
    """Whether the completion so far (`above`) leaves a bracket or string of its own open:
    a line after it is inside that expression (a call's arguments, a literal, a string),
    whatever its indentation."""
    scan = scan_brackets(
        above,
        line_comment=spec.line_comment if spec is not None else "",
        char_quotes=spec is None or spec.name != "rust",
    )
    if scan.mismatched:
        return False
    # A brace language's `{` opens a block, which indentation ends like any other.
    braces_nest = spec is None or spec.indented_blocks
    return bool(scan.open_quote) or any(b != "{" or braces_nest for b in scan.open_brackets)


def cut_at_dedent(
    text: str,
    block_indent: int,
    line_indent: int | None = None,
    spec: LanguageSpec | None = None,
    statement_indent: int | None = None,
) -> str:
    """Stop a multi-line completion at the first line (after the first) indented less than
    `block_indent`: from there the model is writing code outside the block it was asked for.

    `line_indent`: the completion continues a statement on a line indented this much (a
    block started mid-line: `items.forEach(|)`). A line back at that indentation that closes
    a bracket or (`spec`) a block the completion opened (`});`, `end)`) still belongs to
    it, as its last line. `statement_indent`: the indentation of the compound statement
    whose body is being written: its clauses at that indentation (`elif`/`else`/`except`/
    `finally`, `} else {`, `} catch (e) {`) still belong to it, and so do their bodies. A
    line inside a bracket or string the completion opened is inside its expression, not
    out of the block.
    """
    lines = text.split("\n")
    for i in range(1, len(lines)):
        line = lines[i]
        indent = _indent_of(line)
        if not line.strip() or indent >= block_indent:
            continue
        if indent == statement_indent and continues_statement(line, spec):
            continue
        if _inside_own_brackets("\n".join(lines[:i]), spec):
            continue
        if line_indent is not None and indent >= line_indent:
            first = _CLOSER_TOKEN.match(line.lstrip())
            closer_words = spec.block_closers if spec is not None else ()
            above = "\n".join(lines[:i])
            if first is not None and (
                (first.group() in _CLOSERS and scan_brackets(above).open_brackets)
                or (first.group() in closer_words and _nesting_depth(above, spec) > 0)
            ):
                return "\n".join(lines[: i + 1])
        return "\n".join(lines[:i])
    return text


def _statement_indent(ctx: CompletionContext, spec: LanguageSpec | None) -> int | None:
    """The indentation of the compound statement whose body the block fills: the
    cursor's line when it holds the header, else the nearest line above indented less
    than the block."""
    if spec is None:
        return None
    if ctx.line_prefix.strip():
        return _indent_of(ctx.line_prefix)
    for line in reversed(ctx.prefix.split("\n")[:-1]):
        if line.strip() and _indent_of(line) < ctx.block_indent:
            return _indent_of(line)
    return None


# First words of a brace statement's header that a `} else` / `} catch` may continue.
_CONTINUED_HEADERS = frozenset({"if", "else", "try", "catch", "}"})


def _header_may_continue(ctx: CompletionContext) -> bool:
    """Whether the line that opened the block being written starts an `if`, a `try` or
    one of their clauses (so its `}` may be followed by `else`, `catch`, `finally`)."""
    if ctx.line_prefix.strip():
        header = ctx.line_prefix
    else:
        above = [
            line
            for line in ctx.prefix.split("\n")[:-1]
            if line.strip() and _indent_of(line) < ctx.block_indent
        ]
        header = above[-1] if above else ""
    word = _CLOSER_TOKEN.match(header.lstrip())
    return word is not None and word.group() in _CONTINUED_HEADERS


def block_cut_at_dedent(text: str, ctx: CompletionContext) -> str:
    """`cut_at_dedent` as `clean_edit` applies it to a block asked for at `ctx` (the
    streaming early stop makes the same cut)."""
    spec = LANGUAGES.get(ctx.language) if ctx.language else None
    mid_line = bool(ctx.line_prefix.strip())
    line_indent = _indent_of(ctx.line_prefix) if mid_line else None
    return cut_at_dedent(text, ctx.block_indent, line_indent, spec, _statement_indent(ctx, spec))


def unfinished_line_may_stay(line: str, ctx: CompletionContext) -> bool:
    """Whether `line`, the start of a dedented line of a block being streamed, may still
    turn out to belong to the block once it is whole: a closer line of a block begun
    mid-line (`});`), or the start of a Python clause (`el` of `elif`)."""
    spec = LANGUAGES.get(ctx.language) if ctx.language else None
    indent = _indent_of(line)
    word = line.strip()
    if ctx.line_prefix.strip() and indent >= _indent_of(ctx.line_prefix):
        closer_words = spec.block_closers if spec is not None else ()
        if word[:1] in _CLOSERS or any(w.startswith(word) for w in closer_words):
            return True
    if indent != _statement_indent(ctx, spec):
        return False
    if spec is not None and not spec.indented_blocks:
        # `}` may become `} else {` when the statement is an `if` or a `try`.
        head = word[1:].lstrip() if word.startswith("}") else None
        return (
            head is not None
            and _header_may_continue(ctx)
            and (
                _BRACE_CONTINUATION.match(word) is not None
                or any(clause.startswith(head) for clause in ("else", "catch", "finally"))
            )
        )
    return any(clause.startswith(word) or word.startswith(clause) for clause in _CONTINUATIONS)


def _squeeze(line: str) -> str:
    return "".join(line.split())


def _only_closes(line: str, closer_words: tuple[str, ...]) -> bool:
    """Whether a line only closes (`}`, `});`, `end`): such a line repeats the suffix's
    closer when it closes the completion's own block, so it proves no repetition."""
    tokens = _CLOSER_TOKEN.findall(line)
    return all(t in ")]};," or t in closer_words for t in tokens)


def drop_repeated_suffix_lines(
    text: str, suffix: str, line_prefix: str = "", closer_words: tuple[str, ...] = ()
) -> str:
    """Cut a completion where it starts repeating the code after the cursor.

    Compared line by line, ignoring whitespace and blank lines, against the lines after the
    cursor's own: the completion is cut before its first line equal to the next non-blank
    line, when every non-blank line from there on matches the following lines in order
    and one of them does more than close (`}`, `end`: `closer_words`; the block-exit rule
    judges those). The first line is compared as the whole line it completes
    (`line_prefix` + it), so a completion that only repeats the next lines becomes empty.
    """
    after_cursor_line = suffix.split("\n", 1)[1] if "\n" in suffix else ""
    wanted = [_squeeze(line) for line in after_cursor_line.split("\n") if line.strip()]
    if not wanted:
        return text
    lines = text.split("\n")
    whole = [line_prefix + lines[0], *lines[1:]]
    for i, line in enumerate(whole):
        if _squeeze(line) != wanted[0]:
            continue
        tail = [_squeeze(t) for t in whole[i:] if t.strip()]
        if tail == wanted[: len(tail)] and not all(_only_closes(t, closer_words) for t in tail):
            return "\n".join(lines[:i])
    return text


def is_degenerate(text: str, min_bytes: int = 48, max_ratio: float = 0.25) -> bool:
    """Whether `text` is a model stuck in a loop (`_self_self_self...`).

    Measured by how well it compresses: looping output shrinks to a small fraction of its
    size, while even repetitive real code (a run of `self.x = x` lines, an if-chain) keeps
    over a third of it.
    """
    data = text.encode("utf-8")
    return len(data) >= min_bytes and len(zlib.compress(data, 9)) < max_ratio * len(data)


def strip_trailing_blank(text: str) -> str:
    """Drop trailing whitespace-only lines and trailing spaces of the last line."""
    return text.rstrip()


def match_indentation(text: str, unit: str) -> str:
    """Re-indent the lines after the first in the file's style: tabs where the file uses
    tabs, spaces where it uses spaces (a model trained mostly on one style drifts to it)."""
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    if unit == "\t":
        widths = [
            len(line) - len(line.lstrip(" "))
            for line in lines[1:]
            if line.strip() and line.startswith(" ")
        ]
        if not widths:
            return text
        step = 2 if any(w % 4 for w in widths) and all(w % 2 == 0 for w in widths) else 4
        for i in range(1, len(lines)):
            line = lines[i]
            lead = line[: len(line) - len(line.lstrip(" \t"))]
            if " " in lead:
                width = len(lead.expandtabs(step))
                lines[i] = "\t" * (width // step) + " " * (width % step) + line[len(lead) :]
    else:
        for i in range(1, len(lines)):
            line = lines[i]
            lead = line[: len(line) - len(line.lstrip(" \t"))]
            if "\t" in lead:
                lines[i] = lead.expandtabs(len(unit)) + line[len(lead) :]
    return "\n".join(lines)


_NESTING_TOKEN = re.compile(r"[A-Za-z_]\w*|[{}]|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'")


def _nesting_tokens(text: str, spec: LanguageSpec) -> Iterator[tuple[int, int]]:
    """(position, +1 or -1) for each token of `text` that opens or closes a nesting level:
    braces, and the language's block words (`then`, `do` / `end`, `fi`, ...)."""
    openers, closers = spec.nesting_words
    for match in _NESTING_TOKEN.finditer(text):
        token = match.group()
        if token == "{" or token in openers:
            yield match.start(), 1
        elif token == "}" or token in closers:
            yield match.start(), -1


def _nesting_depth(text: str, spec: LanguageSpec | None) -> int:
    if spec is None or spec.indented_blocks:
        return 0
    return sum(step for _, step in _nesting_tokens(text, spec))


def cut_at_block_exit(text: str, spec: LanguageSpec) -> str:
    """Stop a multi-line completion where it closes the block it was asked to fill: a `}`
    (or `end`, `fi`, `done`, ...) with no opening of its own in the completion belongs to
    the enclosing code, which the suffix already has."""
    if spec.indented_blocks:
        return text
    depth = 0
    skip_to = -1  # the `{` that opens a continuation (`} else {`) nests nothing new
    for at, step in _nesting_tokens(text, spec):
        if at <= skip_to:
            continue
        depth += step
        if depth < 0:
            line_end = text.find("\n", at)
            line = text[at : len(text) if line_end < 0 else line_end]
            if continues_statement(line, spec):
                # The block's `}` and the same statement going on: `} else {`.
                depth, skip_to = 0, at + line.rindex("{")
                continue
            cut = text[:at]
            # Keep whole lines: cut before the closer's line if only blanks precede it.
            line_start = cut.rfind("\n") + 1
            if not cut[line_start:].strip():
                cut = cut[:line_start]
            return cut.rstrip()
    return text


@dataclass(frozen=True)
class Edit:
    """What to show: `text` replaces the `replace_chars` characters after the cursor."""

    text: str
    replace_chars: int = 0


@dataclass
class Brackets:
    """What a completion leaves open and what it closes that was open before it."""

    open_brackets: list[str] = field(default_factory=list)  # opened and left open, in order
    open_quote: str = ""  # a string it opened and left open
    # Closers (brackets, and the quote of a string the cursor was in) of things opened
    # before the completion, each with the index just after it.
    closed_outer: list[tuple[str, int]] = field(default_factory=list)
    mismatched: bool = False  # a closer of the wrong kind: `(]`


def scan_brackets(
    text: str,
    *,
    outer: str = "",
    in_string: str = "",
    line_comment: str = "",
    char_quotes: bool = True,
) -> Brackets:
    """Follow the brackets and quotes of `text`, a completion inserted at the cursor.

    `outer`: the closers that follow the cursor on its line, in order; a quote among them
    that comes up next, with no bracket of the completion open, closes the outer string
    rather than opening one. `in_string`: the quote of the string the cursor is inside.
    `line_comment` starts a comment to the end of the line (its apostrophes open nothing);
    `char_quotes` False for languages where `'` is mostly a lifetime (Rust).
    """
    state = Brackets()
    quote = in_string
    escaped = False
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                if quote == in_string:
                    state.closed_outer.append((ch, i + 1))
                    in_string = ""
                quote = ""
        elif line_comment and text.startswith(line_comment, i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch in _QUOTES:
            expected = (
                outer[len(state.closed_outer)] if len(state.closed_outer) < len(outer) else ""
            )
            if not state.open_brackets and ch == expected:
                state.closed_outer.append((ch, i + 1))
            elif (
                ch != "'"
                or char_quotes
                or text[i + 2 : i + 3] == "'"
                or text[i + 1 : i + 2] == "\\"
            ):
                quote = ch
        elif ch in _OPENERS:
            state.open_brackets.append(ch)
        elif ch in _CLOSERS:
            if state.open_brackets:
                if state.open_brackets[-1] != _CLOSERS[ch]:
                    state.mismatched = True
                    return state
                state.open_brackets.pop()
            else:
                state.closed_outer.append((ch, i + 1))
        i += 1
    state.open_quote = quote if quote != in_string else ""
    return state


def _scan_for(text: str, ctx: CompletionContext, outer: str = "") -> Brackets:
    spec = LANGUAGES.get(ctx.language) if ctx.language else None
    in_string = ""
    if ctx.literal is Literal.STRING and outer[:1] in tuple(_QUOTES):
        in_string = outer[0]  # the quote after the cursor closes the string it is in
    return scan_brackets(
        text,
        outer=outer,
        in_string=in_string,
        line_comment=spec.line_comment if spec is not None and not in_string else "",
        char_quotes=ctx.language != "rust",
    )


def replace_closers(text: str, ctx: CompletionContext) -> Edit | None:
    """When the rest of the line only closes brackets or quotes (`foo(|)`, `"|")`, `{|})`),
    the edit that replaces them: the completion, then what it left open closed, then the
    closers it did not write itself. Accepting it leaves the line balanced, whether the
    completion closes brackets it opened or ones opened before the cursor
    (`Math.max(Math.min(|))` + `value, max), min);`).

    A multi-line completion that leaves the closers to the suffix gets them on a line of
    their own, at the cursor line's indentation (`{|})` + a body). None when this does not
    apply: other code after the cursor, or a completion closing more than the line does or
    closing the wrong kind (the insert rules and the syntax check judge that one).
    """
    line_suffix = ctx.line_suffix
    if not only_closers(line_suffix):
        return None
    # A single line may end with the closers the model copied from the suffix; a block
    # writes them on its last line, where the scan below finds them.
    core = text if "\n" in text else drop_suffix_overlap(text, line_suffix)
    outer_at = [(ch, i + 1) for i, ch in enumerate(line_suffix) if ch in _CLOSERS or ch in _QUOTES]
    outer = "".join(ch for ch, _ in outer_at)
    scan = _scan_for(core, ctx, outer)
    closed = "".join(ch for ch, _ in scan.closed_outer)
    if scan.mismatched or not outer.startswith(closed):
        return None
    own = scan.open_quote + "".join(_OPENERS[ch] for ch in reversed(scan.open_brackets))
    rest = line_suffix[outer_at[len(closed) - 1][1] :] if closed else line_suffix
    if closed and rest.strip() and not own and core.rstrip().endswith(rest.strip()):
        rest = ""  # the completion ended the statement itself: `x);` for `);`
    if "\n" in core and (not closed or own):
        # Also a block that closed the line's opener and opened its own (`} else {`).
        indent = ctx.line_prefix[: _indent_of(ctx.line_prefix)]
        tail = own + rest.strip()
        result = core + ("\n" + indent + tail if tail else "")
    else:
        result = core + own + rest
    return Edit(result, len(line_suffix))


def fit_to_line(text: str, ctx: CompletionContext) -> Edit:
    """The edit that puts `text` at the cursor, given what follows it on its line."""
    replaced = replace_closers(text, ctx)
    if replaced is not None:
        return replaced
    if "\n" in text or not ctx.line_suffix.strip():
        return Edit(text)
    trimmed = drop_suffix_overlap(text, ctx.line_suffix)
    if trimmed == text:
        # No copy of the suffix at its end; one at its start is trimmed the same way.
        copied = trim_suffix_start(text, ctx.line_suffix)
        if copied is not None:
            return copied
    return Edit(trimmed)


def repeats_next_lines(edit: Edit, ctx: CompletionContext) -> bool:
    """Whether accepting `edit` writes lines the document already has right below: every
    non-blank line it completes equals the next non-blank lines, in order (whitespace
    aside)."""
    rest_of_line = ctx.line_suffix[edit.replace_chars :]
    written = (ctx.line_prefix + edit.text + rest_of_line).split("\n")
    written = [_squeeze(line) for line in written if line.strip()]
    after_cursor_line = ctx.suffix.split("\n", 1)[1] if "\n" in ctx.suffix else ""
    following = (_squeeze(line) for line in after_cursor_line.split("\n") if line.strip())
    return bool(written) and all(w == next(following, None) for w in written)


# -- syntax ----------------------------------------------------------------------------


@cache
def _problem_query(language: str) -> tree_sitter.Query:
    patterns = "(ERROR) @error (MISSING) @missing"
    if LANGUAGES[language].indented_blocks:
        # Empty blocks parse fine in tree-sitter but not in Python: `if x:` and nothing.
        patterns += " (block) @block"
    return tree_sitter.Query(LANGUAGES[language].tree_sitter_language, patterns)


def _point_after(start: tuple[int, int], data: bytes) -> tuple[int, int]:
    lines = data.count(b"\n")
    if not lines:
        return (start[0], start[1] + len(data))
    return (start[0] + lines, len(data) - data.rfind(b"\n") - 1)


class _ParsedText:
    """A text around the cursor with its parse, to compare with edited versions of it."""

    def __init__(
        self, spec: LanguageSpec, source: bytes, tree: tree_sitter.Tree, cursor: int
    ) -> None:
        self._spec = spec
        self._source = source
        self._tree = tree
        self._cursor = cursor
        line_start = source.rfind(b"\n", 0, cursor) + 1
        self._cursor_point = (source.count(b"\n", 0, cursor), cursor - line_start)

    def _problems(
        self,
        tree: tree_sitter.Tree,
        lo: int,
        hi: int,
        empty_blocks: bool,
        where: Callable[[int], int | None],
    ) -> tuple[Counter[tuple[str, int | None]], int]:
        """The problems of `tree` that overlap bytes `lo`..`hi`, keyed by kind and start
        (`where` maps it to the text before the edit), and the first byte they start at."""
        cursor = tree_sitter.QueryCursor(_problem_query(self._spec.name))
        cursor.set_byte_range(lo, hi)
        found: Counter[tuple[str, int | None]] = Counter()
        first = lo
        for name, nodes in cursor.captures(tree.root_node).items():
            for node in nodes:
                if name == "block":
                    if not empty_blocks or node.child_count:
                        continue
                    found["empty block", where(node.start_byte)] += 1
                elif node.is_missing:
                    found[f"missing {node.type}", None] += 1  # wherever it moved
                else:
                    found["error", where(node.start_byte)] += 1
                first = min(first, node.start_byte)
        return found, first

    def damages(self, replaced: bytes, inserted: bytes, empty_blocks: bool) -> tuple[bool, bool]:
        """Whether putting `inserted` in place of `replaced` at the cursor adds a problem,
        and whether the syntax it changed runs to the end of the text."""
        start = self._cursor
        old_end, new_end = start + len(replaced), start + len(inserted)
        source = self._source[:start] + inserted + self._source[old_end:]
        edited = self._tree.copy()
        edited.edit(
            start_byte=start,
            old_end_byte=old_end,
            new_end_byte=new_end,
            start_point=self._cursor_point,
            old_end_point=_point_after(self._cursor_point, replaced),
            new_end_point=_point_after(self._cursor_point, inserted),
        )
        tree = parse(self._spec, source, edited)
        lo, hi = start, new_end
        for changed in edited.changed_ranges(tree):
            lo, hi = min(lo, changed.start_byte), max(hi, changed.end_byte)
        to_the_end = hi >= len(source.rstrip())
        shift = len(replaced) - len(inserted)

        def before_edit(at: int) -> int | None:  # a position of `tree` in the old text
            return at if at < start else at + shift if at >= new_end else None

        after, first = self._problems(tree, lo, hi + 1, empty_blocks, before_edit)
        if not after:
            return False, to_the_end
        # The same span before the edit, widened to where the problems found start: an
        # error the user already had, which now reaches into the edit, starts there.
        before, _ = self._problems(self._tree, first, hi + shift + 1, empty_blocks, lambda at: at)
        return bool(after - before), to_the_end


class SyntaxCheck:
    """Whether an edit at the cursor adds syntax problems anywhere in the document: parse
    errors, missing tokens and (Python) empty blocks.

    The text is parsed before the edit and re-parsed incrementally with it, and only the
    ranges whose syntax changed are compared, so an error the edit shifts rows below (an
    unterminated string) counts, and an error the user already had does not. A missing
    token that only moved (the same `}` still missing, now after the completion) is the
    same problem. The window around the cursor is checked first (a small parse); when the
    edit's effect runs to the window's end, the whole document (`ctx.document`: its tree
    from the request) decides, since the damage may only show beyond the window.
    """

    def __init__(self, ctx: CompletionContext) -> None:
        assert ctx.language is not None
        self._ctx = ctx
        spec = LANGUAGES[ctx.language]
        source = (ctx.prefix + ctx.suffix).encode("utf-8")
        cursor = len(ctx.prefix.encode("utf-8"))
        self._window = _ParsedText(spec, source, parse(spec, source), cursor)
        document = ctx.document
        self._document = (
            _ParsedText(spec, document.source, document.tree, document.cursor)
            if document is not None
            else None
        )

    def damages(self, edit: Edit, *, empty_blocks: bool) -> bool:
        """Whether `edit` (at the cursor) adds a problem."""
        replaced = self._ctx.suffix[: edit.replace_chars].encode("utf-8")
        inserted = edit.text.encode("utf-8")
        damaged, to_the_end = self._window.damages(replaced, inserted, empty_blocks)
        if damaged or not to_the_end or self._document is None:
            return damaged
        return self._document.damages(replaced, inserted, empty_blocks)[0]


def _statement_end(text: str, line_prefix: str, line_suffix: str) -> str:
    """The `;` or `,` the model wrote right after its copy of the line's closers (`});` for
    the suffix `})`) at the cursor line's indentation, which ends the statement the closers
    belong to; "" when none."""
    if not only_closers(line_suffix):
        return ""
    closers = _squeeze(line_suffix)
    for line in text.split("\n")[1:]:
        if _indent_of(line) != _indent_of(line_prefix):
            continue
        squeezed = _squeeze(line)
        if squeezed[:-1] == closers and squeezed[-1:] in (";", ","):
            return squeezed[-1]
    return ""


def keep_statement_end(edit: Edit, text: str, ctx: CompletionContext) -> Edit:
    """A block edit that replaced the line's closers with its own line of them, given back
    the `;` or `,` the model wrote after them (the suffix had none)."""
    end = _statement_end(text, ctx.line_prefix, ctx.line_suffix)
    suffix = ctx.line_suffix.rstrip()
    if (
        end
        and "\n" in edit.text
        and edit.replace_chars == len(ctx.line_suffix)
        and edit.text.endswith(suffix.strip())
        and not suffix.endswith(end)
    ):
        return Edit(edit.text + end, edit.replace_chars)
    return edit


@dataclass(frozen=True)
class RuleStep:
    """One rule's effect on one completion: the text it was given and what it left
    (`after` replaces `after_replace` characters after the cursor; "" when it dropped)."""

    rule: str
    before: str
    after: str
    after_replace: int = 0


@dataclass
class CleanupTrace:
    """What each rule of one `clean_edit` call changed, in order; rules that left the text
    as it was are not recorded. The clean-up's scoreboard (benchmarks/bench_cleanup.py)
    judges each step against the reference."""

    steps: list[RuleStep] = field(default_factory=list)

    def record(self, rule: str, before: str, after: str, after_replace: int = 0) -> str:
        if before != after or after_replace:
            self.steps.append(RuleStep(rule, before, after, after_replace))
        return after


def _rule(trace: CleanupTrace | None, rule: str, before: str, after: str) -> str:
    return trace.record(rule, before, after) if trace is not None else after


def clean_edit(raw: str, ctx: CompletionContext, trace: CleanupTrace | None = None) -> Edit:
    """Apply the rules for `ctx.mode` to the model's raw text; an empty edit when nothing
    useful remains. `trace` records each rule's effect."""
    if ctx.mode is Mode.NONE:
        _rule(trace, "mode none", raw, "")
        return Edit("")
    spec = LANGUAGES.get(ctx.language) if ctx.language else None
    text = _rule(trace, "special tokens", raw, strip_special_tokens(raw))
    written = text  # as the model wrote it: the statement end the cuts may drop
    text = _rule(trace, "doubled space", text, drop_doubled_space(text, ctx))
    if ctx.mode.is_line:
        text = _rule(trace, "cut at newline", text, cut_at_newline(text))
        if not ctx.line_suffix.strip():
            text = _rule(trace, "trailing blank", text, text.rstrip())
        candidates = [text]
    else:
        if block_not_opened(text, ctx):
            text = _rule(trace, "no block opened", text, cut_at_newline(text))
        elif body_exists_below(text, ctx):
            text = _rule(trace, "body below", text, cut_at_newline(text))
        text = _rule(trace, "indentation", text, match_indentation(text, ctx.indent_unit))
        mid_line = bool(ctx.line_prefix.strip())
        text = _rule(trace, "cut at dedent", text, block_cut_at_dedent(text, ctx))
        if spec is not None:
            text = _rule(trace, "cut at block exit", text, cut_at_block_exit(text, spec))
        closer_words = spec.block_closers if spec is not None else ()
        text = _rule(
            trace,
            "repeated suffix lines",
            text,
            drop_repeated_suffix_lines(text, ctx.suffix, ctx.line_prefix, closer_words),
        )
        text = _rule(trace, "trailing blank", text, strip_trailing_blank(text))
        first = text.split("\n", 1)[0]
        if first.strip() and _first_line_indent(ctx.line_prefix, first) < ctx.block_indent:
            if not mid_line:
                # A first line left of the block would not belong to it.
                _rule(trace, "first line left of the block", text, "")
                return Edit("")
        # The longest leading run of lines that passes every check below.
        lines = text.split("\n")
        candidates = ["\n".join(lines[:n]).rstrip() for n in range(len(lines), 0, -1)]
    if not text.strip():
        return Edit("")
    if is_degenerate(text):
        _rule(trace, "degenerate", text, "")
        return Edit("")
    check = SyntaxCheck(ctx) if ctx.language is not None else None
    # The rule that turned down the longest candidate is the one that cut (or dropped) it.
    rejected_by = ""
    for candidate in candidates:
        if not candidate.strip():
            continue
        edit = fit_to_line(candidate, ctx)
        if not edit.text.strip() or edit.text == ctx.line_suffix[: edit.replace_chars]:
            rejected_by = rejected_by or "nothing new"
            continue  # nothing but what is already there
        if repeats_next_lines(edit, ctx):
            rejected_by = rejected_by or "repeats next lines"
            continue
        # A block opener is fine at the end of a single line continuing typed code (`for x
        # in xs:`: the body comes next), not at the end of a block meant to be written.
        single = "\n" not in edit.text and bool(ctx.line_prefix.strip())
        if check is None or not check.damages(edit, empty_blocks=not single):
            ended = keep_statement_end(edit, written, ctx)
            if ended != edit and (check is None or not check.damages(ended, empty_blocks=True)):
                edit = ended
            if trace is not None:
                if rejected_by:
                    trace.record(rejected_by, text, edit.text, edit.replace_chars)
                elif (edit.text, edit.replace_chars) != (candidate, 0):
                    trace.record("fit to line", candidate, edit.text, edit.replace_chars)
            return edit
        rejected_by = rejected_by or "syntax check"
    if trace is not None and rejected_by:
        trace.record(rejected_by, text, "")
    return Edit("")
