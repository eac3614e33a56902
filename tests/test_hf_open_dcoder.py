"""Open-dCoder-0.5B: an ordinary Qwen2 config.json (tied embeddings) told apart from an
autoregressive Qwen2 by its tokenizer's mask token <M>; bidirectional, shifted logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hf_checkpoints import shared_folder
from hf_reference import (
    check_matches_reference,
    check_weights_load_by_real_names,
    loaded,
    our_logits,
    reference_bidirectional,
    reference_model,
)

from fim_server.backends import BackendError, BackendSpec, resolve_kind
from fim_server.backends.hf.backend import DiffusionBackend

IDS = [70, 71, 72, 73, 151665, 151665, 151665, 74, 75]


@pytest.fixture(scope="module")
def folder() -> Path:
    return shared_folder("open-dcoder")


def test_folder_is_recognised_as_open_dcoder(folder: Path) -> None:
    assert resolve_kind(BackendSpec(model_path=str(folder))) == "open-dcoder"
    info, _ = loaded(folder)
    assert info.special.mask == 151665 and info.architecture.tied_embeddings


def test_the_same_folder_without_a_mask_token_is_refused_as_autoregressive(
    folder: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "Qwen2.5-Coder-0.5B"
    plain.mkdir()
    for f in folder.iterdir():
        (plain / f.name).symlink_to(f)
    (plain / "tokenizer_config.json").unlink()
    (plain / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|endoftext|>"}))
    with pytest.raises(BackendError, match="plain autoregressive model") as err:
        resolve_kind(BackendSpec(model_path=str(plain)))
    assert str(plain) in str(err.value)


def test_every_weight_loads_by_its_real_name(folder: Path) -> None:
    check_weights_load_by_real_names(folder)


def test_network_is_transformers_qwen2_with_full_attention(folder: Path) -> None:
    check_matches_reference(folder, IDS, None)


def test_attention_is_bidirectional(folder: Path) -> None:
    _, model = loaded(folder)
    changed = list(IDS)
    changed[8] = 90
    assert not torch.allclose(our_logits(model, IDS, None)[1], our_logits(model, changed, None)[1])


def test_exact_path_equals_plain_loop_with_shifted_logits(folder: Path) -> None:
    info, model = loaded(folder)
    backend = DiffusionBackend(info, model, "cpu", 0.5, refresh_every_pass=True)
    prompt = backend.prompt("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
    assert prompt.before[0] != 151643  # no bos: the prefix as the tokenizer encodes it
    ours = backend.decode(prompt, 16, False, lambda: False)
    theirs, _ = reference_bidirectional(
        reference_model(folder), prompt.before, 16, prompt.after, mask=151665, shifted=True,
        threshold=0.5, stops=info.special.stops,
    )  # fmt: skip
    assert ours.tokens == theirs
