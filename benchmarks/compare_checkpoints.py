"""Compare model checkpoints on the held-out split: the same batches and spans for each.

    python benchmarks/compare_checkpoints.py fim_model/checkpoint runs/ckpt-small \\
        [--corpus data/corpus] [--batches 8] [--spans 60]

Prints, per checkpoint: diffusion NELBO per middle token and next-token cross-entropy of
context (nats, on identical masked batches), and for held-out rest-of-line spans the
exact-match rate of the sampled completion (first line, stripped) and forward passes per
generated token. A script that prints figures, not a test. Checkpoints must share a
tokenizer for the loss columns to be comparable; the script refuses otherwise.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from fim_model.api import InfillModel
from fim_model.corpus import load_corpus
from fim_model.data import ExampleShape, heldout_batches, sample_span
from fim_model.diffusion import diffusion_loss
from fim_model.sampler import SamplerSettings
from fim_server.context.languages import syntax_root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--spans", type=int, default=60)
    ap.add_argument("--seq-len", type=int, default=384)
    ap.add_argument("--max-middle", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fallback", choices=("confidence", "left_to_right"), default="confidence")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tokenizers = {(c / "tokenizer.json").read_bytes() for c in args.checkpoints}
    if len(tokenizers) != 1:
        ap.error("the checkpoints have different tokenizers: losses would not compare")
    files = load_corpus(args.corpus / "heldout.jsonl")
    rng = random.Random(7)
    spans = []
    while len(spans) < args.spans:
        span = sample_span(rng.choice(files).text, rng, "rest_of_line")
        if span.middle.strip():
            spans.append(span)

    print(f"{'checkpoint':32s} {'params':>7s} {'NELBO':>6s} {'ctxCE':>6s} "
          f"{'exact':>6s} {'pass/tok':>8s} {'s':>5s}")  # fmt: skip
    for folder in args.checkpoints:
        infill = InfillModel.load(folder, settings=SamplerSettings(fallback=args.fallback))
        model, tok = infill.model.eval(), infill.tokenizer
        shape = ExampleShape(args.seq_len, args.max_middle, model.cfg.block_size)
        with torch.no_grad():
            losses = [
                diffusion_loss(model, batch)
                for batch in heldout_batches(
                    files, tok, shape, args.batches, 16, syntax=syntax_root
                )
            ]
        nelbo = [parts.nelbo.item() for parts in losses]
        ctx = [parts.context_ce.item() for parts in losses]
        started = time.perf_counter()
        exact = passes = tokens = 0
        for span in spans:
            out = infill.infill(span.prefix[-1000:], span.suffix[:300], max_tokens=32,
                                single_line=True)  # fmt: skip
            exact += out.text.split("\n")[0].strip() == span.middle.strip()
            passes += out.forward_passes
            tokens += out.tokens
        seconds = time.perf_counter() - started
        print(
            f"{str(folder):32s} {model.num_parameters() / 1e6:6.2f}M "
            f"{sum(nelbo) / len(nelbo):6.3f} {sum(ctx) / len(ctx):6.3f} "
            f"{exact / len(spans):6.1%} {passes / max(tokens, 1):8.2f} {seconds:5.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
