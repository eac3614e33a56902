"""What fim-server's fast path costs against each family's published recipe.

For every family, on its tiny random checkpoint in the real layout and on the "peaked"
copy (every logit x64, so that the fast path's 0.9 threshold really fires; built by
tests/hf_checkpoints.py), each infilling task's middle is decoded twice: by the fast path
(threshold, cache) and by the family's recipe (the authors' loop, docs/models.md). It
prints the token agreement (positions where the two middles hold the same token, over
the longer middle) and the forward passes per token of each. For the embedded model,
which has no published recipe, the fast path (threshold 0.9) is set against one token a
pass (threshold 1.0), its exact end.

Random weights say nothing about quality: these figures show how far the fast path's
decisions move from the recipe's on the same network, and what it saves in passes.

    .venv/bin/python benchmarks/bench_recipes.py --tasks 12 --out results/recipes/
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # hf_checkpoints: the tiny checkpoints' builders

FAMILY_RECIPES = {
    "dream": ["dream-official", "dream-maskgit"],
    "llada": ["llada-official"],
    "dreamon": ["dreamon-official"],
    "open-dcoder": ["open-dcoder-official"],
    "sdar": ["sdar-official"],
}


# The tiny checkpoints' tokenizer is byte-level (a token per byte): the context is cut to
# this many characters each side, so that the official loops (whole sequence every pass,
# Open-dLLM's sampling over every position) run in minutes on a CPU.
CONTEXT_CHARS = 96


def tasks(count: int) -> list[tuple[str, str]]:
    """(prefix, suffix) of HumanEval-Infilling single-line tasks, evenly spread."""
    from fim_server.eval.tasks import load_suite, spread

    suite = spread(load_suite(ROOT / "benchmarks" / "data", "humaneval-single"), count)
    return [
        (t.document[: t.offset][-CONTEXT_CHARS:], t.document[t.offset :][: CONTEXT_CHARS // 2])
        for t in suite
    ]


def agreement(a: list[int], b: list[int]) -> float:
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return sum(x == y for x, y in zip(a, b, strict=False)) / longest


def bench_family(kind: str, peaked: bool, pairs, max_tokens: int, seed: int) -> list[dict]:
    import torch
    from hf_checkpoints import shared_folder

    from fim_server.backends.hf.backend import DiffusionBackend, load_model, read_folder
    from fim_server.backends.hf.recipes import RECIPES

    folder = shared_folder(f"{kind}-peaked" if peaked else kind)
    info = read_folder(folder)
    model = load_model(info, "cpu", torch.float32)
    fast = DiffusionBackend(info, model, "cpu", 0.9)
    rows = []
    for name in FAMILY_RECIPES[kind]:
        recipe = RECIPES[name]
        if recipe.steps is not None and recipe.loop == "p2":
            recipe = replace(recipe, steps=min(recipe.steps, max_tokens))
        official = DiffusionBackend(info, model, "cpu", 0.9, recipe=recipe)
        agree, fast_passes, fast_tokens, rec_passes, rec_tokens = [], 0, 0, 0, 0
        started = time.perf_counter()
        for prefix, suffix in pairs:
            a = fast.decode(fast.prompt(prefix, suffix), max_tokens, False, lambda: False)
            b = official.decode(
                official.prompt(prefix, suffix), max_tokens, False, lambda: False, seed=seed
            )
            agree.append(agreement(a.tokens, b.tokens))
            fast_passes += a.passes
            fast_tokens += max(len(a.tokens), 1)
            rec_passes += b.passes
            rec_tokens += max(len(b.tokens), 1)
        rows.append(
            {
                "model": f"tiny {kind}" + (" peaked" if peaked else ""),
                "recipe": recipe.name + (f" (steps {recipe.steps})" if recipe.loop == "p2" else ""),
                "tasks": len(pairs),
                "agreement": sum(agree) / len(agree),
                "identical": sum(x == 1.0 for x in agree),
                "fast_passes_per_token": fast_passes / fast_tokens,
                "recipe_passes_per_token": rec_passes / rec_tokens,
                "seconds": time.perf_counter() - started,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def bench_embedded(pairs, max_tokens: int) -> dict:
    from fim_server.backends import BackendSpec, InfillRequest, load_backend

    runs = {}
    for threshold in (0.9, 1.0):
        backend = load_backend(BackendSpec(threshold=threshold))
        out = []
        for prefix, suffix in pairs:
            (infill,) = backend.infill(InfillRequest(prefix, suffix, max_tokens=max_tokens))
            out.append(infill)
        backend.close()
        runs[threshold] = out
    text_agree = [
        sum(x == y for x, y in zip(a.text, b.text, strict=False)) / max(len(a.text), len(b.text), 1)
        for a, b in zip(runs[0.9], runs[1.0], strict=True)
    ]
    per_token = {
        t: sum(i.forward_passes for i in r) / max(sum(i.tokens for i in r), 1)
        for t, r in runs.items()
    }
    return {
        "model": "embedded",
        "recipe": "threshold 1.0 (one token a pass)",
        "tasks": len(pairs),
        "agreement": sum(text_agree) / len(text_agree),
        "identical": sum(a.text == b.text for a, b in zip(runs[0.9], runs[1.0], strict=True)),
        "fast_passes_per_token": per_token[0.9],
        "recipe_passes_per_token": per_token[1.0],
        "agreement_unit": "characters",
    }


def markdown(rows: list[dict], max_tokens: int) -> str:
    lines = [
        f"Fast path (threshold 0.9, cache) against each recipe, middles of {max_tokens} tokens "
        "(agreement: same token at the same position, over the longer middle; characters for "
        "the embedded model).",
        "",
        "| model | recipe | tasks | agreement | identical | fast passes/token "
        "| recipe passes/token |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['recipe']} | {r['tasks']} | {r['agreement']:.3f} "
            f"| {r['identical']} | {r['fast_passes_per_token']:.3f} "
            f"| {r['recipe_passes_per_token']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", action="append", choices=list(FAMILY_RECIPES))
    parser.add_argument("--no-embedded", action="store_true")
    parser.add_argument("--out", type=Path, help="folder for recipes.md and recipes.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    pairs = tasks(args.tasks)
    rows = []
    for kind in args.family or list(FAMILY_RECIPES):
        for peaked in (True, False):
            rows += bench_family(kind, peaked, pairs, args.max_tokens, args.seed)
    if not args.no_embedded:
        rows.append(bench_embedded(pairs, args.max_tokens))
    table = markdown(rows, args.max_tokens)
    sys.stdout.write(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "recipes.md").write_text(table)
        (args.out / "recipes.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
