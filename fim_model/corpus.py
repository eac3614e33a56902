"""Build the training corpus and the tokenizer from the code on this machine.

    python -m fim_model.corpus --out data/corpus

Sources (see fim_model.sources.default_roots): Python's stdlib and site-packages, the
JDK's src.zip, Go's and Rust's standard libraries (Debian: `apt-get install
golang-1.19-src rust-src`), /usr/include, JavaScript under node's global modules, shell
and Lua scripts under /usr/share. Exact duplicates, generated or minified files, huge
files and non-UTF-8 files are dropped. Writes train.jsonl / heldout.jsonl (held out by
package), tokenizer.json, and stats.json + stats.md (files, bytes, tokens per language).
"""

from __future__ import annotations

import argparse
import json
import random
import time
import zlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from .sources import LANGUAGE_OF_SUFFIX, SourceFile, SourceRoot, collect_sources, default_roots
from .tokenizer import CodeTokenizer, train_tokenizer

HELD_OUT_PERCENT = 4


def is_held_out(path: str) -> bool:
    """Held-out split by folder, so no file of a held-out folder (a package, a module's
    directory) is trained on."""
    return zlib.crc32(str(PurePosixPath(path).parent).encode()) % 100 < HELD_OUT_PERCENT


def write_corpus(
    files: Iterable[SourceFile], out_dir: Path
) -> dict[str, dict[str, dict[str, int]]]:
    """train.jsonl / heldout.jsonl; returns files and bytes per split and language."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict[str, dict[str, dict[str, int]]] = {"train": {}, "heldout": {}}
    with (
        (out_dir / "train.jsonl").open("w") as train,
        (out_dir / "heldout.jsonl").open("w") as heldout,
    ):
        for f in files:
            split = "heldout" if is_held_out(f.path) else "train"
            (heldout if split == "heldout" else train).write(
                json.dumps({"path": f.path, "language": f.language, "text": f.text}) + "\n"
            )
            row = stats[split].setdefault(f.language, {"files": 0, "bytes": 0})
            row["files"] += 1
            row["bytes"] += len(f.text.encode())
    return stats


def load_corpus(path: Path) -> list[SourceFile]:
    with path.open() as fh:
        return [SourceFile(**json.loads(line)) for line in fh]


def _refuse_benchmarks(roots: list[SourceRoot]) -> None:
    for r in roots:
        if "benchmarks" in r.location.resolve().parts:
            raise SystemExit(f"refusing to build a corpus from a benchmark folder: {r.location}")


def estimate_tokens(tok: CodeTokenizer, texts: list[str], sample_chars: int = 2_000_000) -> int:
    """Tokens in `texts`, from the chars-per-token ratio of an evenly spread sample (exact
    when the texts are smaller than the sample): counting 300 MB exactly takes minutes."""
    total = sum(map(len, texts))
    step = max(1, round(total / sample_chars))
    sample = texts[::step]
    tokens = sum(map(len, tok.encode_batch(sample)))
    return round(tokens * total / max(1, sum(map(len, sample))))


def stats_table(stats: dict[str, dict[str, dict[str, int]]]) -> str:
    lines = [
        "| split | language | files | MB | tokens (M, estimated) |",
        "|---|---|---:|---:|---:|",
    ]
    for split, per_language in stats.items():
        for language, row in sorted(per_language.items(), key=lambda kv: -kv[1]["bytes"]):
            lines.append(
                f"| {split} | {language} | {row['files']} | {row['bytes'] / 1e6:.1f} "
                f"| {row.get('tokens', 0) / 1e6:.2f} |"
            )
    return "\n".join(lines) + "\n"


def train_corpus_tokenizer(
    train_path: Path, sample_mb: float, vocab_size: int, seed: int
) -> CodeTokenizer:
    """A BPE tokenizer trained on a seeded random sample of `sample_mb` MB of training files."""
    files = load_corpus(train_path)
    random.Random(seed).shuffle(files)
    budget, sample = sample_mb * 1e6, []
    for f in files:
        sample.append(f.text)
        budget -= len(f.text)
        if budget <= 0:
            break
    t0 = time.time()
    tok = train_tokenizer(sample, vocab_size)
    print(f"tokenizer: {tok.vocab_size} tokens in {time.time() - t0:.0f}s")
    return tok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/corpus"))
    ap.add_argument(
        "--root",
        type=Path,
        action="append",
        help="extra source folders, every known language (default: this machine's code)",
    )
    ap.add_argument("--only-roots", action="store_true", help="use just the --root folders")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--tokenizer-sample-mb", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--tokenizer",
        type=Path,
        default=None,
        help="copy this tokenizer.json instead of training one (to continue a checkpoint, "
        "whose weights are tied to its tokenizer's ids)",
    )
    args = ap.parse_args(argv)

    every_language = frozenset(LANGUAGE_OF_SUFFIX.values())
    extra = [SourceRoot(p.name, p, every_language) for p in args.root or []]
    roots = extra if args.only_roots else default_roots() + extra
    _refuse_benchmarks(roots)
    t0 = time.time()
    stats = write_corpus(collect_sources(roots), args.out)
    print(f"corpus in {time.time() - t0:.0f}s from:")
    for r in roots:
        print(f"  {r.label:20s} {r.location}")

    if args.tokenizer is not None:
        tok = CodeTokenizer.load(args.tokenizer)
        tok.save(args.out / "tokenizer.json")
        print(f"tokenizer: {tok.vocab_size} tokens from {args.tokenizer}")
    else:
        tok = train_corpus_tokenizer(
            args.out / "train.jsonl", args.tokenizer_sample_mb, args.vocab_size, args.seed
        )
        tok.save(args.out / "tokenizer.json")

    t0 = time.time()
    for split in ("train", "heldout"):
        by_language: dict[str, list[str]] = {}
        for f in load_corpus(args.out / f"{split}.jsonl"):
            by_language.setdefault(f.language, []).append(f.text)
        for language, texts in by_language.items():
            stats[split][language]["tokens"] = estimate_tokens(tok, texts)
    (args.out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    table = stats_table(stats)
    (args.out / "stats.md").write_text(table)
    print(f"tokens estimated in {time.time() - t0:.0f}s\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
