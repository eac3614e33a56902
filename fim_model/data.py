"""Training data: a corpus of local sources and FIM examples sampled like requests.

Spans are drawn the way an editor asks for completions: the rest of a line, whole lines
(a body after a block opener), a syntax node (statement, block, expression, argument
list, found with tree-sitter), random character spans, and plain left-to-right text
(empty suffix). Documents are laid out suffix-prefix-middle.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import tree_sitter

from .diffusion import DiffusionBatch, FimExample, make_batch, pad_middle
from .sources import SourceFile
from .tokenizer import CodeTokenizer

# --- FIM spans -------------------------------------------------------------------------

SPAN_KINDS = ("rest_of_line", "lines", "node", "span", "left_to_right")
SPAN_WEIGHTS = (0.2, 0.25, 0.25, 0.15, 0.15)
MAX_NODE_CHARS = 600

# The syntax tree of a source in a language (a name such as "python"), None where there is
# no grammar for it. The caller hands it in (the server's grammar registry,
# fim_server.context.languages.syntax_root): this library parses nothing itself.
SyntaxTrees = Callable[[str, bytes], tree_sitter.Node | None]

NODE_CATEGORIES = ("statement", "block", "expression", "arguments")
_ARGUMENT_TYPES = frozenset(
    {"argument_list", "arguments", "parameters", "formal_parameters", "parameter_list"}
)
_BLOCK_TYPES = frozenset({"compound_statement", "statement_block", "declaration_list"})


@dataclass(frozen=True)
class FimSpan:
    prefix: str
    middle: str
    suffix: str
    kind: str


def _line_starts(text: str) -> list[int]:
    starts = [0]
    starts.extend(i + 1 for i, ch in enumerate(text) if ch == "\n")
    return starts


def _indent_end(text: str, start: int) -> int:
    i = start
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def node_category(node_type: str) -> str | None:
    """Which kind of completion request a syntax node stands for, across grammars."""
    if node_type in _ARGUMENT_TYPES:
        return "arguments"
    if node_type in _BLOCK_TYPES or "block" in node_type or node_type.endswith("body"):
        return "block"
    if node_type.endswith(("statement", "declaration", "definition")):
        return "statement"
    if "expression" in node_type or node_type in ("call", "binary_operator", "attribute"):
        return "expression"
    return None


def syntax_nodes(text: str, language: str, syntax: SyntaxTrees) -> dict[str, list[tuple[int, int]]]:
    """Character spans of the error-free nodes of `text` per category (empty when no grammar)."""
    source = text.encode()
    if len(source) != len(text):
        return {}  # byte offsets would need mapping; ASCII covers nearly all code
    root = syntax(language, source)
    if root is None:
        return {}
    found: dict[str, list[tuple[int, int]]] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(node.named_children)
        category = node_category(node.type)
        if (
            category
            and not node.has_error
            and 0 < node.end_byte - node.start_byte <= MAX_NODE_CHARS
        ):
            found.setdefault(category, []).append((node.start_byte, node.end_byte))
    return found


def sample_span(
    text: str,
    rng: random.Random,
    kind: str | None = None,
    language: str = "python",
    syntax: SyntaxTrees | None = None,
) -> FimSpan:
    """A FIM span of `kind` (drawn by SPAN_WEIGHTS when None). A node span needs `syntax`
    and a grammar for `language`; without them it falls back to whole lines."""
    kind = kind or rng.choices(SPAN_KINDS, SPAN_WEIGHTS)[0]
    if kind == "node":
        nodes = syntax_nodes(text, language, syntax) if syntax is not None else {}
        if nodes:
            start, end = rng.choice(nodes[rng.choice(sorted(nodes))])
            if (
                text[start] == "{"
                and text[end - 1] == "}"
                and end - start > 2
                and rng.random() < 0.7
            ):
                start, end = start + 1, end - 1  # the inside of a braced block
            return FimSpan(text[:start], text[start:end], text[end:], kind)
        kind = "lines"
    starts = _line_starts(text)
    n_lines = len(starts)

    def line_end(i: int) -> int:  # index of the "\n" ending line i, or len(text)
        return starts[i + 1] - 1 if i + 1 < n_lines else len(text)

    if kind == "rest_of_line":
        candidates = [i for i in range(n_lines) if text[starts[i] : line_end(i)].strip()]
        if candidates:
            i = rng.choice(candidates)
            lo, hi = _indent_end(text, starts[i]), line_end(i)
            cut = rng.randint(lo, max(lo, hi - 1))
            return FimSpan(text[:cut], text[cut:hi], text[hi:], kind)
        kind = "span"
    if kind == "lines":
        first = rng.randrange(n_lines)
        count = min(1 + int(rng.expovariate(0.35)), 16, n_lines - first)
        last = first + count - 1
        start = _indent_end(text, starts[first]) if rng.random() < 0.6 else starts[first]
        end = line_end(last)
        if rng.random() < 0.3 and end < len(text):
            end += 1  # include the final newline
        start = min(start, end)
        return FimSpan(text[:start], text[start:end], text[end:], kind)
    if kind == "span":
        length = int(math.exp(rng.uniform(0, math.log(400))))
        start = rng.randrange(max(1, len(text) - length))
        end = min(len(text), start + length)
        return FimSpan(text[:start], text[start:end], text[end:], kind)
    # left_to_right: no suffix at all
    if rng.random() < 0.5:
        cut = starts[rng.randrange(n_lines)]
    else:
        cut = rng.randrange(len(text))
    return FimSpan(text[:cut], text[cut:], "", "left_to_right")


@dataclass(frozen=True)
class ExampleShape:
    seq_len: int  # context + 2 x padded middle (the two-copy layout) must fit
    max_middle: int  # middle tokens including <eom>, before padding
    block_size: int


def make_example(
    tok: CodeTokenizer, span: FimSpan, shape: ExampleShape, rng: random.Random
) -> FimExample:
    sp = tok.special
    middle = tok.encode(span.middle[: shape.max_middle * 8])
    if len(middle) < shape.max_middle:
        middle.append(sp.end_of_middle)
    else:
        middle = middle[: shape.max_middle]  # cut by the budget: no <eom>, like a capped answer
    middle = pad_middle(middle, shape.block_size, sp.pad)

    budget = shape.seq_len - 2 * len(middle) - 3
    chars = budget * 6  # generous: code averages ~3.5 chars per token
    prefix = tok.encode(span.prefix[-chars:]) if span.prefix else []
    suffix = tok.encode(span.suffix[:chars]) if span.suffix else []
    suffix_share = rng.uniform(0.1, 0.5)
    n_suffix = min(len(suffix), int(budget * suffix_share))
    n_prefix = min(len(prefix), budget - n_suffix)
    n_suffix = min(len(suffix), budget - n_prefix)
    context = sp.fim_context(
        prefix[len(prefix) - n_prefix :] if n_prefix else [], suffix[:n_suffix]
    )
    return FimExample(context=context, middle=middle)


class ExampleStream:
    """Endless FIM examples from a corpus. Files are drawn in proportion to their size
    (capped); `language_weights` instead fixes each language's share of the examples
    (languages it leaves out are not drawn). `syntax` parses for the node spans."""

    def __init__(
        self,
        files: list[SourceFile],
        tok: CodeTokenizer,
        shape: ExampleShape,
        seed: int,
        language_weights: dict[str, float] | None = None,
        *,
        syntax: SyntaxTrees,
    ) -> None:
        self.files, self.tok, self.shape, self.syntax = files, tok, shape, syntax
        self.rng = random.Random(seed)
        self._weights = [min(len(f.text), 20_000) for f in files]
        if language_weights:
            totals: dict[str, float] = {}
            for f, w in zip(files, self._weights, strict=True):
                totals[f.language] = totals.get(f.language, 0) + w
            self._weights = [
                w * language_weights.get(f.language, 0.0) / totals[f.language]
                for f, w in zip(files, self._weights, strict=True)
            ]
            if not any(self._weights):
                raise ValueError(f"no files in the weighted languages {sorted(language_weights)}")

    def window(self, text: str) -> str:
        """A random slice of a long file, cut at line starts, so spans cover whole files."""
        size = self.shape.seq_len * 12
        if len(text) <= size:
            return text
        start = self.rng.randrange(len(text) - size)
        start = text.rfind("\n", 0, start) + 1
        return text[start : start + size]

    def __iter__(self) -> Iterator[FimExample]:
        while True:
            f = self.rng.choices(self.files, self._weights)[0]
            span = sample_span(
                self.window(f.text), self.rng, language=f.language, syntax=self.syntax
            )
            if not span.middle:
                continue
            yield make_example(self.tok, span, self.shape, self.rng)


def heldout_batches(
    files: list[SourceFile],
    tok: CodeTokenizer,
    shape: ExampleShape,
    n: int,
    batch_size: int,
    *,
    syntax: SyntaxTrees,
) -> list[DiffusionBatch]:
    """The same `n` masked batches for every call: training's evaluations and comparisons
    between checkpoints score identical examples and masks."""
    return [
        make_batch(
            list(
                itertools.islice(
                    ExampleStream(files, tok, shape, seed=10_000 + i, syntax=syntax), batch_size
                )
            ),
            shape.block_size,
            shape.seq_len,
            tok.special,
            torch.Generator().manual_seed(i),
        )
        for i in range(n)
    ]
