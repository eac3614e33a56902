"""Each cleanup rule on its own, then the chain per completion mode."""

from __future__ import annotations

import ast
from dataclasses import replace

import pytest

from fim_server.cleanup import (
    CleanupTrace,
    Edit,
    SyntaxCheck,
    clean_edit,
    completion_done,
    is_degenerate,
    strip_special_tokens,
)
from fim_server.cleanup.brackets import scan_brackets
from fim_server.cleanup.dedent import cut_at_dedent
from fim_server.cleanup.line_suffix import drop_suffix_overlap, trim_suffix_start
from fim_server.cleanup.newline import cut_at_newline
from fim_server.cleanup.repeated_suffix_lines import drop_repeated_suffix_lines
from fim_server.cleanup.trailing_blank import strip_trailing_blank
from fim_server.context import ContextSettings, Mode, build_context
from fim_server.context.languages import LANGUAGES, parse


def count_words(text: str) -> int:
    return len(text.split())


def context_at(marked: str):
    return build_context(marked.replace("|", ""), marked.index("|"), count_words)


def cleaned(raw: str, marked: str) -> str:
    """The document after accepting the cleaned completion of `raw` at the `|`."""
    text, offset = marked.replace("|", ""), marked.index("|")
    edit = clean_edit(raw, context_at(marked))
    return text[:offset] + edit.text + text[offset + edit.replace_chars :]


def damages(text: str, marked: str, *, empty_blocks: bool = False) -> bool:
    return SyntaxCheck(context_at(marked)).damages(Edit(text), empty_blocks=empty_blocks)


# -- special tokens ------------------------------------------------------------------


def test_special_tokens_are_removed() -> None:
    assert strip_special_tokens("x<pad> = <mask>1") == "x = 1"
    assert strip_special_tokens("<fim_middle>a<|fim_suffix|>b") == "ab"


def test_end_markers_cut_the_rest() -> None:
    assert strip_special_tokens("return x<eom>garbage") == "return x"
    assert strip_special_tokens("a<|endoftext|>b") == "a"


def test_control_characters_are_removed_but_tabs_and_newlines_kept() -> None:
    assert strip_special_tokens("a\x00b\x1b\tc\r\nd\ufffd") == "ab\tc\nd"


# -- single line ---------------------------------------------------------------------


def test_cut_at_newline() -> None:
    assert cut_at_newline("x + 1\nprint(x)") == "x + 1"
    assert cut_at_newline("no break") == "no break"


@pytest.mark.parametrize(
    ("text", "rest", "expected"),
    [
        ("x)", ")", "x"),  # the model wrote the closer that follows the cursor
        ("bar()", ")", "bar()"),  # its own closer: kept
        ("bar())", ")", "bar()"),
        ("x, y):", "):", "x, y"),
        (" > 0:", ":", " > 0"),
        ("abc'", "'", "abc"),  # closes the string opened before the cursor
        ("'abc'", ")", "'abc'"),
        ("a[0]]", "]", "a[0]"),
        ("x", ")", "x"),  # no overlap
        ("):", "):", ""),  # nothing but the suffix
    ],
)
def test_drop_suffix_overlap(text: str, rest: str, expected: str) -> None:
    assert drop_suffix_overlap(text, rest) == expected


# -- multi line ----------------------------------------------------------------------


def test_cut_at_dedent_stops_at_the_first_line_leaving_the_block() -> None:
    text = "total = 0\n    for x in xs:\n        total += x\n    return total\n\ndef g():\n    pass"
    assert cut_at_dedent(text, block_indent=4) == (
        "total = 0\n    for x in xs:\n        total += x\n    return total\n"
    )


def test_cut_at_dedent_ignores_blank_lines_and_the_first_line() -> None:
    text = "x = 1\n\n    return x"
    assert cut_at_dedent(text, block_indent=4) == text


def test_cut_at_dedent_keeps_the_line_closing_what_the_completion_opened() -> None:
    # A block started mid-line (`items.forEach(|)`, cursor line indented 2): the closing
    # `});` is back at the line's indentation and still belongs to the completion.
    text = "(x) => {\n    log(x);\n  });\n  next();"
    assert cut_at_dedent(text, block_indent=3, line_indent=2) == "(x) => {\n    log(x);\n  });"
    # A closer with nothing of the completion's own to close leaves with the dedent.
    assert cut_at_dedent("a\n    b\n  }", block_indent=3, line_indent=2) == "a\n    b"


