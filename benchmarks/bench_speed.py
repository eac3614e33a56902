"""Speed of the embedded model itself: the cost of one forward pass and passes per token.

Replays the model calls the server makes for a fixed set of positions (every position
benchmarks/bench_lsp.py uses in examples/*.py, and an even spread of each `fim-server
eval` suite), captured through the real engine (context building, modes, budgets), and
runs them on the shipped checkpoint. Prints:

- the time of one forward pass over a cached block of 16 positions (p50), next to a plain
  matmul of the same arithmetic (FLOPs) timed in the same loop, and their ratio;
- a profile of one pass;
- forward passes per generated token per suite, counted as `fim-server eval` counts them
  (Infill.forward_passes / Infill.tokens), and the distribution of tokens committed per
  pass (tokens that end up in the answer; a pass that commits only <eom>, padding or
  positions after the end counts as 0).

With --baseline REF, the model package of that git commit is loaded next to the
working tree's and every measurement alternates between the two in the same process, so
that the load of a shared machine hits both alike.

    .venv/bin/python benchmarks/bench_speed.py --baseline c4d7c06 --out results/speed/x.json
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import bench_lsp  # next to this file: on sys.path when a script here runs
import torch

import fim_model
from fim_server.backends.base import Backend, Infill, InfillRequest
from fim_server.engine import Engine, EngineSettings
from fim_server.eval.tasks import BENCHMARKS, SUITES, load_suite, spread

ROOT = Path(__file__).resolve().parents[1]


# -- the model calls of a fixed set of positions ---------------------------------------


@dataclass(frozen=True)
class Request:
    suite: str
    prefix: str
    suffix: str
    max_tokens: int
    single_line: bool


class RecordingBackend(Backend):
    """Stands in for the model inside the engine: records what the engine asks for."""

    name = "recording"
    description = "records infill calls"

    def __init__(self, model: fim_model.InfillModel) -> None:
        self.model = model
        self.context_tokens = model.model.cfg.context_tokens or None
        self.suite = ""
        self.requests: list[Request] = []

    def count_tokens(self, text: str) -> int:
        return self.model.count_tokens(text)

    def infill(self, request: InfillRequest) -> list[Infill]:
        self.requests.append(
            Request(
                self.suite,
                request.model_prefix,
                request.suffix,
                request.max_tokens,
                request.single_line,
            )
        )
        return [Infill("", 0, 0, None)]

    def close(self) -> None:
        pass


def lsp_positions(examples: Path, per_file: int) -> list[tuple[str, int]]:
    """The documents and cursors of benchmarks/bench_lsp.py: code removed, cursor there."""
    positions = []
    for path in sorted(examples.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        for task in bench_lsp.find_tasks(text, per_file):
            (row, col), (end_row, end_col) = task.start, task.end
            edited = (
                lines[:row] + [lines[row][:col] + lines[end_row][end_col:]] + lines[end_row + 1 :]
            )
            offset = sum(len(x) + 1 for x in edited[:row]) + col
            positions.append(("\n".join(edited), offset))
    return positions


def collect_requests(model: fim_model.InfillModel, per_suite: int) -> list[Request]:
    recorder = RecordingBackend(model)
    engine = Engine(EngineSettings(cache_size=0))
    engine.use_backend(recorder)
    try:
        recorder.suite = "bench-lsp"
        for document, offset in lsp_positions(ROOT / "examples", 20):
            engine.complete_blocking(document, offset)
        for suite in SUITES:
            recorder.suite = suite
            for task in spread(load_suite(BENCHMARKS, suite), per_suite):
                engine.complete_blocking(task.document, task.offset)
    finally:
        engine.close()
    return recorder.requests


def load_baseline(ref: str, into: Path) -> ModuleType:
    """The model package of git commit `ref`, imported as `fim_model_baseline`: its folder
    is `fim_model/`, or `model/` in commits before the folder took the import name."""
    folder = "fim_model"
    probe = ["git", "-C", str(ROOT), "cat-file", "-e", f"{ref}:{folder}"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        folder = "model"
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, folder], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    name = "fim_model_baseline"
    spec = importlib.util.spec_from_file_location(
        name, into / folder / "__init__.py", submodule_search_locations=[str(into / folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- running the requests ----------------------------------------------------------------


@dataclass
class Run:
    """One request answered by one variant."""

    text: str
    tokens: int
    passes: int
    tokens_per_pass: list[int] | None  # None: the variant cannot tell
    wall_ms: float
    cpu_ms: float
    ended: bool | None = None  # the model wrote <eom>; None: the variant cannot tell


@dataclass
class Variant:
    name: str
    answer: Callable[[Request], tuple[str, int, int, list[int] | None, bool | None]]
    pass_step: Callable[[], object]  # one forward pass over a cached block of 16, + logits
    runs: list[Run] = field(default_factory=list)
    pass_wall: list[float] = field(default_factory=list)
    pass_cpu: list[float] = field(default_factory=list)


def _timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    result = fn()
    return result, (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000


def _block_context(model: fim_model.InfillModel, requests: list[Request]) -> list[int]:
    """The context of the longest request: what the cache holds when a block is denoised."""
    cfg = model.model.cfg
    contexts = [
        model.context_ids(r.prefix, r.suffix, cfg.max_seq_len - r.max_tokens - cfg.block_size)
        for r in requests
    ]
    return max(contexts, key=len)


def current_variant(
    model: fim_model.InfillModel, context: list[int], name: str = "current"
) -> Variant:
    from fim_model.transformer import KVCache

    def answer(r: Request) -> tuple[str, int, int, list[int] | None, bool | None]:
        gen = model.generate(r.prefix, r.suffix, max_tokens=r.max_tokens, single_line=r.single_line)
        infill = model.to_middle(gen)
        return infill.text, infill.tokens, infill.forward_passes, gen.tokens_per_pass, gen.finished

    decoder, cfg = model.decoder, model.model.cfg
    cache = KVCache(cfg, decoder.dtype, decoder.device)
    decoder.prefill(torch.tensor(context), cache, _causal(len(context)))
    block = torch.full((cfg.block_size,), model.tokenizer.special.mask)
    bias = torch.zeros(cfg.vocab_size)

    def pass_step() -> object:
        hidden = decoder.hidden(block, cache)
        return torch.softmax(decoder.logits(hidden, bias), dim=-1).max(dim=-1)

    return Variant(name, answer, pass_step)


def baseline_variant(base: ModuleType, context: list[int]) -> Variant:
    """The model package of another commit with the pre-issue-14 interfaces: Transformer.
    hidden_states(..., cache, cache_commit) and the sampler's _stop_index, which is spied
    on to count the tokens each pass committed."""
    model = base.InfillModel.load(fim_model.EMBEDDED_CHECKPOINT)
    sampler = base.sampler
    states: list[tuple[list[int], list[bool], int]] = []
    stop_index = sampler._stop_index

    def spy(block, committed, stops):  # called once per pass, after its commits
        at = stop_index(block, committed, stops)
        states.append((list(block), list(committed), at))
        return at

    sampler._stop_index = spy
    special = model.tokenizer.special
    ends = {special.end_of_middle, special.pad}

    def answer(r: Request) -> tuple[str, int, int, list[int] | None, bool | None]:
        states.clear()
        infill = model.infill(
            r.prefix, r.suffix, max_tokens=r.max_tokens, single_line=r.single_line
        )
        return (
            infill.text,
            infill.tokens,
            infill.forward_passes,
            _per_pass(states, ends, infill.tokens),
            None,
        )

    cfg = model.model.cfg
    cache = base.transformer.KVCache(cfg, torch.float32, torch.device("cpu"))
    n = len(context)
    with torch.no_grad():
        model.model.hidden_states(
            torch.tensor([context]), torch.arange(n)[None], _causal(n), cache=cache, cache_commit=n
        )
    B = cfg.block_size

    def pass_step() -> object:  # what the old sampler did for a step without new context
        with torch.no_grad():
            past = cache.length
            groups = torch.tensor([1] * B)
            mask = torch.cat(
                (torch.ones(B, past, dtype=torch.bool), base.masks.group_mask(groups, groups)), 1
            )
            hidden = model.model.hidden_states(
                torch.tensor([[special.mask] * B]),
                torch.arange(past, past + B)[None],
                mask,
                cache=cache,
                cache_commit=0,
            )[0]
            logits = model.model.logits(hidden[list(range(B))])
            banned = torch.tensor(
                [special.mask, special.fim_suffix, special.fim_prefix, special.fim_middle]
            )
            logits[:, banned] = float("-inf")
            return sampler._pick(logits, model.settings, None)

    return Variant("baseline", answer, pass_step)


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def _per_pass(
    states: list[tuple[list[int], list[bool], int]], ends: set[int], tokens: int
) -> list[int]:
    """Kept tokens per pass of the old sampler, from the block after each of its passes."""
    blocks: list[list[tuple[list[int], list[bool], int]]] = []
    for state in states:
        fresh = not blocks or all(blocks[-1][-1][1]) or blocks[-1][-1][2] >= 0
        if fresh:
            blocks.append([])
        blocks[-1].append(state)
    counts: list[int] = []
    left = tokens
    for passes in blocks:
        block, _, at = passes[-1]
        kept = len(block) if at < 0 else at + (0 if block[at] in ends else 1)
        kept = min(kept, left)
        left -= kept
        before = [False] * len(block)
        for _, committed, _ in passes:
            counts.append(sum(1 for i in range(kept) if committed[i] and not before[i]))
            before = committed
    return counts


# -- measurements ------------------------------------------------------------------------


def pass_flops(cfg, n_keys: int) -> int:
    """Multiply-adds x 2 of one pass over a block: projections, attention, the head."""
    B, d, f = cfg.block_size, cfg.dim, cfg.ffn_dim
    per_layer = 2 * B * d * (3 * d + d + 2 * f) + 2 * B * f * d + 2 * 2 * B * n_keys * d
    return cfg.n_layers * per_layer + 2 * B * d * cfg.vocab_size


def _own_matmuls(model: fim_model.InfillModel) -> Callable[[], object]:
    """The weight matmuls of one pass over a block, with the model's own weights, back to
    back and nothing else: what a pass costs with no overhead at all."""
    cfg, transformer = model.model.cfg, model.model
    x = torch.randn(cfg.block_size, cfg.dim)
    act = torch.randn(cfg.block_size, cfg.ffn_dim)
    weights = [
        (inp, w.detach())
        for layer in transformer.layers
        for inp, w in (
            (x, layer.attn.qkv.weight),
            (x, layer.attn.out.weight),
            (x, layer.ffn.gate_up.weight),
            (act, layer.ffn.down.weight),
        )
    ]
    weights.append((x, transformer.embed.weight.detach()))
    linear = torch.nn.functional.linear
    return lambda: [linear(inp, w) for inp, w in weights]


def time_passes(
    variants: list[Variant], flops: int, model: fim_model.InfillModel, reps: int
) -> dict:
    """Every variant's pass and plain matmuls of the same FLOPs, interleaved."""
    block, dim = model.model.cfg.block_size, model.model.cfg.dim
    n = round((flops / 2) ** (1 / 3))
    square = torch.randn(n, n)
    cols = round(flops / (2 * block * dim))
    rows, weight = torch.randn(block, dim), torch.randn(cols, dim)
    plain = {
        f"square matmul {n}x{n}x{n}": lambda: square @ square,
        f"block-shaped matmul {block}x{dim}x{cols}": lambda: torch.nn.functional.linear(
            rows, weight
        ),
        "the pass's weight matmuls alone": _own_matmuls(model),
    }
    for v in variants:
        for _ in range(5):
            v.pass_step()  # warm up
    samples: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in plain}
    for _ in range(reps):
        for v in variants:
            _, wall, cpu = _timed(v.pass_step)
            v.pass_wall.append(wall)
            v.pass_cpu.append(cpu)
        for name, fn in plain.items():
            _, wall, cpu = _timed(fn)
            samples[name][0].append(wall)
            samples[name][1].append(cpu)
    return {
        name: {"wall_p50_ms": statistics.median(w), "cpu_p50_ms": statistics.median(c)}
        for name, (w, c) in samples.items()
    }


