"""Checkpoint folders on disk: config.json, model.safetensors (fp32) and tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .tokenizer import CodeTokenizer
from .transformer import ModelConfig, Transformer


def save_checkpoint(folder: Path, model: Transformer, tok: CodeTokenizer) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.cfg.save(folder / "config.json")
    state = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()
    }
    save_file(state, str(folder / "model.safetensors"))
    tok.save(folder / "tokenizer.json")


def load_transformer(folder: Path, device: str = "cpu") -> Transformer:
    cfg = ModelConfig.load(folder / "config.json")
    model = Transformer(cfg)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.to(device).eval()
