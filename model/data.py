"""Training data: a corpus of local Python sources and FIM examples sampled like requests.

Spans are drawn the way an editor asks for completions: the rest of a line, whole lines
(a body after a block opener), random character spans, and plain left-to-right text
(empty suffix). Documents are laid out suffix-prefix-middle.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from .diffusion import DiffusionBatch, FimExample, make_batch, pad_middle
from .tokenizer import CodeTokenizer

MAX_FILE_BYTES = 256_000
MIN_FILE_BYTES = 200
MAX_LINE_CHARS = 1_000
HELD_OUT_PERCENT = 4


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to its root, e.g. "asyncio/tasks.py"
    text: str


def _package_of(relpath: Path) -> str:
    return relpath.parts[0] if len(relpath.parts) > 1 else relpath.stem


def is_held_out(relpath: str) -> bool:
    """Held-out split by top-level package, so no file of a held-out package is trained on."""
    return zlib.crc32(_package_of(Path(relpath)).encode()) % 100 < HELD_OUT_PERCENT


def read_source(path: Path) -> str | None:
    """The file's text, or None when it is not UTF-8, generated-looking, or too big/small."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if not MIN_FILE_BYTES <= len(raw) <= MAX_FILE_BYTES:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in text or max(map(len, text.splitlines()), default=0) > MAX_LINE_CHARS:
        return None
    return text


def collect_python_sources(roots: Iterable[Path]) -> Iterator[SourceFile]:
    """Every usable .py file under `roots`, exact duplicates removed."""
    seen: set[bytes] = set()
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            # The stdlib folder holds site-packages; that is its own root, not a package.
            inner = path.relative_to(root).parts[:-1]
            if not path.is_file() or {"site-packages", "dist-packages"} & set(inner):
                continue
            text = read_source(path)
            if text is None:
                continue
            digest = hashlib.sha1(text.encode()).digest()
            if digest in seen:
                continue
            seen.add(digest)
            yield SourceFile(str(path.relative_to(root)), text)


def write_corpus(files: Iterable[SourceFile], out_dir: Path) -> dict[str, dict[str, int]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {split: {"files": 0, "bytes": 0} for split in ("train", "heldout")}
    with (
        (out_dir / "train.jsonl").open("w") as train,
        (out_dir / "heldout.jsonl").open("w") as heldout,
    ):
        for f in files:
            split = "heldout" if is_held_out(f.path) else "train"
            (heldout if split == "heldout" else train).write(
                json.dumps({"path": f.path, "text": f.text}) + "\n"
            )
            stats[split]["files"] += 1
            stats[split]["bytes"] += len(f.text.encode())
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    return stats


def load_corpus(path: Path) -> list[SourceFile]:
    with path.open() as fh:
        return [SourceFile(**json.loads(line)) for line in fh]


# --- FIM spans -------------------------------------------------------------------------

SPAN_KINDS = ("rest_of_line", "lines", "span", "left_to_right")
SPAN_WEIGHTS = (0.25, 0.35, 0.2, 0.2)


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


def sample_span(text: str, rng: random.Random, kind: str | None = None) -> FimSpan:
    kind = kind or rng.choices(SPAN_KINDS, SPAN_WEIGHTS)[0]
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
    context = (
        [sp.fim_suffix]
        + suffix[:n_suffix]
        + [sp.fim_prefix]
        + (prefix[len(prefix) - n_prefix :] if n_prefix else [])
        + [sp.fim_middle]
    )
    return FimExample(context=context, middle=middle)


class ExampleStream:
    """Endless FIM examples from a corpus; files drawn in proportion to their size (capped)."""

    def __init__(
        self, files: list[SourceFile], tok: CodeTokenizer, shape: ExampleShape, seed: int
    ) -> None:
        self.files, self.tok, self.shape = files, tok, shape
        self.rng = random.Random(seed)
        self._weights = [min(len(f.text), 20_000) for f in files]

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
            span = sample_span(self.window(f.text), self.rng)
            if not span.middle:
                continue
            yield make_example(self.tok, span, self.shape, self.rng)


def heldout_batches(
    files: list[SourceFile], tok: CodeTokenizer, shape: ExampleShape, n: int, batch_size: int
) -> list[DiffusionBatch]:
    """The same `n` masked batches for every call: training's evaluations and comparisons
    between checkpoints score identical examples and masks."""
    return [
        make_batch(
            list(itertools.islice(ExampleStream(files, tok, shape, seed=10_000 + i), batch_size)),
            shape.block_size,
            shape.seq_len,
            tok.special,
            torch.Generator().manual_seed(i),
        )
        for i in range(n)
    ]
