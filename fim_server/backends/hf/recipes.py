"""Decoding recipes: each family's middle decoded as its authors' code decodes it.

This module is the table (read without torch, by the command line and the settings);
official.py has the loops.

fim-server's own loops (decoding.py, the `fast` recipe) commit every position above a
confidence threshold and reuse keys/values between passes: few passes, but not what the
published figures were measured with. A recipe here re-implements one family's official
decoding loop on fim-server's network, step for step (same schedule, same tie-breaking
ops, the same random draws in the same order for a seed), so that the middle equals what
the authors' code writes on the same checkpoint; tests/hf_reference.py re-implements the
same loops a second time, independently, and the tests compare the two.

Every official loop runs the whole sequence every pass (no cache) and none of them bans
the mask token from its predictions. What each one reproduces, and its settings, is in
`RECIPES`; docs/models.md has the table and where the fast path departs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import BackendError

FAST = "fast"  # fim-server's threshold + cache path (decoding.py): the default


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str  # the family it belongs to
    loop: str  # which official loop: a key of LOOPS
    reproduces: str  # repository, file, function and settings, in one line
    steps: int | None = None  # None: one step per middle position
    alg: str = "maskgit_plus"  # how a position's confidence is scored
    temperature: float = 0.0  # > 0: tokens are sampled (reproducible with the seed)
    top_p: float | None = None
    alg_temp: float = 0.0  # > 0: positions are drawn in proportion to confidence
    block_length: int | None = None  # LLaDA's semi-autoregressive blocks
    threshold: float | None = None  # SDAR's low_confidence_dynamic threshold
    min_length: int = 4  # DreamOn: masks the middle starts from
    # The authors' infilling evaluations decode the whole fixed-length middle with
    # skip_special_tokens: end-of-text tokens vanish wherever they are. False: the
    # middle ends at its first end token, as fim-server cuts it.
    keep_after_end: bool = False
    eps: float = 1e-3  # Dream's time schedule runs from 1 to eps


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "dream-official", "dream", "diffusion_generate",
            "Dream generation_utils.py diffusion_generate (copy in NVlabs/Fast-dLLM "
            "dream/model/generation_utils.py): alg entropy, steps = middle length, "
            "temperature 0.2, top_p 0.95, alg_temp 0 (DreamLM/Dream demo_completion.py)",
            alg="entropy", temperature=0.2, top_p=0.95, keep_after_end=True,
        ),
        Recipe(
            "dream-maskgit", "dream", "diffusion_generate",
            "Dream diffusion_generate with alg maskgit_plus, steps = middle length, greedy",
            alg="maskgit_plus", keep_after_end=True,
        ),
        Recipe(
            "llada-official", "llada", "llada_generate",
            "ML-GSAI/LLaDA generate.py generate(): low_confidence remasking, steps = middle "
            "length, block_length 32, temperature 0, cfg 0 (the middle rounded up to blocks)",
            block_length=32,
        ),
        Recipe(
            "dreamon-official", "dreamon", "dreamon_expand",
            "DreamLM/DreamOn eval/generator.py batch_generate_with_expand_as_token as "
            "eval/eval_humaneval_infilling.sh runs it: alg entropy, steps 256, temperature "
            "0.2, top_p 0.9, alg_temp 0, min_gen_len 4, max_gen_len = the token budget",
            steps=256, alg="entropy", temperature=0.2, top_p=0.9, keep_after_end=True,
        ),
        Recipe(
            "open-dcoder-official", "open-dcoder", "p2",
            "pengzhangzhi/Open-dLLM veomni qwen2 generation_utils.py _mdm_sample alg p2 as "
            "eval/eval_infill/run_eval.sh runs it: steps 64, temperature 0.6, top_p 0.95, "
            "fixed middle length = the token budget",
            steps=64, alg="p2", temperature=0.6, top_p=0.95, keep_after_end=True,
        ),
        Recipe(
            "sdar-official", "sdar", "sdar_block",
            "JetAstra/SDAR generate.py block_diffusion_generate: low_confidence_dynamic, "
            "confidence_threshold 0.85, denoising_steps = block_length (the config's "
            "block_size), greedy (the README's evaluation setup)",
            threshold=0.85,
        ),
    )
}  # fmt: skip

RECIPE_NAMES = (FAST, *RECIPES)


def recipe_for(name: str, kind: str) -> Recipe | None:
    """The recipe `name` for a folder of `kind`; None for the fast path."""
    if name == FAST:
        return None
    recipe = RECIPES.get(name)
    if recipe is None:
        raise BackendError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPE_NAMES)}")
    if recipe.kind != kind:
        own = [r.name for r in RECIPES.values() if r.kind == kind]
        raise BackendError(
            f"recipe {name} decodes {recipe.kind} models, this folder is {kind}: "
            f"choose {' or '.join([FAST, *own])}"
        )
    return recipe
