"""Train the block-diffusion FIM model.

    python -m fim_server.train --corpus data/corpus --run runs/default --out fim_model/checkpoint

(fim_server.train is this `main` handed the server's grammars, which the syntax-node FIM
spans are parsed with: this library imports nothing of the server.)

Reads train.jsonl / heldout.jsonl / tokenizer.json from the corpus folder (see
fim_model.corpus), trains with AdamW (warm-up, cosine decay, clipping), keeps a resumable
state in the run folder, and writes the checkpoint folder the server loads plus a loss
curve. B = 1 (--block-size 1) trains the autoregressive twin with the same code.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from .corpus import load_corpus
from .data import ExampleShape, ExampleStream, SyntaxTrees, heldout_batches
from .diffusion import diffusion_loss, make_batch
from .tokenizer import CodeTokenizer
from .transformer import ModelConfig, Transformer
from .weights import save_checkpoint


def lr_at(step: int, progress: float, peak: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 10% as progress goes 0 -> 1."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, progress)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def parse_language_weights(spec: str) -> dict[str, float]:
    weights = {}
    for item in spec.split(","):
        language, _, weight = item.partition("=")
        try:
            weights[language.strip()] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected LANGUAGE=WEIGHT, got {item!r}") from None
    return weights


def plot_losses(log: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no loss plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    train = [r for r in log if "loss" in r]
    held = [r for r in log if "heldout_loss" in r]
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train", lw=0.8)
    if held:
        ax.plot(
            [r["step"] for r in held], [r["heldout_loss"] for r in held], "o-", label="held-out"
        )
    ax.set_xlabel("step")
    ax.set_ylabel("diffusion NELBO per middle token (nats)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def arguments() -> argparse.ArgumentParser:
    """The command line: data, run folder, the network's shape, the schedule."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus"))
    ap.add_argument(
        "--run", type=Path, default=Path("runs/default"), help="logs and resumable state"
    )
    ap.add_argument("--out", type=Path, default=None, help="checkpoint folder to write at the end")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument(
        "--init-from", type=Path, default=None, help="start from this checkpoint folder's weights"
    )
    ap.add_argument(
        "--context-loss-weight", type=float, default=1.0, help="next-token loss on context"
    )
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=688)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--max-middle", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument(
        "--minutes", type=float, default=0, help="wall-clock budget: the schedule ends then"
    )
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--language-weights",
        type=parse_language_weights,
        default=None,
        help="share of examples per language, e.g. python=4,java=1 (default: by bytes)",
    )
    return ap


def network(
    args: argparse.Namespace, tok: CodeTokenizer, ap: argparse.ArgumentParser
) -> tuple[ModelConfig, Transformer]:
    """The network the options shape, fresh or from --init-from's weights."""
    cfg = ModelConfig(
        vocab_size=tok.vocab_size,
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        ffn_dim=args.ffn,
        block_size=args.block_size,
        # A one-block middle leaves the most room: see data.make_example.
        context_tokens=args.seq_len - 2 * args.block_size - 3,
    )
    model = Transformer(cfg)
    if args.init_from is not None:
        from .weights import load_transformer

        model = load_transformer(args.init_from)
        # B shapes only the masks and the data, not the weights: a B = 16 checkpoint can be
        # continued as B = 1 (the autoregressive twin) with the same steps as its control.
        model.cfg = replace(model.cfg, context_tokens=cfg.context_tokens, block_size=cfg.block_size)
        if model.cfg != cfg:
            ap.error(f"--init-from {args.init_from} has another shape: {model.cfg}")
        print(f"weights from {args.init_from}")
    return cfg, model