def profile_pass(variant: Variant, reps: int = 30) -> str:
    with torch.profiler.profile(record_shapes=True) as prof:
        for _ in range(reps):
            variant.pass_step()
    table = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40,
        max_shapes_column_width=60,
    )  # fmt: skip
    return f"profile of {reps} passes ({variant.name}), by self CPU time:\n{table}"


def top_ops(variant: Variant, reps: int = 30, n: int = 8) -> list[dict]:
    """The `n` operators taking the most self CPU time in one pass, per pass (the
    profiler's own overhead inflates the absolute times; the shares are what to read)."""
    with torch.profiler.profile() as prof:
        for _ in range(reps):
            variant.pass_step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    return [
        {
            "op": e.key,
            "calls_per_pass": round(e.count / reps, 2),
            "self_cpu_us_per_pass": round(e.self_cpu_time_total / reps, 1),
            "share": round(e.self_cpu_time_total / total, 3),
        }
        for e in events[:n]
    ]


def run_requests(variants: list[Variant], requests: list[Request]) -> None:
    for v in variants:  # warm up
        v.answer(requests[0])
    for i, r in enumerate(requests):
        order = variants if i % 2 == 0 else variants[::-1]
        for v in order:
            (text, tokens, passes, per_pass, ended), wall, cpu = _timed(
                lambda v=v, r=r: v.answer(r)
            )
            v.runs.append(Run(text, tokens, passes, per_pass, wall, cpu, ended))


