"""Each family's published decoding recipe, run by fim-server, writes token for token what
the authors' loop writes (re-implemented independently in hf_reference.py, on
transformers' network) on the same tiny checkpoint, in as many passes; on a "peaked"
copy (every logit x64) so that confidences are high and schedules, thresholds and the
fast path's parallel commits all really fire."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hf_checkpoints import shared_folder
from hf_reference import (
    loaded,
    official_diffusion_generate,
    official_dreamon,
    official_llada_generate,
    official_p2,
    official_sdar,
    reference_model,
)

from fim_server.backends import BackendError, BackendSpec, InfillRequest
from fim_server.backends.hf.backend import DiffusionBackend
from fim_server.backends.hf.recipes import RECIPES, Recipe

PREFIX = "def add(a, b):\n    return "
SUFFIX = "\n\nprint(add(1, 2))\n"


def _backend(kind: str, recipe: Recipe | None) -> DiffusionBackend:
    info, model = loaded(shared_folder(kind))
    return DiffusionBackend(info, model, "cpu", 0.9, recipe=recipe)


def _as_authors_decode(middle: list[int], backend: DiffusionBackend, recipe: Recipe) -> list[int]:
    """The middle as the authors' evaluation keeps it: special tokens dropped wherever
    they are (keep_after_end), else cut at the first end token."""
    special = backend.folder.special
    ends = {*special.stops, special.mask, *([special.expand] if special.expand else [])}
    if recipe.keep_after_end:
        return [t for t in middle if t not in ends]
    kept = []
    for t in middle:
        if t in ends:
            break
        kept.append(t)
    return kept


class OursAsTransformers:
    """fim-server's network behind transformers' call signature, for the cases where the
    loops alone are compared: hot sampling on a flat random model, where two networks'
    1e-6 differences reorder near-equal confidences (the networks themselves are compared
    in each family's test module)."""

    def __init__(self, kind: str) -> None:
        self.model = loaded(shared_folder(kind))[1]

    def __call__(self, input_ids, attention_mask=None, position_ids=None):
        from types import SimpleNamespace

        ids = input_ids[0]
        positions = position_ids[0] if position_ids is not None else torch.arange(len(ids))
        mask = attention_mask[0, 0] if attention_mask is not None else None
        logits, _ = self.model(ids, positions, mask=mask)
        return SimpleNamespace(logits=logits[None])


def _ours(backend: DiffusionBackend, max_tokens: int, seed: int = 0):
    prompt = backend.prompt(PREFIX, SUFFIX)
    return prompt, backend.decode(prompt, max_tokens, False, lambda: False, seed=seed)


@pytest.mark.parametrize(
    ("kind", "recipe"),
    [
        ("dream-peaked", RECIPES["dream-official"]),
        ("dream-peaked", RECIPES["dream-maskgit"]),
        ("dream", replace(RECIPES["dream-official"], temperature=1.0)),  # the draws vary
        ("dream-peaked", replace(RECIPES["dream-maskgit"], steps=5, alg_temp=0.5)),
    ],
    ids=["entropy-sampled", "maskgit-greedy", "entropy-hot", "fewer-steps-alg-temp"],
)
def test_dream_recipe_equals_diffusion_generate(kind: str, recipe: Recipe) -> None:
    backend = _backend(kind, recipe)
    prompt, ours = _ours(backend, 12, seed=7)
    torch.manual_seed(7)
    mask = backend.folder.special.mask
    x = torch.tensor([[*prompt.before, *[mask] * 12, *prompt.after]])
    network = (
        OursAsTransformers(kind)
        if recipe.temperature >= 1
        else reference_model(shared_folder(kind))
    )
    theirs, passes = official_diffusion_generate(
        network, x, mask_id=mask, steps=recipe.steps or 12,
        alg=recipe.alg, temperature=recipe.temperature, top_p=recipe.top_p,
        alg_temp=recipe.alg_temp,
    )  # fmt: skip
    start = len(prompt.before)
    assert ours.tokens == _as_authors_decode(
        theirs[0, start : start + 12].tolist(), backend, recipe
    )
    assert ours.passes == passes == (recipe.steps or 12)
    assert ours.tokens


@pytest.mark.parametrize(
    ("kind", "block", "steps"),
    [("llada-peaked", 8, None), ("llada", 8, None), ("llada-peaked", 16, 6)],
)
def test_llada_recipe_equals_generate(kind: str, block: int, steps: int | None) -> None:
    # Blocks of 8 rather than the recipe's 32 keep the test short; 12 tokens round up to
    # two blocks (16 masks), as generate() needs whole blocks.
    recipe = replace(RECIPES["llada-official"], block_length=block, steps=steps)
    backend = _backend(kind, recipe)
    prompt, ours = _ours(backend, 12)
    mask = backend.folder.special.mask
    x = torch.tensor([[*prompt.before, *[mask] * 16, *prompt.after]])
    theirs, passes = official_llada_generate(
        reference_model(shared_folder(kind)), x, start=len(prompt.before), gen_length=16,
        steps=steps or 16, block_length=block, mask_id=mask,
    )  # fmt: skip
    start = len(prompt.before)
    assert ours.tokens == _as_authors_decode(
        theirs[0, start : start + 16].tolist(), backend, recipe
    )
    assert ours.passes == passes == (steps or 16)


@pytest.mark.parametrize(("kind", "max_tokens"), [("dreamon", 12), ("dreamon-peaked", 8)])
def test_dreamon_recipe_equals_expand_as_token(kind: str, max_tokens: int) -> None:
    recipe = RECIPES["dreamon-official"]
    backend = _backend(kind, recipe)
    prompt, ours = _ours(backend, max_tokens, seed=3)
    special = backend.folder.special
    ids = torch.tensor([[*prompt.before, *[special.mask] * 4, *prompt.after]])
    torch.manual_seed(3)
    theirs, length, passes = official_dreamon(
        reference_model(shared_folder(kind)), ids, mask_id=special.mask,
        expand_id=special.expand, eos_id=special.eos, steps=recipe.steps,
        min_gen_len=4, max_gen_len=max_tokens, temperature=recipe.temperature,
        top_p=recipe.top_p, alg=recipe.alg,
    )  # fmt: skip
    start = len(prompt.before)
    middle = theirs[0, start : start + length].tolist()
    assert ours.tokens == _as_authors_decode(middle, backend, recipe)
    assert ours.passes == passes


def test_dreamon_recipe_grows_and_shrinks_the_middle() -> None:
    """The unpeaked DreamOn checkpoint writes <|expand|> and end-of-text: the loop above
    is not only ever committing ordinary tokens."""
    recipe = replace(RECIPES["dreamon-official"], temperature=0.0, top_p=None, alg="maskgit_plus")
    backend = _backend("dreamon", recipe)
    _, ours = _ours(backend, 12)
    # One token a pass: more passes than the 4 starting masks means the middle grew.
    assert ours.passes > 4


@pytest.mark.parametrize(
    ("kind", "steps", "temperature"),
    [("open-dcoder-peaked", 8, 0.6), ("open-dcoder", 8, 0.6), ("open-dcoder-peaked", 5, 0.0)],
)
def test_open_dcoder_recipe_equals_p2(kind: str, steps: int, temperature: float) -> None:
    recipe = replace(RECIPES["open-dcoder-official"], steps=steps, temperature=temperature)
    backend = _backend(kind, recipe)
    prompt, ours = _ours(backend, 8, seed=5)
    mask = backend.folder.special.mask
    x = torch.tensor([[*prompt.before, *[mask] * 8, *prompt.after]])
    torch.manual_seed(5)
    theirs, passes = official_p2(
        reference_model(shared_folder(kind)), x, mask_id=mask, steps=steps,
        temperature=temperature, top_p=recipe.top_p,
        pad_id=backend.folder.config.get("pad_token_id"),
    )  # fmt: skip
    start = len(prompt.before)
    assert ours.tokens == _as_authors_decode(theirs[0, start : start + 8].tolist(), backend, recipe)
    assert ours.passes == passes


def test_open_dcoder_recipe_turns_causal_once_the_pad_id_is_written() -> None:
    """veomni's sdpa path: with an end-of-text (the config's pad) in the sequence the pass
    is causal. Without that rule the reference disagrees with itself on this prompt."""
    from fim_server.backends.hf.official import _veomni_mask

    x = torch.tensor([5, 6, 151643, 7])
    allowed = _veomni_mask(x, 151643)
    assert allowed is not None and not allowed[0, 1] and not allowed[3, 2] and allowed[3, 1]
    assert _veomni_mask(torch.tensor([5, 6, 7]), 151643) is None


@pytest.mark.parametrize("kind", ["sdar-peaked", "sdar"])
def test_sdar_recipe_equals_block_diffusion_generate(kind: str) -> None:
    recipe = RECIPES["sdar-official"]
    backend = _backend(kind, recipe)
    prompt, ours = _ours(backend, 14)
    special = backend.folder.special
    theirs, passes = official_sdar(
        reference_model(shared_folder(kind)), prompt.before, mask_id=special.mask,
        gen_length=14, block_length=4, steps=4, threshold=0.85, stops=special.stops,
    )  # fmt: skip
    start = len(prompt.before)
    assert ours.tokens == _as_authors_decode(
        theirs[0, start : start + 14].tolist(), backend, recipe
    )
    assert ours.passes == passes


def test_sampled_recipes_are_reproducible_with_the_seed() -> None:
    backend = _backend("dream", replace(RECIPES["dream-official"], temperature=1.0))
    runs = {seed: _ours(backend, 8, seed=seed)[1].tokens for seed in (1, 2, 3)}
    assert _ours(backend, 8, seed=1)[1].tokens == runs[1]
    assert len({tuple(t) for t in runs.values()}) > 1  # the seed is what changes them


def test_the_fast_path_departs_from_the_recipes_on_the_peaked_checkpoints() -> None:
    """Not a recipe in disguise: on the peaked Dream checkpoint the fast path commits
    several tokens a pass, which diffusion_generate's schedule never does here."""
    fast = _backend("dream-peaked", None)
    official = _backend("dream-peaked", RECIPES["dream-maskgit"])
    _, a = _ours(fast, 12)
    _, b = _ours(official, 12)
    assert a.passes < len(a.tokens) and b.passes == 12


@pytest.mark.parametrize(
    ("kind", "shifted"),
    [("dream-peaked", True), ("llada-peaked", False), ("open-dcoder-peaked", True)],
)
def test_fast_path_uncached_equals_the_plain_threshold_loop_where_the_threshold_fires(
    kind: str, shifted: bool
) -> None:
    """The fast path's own reference, on the peaked copies where 0.9 really commits
    several tokens a pass (the family tests run unpeaked models at 0.5)."""
    from hf_reference import reference_bidirectional

    info, model = loaded(shared_folder(kind))
    backend = DiffusionBackend(info, model, "cpu", 0.9, refresh_every_pass=True)
    prompt, ours = _ours(backend, 16)
    theirs, passes = reference_bidirectional(
        reference_model(shared_folder(kind)), prompt.before, 16, prompt.after,
        mask=info.special.mask, shifted=shifted, threshold=0.9, stops=info.special.stops,
    )  # fmt: skip
    assert ours.tokens == theirs and ours.passes == passes
    assert passes < len(theirs)  # the threshold fired


def test_a_recipe_for_another_family_is_refused_with_the_choices() -> None:
    with pytest.raises(BackendError, match="recipe llada-official decodes llada models") as err:
        DiffusionBackend.load(
            BackendSpec(model_path=str(shared_folder("dream")), recipe="llada-official")
        )
    assert "fast or dream-official or dream-maskgit" in str(err.value)
    with pytest.raises(BackendError, match="unknown recipe 'nope'"):
        DiffusionBackend.load(BackendSpec(model_path=str(shared_folder("dream")), recipe="nope"))


def test_recipe_is_named_in_the_description(tmp_path: Path) -> None:
    backend = DiffusionBackend.load(
        BackendSpec(model_path=str(shared_folder("dream")), recipe="dream-official")
    )
    assert "recipe dream-official" in backend.description
    (infill,) = backend.infill(InfillRequest(PREFIX, SUFFIX, max_tokens=6))
    assert infill.forward_passes == 6


# -- the setting, as a user reaches it ------------------------------------------------------


def _cli(*args: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "fim_server", *args], capture_output=True, text=True, timeout=300
    )