def optimizer(model: Transformer, args: argparse.Namespace) -> torch.optim.AdamW:
    """AdamW, with weight decay on the matrices only."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=args.lr,
        betas=(0.9, 0.95),
    )


def write_checkpoint(
    out: Path,
    model: Transformer,
    tok: CodeTokenizer,
    cfg: ModelConfig,
    log: list[dict],
    final_step: int,
    minutes: float,
    argv: list[str] | None,
) -> None:
    """The folder the server loads, with its loss curve and training.json (the exact
    command, for the model card)."""
    save_checkpoint(out, model.cpu(), tok)
    plot_losses(log, out / "loss.png")
    summary = {
        "config": asdict(cfg),
        "parameters": model.num_parameters(),
        "steps": final_step,
        "train_minutes": minutes,
        "final_heldout_loss": next(
            (r["heldout_loss"] for r in reversed(log) if "heldout_loss" in r), None
        ),
        "command": "python -m fim_server.train " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")


def main(argv: list[str] | None = None, *, syntax: SyntaxTrees) -> int:
    ap = arguments()
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    # Weights are tied to the tokenizer they were trained with: a rebuilt corpus may carry
    # a retrained one whose ids differ.
    tok_path = args.corpus / "tokenizer.json"
    if args.init_from is not None and (args.init_from / "tokenizer.json").exists():
        tok_path = args.init_from / "tokenizer.json"
    tok = CodeTokenizer.load(tok_path)
    print(f"tokenizer {tok_path}")
    cfg, model = network(args, tok, ap)
    model = model.to(args.device).train()
    opt = optimizer(model, args)
    args.run.mkdir(parents=True, exist_ok=True)
    state_path = args.run / "state.pt"
    log: list[dict] = []
    start_step = 0
    if args.resume and state_path.exists():
        state = torch.load(state_path, map_location=args.device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_step, log = state["step"], state["log"]
        print(f"resumed at step {start_step}")
    (args.run / "args.json").write_text(json.dumps(vars(args), default=str, indent=2) + "\n")

    shape = ExampleShape(args.seq_len, args.max_middle, args.block_size)
    train_files = load_corpus(args.corpus / "train.jsonl")
    heldout_files = load_corpus(args.corpus / "heldout.jsonl")
    # A resumed run continues with fresh data rather than replaying the batches it has seen.
    stream = iter(
        ExampleStream(
            train_files,
            tok,
            shape,
            args.seed * 1000 + start_step,
            args.language_weights,
            syntax=syntax,
        )
    )
    gen = torch.Generator().manual_seed(args.seed * 1000 + start_step)
    evaluation_batches = heldout_batches(
        heldout_files, tok, shape, args.eval_batches, args.batch_size, syntax=syntax
    )
    use_bf16 = args.device.startswith("cuda")
    print(
        f"model {model.num_parameters() / 1e6:.2f}M params, B={cfg.block_size}, "
        f"{len(train_files)} train files, device {args.device}",
        flush=True,
    )

    def evaluate() -> float:
        model.eval()
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=use_bf16):
            losses = [diffusion_loss(model, b).nelbo.item() for b in evaluation_batches]
        model.train()
        return sum(losses) / len(losses)

    def save_state(step: int) -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "log": log},
            tmp,
        )
        tmp.replace(state_path)

    model.train()
    t_start = time.time()
    t_window, tokens_window = time.time(), 0
    step = start_step
    # With --minutes the run follows the clock (shared, noisy CPUs): progress is the larger
    # of steps done and time spent, and the run ends when either budget is used up.
    budget_s = args.minutes * 60
    elapsed_before = log[-1]["elapsed_s"] if log and "elapsed_s" in log[-1] else 0.0
    for step in range(start_step, args.steps):
        elapsed = elapsed_before + time.time() - t_start
        progress = max((step - args.warmup) / max(1, args.steps - args.warmup), 0.0)
        if budget_s:
            if elapsed >= budget_s:
                print(f"time budget reached at step {step}")
                break
            progress = max(progress, elapsed / budget_s)
        lr = lr_at(step, progress, args.lr, args.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = make_batch(
            list(itertools.islice(stream, args.batch_size)),
            cfg.block_size,
            args.seq_len,
            tok.special,
            gen,
        )
        with torch.autocast("cuda", torch.bfloat16, enabled=use_bf16):
            parts = diffusion_loss(model, batch)
            loss = parts.total(args.context_loss_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        steps_done = step + 1
        tokens_window += int((batch.ids != tok.special.pad).sum())
        if (step + 1) % args.log_every == 0:
            now = time.time()
            rate = tokens_window / (now - t_window)
            row = {
                "step": step + 1,
                "loss": parts.nelbo.item(),
                "context_ce": parts.context_ce.item(),
                "lr": lr,
                "grad_norm": float(grad_norm),
                "tok_per_s": rate,
                "elapsed_s": elapsed_before + now - t_start,  # across resumes
            }
            log.append(row)
            print(
                f"step {step + 1:6d}/{args.steps} nelbo {row['loss']:.3f} "
                f"ctx {row['context_ce']:.3f} lr {lr:.2e} "
                f"|g| {row['grad_norm']:.2f} {rate:7.0f} tok/s {row['elapsed_s'] / 60:6.1f} min",
                flush=True,
            )
            t_window, tokens_window = time.time(), 0
        if (step + 1) % args.eval_every == 0:
            held = evaluate()
            log.append({"step": step + 1, "heldout_loss": held})
            print(f"step {step + 1:6d} held-out loss {held:.3f}", flush=True)
        if (step + 1) % args.save_every == 0:
            save_state(step + 1)
            plot_losses(log, args.run / "loss.png")
    final_step = steps_done
    held = evaluate()
    log.append({"step": final_step, "heldout_loss": held})
    print(f"final held-out loss {held:.3f}", flush=True)
    save_state(final_step)
    (args.run / "log.json").write_text(json.dumps(log, indent=1) + "\n")
    plot_losses(log, args.run / "loss.png")
    if args.out is not None:
        minutes = round((elapsed_before + time.time() - t_start) / 60, 1)
        write_checkpoint(args.out, model, tok, cfg, log, final_step, minutes, argv)
    return 0


if __name__ == "__main__":
    # The syntax-node spans need grammars, which the server's registry holds.
    raise SystemExit(
        "train with `python -m fim_server.train` (the same options): it hands this "
        "training loop the server's grammars"
    )