def summary(variants: list[Variant], requests: list[Request], plain: dict, flops: int) -> dict:
    out: dict = {
        "torch_threads": torch.get_num_threads(),
        "requests": len(requests),
        "pass_flops": flops,
        "plain_matmuls": plain,
        "variants": {},
    }
    suites = list(dict.fromkeys(r.suite for r in requests))
    for v in variants:
        per_suite = {}
        for suite in [*suites, "all"]:
            runs = [x for x, r in zip(v.runs, requests, strict=True) if suite in ("all", r.suite)]
            tokens = sum(x.tokens for x in runs)
            passes = sum(x.passes for x in runs)
            # <eom> is a token the model writes too (as an autoregressive model's
            # end-of-text is): counted, every pass writes at least one token.
            written = tokens + sum(bool(x.ended) for x in runs)
            known = all(x.ended is not None for x in runs)
            per_suite[suite] = {
                "requests": len(runs),
                "tokens": tokens,
                "passes": passes,
                "passes_per_token": round(passes / tokens, 3) if tokens else None,
                "passes_per_token_with_eom": round(passes / written, 3)
                if known and written
                else None,
                "over_one": sum(x.passes > max(x.tokens, 1) for x in runs),
            }
        known = [x.tokens_per_pass for x in v.runs if x.tokens_per_pass is not None]
        histogram = Counter(k for counts in known for k in counts)
        if not v.pass_cpu:  # a threshold variant: the same pass as "current"
            out["variants"][v.name] = {
                "suites": per_suite,
                "tokens_per_pass": dict(sorted(histogram.items())),
            }
            continue
        pass_cpu = statistics.median(v.pass_cpu)
        square = next(t for k, t in plain.items() if k.startswith("square"))
        shaped = next(t for k, t in plain.items() if k.startswith("block"))
        own = next(t for k, t in plain.items() if k.startswith("the pass"))
        out["variants"][v.name] = {
            "pass_wall_p50_ms": round(statistics.median(v.pass_wall), 3),
            "pass_cpu_p50_ms": round(pass_cpu, 3),
            "ratio_to_square_matmul_cpu": round(pass_cpu / square["cpu_p50_ms"], 2),
            "ratio_to_block_shaped_matmul_cpu": round(pass_cpu / shaped["cpu_p50_ms"], 2),
            "ratio_to_own_matmuls_cpu": round(pass_cpu / own["cpu_p50_ms"], 2),
            "request_wall_p50_ms": round(statistics.median(x.wall_ms for x in v.runs), 2),
            "request_cpu_p50_ms": round(statistics.median(x.cpu_ms for x in v.runs), 2),
            "cpu_ms_per_pass_in_requests": round(
                sum(x.cpu_ms for x in v.runs) / max(1, sum(x.passes for x in v.runs)), 3
            ),
            "suites": per_suite,
            "tokens_per_pass": dict(sorted(histogram.items())) if known else None,
        }
    if len(variants) >= 2 and variants[0].pass_cpu and variants[1].pass_cpu:
        a, b = variants[:2]
        out["different_outputs"] = sum(
            x.text != y.text for x, y in zip(a.runs, b.runs, strict=True)
        )
    return out


