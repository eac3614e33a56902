"""Each cleanup rule on its own, then the chain per completion mode."""

from __future__ import annotations

import ast

import pytest

from fim_server.context import build_context
from fim_server.postprocess import (
    clean_completion,
    cut_at_dedent,
    cut_at_newline,
    drop_repeated_suffix_lines,
    drop_suffix_overlap,
    is_degenerate,
    keep_valid_syntax,
    strip_special_tokens,
    strip_trailing_blank,
)


def count_words(text: str) -> int:
    return len(text.split())


def context_at(marked: str):
    return build_context(marked.replace("|", ""), marked.index("|"), count_words)


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


def test_repeated_suffix_lines_are_dropped() -> None:
    text = "y = x * 2\n    return y"
    assert drop_repeated_suffix_lines(text, "\n    return y\n\n\ndef g():\n") == "y = x * 2"


def test_repeated_suffix_lines_need_every_later_line_to_match() -> None:
    text = "return y\n    z = 1"
    assert drop_repeated_suffix_lines(text, "\n    return y\n    w = 2\n") == text


def test_looping_output_is_degenerate() -> None:
    assert is_degenerate("_self_selfself_self" * 8)
    assert is_degenerate("x" * 60)
    assert not is_degenerate("return sum(item.price * item.quantity for item in self.items)")
    lines = [f"self.{name} = {name}" for name in ("name", "price", "quantity", "tags", "owner")]
    assert not is_degenerate("\n        ".join(lines))
    assert not is_degenerate("_self" * 4)  # too short to judge


def test_degenerate_completions_are_dropped() -> None:
    assert clean_completion("_self" * 20, context_at("total = |\n")) == ""


def test_strip_trailing_blank() -> None:
    assert strip_trailing_blank("return x\n    \n\n") == "return x"


# -- syntax --------------------------------------------------------------------------


def test_single_line_that_breaks_the_syntax_is_dropped() -> None:
    ctx = context_at("def f(values):\n    total = |\n    return total\n")
    assert keep_valid_syntax("sum(values)", ctx) == "sum(values)"
    assert keep_valid_syntax(",,,,", ctx) == ""
    assert keep_valid_syntax("sum(values", ctx) == ""  # leaves a bracket open


def test_single_line_may_open_a_block() -> None:
    ctx = context_at("def f(values):\n    for v in |\n    return values\n")
    assert keep_valid_syntax("values:", ctx) == "values:"


def test_multi_line_keeps_its_longest_valid_leading_lines() -> None:
    ctx = context_at("def f(xs):\n    |\n\n\nprint(f([1]))\n")
    good = "total = 0\n    for x in xs:\n        total += x\n    return total"
    assert keep_valid_syntax(good, ctx) == good
    assert keep_valid_syntax("total = 0\n    return total +", ctx) == "total = 0"
    # A block opener with nothing in it is not valid Python, though tree-sitter takes it.
    assert keep_valid_syntax("total = 0\n    for x in xs:", ctx) == "total = 0"
    assert keep_valid_syntax(",,,,\n    return 1", ctx) == ""


def test_errors_elsewhere_in_the_window_do_not_block_completions() -> None:
    ctx = context_at("broken = (1,\n\n\ndef f(xs):\n    |\n")
    assert keep_valid_syntax("return len(xs)", ctx) == "return len(xs)"


# -- the chain -----------------------------------------------------------------------


def test_single_line_chain() -> None:
    ctx = context_at("total = compute(|)\n")
    assert clean_completion("a, b)<eom>", ctx) == "a, b"
    assert clean_completion("a, b)\nprint(total)", ctx) == "a, b"


def test_single_line_without_rest_of_line_drops_trailing_space() -> None:
    ctx = context_at("total = |\n")
    assert clean_completion("a + b   ", ctx) == "a + b"


def test_multi_line_chain_gives_a_parseable_body() -> None:
    marked = "def double(x):\n    |\n\n\ndef g():\n    pass\n"
    ctx = context_at(marked)
    raw = "y = x * 2\n    return y\n\n\ndef g():\n    pass\n<eom>"
    text = clean_completion(raw, ctx)
    assert text == "y = x * 2\n    return y"
    ast.parse(marked.replace("|", text))


def test_multi_line_at_end_of_opener_line() -> None:
    marked = "def double(x):|\n"
    ctx = context_at(marked)
    text = clean_completion("\n    return x * 2\nprint(double(2))", ctx)
    assert text == "\n    return x * 2"
    ast.parse(marked.replace("|", text))


def test_multi_line_first_line_outside_the_block_is_rejected() -> None:
    ctx = context_at("def f(x):\n|\n")
    assert clean_completion("return x", ctx) == ""
    assert clean_completion("    return x", ctx) == "    return x"


def test_nothing_useful_gives_empty() -> None:
    assert clean_completion("   \n\n", context_at("def f():\n    |\n")) == ""
    assert clean_completion("<eom>", context_at("x = (|)\n")) == ""
    assert clean_completion("anything", context_at("x = a|b\n")) == ""