def test_repeated_suffix_lines_are_dropped() -> None:
    text = "y = x * 2\n    return y"
    assert drop_repeated_suffix_lines(text, "\n    return y\n\n\ndef g():\n") == "y = x * 2"


def test_repeated_suffix_lines_need_every_later_line_to_match() -> None:
    text = "return y\n    z = 1"
    assert drop_repeated_suffix_lines(text, "\n    return y\n    w = 2\n") == text


def test_a_completion_repeating_only_the_next_lines_becomes_empty() -> None:
    suffix = "\n    return y\n"
    assert drop_repeated_suffix_lines("return y", suffix, line_prefix="    ") == ""
    assert drop_repeated_suffix_lines("turn y", suffix, line_prefix="    re") == ""


def test_closing_lines_alone_are_no_repetition() -> None:
    # `}` closes the completion's own method; the suffix's `}` closes the class.
    text = "name() {\n    return this._name;\n  }"
    assert drop_repeated_suffix_lines(text, "\n}\n", line_prefix="  get ") == text
    text = "if a then\n    b()\n  end"
    assert drop_repeated_suffix_lines(text, "\nend\n", "  ", ("end",)) == text


@pytest.mark.parametrize(
    ("text", "outer", "in_string", "open_brackets", "open_quote", "closed"),
    [
        ("value, max), min);", "))", "", [], "", "))"),
        ("a, [b", ")", "", ["["], "", ""),
        ('users");', '")', '"', [], "", '")'),
        ("x = 'it''s", "", "", [], "'", ""),
        ("f(x, // don't", ")", "", ["("], "", ""),  # no string in a comment
        ('ls -l)"', ')"', "", [], "", ')"'),  # `"$(|)"`: the quote closes the outer string
    ],
)
def test_scan_brackets(
    text: str, outer: str, in_string: str, open_brackets: list[str], open_quote: str, closed: str
) -> None:
    scan = scan_brackets(text, outer=outer, in_string=in_string, line_comment="//")
    assert not scan.mismatched
    assert scan.open_brackets == open_brackets and scan.open_quote == open_quote
    assert "".join(ch for ch, _ in scan.closed_outer) == closed


def test_scan_brackets_reports_the_wrong_closer() -> None:
    assert scan_brackets("(a]").mismatched


def test_looping_output_is_degenerate() -> None:
    assert is_degenerate("_self_selfself_self" * 8)
    assert is_degenerate("x" * 60)
    assert not is_degenerate("return sum(item.price * item.quantity for item in self.items)")
    lines = [f"self.{name} = {name}" for name in ("name", "price", "quantity", "tags", "owner")]
    assert not is_degenerate("\n        ".join(lines))
    assert not is_degenerate("_self" * 4)  # too short to judge


def test_degenerate_completions_are_dropped() -> None:
    assert clean_edit("_self" * 20, context_at("total = |\n")) == Edit("")


def test_strip_trailing_blank() -> None:
    assert strip_trailing_blank("return x\n    \n\n") == "return x"


# -- syntax --------------------------------------------------------------------------


def test_single_line_that_breaks_the_syntax_is_dropped() -> None:
    marked = "def f(values):\n    total = |\n    return total\n"
    assert not damages("sum(values)", marked)
    assert damages(",,,,", marked)
    assert damages("sum(values", marked)  # leaves a bracket open
    assert cleaned("sum(values", marked) == marked.replace("|", "")


def test_single_line_may_open_a_block() -> None:
    marked = "def f(values):\n    for v in |\n    return values\n"
    assert cleaned("values:", marked) == marked.replace("|", "values:")


def test_multi_line_keeps_its_longest_valid_leading_lines() -> None:
    marked = "def f(xs):\n    |\n\n\nprint(f([1]))\n"
    good = "total = 0\n    for x in xs:\n        total += x\n    return total"
    assert cleaned(good, marked) == marked.replace("|", good)
    assert cleaned("total = 0\n    return total +", marked) == marked.replace("|", "total = 0")
    # A block opener with nothing in it is not valid Python, though tree-sitter takes it.
    assert cleaned("total = 0\n    for x in xs:", marked) == marked.replace("|", "total = 0")
    assert cleaned(",,,,\n    return 1", marked) == marked.replace("|", "")


