"""Build the training corpus and the tokenizer from Python sources on this machine.

    python -m fim_model.corpus --out data/corpus

writes train.jsonl / heldout.jsonl (split by top-level package), stats.json and
tokenizer.json. Default roots: this interpreter's stdlib and site-packages.
"""

from __future__ import annotations

import argparse
import random
import sys
import sysconfig
import time
from pathlib import Path

from .data import collect_python_sources, load_corpus, write_corpus
from .tokenizer import train_tokenizer


def default_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    base = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    roots = [paths["stdlib"], paths["purelib"], base["purelib"]]
    unique: list[Path] = []
    for r in map(Path, roots):
        if r.is_dir() and r.resolve() not in {u.resolve() for u in unique}:
            unique.append(r)
    return unique


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("data/corpus"))
    ap.add_argument(
        "--root", type=Path, action="append", help="source roots (default: stdlib + site-packages)"
    )
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--tokenizer-sample-mb", type=float, default=24.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    roots = args.root or default_roots()
    for r in roots:
        if "benchmarks" in r.parts:
            ap.error(f"refusing to build a corpus from a benchmark folder: {r}")
    t0 = time.time()
    stats = write_corpus(collect_python_sources(roots), args.out)
    print(f"corpus from {[str(r) for r in roots]} in {time.time() - t0:.0f}s")
    for split, s in stats.items():
        print(f"  {split:8s} {s['files']:7d} files {s['bytes'] / 1e6:8.1f} MB")

    files = load_corpus(args.out / "train.jsonl")
    random.Random(args.seed).shuffle(files)
    budget, sample = args.tokenizer_sample_mb * 1e6, []
    for f in files:
        sample.append(f.text)
        budget -= len(f.text)
        if budget <= 0:
            break
    t0 = time.time()
    tok = train_tokenizer(sample, args.vocab_size)
    tok.save(args.out / "tokenizer.json")
    heldout = [f.text for f in load_corpus(args.out / "heldout.jsonl")[:200]]
    n_chars = sum(map(len, heldout))
    n_tokens = sum(map(len, tok.encode_batch(heldout)))
    print(
        f"tokenizer: {tok.vocab_size} tokens in {time.time() - t0:.0f}s, "
        f"{n_chars / max(n_tokens, 1):.2f} chars/token on held-out files"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
