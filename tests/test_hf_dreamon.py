"""DreamOn: Dream's network with <|expand|> (151667) and end-of-text deletion, so the
middle's length is decoded too. The random tiny model is pushed to write both."""

from __future__ import annotations

from pathlib import Path

import pytest
from hf_checkpoints import shared_folder
from hf_reference import (
    check_weights_load_by_real_names,
    loaded,
    reference_dreamon,
    reference_model,
)

from fim_server.backends import BackendSpec, resolve_kind
from fim_server.backends.hf.backend import DiffusionBackend


@pytest.fixture(scope="module")
def folder() -> Path:
    return shared_folder("dreamon")


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


# -- the growing and shrinking middle, on a scripted network ------------------------------
# A random network rarely writes <|expand|> or end-of-text at the right moments, so the
# expand/delete rules are checked on a scripted one: it asks for more room until the middle
# has 7 positions, then ends the text two positions before the end. Both fim-server's loop
# and the plain reference run on the same script.

VOCAB, MASK, EXPAND, EOS = 151668, 151666, 151667, 151643
BEFORE, AFTER = [151665, 70, 71], [72, 151643]


def _logit_for(probability: float) -> float:
    import math

    return math.log(probability * (VOCAB - 1) / (1 - probability))


def scripted_logits(ids: list[int]):
    import torch

    middle = len(ids) - len(BEFORE) - len(AFTER)
    logits = torch.zeros(len(ids), VOCAB)
    for row in range(len(ids)):
        m = row + 1 - len(BEFORE)  # the shifted row predicts the next position
        if not 0 <= m < middle:
            continue
        if middle < 7:
            token, p = (EXPAND, 0.9) if m == 0 else (80 + m, 0.2)
        elif m == middle - 2:
            token, p = EOS, 0.95
        else:
            token, p = 80 + m, (0.9 if m % 2 == 0 else 0.3)
        logits[row, token] = _logit_for(p)
    return logits


class ScriptedOurs:
    """fim-server's Transformer interface."""

    def __init__(self) -> None:
        self.lengths: list[int] = []

    def __call__(self, x, positions, *, rows=None, **_):
        ids = x.tolist()
        self.lengths.append(len(ids) - len(BEFORE) - len(AFTER))
        logits = scripted_logits(ids)
        return (logits[rows[0] : rows[1]] if rows else logits), []


class ScriptedTheirs:
    """transformers' interface, for the reference loop."""

    def __call__(self, input_ids, attention_mask=None):
        from types import SimpleNamespace

        return SimpleNamespace(logits=scripted_logits(input_ids[0].tolist())[None])


def test_middle_grows_on_expand_and_shrinks_on_end_of_text() -> None:
    import torch

    from fim_server.backends.hf.decoding import DecodeCall, decode_variable_length
    from fim_server.backends.hf.family import Prompt, SpecialTokens

    special = SpecialTokens(mask=MASK, bos=151665, eos=EOS, stops=frozenset({EOS}), expand=EXPAND)
    settings = DecodeCall(0.5, False, lambda _: False, lambda: False)
    ours_model = ScriptedOurs()
    ours = decode_variable_length(
        ours_model, Prompt(BEFORE, AFTER), 16, 4, special, settings, device=torch.device("cpu")
    )
    theirs = reference_dreamon(
        ScriptedTheirs(), BEFORE, 16, AFTER, mask=MASK, expand=EXPAND, eos=EOS, threshold=0.5,
        stops=frozenset({EOS}),
    )  # fmt: skip
    assert ours.tokens == theirs
    assert max(ours_model.lengths) == 7 and ours_model.lengths[0] == 4  # it grew
    # End-of-text at position 5 deleted itself (position 6 was committed in the same pass,
    # so it stays): the middle shrank to 6.
    assert ours_model.lengths[-1] == 6 and len(ours.tokens) == 6
    assert EXPAND not in ours.tokens and EOS not in ours.tokens
