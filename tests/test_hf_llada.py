"""LLaDA-8B / LLaDA-1.5: LLaDA's own parameter names (model.transformer.blocks.N.*) load
into the LLaMA-shaped network; attention is bidirectional and logits unshifted."""

from __future__ import annotations

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

from fim_server.backends import BackendSpec, resolve_kind
from fim_server.backends.hf.backend import DiffusionBackend

IDS = [126080, 70, 71, 72, 73, 126336, 126336, 126336, 74, 75]


@pytest.fixture(scope="module")
def folder() -> Path:
    return shared_folder("llada")


def test_folder_is_recognised_as_llada(folder: Path) -> None:
    assert resolve_kind(BackendSpec(model_path=str(folder))) == "llada"
    info, _ = loaded(folder)
    assert info.special.mask == 126336 and info.special.bos == 126080
    assert {126081, 126348} <= info.special.stops


def test_every_weight_loads_by_its_real_name(folder: Path) -> None:
    check_weights_load_by_real_names(folder)


def test_network_is_transformers_llama_with_full_attention(folder: Path) -> None:
    check_matches_reference(folder, IDS, None)


def test_attention_is_bidirectional(folder: Path) -> None:
    _, model = loaded(folder)
    changed = list(IDS)
    changed[9] = 90
    assert not torch.allclose(our_logits(model, IDS, None)[2], our_logits(model, changed, None)[2])


def test_exact_path_equals_plain_loop_with_unshifted_logits(folder: Path) -> None:
    info, model = loaded(folder)
    backend = DiffusionBackend(info, model, "cpu", 0.5, refresh_every_pass=True)
    prompt = backend.prompt("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
    ours = backend.decode(prompt, 16, False, lambda: False)
    ref = reference_model(folder)
    theirs, passes = reference_bidirectional(
        ref, prompt.before, 16, prompt.after, mask=126336, shifted=False, threshold=0.5,
        stops=info.special.stops,
    )  # fmt: skip
    assert ours.tokens == theirs and ours.passes == passes
    shifted, _ = reference_bidirectional(
        ref, prompt.before, 16, prompt.after, mask=126336, shifted=True, threshold=0.5,
        stops=info.special.stops,
    )  # fmt: skip
    assert shifted != theirs
