"""Context windows and completion modes, with a whitespace tokenizer (no model needed)."""

from __future__ import annotations

import pytest

from fim_server.context import ContextSettings, Mode, build_context, decide_mode
from fim_server.context.window import build_window


def count_words(text: str) -> int:
    return len(text.split())


def at_cursor(marked: str) -> tuple[str, int]:
    """Document text and cursor offset from a string with one `|` marking the cursor."""
    assert marked.count("|") == 1
    return marked.replace("|", ""), marked.index("|")


# -- windows -------------------------------------------------------------------------

PREFIX = "a b\nc d\ne f\ng h\npartial line here"  # 2 words a line, then 3 on the cursor line


def trim_prefix(prefix: str, budget: int, count_tokens) -> str:
    """The prefix the window keeps of plain text ending at the cursor."""
    return build_window(
        prefix, len(prefix), count_tokens, prefix_tokens=budget, suffix_tokens=0
    ).prefix


def trim_suffix(suffix: str, budget: int, count_tokens) -> str:
    """The suffix the window keeps of plain text starting at the cursor."""
    return build_window(suffix, 0, count_tokens, prefix_tokens=0, suffix_tokens=budget).suffix


def test_writing_new_lines_only_appends_to_the_middle_until_the_next_anchor_row() -> None:
    """With `middle_lines`, a server's prompt cache keeps all but the newest tokens while
    the user writes new lines: the text before the middle and the suffix stay the same."""
    above = "".join(f"def f{i}(x):\n    y = x\n    return y + {i}\n\n" for i in range(10))
    below = "".join(f"\ndef g{i}(y):\n    return y * {i}\n" for i in range(12))
    new_lines = ["def h(z):", "    w = z + 1", "    v = w * 2", "    return v", "", "x = 1"]
    seen: list[tuple[str, str, int]] = []
    for n in range(len(new_lines)):
        written = "\n".join(new_lines[:n] + [new_lines[n][: len(new_lines[n]) // 2]])
        text = above + written + below
        offset = len(above) + len(written)
        window = build_window(
            text, offset, count_words, prefix_tokens=80, suffix_tokens=12, middle_lines=8
        )
        assert window.prefix == text[offset - len(window.prefix) : offset]
        assert window.prefix.endswith(written) and window.middle == len(written)
        seen.append((window.prefix[: -window.middle], window.suffix, text.count("\n", 0, offset)))
    rows = [row for _, _, row in seen]
    assert rows == list(range(40, 46))  # 40 is a multiple of 8: the anchor row
    assert len({before for before, _, _ in seen}) == 1  # the window before the middle
    assert not seen[0][0].startswith("def f0")  # (a window cut above: the budget binds)
    assert len({suffix for _, suffix, _ in seen}) == 1
    # Past the next multiple of 8 the anchor moves: that row starts the middle again.
    text = above + "\n".join(new_lines) + "\n" * 3 + "y = 2" + below
    offset = text.index("y = 2") + 3
    assert text.count("\n", 0, offset) == 48
    window = build_window(
        text, offset, count_words, prefix_tokens=80, suffix_tokens=12, middle_lines=8
    )
    assert window.middle == len("y =")
    assert window.prefix[: -window.middle] not in {before for before, _, _ in seen}


def test_the_suffix_stays_the_same_while_the_line_being_typed_breaks_the_parse() -> None:
    """An unclosed bracket or a half-typed import makes the parser read the code below it
    differently at each keystroke; the suffix (and so the model server's cached prompt)
    must not follow it."""
    short = "\n\nclass Second:\n    def m(self):\n        return [1, 2, 3]\n"
    long = "\n\nclass Third:\n    def m(self):\n" + "        x = y + z\n" * 20
    below = short + long
    line = "from ..tokens import (Token, compute)"
    suffixes = set()
    for k in range(len(line) + 1):
        text = "import os\n\n" + line[:k] + "\n" + below
        offset = len("import os\n\n") + k
        ctx = build_context(
            text, offset, count_words, ContextSettings(prefix_tokens=20, suffix_tokens=16)
        )
        suffixes.add(ctx.suffix)
    assert len(suffixes) == 1
    (suffix,) = suffixes
    # It ends between the classes, not inside one.
    assert suffix.rstrip("\n").endswith("return [1, 2, 3]") and "Third" not in suffix


def test_a_long_middle_written_so_far_falls_back_to_the_cursor_line() -> None:
    text = "a b\n" * 8 + " ".join(["w"] * 30) + "\nlast li"
    window = build_window(
        text, len(text), count_words, prefix_tokens=20, suffix_tokens=4, middle_lines=16
    )
    assert window.middle == len("last li")
    default = build_window(text, len(text), count_words, prefix_tokens=20, suffix_tokens=4)
    assert default.middle == 0


def test_prefix_keeps_last_whole_lines_within_budget() -> None:
    kept = trim_prefix(PREFIX, budget=7, count_tokens=count_words)
    assert kept == "e f\ng h\npartial line here"
    assert count_words(kept) <= 7


def test_prefix_within_budget_is_untouched() -> None:
    assert trim_prefix(PREFIX, budget=100, count_tokens=count_words) == PREFIX


def test_prefix_keeps_the_cursor_line_whole_even_over_budget() -> None:
    assert trim_prefix(PREFIX, budget=1, count_tokens=count_words) == "partial line here"


def test_prefix_cut_falls_on_a_line_start() -> None:
    for budget in range(3, 12):
        kept = trim_prefix(PREFIX, budget, count_words)
        assert PREFIX.endswith(kept)
        start = len(PREFIX) - len(kept)
        assert start == 0 or PREFIX[start - 1] == "\n"


SUFFIX = "rest of line\na b\nc d\ne f\n"


def test_suffix_keeps_first_whole_lines_within_budget() -> None:
    kept = trim_suffix(SUFFIX, budget=7, count_tokens=count_words)
    assert kept == "rest of line\na b\nc d\n"


def test_suffix_keeps_the_rest_of_the_cursor_line_even_over_budget() -> None:
    assert trim_suffix(SUFFIX, budget=0, count_tokens=count_words) == "rest of line\n"


def test_suffix_without_line_break() -> None:
    assert trim_suffix("x)", budget=0, count_tokens=count_words) == "x)"


def test_build_context_splits_at_cursor_and_trims() -> None:
    lines = [f"x{i} = {i}" for i in range(100)]
    text = "\n".join(lines[:50]) + "\ny = foo(\n" + "\n".join(lines[50:])
    offset = text.index("foo(") + 4
    settings = ContextSettings(prefix_tokens=30, suffix_tokens=12)
    ctx = build_context(text, offset, count_words, settings)
    assert ctx.prefix.endswith("\ny = foo(")
    assert ctx.suffix.startswith("\nx50 = 50\n")
    assert text[:offset].endswith(ctx.prefix) and text[offset:].startswith(ctx.suffix)
    assert count_words(ctx.prefix) <= 30
    assert count_words(ctx.suffix) <= 12
    assert ctx.line_prefix == "y = foo("
    assert ctx.mode is Mode.SINGLE_LINE
    assert ctx.max_tokens == settings.single_line_tokens


def test_build_context_rejects_offsets_outside_the_text() -> None:
    with pytest.raises(ValueError):
        build_context("abc", 4, count_words)


# -- modes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "marked",
    [
        "x = fo|o()\n",  # inside an identifier
        "value = |other\n",  # right before an identifier
        "def f(x):|\n    return x\n",  # a colon whose block already has a body
    ],
)
def test_none(marked: str) -> None:
    decision = decide_mode(*at_cursor(marked))
    assert decision.mode is Mode.NONE, decision.reason


@pytest.mark.parametrize(
    "marked",
    [
        "x = foo(|) + 1\n",
        "d = {'a':|}\n",  # a colon that opens no block
        "def f(x):\n    |)\n",
    ],
)
def test_rest_of_line(marked: str) -> None:
    decision = decide_mode(*at_cursor(marked))
    assert decision.mode is Mode.REST_OF_LINE, decision.reason


@pytest.mark.parametrize(
    "marked",
    [
        "total = a +|\n",
        "x = 1\n|\n",  # a new line at the top level
        "def f(x):\n    y = 1\n|\n",  # column 0 at the end of the file: a new top-level line
        "def f(x):\n    y = 1\n|\ndef g():\n    pass\n",  # column 0 before top-level code
        "x = [\n    1,\n|\n    2,\n]\n",  # inside brackets, not a body
        "x = 1  # comm|\n",
        "",
    ],
)
def test_single_line(marked: str) -> None:
    text, offset = at_cursor(marked) if marked else ("", 0)
    decision = decide_mode(text, offset)
    assert decision.mode is Mode.SINGLE_LINE, decision.reason


@pytest.mark.parametrize(
    ("marked", "indent"),
    [
        ("def f(x):\n    |\n", 4),
        ("def f(x):\n    |", 4),
        ("def f(x):|\n", 1),  # end of the opener line itself
        ("def f(x):\n|\n", 1),  # column 0: the body must still be indented
        ("class A:\n    '''Doc.'''\n    |\n", 4),
        ("def f(x):\n    if x:\n        |\n    return 1\n", 8),
        ("for i in range(3):\n    |\n\nprint(i)\n", 4),
        ("while True:\n    |\n", 4),
        ("with open(p) as f:\n    |\n", 4),
        ("try:\n    |\nexcept E:\n    pass\n", 4),
        ("def f(\n    a,\n    b,\n) -> int:\n    |\n", 4),
        ("def f(x):\n    # explain\n    |\n\ndef g():\n    pass\n", 4),
        ("class A:\n    def m(self):\n        '''Doc.'''\n        |\n", 8),
        ("def f(x):\n    y = 1\n    |\n", 4),  # a new line after a statement
        ("def f(x):\n    |\n    return x\n", 4),  # a new first line of a non-empty body
        # Column 0 with indented code below: the lines go into that body (not at column 0,
        # which would end it), as many as the model writes.
        ("def f(x):\n    y = 1\n|\n    return y\n", 1),
        ("def f(x):\n    if y:\n        y = 1\n|\n\n  # note\n        return y\n", 1),
        ("x = foo(|)\n", 1),  # brackets ending the line: the statement may go on below
    ],
)
def test_multi_line(marked: str, indent: int) -> None:
    decision = decide_mode(*at_cursor(marked))
    assert decision.mode is Mode.MULTI_LINE, decision.reason
    assert decision.block_indent == indent


def test_docstring_followed_by_code_is_not_an_empty_body() -> None:
    decision = decide_mode(*at_cursor("def f():\n    '''Doc.'''\n    |\n    return 1\n"))
    assert decision.reason == "new statement line in a body"


def test_text_after_cursor_prevents_multi_line() -> None:
    decision = decide_mode(*at_cursor("def f(x):\n    |pass_through = 1\n"))
    assert decision.mode is Mode.NONE
    decision = decide_mode(*at_cursor("def f(x):\n    |)\n"))
    assert decision.mode is Mode.REST_OF_LINE


def test_non_ascii_text_before_the_cursor() -> None:
    text, offset = at_cursor("name = 'héllo 😀'\ndef f(x):\n    |\n")
    ctx = build_context(text, offset, count_words)
    assert ctx.mode is Mode.MULTI_LINE
    assert ctx.prefix == text[:offset]
    assert ctx.line_prefix == "    "


def test_mode_sets_the_token_budget() -> None:
    settings = ContextSettings(single_line_tokens=7, multi_line_tokens=70)
    multi = build_context(*at_cursor("def f():\n    |\n"), count_words, settings)
    single = build_context(*at_cursor("x = (|) + 1\n"), count_words, settings)
    none = build_context(*at_cursor("x = a|b\n"), count_words, settings)
    assert (multi.max_tokens, single.max_tokens, none.max_tokens) == (70, 7, 0)