def test_errors_elsewhere_in_the_window_do_not_block_completions() -> None:
    marked = "broken = (1,\n\n\ndef f(xs):\n    |\n"
    assert cleaned("return len(xs)", marked) == marked.replace("|", "return len(xs)")


def test_an_error_the_completion_pushes_to_a_later_row_counts() -> None:
    # The triple quote opens a string that swallows the rest of the file: the parse error
    # lands rows below the completion, at the end, where an unfinished file has its own.
    marked = "def f():\n    name = |\n    return name\n\n\ndef g(\n"
    assert damages("'''Ada", marked)
    assert cleaned("'''Ada", marked) == marked.replace("|", "")


# -- the chain -----------------------------------------------------------------------


def test_single_line_chain() -> None:
    marked = "total = compute(|)\n"
    assert cleaned("a, b)<eom>", marked) == "total = compute(a, b)\n"
    assert cleaned("a, b)\nprint(total)", marked) == "total = compute(a, b)\n"


def test_single_line_without_rest_of_line_drops_trailing_space() -> None:
    assert cleaned("a + b   ", "total = |\n") == "total = a + b\n"


def test_multi_line_chain_gives_a_parseable_body() -> None:
    marked = "def double(x):\n    |\n\n\ndef g():\n    pass\n"
    raw = "y = x * 2\n    return y\n\n\ndef g():\n    pass\n<eom>"
    text = cleaned(raw, marked)
    assert text == marked.replace("|", "y = x * 2\n    return y")
    ast.parse(text)


def test_multi_line_at_end_of_opener_line() -> None:
    marked = "def double(x):|\n"
    text = cleaned("\n    return x * 2\nprint(double(2))", marked)
    assert text == "def double(x):\n    return x * 2\n"
    ast.parse(text)


def test_multi_line_first_line_outside_the_block_is_rejected() -> None:
    marked = "def f(x):\n|\n"
    assert cleaned("return x", marked) == "def f(x):\n\n"
    assert cleaned("    return x", marked) == "def f(x):\n    return x\n"


def test_nothing_useful_gives_empty() -> None:
    assert clean_edit("   \n\n", context_at("def f():\n    |\n")) == Edit("")
    assert clean_edit("<eom>", context_at("x = (|)\n")) == Edit("")
    assert clean_edit("anything", context_at("x = a|b\n")) == Edit("")
    assert context_at("x = a|b\n").mode is Mode.NONE


def test_the_syntax_check_reads_the_whole_document_beyond_the_window() -> None:
    # A long Go file and a window of a few lines: the edit is parsed into the document's
    # own tree, so the raw string it opens is judged against everything below the cursor.
    body = "".join(f"\tx{i} := {i}\n\t_ = x{i}\n" for i in range(300))
    below = "".join(f"func g{i}() int {{\n\treturn {i}\n}}\n\n" for i in range(300))
    text = f"package m\n\nfunc f() string {{\n{body}\tx := \n\treturn x\n}}\n\n{below}"
    offset = text.index("\tx := \n") + len("\tx := ")
    settings = ContextSettings(prefix_tokens=12, suffix_tokens=6, cross_file_tokens=0)
    ctx = build_context(text, offset, count_words, settings, language="go")
    assert ctx.document is not None
    assert len(ctx.document.source) > 10 * len((ctx.prefix + ctx.suffix).encode())
    assert clean_edit("`abc", ctx) == Edit("")
    assert clean_edit('"abc"', ctx) == Edit('"abc"')
    accepted = text[:offset] + '"abc"' + text[offset:]
    assert not parse(LANGUAGES["go"], accepted.encode()).root_node.has_error


