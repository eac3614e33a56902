"""Unit tests of the diffusion model: tokenizer, attention layout, loss, sampler, cache."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from fim_model import EMBEDDED_CHECKPOINT, DecodingCancelled
from fim_model.data import (
    SPAN_KINDS,
    ExampleShape,
    FimSpan,
    make_example,
    sample_span,
    syntax_nodes,
)
from fim_model.diffusion import FimExample, diffusion_loss, make_batch
from fim_model.masks import group_mask, token_groups, two_copy_mask
from fim_model.sampler import SamplerSettings, StopTokens, generate_candidates
from fim_model.tokenizer import CodeTokenizer, SpecialIds
from fim_model.transformer import Decoder, KVCache, ModelConfig, Transformer
from fim_server.context.languages import syntax_root

SPECIAL = SpecialIds(pad=0, mask=1, fim_suffix=2, fim_prefix=3, fim_middle=4, end_of_middle=5)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # As the server runs the model (fim_server.config.defaults.THREADS): on a busy machine, more
    # threads make each of these small operations wait for the others, many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shipped_tokenizer() -> CodeTokenizer:
    return CodeTokenizer.load(EMBEDDED_CHECKPOINT / "tokenizer.json")


def tiny_model(
    block_size: int = 4, vocab: int = 40, seed: int = 0, sharpness: float = 1.0
) -> Transformer:
    """An untrained model. Its predictions are nearly uniform, so <eom> and <pad> together
    win at once; `sharpness` scales the (tied) embeddings so that some tokens stand out
    and the middle runs over several blocks."""
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab_size=vocab, dim=32, n_layers=2, n_heads=2, ffn_dim=64,
        max_seq_len=128, block_size=block_size,
    )  # fmt: skip
    model = Transformer(cfg)
    with torch.no_grad():
        model.embed.weight.mul_(sharpness)
    return model.double().eval()


@pytest.mark.parametrize(
    "text",
    [
        "def héllo(x):\n\treturn 'naïve' + \"日本語\"  # ✓ tabs\tand spaces  \n",
        "if a:\r\n\t\tb = '<mask>' + '<fim_middle>'\n",
        "\t\t\n  \n\x0c\n",
    ],
)
def test_tokenizer_round_trips_code_exactly(shipped_tokenizer: CodeTokenizer, text: str) -> None:
    ids = shipped_tokenizer.encode(text)
    assert shipped_tokenizer.decode(ids) == text
    # Special-token names typed by a user stay plain text.
    assert not any(shipped_tokenizer.is_special(i) for i in ids)


def test_group_mask_is_causal_across_blocks_and_bidirectional_inside() -> None:
    groups = token_groups(n_context=3, n_middle=8, block_size=4)
    mask = group_mask(groups, groups)
    # context: causal
    assert mask[1, 0] and not mask[0, 1] and not mask[1, 2]
    # every middle token sees all context
    assert mask[3:, :3].all()
    # inside block 0 (tokens 3..6): all pairs, both ways
    assert mask[3:7, 3:7].all()
    # across blocks: block 1 sees block 0, never the reverse
    assert mask[7:11, 3:7].all() and not mask[3:7, 7:11].any()
    # context never sees the middle
    assert not mask[:3, 3:].any()


def test_noisy_copy_never_sees_clean_tokens_of_its_own_block() -> None:
    n_ctx, n_mid, block = 5, 8, 4
    seq_len = n_ctx + 2 * n_mid + 3
    mask = two_copy_mask(n_ctx, n_mid, block, seq_len)
    clean = slice(n_ctx, n_ctx + n_mid)
    noisy0 = n_ctx + n_mid
    for k in range(n_mid // block):
        rows = slice(noisy0 + k * block, noisy0 + (k + 1) * block)
        own_clean = slice(n_ctx + k * block, n_ctx + (k + 1) * block)
        assert not mask[rows, own_clean].any()
        assert not mask[rows, n_ctx + (k + 1) * block : clean.stop].any()  # later clean
        assert mask[rows, n_ctx : n_ctx + k * block].all()  # earlier clean
        assert mask[rows, rows].all()
        assert not mask[rows, noisy0 : noisy0 + k * block].any()  # other noisy blocks

    # And the network agrees: changing clean block 1 leaves noisy block 1's logits alone,
    # which then equal those of the inference layout [context, clean block 0, block 1].
    model = tiny_model(block)
    ids = torch.randint(6, 40, (1, seq_len))
    positions = torch.cat(
        (torch.arange(n_ctx + n_mid), torch.arange(n_ctx, n_ctx + n_mid), torch.zeros(3).long())
    ).unsqueeze(0)
    out = model(ids, positions, mask[None, None])
    changed = ids.clone()
    changed[0, n_ctx + 4 : n_ctx + 8] = (changed[0, n_ctx + 4 : n_ctx + 8] + 1) % 40
    out2 = model(changed, positions, mask[None, None])
    noisy1 = slice(noisy0 + 4, noisy0 + 8)
    assert torch.allclose(out[0, noisy1], out2[0, noisy1])
    inference_ids = torch.cat((ids[0, : n_ctx + 4], ids[0, noisy1])).unsqueeze(0)
    g = token_groups(n_ctx, 8, block)
    inference = model(
        inference_ids, torch.arange(n_ctx + 8).unsqueeze(0), group_mask(g, g)[None, None]
    )
    assert torch.allclose(inference[0, -4:], out[0, noisy1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_decoder_computes_what_the_training_network_computes(dtype) -> None:
    # The inference path (cache, fused projections, rotary embeddings in complex numbers,
    # or real ones where no complex type exists) against Transformer.hidden_states.
    model = tiny_model(block_size=4)
    n_ctx, n_mid = 7, 8
    ids = torch.randint(6, 40, (n_ctx + n_mid,))
    groups = token_groups(n_ctx, n_mid, 4)
    reference = model.hidden_states(
        ids[None], torch.arange(len(ids))[None], group_mask(groups, groups)[None, None]
    )[0]
    decoder = Decoder(model.to(dtype))
    cache = KVCache(model.cfg, dtype, torch.device("cpu"))
    # Context and the first block into the cache (as after a finished block), then the
    # second block on top of it, twice: a step leaves the cache as it found it.
    first = token_groups(n_ctx, 4, 4)
    decoder.prefill(ids[: n_ctx + 4], cache, group_mask(first, first))
    assert cache.length == n_ctx + 4 and cache.token_ids == ids[: n_ctx + 4].tolist()
    step = decoder.hidden(ids[n_ctx + 4 :], cache)
    again = decoder.hidden(ids[n_ctx + 4 :], cache)
    assert cache.length == n_ctx + 4
    assert torch.equal(step, again)
    # bfloat16 rounds to about 0.01 here; rotating by one position too few is off by 0.09.
    tolerance = 1e-9 if dtype == torch.float64 else 0.03
    assert (step.double() - reference[-4:]).abs().max() < tolerance


def _generate(model, context, cache, **kw):
    (only,) = generate_candidates(
        Decoder(model) if isinstance(model, Transformer) else model,
        context,
        SPECIAL,
        StopTokens(SPECIAL.end_of_middle, frozenset({7})),
        max_tokens=kw.pop("max_tokens", 20),
        settings=[kw.pop("settings", SamplerSettings())],
        cache=cache,
        **kw,
    )
    return only


@pytest.mark.parametrize("settings", [SamplerSettings(0.9, 0.0), SamplerSettings(0.3, 1.0)])
@pytest.mark.parametrize("block_size", [4, 1])  # B = 1: the autoregressive twin
def test_cached_sampling_matches_full_recompute_token_for_token(settings, block_size) -> None:
    model = tiny_model(block_size=block_size, sharpness=40.0)
    rng = random.Random(1)
    cache = KVCache(model.cfg, torch.float64, torch.device("cpu"))
    prefix = [rng.randrange(8, 40) for _ in range(12)]
    suffix = [rng.randrange(8, 40) for _ in range(6)]
    # Successive "keystrokes": the prefix grows, the cache is reused between calls.
    longest = 0
    for _keystroke in range(3):
        prefix.append(rng.randrange(8, 40))
        context = SPECIAL.fim_context(prefix, suffix)
        # An untrained model may end (<eom>/<pad>) at once: several seeds, so that the
        # comparison surely covers multi-block outputs.
        for seed in range(4):
            cached = _generate(model, context, cache, settings=settings, seed=seed)
            full = _generate(model, context, None, settings=settings, seed=seed)
            assert cached.tokens == full.tokens
            assert cached.forward_passes == full.forward_passes
            longest = max(longest, len(cached.tokens))
            again = _generate(model, context, cache, settings=settings, seed=seed)
            assert again.tokens == cached.tokens  # same seed, same output
    assert longest > model.cfg.block_size  # several blocks were compared


def test_sampler_commits_several_tokens_per_pass_when_confident() -> None:
    model = tiny_model(block_size=4, sharpness=40.0)
    context = SPECIAL.fim_context([10, 11], [9])
    strict = _generate(model, context, None, settings=SamplerSettings(threshold=1.1))
    loose = _generate(model, context, None, settings=SamplerSettings(threshold=0.0))
    assert len(strict.tokens) > 4
    assert set(strict.tokens_per_pass) == {1}  # one token per pass
    assert strict.forward_passes == len(strict.tokens)
    assert max(loose.tokens_per_pass) == 4  # a whole block per pass
    assert loose.forward_passes < strict.forward_passes


SURE, UNSURE = 10.0, 6.0  # logits of a scripted guess: probability 0.99 and 0.68


class ScriptedModel:
    """Stands in for a trained model: every pass predicts `script` for the block, with
    token 12 (logit 5) as every position's runner-up. A script entry is a token (guessed
    with logit SURE) or a row of (token, logit) pairs; `script` may also be a list of
    scripts, one per pass (the last one repeats)."""

    dtype = torch.float32
    device = torch.device("cpu")

    def __init__(self, script: list, vocab: int = 40) -> None:
        self.script = script
        self.cfg = ModelConfig(vocab_size=vocab, max_seq_len=128, block_size=len(script))
        self.passes = 0
        self.rows_projected: list[int] = []  # rows given to logits(), per pass
        self.inputs: list[list[int]] = []  # the block as each pass saw it

    def prefill(self, ids, cache, mask):
        cache.length += ids.shape[0]
        cache.token_ids.extend(ids.tolist())

    def hidden(self, ids, cache):
        # Position i's "hidden state" is its scripted logits; logits() is the identity.
        self.passes += 1
        self.inputs.append(ids.tolist())
        hidden = torch.zeros(len(self.script), self.cfg.vocab_size)
        hidden[:, 12] = 5.0
        for i, entry in enumerate(self.script):
            for token, logit in [(entry, SURE)] if isinstance(entry, int) else entry:
                hidden[i, token] = logit
        return hidden

    def logits(self, hidden, bias=None):
        self.rows_projected.append(hidden.shape[0])
        return hidden.clone() if bias is None else hidden + bias


def _unsure(token: int) -> list[tuple[int, float]]:
    return [(token, UNSURE)]


def test_sampler_ends_the_middle_at_a_committed_pad() -> None:
    # Training pads the block after <eom>; a model that writes <pad> has said "done".
    model = ScriptedModel([9, SPECIAL.pad, 11, 11])
    out = _generate(model, [2, 9, 3, 10, 4], None)
    assert out.tokens == [9]
    assert out.finished
    assert out.forward_passes == 1


def test_sure_padding_sets_the_end_once_then_every_pass_writes_a_token() -> None:
    # Unsure of the text, sure of the padding after it: the padding says the middle ends,
    # so the first pass ends it at the first position predicted to end (the unsure <eom>)
    # at once, not one position per pass; then every pass writes a token of the answer,
    # the last one also ending the middle.
    E, P = SPECIAL.end_of_middle, SPECIAL.pad
    model = ScriptedModel([_unsure(9), _unsure(10), _unsure(11), [(E, 5.5)], P, P, P, P])
    out = _generate(model, [2, 9, 3, 10, 4], None)
    assert out.tokens == [9, 10, 11]
    assert out.finished
    assert out.tokens_per_pass == [0, 1, 1, 1]
    # From then on the model sees the block as training lays it out: padding after <eom>.
    M = SPECIAL.mask
    assert model.inputs[1] == [M, M, M, E, P, P, P, P]


def test_an_unsure_end_takes_a_pass_of_its_own_at_most() -> None:
    E = SPECIAL.end_of_middle
    model = ScriptedModel([_unsure(9), _unsure(10), [(E, 5.5)], _unsure(11)])
    out = _generate(model, [2, 9, 3, 10, 4], None)
    assert out.tokens == [9, 10]
    assert out.finished
    assert out.tokens_per_pass == [1, 1, 0]  # the last pass writes the least sure <eom>


def test_nothing_after_a_predicted_newline_is_committed_in_single_line_mode() -> None:
    # The text after the line's end is sure but would be cut: no pass is spent on it.
    model = ScriptedModel([_unsure(9), _unsure(10), _unsure(7), 11, 11, 11, 11, 11])
    out = _generate(model, [2, 9, 3, 10, 4], None, single_line=True)
    assert out.tokens == [9, 10, 7]
    assert not out.finished
    assert out.tokens_per_pass == [1, 1, 1]
    # On one line only the leftmost open position is projected to the vocabulary while it
    # is unsure: nothing right of it can be committed.
    assert model.rows_projected == [1, 1, 1]


def test_a_sure_end_after_a_predicted_newline_takes_no_pass_in_single_line_mode() -> None:
    # The line ends at the newline, so the sure <eom> after it can never be reached:
    # committing it would spend a pass writing nothing of the answer.
    E, P = SPECIAL.end_of_middle, SPECIAL.pad
    model = ScriptedModel([_unsure(9), _unsure(7), E, P, P, P, P, P])
    out = _generate(model, [2, 9, 3, 10, 4], None, single_line=True)
    assert out.tokens == [9, 7]
    assert out.tokens_per_pass == [1, 1]


def test_the_fallback_prefers_a_token_likely_to_be_kept() -> None:
    # Position 2 is the surest guess (0.78), but position 1 may well be the middle's end
    # (<eom> 0.36), which would cut it off: the surer bet is position 0 (0.68, kept).
    E = SPECIAL.end_of_middle
    model = ScriptedModel([_unsure(9), [(10, 6.0), (E, 5.8)], [(11, 6.5)], _unsure(13)])
    _generate(model, [2, 9, 3, 10, 4], None)
    M = SPECIAL.mask
    assert model.inputs[1] == [9, M, M, M]


def test_single_line_mode_commits_from_the_left() -> None:
    # On one line a newline may land left of any open position and cut what is after it:
    # the sure tokens at 2 and 3 wait until 0 and 1 are written, then go in one pass.
    model = ScriptedModel([_unsure(9), _unsure(10), 11, 12])
    out = _generate(model, [2, 9, 3, 10, 4], None, single_line=True)
    M = SPECIAL.mask
    assert model.inputs[1] == [9, M, M, M]
    assert out.tokens[:4] == [9, 10, 11, 12]
    assert out.tokens_per_pass[:3] == [1, 1, 2]
    # The rest of the line is projected only once its first position is sure.
    assert model.rows_projected[:4] == [1, 1, 1, 1]


def test_a_sure_end_is_committed_with_the_last_token() -> None:
    E, P = SPECIAL.end_of_middle, SPECIAL.pad
    model = ScriptedModel([_unsure(9), 10, E, P])
    out = _generate(model, [2, 9, 3, 10, 4], None)
    assert out.tokens == [9, 10]
    assert out.finished
    assert out.tokens_per_pass == [1, 1]  # 10 in the first pass, 9 and <eom> in the second


def test_eom_and_pad_count_as_one_ending() -> None:
    # Neither <eom> nor <pad> alone beats token 9, but together they do: the middle ends.
    E, P = SPECIAL.end_of_middle, SPECIAL.pad
    row = [(9, 8.2), (E, 8.0), (P, 8.0)]
    out = _generate(ScriptedModel([row, row, row, row]), [2, 9, 3, 10, 4], None)
    assert out.tokens == []
    assert out.finished
    assert out.forward_passes == 1


def test_positions_past_the_budget_are_never_predicted() -> None:
    model = ScriptedModel([_unsure(9)] * 8)
    out = _generate(model, [2, 9, 3, 10, 4], None, max_tokens=3)
    assert out.tokens == [9, 9, 9]
    assert out.forward_passes == 3
    assert max(model.rows_projected) == 3


def test_sampler_stops_when_cancelled() -> None:
    model = tiny_model(sharpness=40.0)
    calls = itertools.count()
    with pytest.raises(DecodingCancelled):
        _generate(model, [2, 9, 3, 10, 4], None, should_cancel=lambda: next(calls) >= 2)


def test_training_steps_lower_the_loss_on_one_batch() -> None:
    model = tiny_model(block_size=4).float().train()
    rng = random.Random(0)
    examples = [
        FimExample(
            context=[2, *[rng.randrange(8, 40) for _ in range(10)], 3, 4],
            middle=[rng.randrange(8, 40) for _ in range(7)] + [5],
        )
        for _ in range(4)
    ]
    batch = make_batch(examples, 4, 40, SPECIAL, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = diffusion_loss(model, batch).nelbo.item()
    for _ in range(30):
        loss = diffusion_loss(model, batch).total(1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert diffusion_loss(model, batch).nelbo.item() < 0.5 * first


def test_fim_spans_reassemble_the_document() -> None:
    text = "import os\n\n\ndef f(x):\n    if x:\n        return os.sep\n    return None\n"
    rng = random.Random(0)
    for kind in SPAN_KINDS:
        for _ in range(20):
            span = sample_span(text, rng, kind)
            assert span.prefix + span.middle + span.suffix == text
            if kind == "rest_of_line":
                assert "\n" not in span.middle
            if kind == "left_to_right":
                assert span.suffix == ""


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        (
            "python",
            "def f(x):\n    return g(x, 1) + 2\n",
            {"g(x, 1) + 2", "(x, 1)", "return g(x, 1) + 2"},
        ),
        (
            "go",
            "package m\n\nfunc f(x int) int {\n\treturn g(x, 1) + 2\n}\n",
            {"g(x, 1) + 2", "(x, 1)", "return g(x, 1) + 2"},
        ),
        ("rust", "fn f(x: i32) -> i32 {\n    g(x, 1) + 2\n}\n", {"g(x, 1) + 2", "(x, 1)"}),
        (
            "java",
            "class A {\n  int f(int x) {\n    return g(x, 1) + 2;\n  }\n}\n",
            {"g(x, 1) + 2", "(x, 1)", "return g(x, 1) + 2;"},
        ),
    ],
)
def test_node_spans_are_whole_syntax_nodes(language: str, text: str, expected: set[str]) -> None:
    nodes = syntax_nodes(text, language, syntax_root)
    assert set(nodes) >= {"expression", "arguments", "block"}
    found = {text[a:b] for spans in nodes.values() for a, b in spans}
    assert expected <= found
    rng = random.Random(1)
    for _ in range(30):
        span = sample_span(text, rng, "node", language, syntax_root)
        assert span.prefix + span.middle + span.suffix == text
        assert span.middle.strip()


def test_node_spans_fall_back_to_lines_without_a_grammar() -> None:
    span = sample_span("a b c\nd e f\n", random.Random(0), "node", "cobol", syntax_root)
    assert span.kind == "lines"
    # No parser handed in: the same fallback, even for a language with a grammar.
    span = sample_span("def f(x):\n    return x\n", random.Random(0), "node", "python")
    assert span.kind == "lines"


def test_training_and_serving_read_the_same_context(shipped_tokenizer: CodeTokenizer) -> None:
    from fim_model import InfillModel

    span = FimSpan(
        prefix="total = 0\nfor x in xs:\n    ", middle="total += x", suffix="\n", kind=""
    )
    trained_on = make_example(shipped_tokenizer, span, ExampleShape(256, 32, 16), random.Random(0))
    served = InfillModel.load().context_ids(span.prefix, span.suffix, max_context=256)
    assert served == trained_on.context


def test_fim_example_layout_is_suffix_prefix_middle(shipped_tokenizer: CodeTokenizer) -> None:
    span = FimSpan(
        prefix="def f(x):\n    return ", middle="x + 1", suffix="\n\nprint(f(2))\n", kind=""
    )
    ex = make_example(shipped_tokenizer, span, ExampleShape(256, 32, 16), random.Random(0))
    sp = shipped_tokenizer.special
    assert ex.context[0] == sp.fim_suffix and ex.context[-1] == sp.fim_middle
    i = ex.context.index(sp.fim_prefix)
    assert shipped_tokenizer.decode(ex.context[1:i]) == span.suffix
    assert shipped_tokenizer.decode(ex.context[i + 1 : -1]) == span.prefix
    assert len(ex.middle) % 16 == 0
    end = ex.middle.index(sp.end_of_middle)
    assert shipped_tokenizer.decode(ex.middle[:end]) == span.middle
    assert set(ex.middle[end + 1 :]) <= {sp.pad}


def test_shipped_model_infill_reuses_its_cache_exactly() -> None:
    from fim_model import InfillModel

    model = InfillModel.load()
    prefix = "def add(a, b):\n    return "
    suffix = "\n\n\nprint(add(1, 2))\n"
    first = model.infill(prefix, suffix, max_tokens=16, single_line=True)
    assert first.tokens > 0 and first.forward_passes > 0
    # The next keystroke extends the prefix: the cached answer equals a fresh computation.
    typed = prefix + first.text[:1]
    cached = model.infill(typed, suffix, max_tokens=16, single_line=True)
    fresh = model.infill(typed, suffix, max_tokens=16, single_line=True, use_cache=False)
    assert (cached.text, cached.tokens, cached.forward_passes) == (
        fresh.text,
        fresh.tokens,
        fresh.forward_passes,
    )
    # The cache holds the same keys, computed in other groupings of rows: float32 matrix
    # kernels round a few rows differently from many, so the probabilities agree to
    # rounding, not bit for bit.
    assert cached.confidence == pytest.approx(fresh.confidence, rel=1e-5)


@pytest.mark.parametrize("single_line", [True, False])
def test_candidates_decoded_together_equal_each_one_decoded_alone(single_line: bool) -> None:
    # Every row of the batch is its own sequence over the shared context: the first is the
    # greedy answer, row r the sampled answer of seed + r, as if each were decoded alone
    # (waiting for the others' blocks changes nothing), across blocks of the middle.
    from dataclasses import replace

    from fim_model import InfillModel
    from fim_model.api import CANDIDATE_TEMPERATURE

    model = InfillModel.load()
    prefix = "def mean(values):\n    total = 0\n    for v in values:\n        total += "
    suffix = "\n    return total / len(values)\n"
    together = model.generate_candidates(
        prefix, suffix, count=3, max_tokens=40, single_line=single_line, seed=5
    )
    assert len(together) == 3
    greedy = model.generate(prefix, suffix, max_tokens=40, single_line=single_line, seed=5)
    assert together[0].tokens == greedy.tokens
    sampled = replace(model.settings, temperature=CANDIDATE_TEMPERATURE)
    alone = InfillModel(model.model, model.tokenizer, sampled)
    for r in (1, 2):
        own = alone.generate(prefix, suffix, max_tokens=40, single_line=single_line, seed=5 + r)
        assert together[r].tokens == own.tokens
    # The passes are shared: the batch takes as many as its slowest member would alone.
    assert together[0].forward_passes >= greedy.forward_passes
    # The next single request reuses the shared context from the cache, exactly.
    again = model.generate(prefix, suffix, max_tokens=40, single_line=single_line, seed=5)
    assert again.tokens == greedy.tokens


def test_a_middle_stuck_in_a_loop_is_recognised() -> None:
    from fim_model.sampler import _loops

    assert _loops([7] * 12) and not _loops([7] * 11)
    assert _loops([4, 1, 2] * 4) and not _loops([4, 1, 2] * 3)  # 12 tokens of it
    assert _loops(list(range(8)) * 3) and not _loops(list(range(8)) * 2)
    assert not _loops([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17])


def test_decoding_stops_after_a_block_that_loops() -> None:
    # A model that writes the same token over and over is stopped at the end of the
    # block, not at the token budget.
    model = ScriptedModel([9] * 16)
    out = _generate(model, [2, 9, 3, 10, 4], None, max_tokens=48)
    assert out.tokens == [9] * 16 and not out.finished
    assert out.forward_passes == 1


class PerPassScript(ScriptedModel):
    """A one-position (B = 1) scripted model whose guess changes from pass to pass."""

    def __init__(self, per_pass: list, vocab: int = 40) -> None:
        super().__init__([per_pass[0]], vocab)
        self.per_pass = per_pass
        self.cached: list[list[int]] = []  # the cached tokens each pass attended to

    def hidden(self, ids, cache):
        self.script = [self.per_pass[min(self.passes, len(self.per_pass) - 1)]]
        self.cached.append(list(cache.token_ids))
        return super().hidden(ids, cache)


def test_block_size_one_writes_one_token_per_pass_after_the_last() -> None:
    # The autoregressive twin (B = 1): every pass commits exactly one token, sure or not,
    # and sees all the tokens before it; <eom> takes one pass more.
    E = SPECIAL.end_of_middle
    model = PerPassScript([_unsure(9), 10, _unsure(11), E])
    context = [2, 9, 3, 10, 4]
    cache = KVCache(model.cfg, torch.float32, torch.device("cpu"))
    out = _generate(model, context, cache)
    assert out.tokens == [9, 10, 11]
    assert out.finished
    assert out.forward_passes == len(out.tokens) + 1
    assert out.tokens_per_pass == [1, 1, 1, 0]
    assert model.inputs == [[SPECIAL.mask]] * 4
    assert model.cached == [context, context + [9], context + [9, 10], context + [9, 10, 11]]
