"""SDAR: Qwen3-shaped block diffusion. Earlier blocks never see later ones, so the key/value
cache across blocks is exact: cached decoding equals a plain loop that runs the whole
sequence under the block-causal mask every pass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hf_checkpoints import shared_folder
from hf_reference import (
    block_causal,
    check_matches_reference,
    check_weights_load_by_real_names,
    loaded,
    our_logits,
    reference_block_causal,
    reference_model,
)

from fim_server.backends import BackendSpec, resolve_kind
from fim_server.backends.hf.backend import DiffusionBackend

IDS = [70, 71, 72, 73, 74, 151669, 151669, 151669, 75, 76, 151669, 77]


@pytest.fixture(scope="module")
def folder() -> Path:
    return shared_folder("sdar")


def test_folder_is_recognised_as_sdar(folder: Path) -> None:
    assert resolve_kind(BackendSpec(model_path=str(folder))) == "sdar"
    info, _ = loaded(folder)
    assert info.special.mask == 151669
    assert info.family.block_size(info.config) == 4


def test_every_weight_loads_by_its_real_name(folder: Path) -> None:
    check_weights_load_by_real_names(folder)


def test_network_is_transformers_qwen3_under_the_block_causal_mask(folder: Path) -> None:
    check_matches_reference(folder, IDS, block_causal(len(IDS), 4))


def test_attention_is_block_causal(folder: Path) -> None:
    _, model = loaded(folder)
    allowed = block_causal(len(IDS), 4)
    changed = list(IDS)
    changed[9] = 90  # in the third block (positions 8-11)
    a, b = our_logits(model, IDS, allowed), our_logits(model, changed, allowed)
    assert torch.allclose(a[:8], b[:8], atol=1e-6)  # earlier blocks: unchanged
    assert not torch.allclose(a[8], b[8])  # same block, earlier position: changed


def test_cached_decoding_equals_plain_loop_exactly(folder: Path) -> None:
    info, model = loaded(folder)
    backend = DiffusionBackend(info, model, "cpu", 0.5)
    prompt = backend.prompt("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
    assert prompt.before[0] == 151661  # the suffix comes first, after <|fim_suffix|>
    ours = backend.decode(prompt, 14, False, lambda: False)
    theirs = reference_block_causal(
        reference_model(folder), prompt.before, 14, mask=151669, block=4, threshold=0.5,
        stops=info.special.stops,
    )  # fmt: skip
    assert ours.tokens == theirs and len(theirs) > 0
