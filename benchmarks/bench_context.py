"""How fast the context is built, and how often the cache answers while someone types.

1. Context building on a 5,000-line file (by default the first 5,000 lines of the
   standard library's `_pydecimal.py`; `--file` for another, any of the ten languages):
   at each of `--positions` cursors, one typed character arrives as an incremental edit,
   then the context is built as the server does: incremental re-parse of the kept tree,
   mode, window with scope headers, and cross-file chunks from two other open documents.
   Token counts use the shipped model's tokenizer. Prints the median and p95 of
   "edit + re-parse + context" and of the context alone, and a full parse for scale.

2. Cache hit rate over a replayed typing session: lines of the file are typed again
   character by character (with a typo and its backspace now and then), a completion
   requested after each keystroke, without debounce, as `complete_blocking` does. Run
   with the shipped model (`--model`), and with an oracle that always suggests the rest
   of the line actually typed: the upper bound typing-through reaches with a model
   that is right.

    .venv/bin/python benchmarks/bench_context.py
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from fim_model.api import EMBEDDED_CHECKPOINT
from fim_model.tokenizer import CodeTokenizer
from fim_server.backends import Backend, BackendSpec, Infill, InfillRequest
from fim_server.config.settings import UserSettings
from fim_server.context import ContextSettings, build_context
from fim_server.context.crossfile import CrossFileIndex, Source
from fim_server.context.documents import DocumentStore, Position, TextChange
from fim_server.context.languages import language_from_path, parse
from fim_server.context.window import LineTokenCounter
from fim_server.engine import Engine, EngineSettings


def default_file(lines: int) -> tuple[str, str]:
    path = Path(sysconfig.get_paths()["stdlib"]) / "_pydecimal.py"
    text = path.read_text(encoding="utf-8")
    return str(path), "".join(text.splitlines(keepends=True)[:lines])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_context(path: str, text: str, positions: int, seed: int) -> None:
    spec = language_from_path(path)
    tokenizer = CodeTokenizer.load(EMBEDDED_CHECKPOINT / "tokenizer.json")
    count = LineTokenCounter(lambda s: len(tokenizer.encode(s)))
    settings = ContextSettings.sized_for(448)
    started = time.perf_counter()
    parse(spec, text.encode("utf-8")) if spec else None
    full_parse_ms = (time.perf_counter() - started) * 1000

    store = DocumentStore()
    uri = "file:///bench/" + Path(path).name
    store.open(uri, text, spec.name if spec else None, 1)
    lines = text.split("\n")
    # Two other open documents for cross-file context: slices of the same file.
    neighbours = [
        Source("file:///bench/a" + Path(path).suffix, "\n".join(lines[:400]), 1),
        Source("file:///bench/b" + Path(path).suffix, "\n".join(lines[-400:]), 1),
    ]
    index = CrossFileIndex()
    rng = random.Random(seed)
    with_edit: list[float] = []
    context_only: list[float] = []
    modes: dict[str, int] = {}
    for version in range(2, positions + 2):
        document = store.get(uri)
        assert document is not None
        row = rng.randrange(len(lines) - 1)
        column = len(lines[row].rstrip())
        started = time.perf_counter()
        document = store.change(
            uri, version, [TextChange(" ", Position(row, column), Position(row, column))]
        )
        lines[row] = lines[row][:column] + " " + lines[row][column:]
        offset = sum(len(line) + 1 for line in lines[:row]) + column + 1
        tree = document.tree()
        edited = time.perf_counter()
        ctx = build_context(
            document.text,
            offset,
            count,
            settings,
            language=spec,
            tree=tree,
            neighbours=neighbours,
            index=index,
        )
        done = time.perf_counter()
        with_edit.append((done - started) * 1000)
        context_only.append((done - edited) * 1000)
        modes[ctx.mode] = modes.get(ctx.mode, 0) + 1
    print(f"file: {path} ({text.count(chr(10))} lines, {len(text.encode()) // 1024} KiB)")
    print(f"full parse (for scale): {full_parse_ms:.1f} ms")
    print(
        f"edit + incremental re-parse + context: p50 {statistics.median(with_edit):.2f} ms, "
        f"p95 {percentile(with_edit, 0.95):.2f} ms ({positions} positions)"
    )
    print(
        f"context alone (tree current):          p50 {statistics.median(context_only):.2f} ms, "
        f"p95 {percentile(context_only, 0.95):.2f} ms"
    )
    print(f"modes: {dict(sorted((str(k), v) for k, v in modes.items()))}")


@dataclass
class Oracle(Backend):
    """A model that suggests the rest of the line the user is about to type."""

    answer: str = ""
    name: str = "oracle"
    description: str = "suggests the rest of the line the user is about to type"
    context_tokens: int | None = 448

    def close(self) -> None:
        pass

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def infill(self, request: InfillRequest) -> list[Infill]:
        return [Infill(self.answer, tokens=len(self.answer) // 4, forward_passes=1)]


def typing_session(text: str, lines: int, seed: int) -> tuple[str, list[tuple[str, int, str]]]:
    """(the file with `lines` statement lines emptied, the keystrokes that type them
    again: (document, cursor offset, rest of the line to type))."""
    rng = random.Random(seed)
    rows = text.split("\n")
    candidates = [
        i
        for i, line in enumerate(rows)
        if 12 <= len(line.strip()) <= 60 and not line.strip().startswith(("#", '"', "'"))
    ]
    chosen = sorted(rng.sample(candidates, lines))
    steps: list[tuple[str, int, str]] = []
    current = list(rows)
    for row in chosen:
        target = rows[row]
        indent = target[: len(target) - len(target.lstrip())]
        typed = indent
        for ch in target[len(indent) :]:
            if rng.random() < 0.08:  # a typo, seen, then erased
                current[row] = typed + "x"
                document = "\n".join(current)
                offset = sum(len(x) + 1 for x in current[:row]) + len(typed) + 1
                steps.append((document, offset, ""))
            current[row] = typed
            document = "\n".join(current)
            offset = sum(len(x) + 1 for x in current[:row]) + len(typed)
            steps.append((document, offset, target[len(typed) :]))
            typed += ch
        current[row] = target
    return "\n".join(current), steps


def replay(engine: Engine, steps: list[tuple[str, int, str]], oracle: Oracle | None) -> None:
    before = engine.stats()
    for document, offset, rest in steps:
        if oracle is not None:
            oracle.answer = rest
        engine.complete_blocking(document, offset, path="session.py")
    after = engine.stats()
    requests = after.requests - before.requests
    hits = after.cache_hits - before.cache_hits
    print(
        f"  {requests} keystrokes, {hits} answered from the cache or by typing-through: "
        f"hit rate {hits / requests:.1%}; {after.completions - before.completions} "
        f"non-empty answers; model ran {requests - hits} times"
    )


def bench_cache(text: str, lines: int, seed: int, model: str | None, real: bool) -> None:
    _, steps = typing_session(text, lines, seed)
    print(f"typing session: {lines} lines retyped, {len(steps)} keystrokes")
    oracle = Oracle()
    engine = Engine(EngineSettings(cache_size=256))
    engine.use_backend(oracle)
    engine.configure(UserSettings(debounce_ms=0))
    print("oracle model (suggests the rest of the line):")
    replay(engine, steps, oracle)
    engine.close()
    if real:
        engine = Engine(EngineSettings(BackendSpec(model_path=model), cache_size=256))
        engine.configure(UserSettings(debounce_ms=0))
        engine.start_loading().result()
        if engine.load_error is not None:
            print(f"model failed to load: {engine.load_error}", file=sys.stderr)
            return
        print("shipped model:")
        replay(engine, steps, None)
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", help="file to build contexts in (default: _pydecimal.py)")
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--positions", type=int, default=300)
    parser.add_argument("--typed-lines", type=int, default=12)
    parser.add_argument("--model", help="checkpoint folder for the session (default: shipped)")
    parser.add_argument("--no-model", action="store_true", help="oracle session only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.file:
        path = args.file
        text = "".join(
            Path(path).read_text(encoding="utf-8").splitlines(keepends=True)[: args.lines]
        )
    else:
        path, text = default_file(args.lines)
    bench_context(path, text, args.positions, args.seed)
    bench_cache(text, args.typed_lines, args.seed, args.model, not args.no_model)


if __name__ == "__main__":
    main()
