"""Dream / Dream-Coder / DiffuCoder: the adapter is the real architecture (tiny random
checkpoint in Dream's on-disk layout), and its cached decoding matches a plain loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hf_checkpoints import as_slow_tokenizer, shared_folder
from hf_reference import (
    check_matches_reference,
    check_weights_load_by_real_names,
    loaded,
    our_logits,
    reference_bidirectional,
    reference_model,
)

from fim_server.backends import BackendSpec, InfillRequest, resolve_kind
from fim_server.backends.hf.backend import DiffusionBackend
from fim_server.backends.hf.decoding import DecodeCall, decode_bidirectional

IDS = [151665, 70, 71, 72, 73, 151666, 151666, 151666, 74, 75, 151643]


@pytest.fixture(scope="module")
def folder() -> Path:
    return shared_folder("dream")


def test_folder_is_recognised_as_dream(folder: Path) -> None:
    assert resolve_kind(BackendSpec(model_path=str(folder))) == "dream"
    info, _ = loaded(folder)
    assert info.special.mask == 151666 and info.special.bos == 151665
    assert 151643 in info.special.stops


def test_every_weight_loads_by_its_real_name(folder: Path) -> None:
    check_weights_load_by_real_names(folder)


def test_network_is_transformers_qwen2_with_full_attention(folder: Path) -> None:
    check_matches_reference(folder, IDS, None)


def test_attention_is_bidirectional(folder: Path) -> None:
    _, model = loaded(folder)
    changed = list(IDS)
    changed[8] = 90  # a token after position 3
    before, after = our_logits(model, IDS, None), our_logits(model, changed, None)
    assert not torch.allclose(before[3], after[3])


def _backend(folder: Path, refresh_every_pass: bool) -> DiffusionBackend:
    info, model = loaded(folder)  # shared with the other tests of the module
    return DiffusionBackend(info, model, "cpu", 0.5, refresh_every_pass=refresh_every_pass)


def test_exact_path_equals_plain_loop_with_shifted_logits(folder: Path) -> None:
    single_line = True
    backend = _backend(folder, refresh_every_pass=True)
    prompt = backend.prompt("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
    settings = DecodeCall(0.5, single_line, backend._is_line_end, lambda: False)
    ours = decode_bidirectional(
        backend.model, prompt, 16, backend.folder.special, settings, shifted=True, block=32,
        device=torch.device("cpu"), refresh_every_pass=True,
    )  # fmt: skip
    ref = reference_model(folder)
    special = backend.folder.special
    theirs, _ = reference_bidirectional(
        ref, prompt.before, 16, prompt.after, mask=special.mask, shifted=True, threshold=0.5,
        stops=special.stops, line_end=backend._is_line_end if single_line else None,
    )  # fmt: skip
    assert ours.tokens == theirs
    # The family's shift: read unshifted, the same loop writes something else.
    unshifted, _ = reference_bidirectional(
        ref, prompt.before, 16, prompt.after, mask=special.mask, shifted=False, threshold=0.5,
        stops=special.stops, line_end=backend._is_line_end if single_line else None,
    )  # fmt: skip
    assert unshifted != theirs


def test_dual_cache_agrees_with_the_exact_path_within_its_approximation(folder: Path) -> None:
    """Fast-dLLM's dual cache reuses the other positions' keys/values through a block; the
    first pass of every block is exact, later ones may drift. Bound: the cached decode
    agrees with the exact one on most tokens."""
    cached = _backend(folder, refresh_every_pass=False)
    exact = _backend(folder, refresh_every_pass=True)
    args = ("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
    a = cached.decode(cached.prompt(*args), 16, False, lambda: False)
    b = exact.decode(exact.prompt(*args), 16, False, lambda: False)
    same = sum(x == y for x, y in zip(a.tokens, b.tokens, strict=False))
    assert same >= 0.75 * max(len(b.tokens), 1), (a.tokens, b.tokens)
    assert cached.infill(InfillRequest(*args, max_tokens=16))[0].text  # answers


def test_a_folder_with_vocab_and_merges_instead_of_tokenizer_json(
    folder: Path, tmp_path: Path
) -> None:
    """Dream ships a slow tokenizer (vocab.json, merges.txt): it must give the same ids."""
    from fim_server.backends.hf.checkpoint import load_tokenizer

    slow = tmp_path / "Dream-v0-Base-7B"
    slow.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (slow / name).write_bytes((folder / name).read_bytes())
    as_slow_tokenizer(slow)
    text = "def add(a, b):\n    return a + b<|mask|>\n"
    fast = load_tokenizer(folder).tokenizer.encode(text, add_special_tokens=False).ids
    rebuilt = load_tokenizer(slow)
    assert rebuilt.tokenizer.encode(text, add_special_tokens=False).ids == fast
    assert 257 in fast and 151666 in fast  # the merge "def" and <|mask|>
    assert rebuilt.token_id("<|beginoftext|>") == 151665
