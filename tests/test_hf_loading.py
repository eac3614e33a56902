"""Loading a diffusion folder: a 7B model on a machine without the memory gets a clear
message before any weight is read, and a running infill stops when cancelled."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hf_checkpoints import build_dream, build_sdar

from fim_server.backends import (
    BackendError,
    BackendSpec,
    InfillCancelled,
    InfillRequest,
    load_backend,
)
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
            InfillRequest(
                "def f(x):\n    return ", "\n", max_tokens=32, should_cancel=cancel_on_third_check
            )
        )
    assert len(calls) == 3  # checked once per pass, stopped at the first True


# -- a folder whose files are broken: the error names the file, before any allocation ----


def _embedded_copy(tmp_path: Path) -> Path:
    import shutil

    from fim_model import EMBEDDED_CHECKPOINT

    folder = tmp_path / "embedded"
    shutil.copytree(EMBEDDED_CHECKPOINT, folder)
    return folder


def _edit_config(folder: Path, **values: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(values)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "values, says",
    [
        ({"max_seq_len": 2_000_000}, "max_seq_len 2000000 is outside"),
        ({"n_heads": 0}, "n_heads 0 is outside"),
        ({"dim": 130}, "must split into 2 heads of an even size"),
        ({"vocab_size": 999_999}, "model.safetensors: embed.weight has shape"),
        ({"n_layers": "four"}, "n_layers must be an integer"),
    ],
)
def test_an_embedded_config_out_of_bounds_is_refused_before_allocating(
    tmp_path: Path, values: dict, says: str
) -> None:
    import resource

    folder = _embedded_copy(tmp_path)
    _edit_config(folder, **values)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BackendError) as caught:
        load_backend(BackendSpec(model_path=str(folder)))
    message = str(caught.value)
    assert str(folder / "config.json") in message or "model.safetensors" in message, message
    assert says in message, message
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, f"peak RSS grew {grown_mb:.0f} MB"  # 2,000,000 positions: 8 GB


def test_a_truncated_embedded_tokenizer_is_named(tmp_path: Path) -> None:
    folder = _embedded_copy(tmp_path)
    text = (folder / "tokenizer.json").read_text()
    (folder / "tokenizer.json").write_text(text[: len(text) // 2])
    with pytest.raises(BackendError) as caught:
        load_backend(BackendSpec(model_path=str(folder)))
    assert str(folder / "tokenizer.json") in str(caught.value)
    assert "EOF while parsing" in str(caught.value)


@pytest.mark.parametrize(
    "values, says",
    [
        ({"num_attention_heads": 0}, "num_attention_heads 0 must be at least 1"),
        ({"hidden_size": 10**9}, "hidden_size 1000000000 is outside"),
        ({"num_key_value_heads": 3}, "4 attention heads cannot share 3 key/value heads"),
    ],
)
def test_a_diffusion_config_out_of_bounds_names_config_json(
    tmp_path: Path, values: dict, says: str
) -> None:
    folder = build_dream(tmp_path / "Dream")
    _edit_config(folder, **values)
    with pytest.raises(BackendError) as caught:
        load_backend(BackendSpec(model_path=str(folder)))
    message = str(caught.value)
    assert f"model folder {folder}: config.json: {says}" in message, message


def test_inspect_says_a_broken_embedded_folder_will_not_load(tmp_path: Path) -> None:
    import subprocess
    import sys

    folder = _embedded_copy(tmp_path)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    result = subprocess.run(
        [sys.executable, "-m", "fim_server", "inspect", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout
    assert "will not load" in result.stdout and "model.safetensors" in result.stdout
    assert "family: embedded" not in result.stdout
