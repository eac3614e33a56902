"""Loading a diffusion folder: a 7B model on a machine without the memory gets a clear
message before any weight is read, and a running infill stops when cancelled."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hf_checkpoints import build_dream, build_sdar

from fim_server.backends import BackendError, BackendSpec, InfillCancelled, load_backend
from fim_server.backends.hf.backend import DiffusionBackend
from fim_server.backends.hf.dream import FAMILY as DREAM
from fim_server.backends.hf.transformer import Transformer, internal_names

# Dream-v0-Base-7B's real shapes (config.json of Dream-org/Dream-v0-Base-7B).
DREAM_7B = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "num_hidden_layers": 28,
    "vocab_size": 152064,
}


def _header_only_shards(folder: Path) -> None:
    """Rewrite the shards as safetensors headers that declare the 7B shapes (no data):
    enough for fim-server to know the size, which it must check before reading weights."""
    config = json.loads((folder / "config.json").read_text())
    arch = DREAM.architecture(config)
    with torch.device("meta"):
        shapes = {n: list(p.shape) for n, p in Transformer(arch).named_parameters()}
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    weight_map = {}
    for name in internal_names(arch):
        theirs = DREAM.weight_name(name)
        weight_map[theirs] = "model-00001-of-00002.safetensors"
    header: dict = {}
    offset = 0
    for theirs, ours in zip(weight_map, internal_names(arch), strict=True):
        n = 1
        for d in shapes[ours]:
            n *= d
        header[theirs] = {
            "dtype": "BF16",
            "shape": shapes[ours],
            "data_offsets": [offset, offset + 2 * n],
        }
        offset += 2 * n
    raw = json.dumps(header).encode()
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        (folder / shard).write_bytes(struct.pack("<Q", len(raw)) + raw)
    index["weight_map"] = weight_map
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_a_7b_model_on_a_small_cpu_gets_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = build_dream(tmp_path / "Dream-v0-Base-7B")
    config = json.loads((folder / "config.json").read_text())
    config.update(DREAM_7B)
    (folder / "config.json").write_text(json.dumps(config))
    _header_only_shards(folder)
    monkeypatch.setattr(
        "fim_server.backends.hf.backend.available_bytes", lambda device: 16 * 1024**3
    )
    with pytest.raises(BackendError) as err:
        load_backend(BackendSpec(model_path=str(folder), device="cpu"))
    message = str(err.value)
    assert str(folder) in message and "7.6B parameters" in message
    assert "GiB in fp32 on cpu" in message and "16.0 GiB is free" in message
    assert "--device cuda" in message and "\n" not in message


def test_cancelling_stops_between_passes(tmp_path: Path) -> None:
    folder = build_sdar(tmp_path / "SDAR")
    backend = DiffusionBackend.load(BackendSpec(model_path=str(folder), threshold=0.999))
    calls = []

    def cancel_on_third_check() -> bool:
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(InfillCancelled):
        backend.infill(
            "def f(x):\n    return ", "\n", max_tokens=32, single_line=False,
            should_cancel=cancel_on_third_check, seed=0,
        )  # fmt: skip
    assert len(calls) == 3  # checked once per pass, stopped at the first True