def print_summary(s: dict) -> None:
    print(
        f"commit {s['commit']} (baseline {s['baseline']}); torch threads: "
        f"{s['torch_threads']}; {s['requests']} requests; load average "
        f"{s['load_average_1min'][0]} at the start, {s['load_average_1min'][1]} at the end"
    )
    print(f"one pass over a cached block of 16: {s['pass_flops'] / 1e6:.1f} MFLOP")
    for name, t in s["plain_matmuls"].items():
        print(
            f"  {name:40s} wall p50 {t['wall_p50_ms']:7.3f} ms  cpu p50 {t['cpu_p50_ms']:7.3f} ms"
        )
    for name, v in s["variants"].items():
        if "pass_cpu_p50_ms" not in v:
            continue
        print(
            f"  {name + ' pass':40s} wall p50 {v['pass_wall_p50_ms']:7.3f} ms  cpu p50 "
            f"{v['pass_cpu_p50_ms']:7.3f} ms  (x{v['ratio_to_square_matmul_cpu']} square, "
            f"x{v['ratio_to_block_shaped_matmul_cpu']} block-shaped, "
            f"x{v['ratio_to_own_matmuls_cpu']} own matmuls)"
        )
    for name, v in s["variants"].items():
        if "request_wall_p50_ms" not in v:
            print(f"{name}:")
        else:
            print(
                f"{name}: request p50 wall {v['request_wall_p50_ms']} ms, cpu "
                f"{v['request_cpu_p50_ms']} ms; cpu per pass in requests "
                f"{v['cpu_ms_per_pass_in_requests']} ms"
            )
        print(f"  {'suite':18s} {'requests':>8s} {'tokens':>7s} {'passes':>7s} {'p/token':>8s}"
              f" {'p/token+eom':>11s} {'passes>tokens':>14s}")  # fmt: skip
        for suite, row in v["suites"].items():
            with_eom = row["passes_per_token_with_eom"]
            print(
                f"  {suite:18s} {row['requests']:8d} {row['tokens']:7d} {row['passes']:7d} "
                f"{row['passes_per_token'] or 0:8.3f} "
                f"{'-' if with_eom is None else f'{with_eom:.3f}':>11s} {row['over_one']:14d}"
            )
        if v["tokens_per_pass"]:
            total = sum(v["tokens_per_pass"].values())
            cells = "  ".join(
                f"{k}:{n} ({100 * n / total:.0f}%)" for k, n in v["tokens_per_pass"].items()
            )
            print(f"  tokens committed per pass (kept in the answer): {cells}")
    if "different_outputs" in s:
        print(f"requests whose text differs between the variants: {s['different_outputs']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="git commit whose model package to compare against")
    parser.add_argument("--per-suite", type=int, default=30, help="tasks per eval suite (30)")
    parser.add_argument("--reps", type=int, default=200, help="timed passes per variant (200)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    parser.add_argument(
        "--thresholds",
        default="",
        help="also count passes per token at these sampler thresholds, e.g. 0.7,0.5",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    model = fim_model.InfillModel.load()
    requests = collect_requests(model, args.per_suite)
    context = _block_context(model, requests)
    variants = [current_variant(model, context)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            variants.insert(0, baseline_variant(load_baseline(args.baseline, Path(tmp)), context))
        cfg = model.model.cfg
        flops = pass_flops(cfg, len(context) + cfg.block_size)
        plain = time_passes(variants, flops, model, args.reps)
        for v in variants:
            print(profile_pass(v))
        for threshold in filter(None, args.thresholds.split(",")):
            other = fim_model.InfillModel.load(
                settings=fim_model.SamplerSettings(threshold=float(threshold))
            )
            variants.append(current_variant(other, context, f"current, threshold {threshold}"))
        run_requests(variants, requests)
    s = summary(variants, requests, plain, flops)
    s["block_context_tokens"] = len(context)
    s["baseline"] = args.baseline
    s["commit"] = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    # On a shared machine the other processes set the wall times; the CPU times (this
    # thread's own) are what to compare.
    s["load_average_1min"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
    print_summary(s)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(s, indent=2) + "\n")


if __name__ == "__main__":
    main()