def test_complete_takes_a_recipe_and_a_threshold(tmp_path: Path) -> None:
    source = tmp_path / "add.py"
    source.write_text(PREFIX + "\n" + SUFFIX, encoding="utf-8")
    folder = str(shared_folder("dream-peaked"))
    location = f"{source}:2:{len('    return ') + 1}"
    common = ("complete", location, "--model", folder, "--min-confidence", "0")
    official = _cli(*common, "--recipe", "dream-maskgit")
    assert official.returncode == 0, official.stderr
    fast = _cli(*common, "--threshold", "0.5")
    assert fast.returncode == 0, fast.stderr
    # One token a step over the line budget (48) for the recipe; the fast path stops once
    # the line is settled, in fewer passes.
    passes = [int(r.stderr.split("forward_passes=")[1].split()[0]) for r in (official, fast)]
    assert passes[0] == 48 and passes[1] < passes[0]
    wrong = _cli(*common, "--recipe", "sdar-official")
    assert wrong.returncode == 1 and "recipe sdar-official decodes sdar models" in wrong.stderr
    bad = _cli(*common, "--threshold", "1.5")
    assert bad.returncode == 2 and "--threshold must be in (0, 1]" in bad.stderr


def test_recipe_setting_is_checked_and_reaches_the_backend_spec() -> None:
    from fim_server.config.settings import UserSettings, apply_settings, backend_spec

    update = apply_settings(UserSettings(), {"fim": {"recipe": "llada-official"}})
    assert not update.errors
    assert backend_spec(BackendSpec(), update.settings).recipe == "llada-official"
    typo = apply_settings(update.settings, {"recipe": "llada"})
    assert typo.settings.recipe == "llada-official"
    assert "setting recipe must be one of fast, dream-official" in typo.errors[0]
    assert backend_spec(BackendSpec(recipe="dream-official"), UserSettings()).recipe == (
        "dream-official"
    )


def test_a_recipe_with_the_embedded_model_is_a_clear_error() -> None:
    from fim_server.backends import load_backend

    with pytest.raises(BackendError, match="recipe dream-official decodes a model folder"):
        load_backend(BackendSpec(recipe="dream-official"))
