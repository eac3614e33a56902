"""DreamOn: Dream's network with <|expand|> (151667) and end-of-text deletion, so the
middle's length is decoded too. The random tiny model is pushed to write both."""

from __future__ import annotations

from pathlib import Path

import pytest
from hf_checkpoints import build_dreamon
from hf_reference import (
    check_weights_load_by_real_names,
    loaded,
    reference_dreamon,
    reference_model,
)

from fim_server.backends import BackendSpec, resolve_kind
from fim_server.backends.hf.backend import DiffusionBackend


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dreamon(tmp_path_factory.mktemp("dreamon") / "DreamOn-v0-7B")


def test_folder_is_recognised_as_dreamon(folder: Path) -> None:
    assert resolve_kind(BackendSpec(model_path=str(folder))) == "dreamon"
    info, _ = loaded(folder)
    assert info.special.expand == 151667 and info.special.mask == 151666
    assert info.family.shifted


def test_every_weight_loads_by_its_real_name(folder: Path) -> None:
    check_weights_load_by_real_names(folder)


@pytest.mark.parametrize("max_tokens", [4, 12])
def test_growing_middle_equals_plain_loop(folder: Path, max_tokens: int) -> None:
    info, model = loaded(folder)
    backend = DiffusionBackend(info, model, "cpu", 0.5)
    prompt = backend.prompt("def add(a, b):\n    return ", "\n\nprint(add(1, 2))\n")
    ours = backend.decode(prompt, max_tokens, False, lambda: False)
    theirs = reference_dreamon(
        reference_model(folder), prompt.before, max_tokens, prompt.after, mask=151666,
        expand=151667, eos=151643, threshold=0.5, stops=info.special.stops,
    )  # fmt: skip
    assert ours.tokens == theirs
    assert len(ours.tokens) <= max_tokens
