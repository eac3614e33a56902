"""Checkpoint folders on disk: config.json, model.safetensors (fp32) and tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
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


def check_checkpoint(folder: Path) -> ModelConfig:
    """A checkpoint folder's config, once its files are checked without loading the
    weights: config.json within sane bounds, model.safetensors' header matching it,
    tokenizer.json readable. ValueError names the file and what is wrong."""
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (folder / name).is_file():
            raise ValueError(f"model folder {folder} has no {name}")
    cfg = check_weights(folder)
    try:
        CodeTokenizer.load(folder / "tokenizer.json")
    except Exception as exc:  # tokenizers raises its own Exception type
        raise ValueError(f"{folder / 'tokenizer.json'}: does not load ({exc})") from None
    return cfg


def check_weights(folder: Path) -> ModelConfig:
    """config.json checked against sane bounds, and the tensors' shapes in
    model.safetensors' header against it, before anything is allocated."""
    cfg = ModelConfig.load(folder / "config.json")
    weights = folder / "model.safetensors"
    with torch.device("meta"):  # shapes only: nothing allocated
        expected = {n: tuple(t.shape) for n, t in Transformer(cfg).state_dict().items()}
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{weights}: not a safetensors file ({exc})") from None
    for name, shape in expected.items():
        if name not in found:
            raise ValueError(f"{weights}: no tensor {name}; config.json does not match it")
        if found[name] != shape:
            raise ValueError(
                f"{weights}: {name} has shape {list(found[name])}, config.json implies "
                f"{list(shape)}"
            )
    return cfg


def load_transformer(folder: Path, device: str = "cpu") -> Transformer:
    """The network of a checkpoint folder, its files checked first (check_weights);
    ValueError names the file and what is wrong."""
    model = Transformer(check_weights(folder))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.to(device).eval()
