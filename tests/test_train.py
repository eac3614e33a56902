"""The training command end to end on a tiny corpus: continuing a checkpoint, also as the
autoregressive twin (another --block-size), with the checkpoint's own tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fim_model import EMBEDDED_CHECKPOINT
from fim_model.corpus import main as corpus_main
from fim_model.tokenizer import CodeTokenizer
from fim_model.transformer import ModelConfig, Transformer
from fim_model.weights import load_transformer, save_checkpoint
from fim_server.train import main as train_main

BODY = "def f{i}(x):\n    total = x + {i}\n    return total * 2\n\n"


def _corpus(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for i in range(40):
        (src / f"pkg{i}").mkdir(parents=True)
        (src / f"pkg{i}" / "m.py").write_text("".join(BODY.format(i=i + j) for j in range(6)))
    out = tmp_path / "corpus"
    shipped = EMBEDDED_CHECKPOINT / "tokenizer.json"
    argv = ["--out", str(out), "--root", str(src), "--only-roots", "--tokenizer", str(shipped)]
    assert corpus_main(argv) == 0
    return out


def test_corpus_keeps_a_given_tokenizer_instead_of_training_one(tmp_path: Path) -> None:
    out = _corpus(tmp_path)
    shipped = CodeTokenizer.load(EMBEDDED_CHECKPOINT / "tokenizer.json")
    written = CodeTokenizer.load(out / "tokenizer.json")
    # A tokenizer trained on 40 tiny files could not have the shipped 8192 tokens.
    assert written.vocab_size == shipped.vocab_size == 8192
    text = "def total(values):\n    return sum(values)\n"
    assert written.encode(text) == shipped.encode(text)
    assert json.loads((out / "stats.json").read_text())["train"]["python"]["tokens"] > 0


def test_a_checkpoint_continues_with_another_block_size(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path)
    tok = CodeTokenizer.load(EMBEDDED_CHECKPOINT / "tokenizer.json")
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=tok.vocab_size, dim=16, n_layers=1, n_heads=2, ffn_dim=32, block_size=4
    )
    start = tmp_path / "start"
    save_checkpoint(start, Transformer(cfg), tok)
    out = tmp_path / "twin"
    shape = ["--dim", "16", "--layers", "1", "--heads", "2", "--ffn", "32"]
    code = train_main(
        ["--corpus", str(corpus), "--run", str(tmp_path / "run"), "--out", str(out),
         "--init-from", str(start), *shape, "--block-size", "1", "--seq-len", "64",
         "--max-middle", "8", "--batch-size", "2", "--steps", "3", "--warmup", "1",
         "--eval-batches", "1", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    twin = load_transformer(out)
    assert twin.cfg.block_size == 1
    assert twin.cfg.context_tokens == 64 - 2 * 1 - 3
    before = load_transformer(start).state_dict()
    changed = [k for k, v in twin.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # trained from the checkpoint's weights, not left as they were
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] == 3
    assert "--block-size 1" in summary["command"]