def test_damage_that_only_shows_beyond_the_window_counts() -> None:
    # The window ends at the `'''` that opens a note: there the completion's string closes
    # and the window parses. In the document the note's text becomes code and its closing
    # quotes open a string that never ends.
    text = "def f():\n    x = \n    y = 1\n    '''\n    Note.\n    '''\n    return x\n"
    offset = text.index("x = ") + len("x = ")
    settings = ContextSettings(prefix_tokens=4, suffix_tokens=4, cross_file_tokens=0)
    ctx = build_context(text, offset, count_words, settings)
    assert ctx.suffix == "\n    y = 1\n    '''\n"  # the window stops at the quotes
    assert clean_edit("'''abc", replace(ctx, document=None)) == Edit("'''abc")
    assert clean_edit("'''abc", ctx) == Edit("")


# -- the trace, and the streaming stop making the same cuts ---------------------------


def test_the_trace_records_each_rule_that_changed_the_answer() -> None:
    trace = CleanupTrace()
    marked = "def f(x):\n    |\n\nprint(f(2))\n"
    edit = clean_edit("y = x * 2\n    return y\nprint(y)\n", context_at(marked), trace)
    assert edit == Edit("y = x * 2\n    return y")
    assert [(s.rule, s.before, s.after) for s in trace.steps] == [
        ("cut at dedent", "y = x * 2\n    return y\nprint(y)\n", "y = x * 2\n    return y")
    ]
    dropped = CleanupTrace()
    assert clean_edit("anything", context_at("x = a|b\n"), dropped) == Edit("")
    assert [s.rule for s in dropped.steps] == ["mode none"]


def test_the_stream_stops_at_the_same_line_as_the_clean_up() -> None:
    ctx = context_at("def sign(x):\n    if x > 0:|\n")
    assert not completion_done("\n        return 1\n    el", ctx)  # `elif` or `else` ahead
    assert not completion_done("\n        return 1\n    elif x < 0:\n        return -1\n", ctx)
    assert completion_done("\n        return 1\n    print(x)\n", ctx)
    assert completion_done("\n        return 1\n    pr", ctx)  # no clause starts so
    closer = build_context("items.forEach((x) => {})\n", 22, count_words, language="javascript")
    assert not completion_done("\n  use(x);\n}", closer)  # `});` may follow: wait for it
    assert completion_done("\n  use(x);\n});\nnext();\n", closer)


def test_the_stream_waits_for_the_else_of_an_if_but_not_after_a_function() -> None:
    js = "function f(x) {\n  if (x) {\n    \n  }\n}\n"
    ctx = build_context(js, js.index("    ") + 4, count_words, language="javascript")
    assert not completion_done("return 1;\n  }", ctx)  # `} else {` may follow
    assert not completion_done("return 1;\n  } el", ctx)
    assert not completion_done("return 1;\n  } else {\n    return 2;\n", ctx)
    assert completion_done("return 1;\n  } else {\n    return 2;\n  }\n", ctx)
    assert completion_done("return 1;\n  }\n", ctx)
    assert completion_done("return 1;\n  } x", ctx)
    body = build_context("function f(x) {\n  \n}\n", 18, count_words, language="javascript")
    assert completion_done("return x;\n}", body)  # a function's `}` has no `else`


@pytest.mark.parametrize(
    ("text", "rest", "expected"),
    [
        (" * qty * 2;", " * qty;", Edit(" * qty * 2", 6)),  # its `;` is the line's
        ("a, b, c)", " a, b)", Edit(" a, b, c", 5)),
        ("boolean", " boolean isEmpty() {", Edit(" boolean", 8)),  # nothing new
        ("bool", " boolean", None),  # not a whole token of the line
        (")) + 1", ")", None),  # closers alone: the closer rules decide
        ("x + 1", " y", None),  # no copy
    ],
)
def test_a_line_copying_the_rest_of_the_line_is_trimmed(
    text: str, rest: str, expected: Edit | None
) -> None:
    assert trim_suffix_start(text, rest) == expected


def test_a_header_asks_for_a_block_but_an_argument_stays_a_line() -> None:
    assert context_at("def area(r)|\n").mode is Mode.MULTI_LINE
    call = build_context("run(load(a, b)\n", 14, count_words, language="javascript")
    assert call.mode is Mode.SINGLE_LINE, call.reason
    line = context_at("def f(xs):\n    for x in xs|\n")
    assert clean_edit(" if x\n        pass", line) == Edit(" if x")  # no block opened
