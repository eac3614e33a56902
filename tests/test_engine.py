"""The engine's pipeline with a scripted model: what reaches the model, what comes back,
the cache, typing-through, supersession and the settings (no real model needed; the
real one is exercised in test_lsp.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import pytest

from fim_server.backends import Backend, Infill, InfillCancelled, InfillRequest
from fim_server.config.settings import UserSettings
from fim_server.context import ContextSettings, Mode
from fim_server.context.documents import Position, TextChange
from fim_server.engine import Engine, EngineSettings


@dataclass
class ScriptedModel(Backend):
    """Answers every infill with `answer`, after `steps` cancellable steps."""

    answer: str
    name: str = "scripted"
    description: str = "a scripted test backend"
    context_tokens: int | None = None
    steps: int = 1
    step_s: float = 0.0
    calls: list[tuple[str, str, int, bool]] = field(default_factory=list)
    block_ms: list[int] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def infill(self, request: InfillRequest) -> list[Infill]:
        r = request
        self.calls.append((r.model_prefix, r.suffix, r.max_tokens, r.single_line))
        self.block_ms.append(r.block_ms)
        self.started.set()
        for _ in range(self.steps):
            if r.should_cancel():
                raise InfillCancelled("stopped")
            time.sleep(self.step_s)
        return [Infill(self.answer, tokens=3, forward_passes=2, confidence=0.5)]

    def close(self) -> None:
        pass


def make_engine(model: ScriptedModel, **user: object) -> Engine:
    engine = Engine(EngineSettings(context=ContextSettings(), cache_size=16))
    engine.use_backend(model)
    engine.configure(UserSettings(debounce_ms=0, **user))  # type: ignore[arg-type]
    return engine


def at_cursor(marked: str) -> tuple[str, int]:
    return marked.replace("|", ""), marked.index("|")


GO = "package m\n\nfunc area(w, h int) int {\n\treturn max(|)\n}\n"


def test_two_positional_arguments_mean_python() -> None:
    model = ScriptedModel("b")
    engine = make_engine(model)
    completion = engine.complete_blocking(*at_cursor("def f(a, b):\n    return a +|\n"))
    assert completion.text == "b" and completion.mode is Mode.SINGLE_LINE
    assert engine.stats().last_language == "python"
    engine.close()


def test_language_from_the_path_and_a_replace_range_over_closing_brackets() -> None:
    model = ScriptedModel("w, h")  # the model leaves `max(` for the existing `)` to close
    engine = make_engine(model)
    text, offset = at_cursor(GO)
    completion = engine.complete_blocking(text, offset, path="/src/area.go")
    assert engine.stats().last_language == "go"
    # Inside brackets that end the line the model may write a block (a callback); the
    # answer replaces the `)` the editor already put there.
    assert completion.mode is Mode.MULTI_LINE
    assert (completion.text, completion.replace_chars) == ("w, h)", 1)
    assert model.calls[-1][3] is False
    engine.close()


def test_language_id_wins_over_the_extension_and_unknown_is_plain_text() -> None:
    engine = make_engine(ScriptedModel("x"))
    text, offset = at_cursor("local t = {|}\n")
    engine.complete_blocking(text, offset, language="lua", path="/a/weird.txt")
    assert engine.stats().last_language == "lua"
    engine.complete_blocking(text, offset, path="/a/notes.txt")
    assert engine.stats().last_language is None
    engine.close()


def test_disabled_answers_empty_without_the_model() -> None:
    model = ScriptedModel("b")
    engine = make_engine(model, enable=False)
    completion = engine.complete_blocking(*at_cursor("x = a +|\n"))
    assert completion.text == "" and "disabled" in completion.reason
    assert model.calls == []
    engine.close()


def test_budgets_from_the_settings_reach_the_model() -> None:
    model = ScriptedModel("pass")
    engine = make_engine(model, line_tokens=7, block_tokens=33, context_tokens=40)
    engine.complete_blocking(*at_cursor("x = a +|\n"))
    engine.complete_blocking(*at_cursor("def f():\n    |\n"))
    assert [call[2] for call in model.calls] == [7, 33]
    assert engine.context_settings.prefix_tokens + engine.context_settings.suffix_tokens == 40
    engine.close()


def test_cache_is_keyed_by_document_and_context() -> None:
    model = ScriptedModel("b")
    engine = make_engine(model)
    text, offset = at_cursor("x = a +|\n")
    first = engine.complete_blocking(text, offset, uri="file:///a.py")
    again = engine.complete_blocking(text, offset, uri="file:///a.py")
    other_document = engine.complete_blocking(text, offset, uri="file:///b.py")
    assert (first.cached, again.cached, other_document.cached) == (False, True, False)
    assert again.text == first.text
    assert len(model.calls) == 2
    engine.close()


def test_typing_through_keeps_the_replace_range() -> None:
    model = ScriptedModel("w, h")
    engine = make_engine(model)
    text, offset = at_cursor(GO)
    engine.complete_blocking(text, offset, path="/src/area.go")
    typed = text[:offset] + "w" + text[offset:]
    rest = engine.complete_blocking(typed, offset + 1, path="/src/area.go")
    assert (rest.text, rest.replace_chars, rest.cached) == (", h)", 1, True)
    assert len(model.calls) == 1
    engine.close()


def test_open_documents_give_trees_and_cross_file_context() -> None:
    model = ScriptedModel("x")
    engine = make_engine(model)
    helper = "def apply_discount(price, discount_rate):\n    return price * discount_rate\n"
    engine.documents.open("file:///p/prices.py", helper, "python", 1)
    text, offset = at_cursor("def checkout(cart, discount_rate):\n    return apply_discount(|)\n")
    engine.documents.open("file:///p/shop.py", text, "python", 1)
    engine.complete_blocking(text, offset, uri="file:///p/shop.py")
    prefix = model.calls[-1][0]
    assert prefix.startswith("# p/prices.py\ndef apply_discount(price, discount_rate):")
    assert engine.documents.get("file:///p/shop.py").full_parses == 1
    # Edits reuse the kept tree.
    document = engine.documents.change(
        "file:///p/shop.py", 2, [TextChange("cart", Position(1, 26), Position(1, 26))]
    )
    engine.complete_blocking(document.text, offset + 4, uri="file:///p/shop.py")
    assert (document.full_parses, document.incremental_parses) == (1, 1)
    engine.configure(UserSettings(debounce_ms=0, cross_file=False))
    engine.complete_blocking(document.text, offset + 4, uri="file:///p/shop.py")
    assert not model.calls[-1][0].startswith("# p/prices.py")
    engine.close()


async def test_a_newer_request_supersedes_the_running_one() -> None:
    model = ScriptedModel("b", steps=400, step_s=0.005)
    engine = make_engine(model)
    text, offset = at_cursor("x = a +|\ny = 1\n")
    older = asyncio.ensure_future(engine.complete(text, offset))
    await asyncio.to_thread(model.started.wait, 5)
    model.steps = 1
    newer = await engine.complete(text, offset - 1)
    result = await asyncio.wait_for(older, 5)
    assert result.text == "" and "superseded" in result.reason
    stats = engine.stats()
    assert (stats.superseded, stats.interrupted) == (1, 1)
    assert newer.mode is Mode.SINGLE_LINE or newer.mode is Mode.REST_OF_LINE
    engine.close()


async def test_debounce_lets_a_burst_run_the_model_once() -> None:
    model = ScriptedModel("b")
    engine = make_engine(model)
    engine.configure(UserSettings(debounce_ms=200))
    text = "x = a +\n"
    burst = [asyncio.ensure_future(engine.complete(text, offset)) for offset in (5, 6, 7)]
    results = await asyncio.gather(*burst)
    assert [r.reason for r in results[:2]] == ["superseded by a newer request"] * 2
    assert len(model.calls) == 1
    assert engine.stats().superseded == 2
    engine.close()


async def test_an_explicit_request_does_not_wait_for_the_debounce() -> None:
    model = ScriptedModel("b")
    engine = make_engine(model)
    engine.configure(UserSettings(debounce_ms=10_000))
    started = time.monotonic()
    result = await asyncio.wait_for(engine.complete(*at_cursor("x = a +|\n"), invoked=True), 5)
    assert result.text == "b" and time.monotonic() - started < 5
    engine.close()


async def test_only_automatic_blocks_get_the_writing_time_limit() -> None:
    """The `blockMs` limit keeps blocks short while the user types; a request the user made
    (an Invoked trigger, the command line, evaluation) runs to its token budget."""
    model = ScriptedModel("pass")
    engine = make_engine(model, block_ms=700)
    await engine.complete(*at_cursor("def f():\n    |\n"))
    await engine.complete(*at_cursor("def g():\n    |\n"), invoked=True)
    engine.complete_blocking(*at_cursor("def h():\n    |\n"))
    assert model.block_ms == [700, 0, 0]
    engine.close()


async def test_accepting_a_completion_computes_the_next_one_ahead() -> None:
    model = ScriptedModel("total += x")
    engine = make_engine(model)
    uri = "file:///sum.py"
    text, offset = at_cursor("def f(xs):\n    total = 0\n    for x in xs:\n        |\n")
    shown = await engine.complete(text, offset, uri=uri)
    assert shown.text == "total += x"
    # A partial accept (a word) leaves the rest to typing-through: nothing runs ahead.
    assert engine.accepted(uri, 5, partial=True) is None
    ahead = engine.accepted(uri, len(shown.text), partial=False)
    assert ahead is not None
    model.answer = "return total"
    await asyncio.wait_for(ahead, 5)
    assert len(model.calls) == 2 and model.calls[1][0].endswith("total += x")
    # The editor's next request, at the end of the accepted text, is answered from it.
    accepted_text = text[:offset] + shown.text + text[offset:]
    following = await engine.complete(accepted_text, offset + len(shown.text), uri=uri)
    assert following.cached and len(model.calls) == 2
    stats = engine.stats()
    assert (stats.accepted, stats.accepted_chars, stats.speculative) == (2, 15, 1)
    engine.close()


async def test_a_completion_computed_ahead_ends_quietly_when_the_session_closes() -> None:
    model = ScriptedModel("total += x")
    engine = make_engine(model)
    uri = "file:///sum.py"
    shown = await engine.complete(*at_cursor("def f(xs):\n    for x in xs:\n        |\n"), uri=uri)
    model.steps, model.step_s = 400, 0.005
    model.started.clear()
    ahead = engine.accepted(uri, len(shown.text), partial=False)
    assert ahead is not None
    await asyncio.to_thread(model.started.wait, 5)
    engine.close()  # the editor went away while the model ran ahead
    cancelled = await asyncio.wait_for(ahead, 5)
    assert cancelled.text == ""


async def test_cancelling_the_caller_stops_the_model() -> None:
    model = ScriptedModel("b", steps=400, step_s=0.005)
    engine = make_engine(model)
    task = asyncio.ensure_future(engine.complete(*at_cursor("x = a +|\n")))
    await asyncio.to_thread(model.started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 5
    while engine.stats().interrupted == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert engine.stats().interrupted == 1 and engine.stats().cancelled == 1
    engine.close()


@dataclass
class ScriptedCandidates(ScriptedModel):
    """A backend that decodes several middles at once: `answers`, with `confidences`."""

    answers: tuple[str, ...] = ()
    confidences: tuple[float, ...] = ()
    batches: bool = True
    candidates: int = 2  # its default
    counts: list[int] = field(default_factory=list)

    def infill(self, request: InfillRequest) -> list[Infill]:
        self.counts.append(request.count)
        scripted = list(zip(self.answers, self.confidences, strict=True))[: request.count]
        return [
            Infill(text, tokens=3, forward_passes=2, confidence=confidence)
            for text, confidence in scripted
        ]


def test_candidates_are_distinct_after_cleanup_and_in_order() -> None:
    # "b" twice, and "c  " which cleans up to "c", the same as the third.
    model = ScriptedCandidates("b", answers=("b", "b", "c  ", "c", "d"), confidences=(0.9,) * 5)
    engine = make_engine(model, candidates=5, min_confidence=0)
    completion = engine.complete_blocking(*at_cursor("x = a +|\n"))
    assert completion.text == "b"
    assert [c.text for c in completion.others] == ["c", "d"]
    assert model.counts == [5]
    # The passes are shared by the batch: counted once.
    assert engine.stats().forward_passes == 2
    engine.close()


def test_candidates_default_to_the_backends_and_one_means_one() -> None:
    model = ScriptedCandidates("b", answers=("b", "c", "d"), confidences=(0.9,) * 3)
    engine = make_engine(model, min_confidence=0)
    text, offset = at_cursor("x = a +|\n")
    assert [c.text for c in engine.complete_blocking(text, offset).others] == ["c"]
    assert model.counts == [2]
    # A changed setting is a different request, not the cached answer.
    engine.configure(UserSettings(debounce_ms=0, candidates=1, min_confidence=0))
    completion = engine.complete_blocking(text, offset)
    assert (completion.text, completion.others, completion.cached) == ("b", (), False)
    assert model.counts == [2, 1]  # one asked for, one decoded
    engine.close()


def test_the_gate_drops_unsure_candidates_and_promotes_a_sure_one() -> None:
    model = ScriptedCandidates("b", answers=("b", "c", "d"), confidences=(0.1, 0.9, 0.2))
    engine = make_engine(model, candidates=3, min_confidence=0.5)
    completion = engine.complete_blocking(*at_cursor("x = a +|\n"))
    assert (completion.text, completion.others) == ("c", ())
    engine.configure(UserSettings(debounce_ms=0, candidates=3, min_confidence=0.95))
    hidden = engine.complete_blocking(*at_cursor("x = a +|\n"))
    assert hidden.text == "" and "confidence gate" in hidden.reason
    engine.close()


def test_every_candidate_passes_the_syntax_check() -> None:
    # An extra `)` is dropped from every candidate, not only the first; between brackets
    # the same text replaces the `)` and so balances the line.
    unmatched = "self.keys(self.get_item().keys()))"
    answers = ("self.keys()", unmatched, "self.values()")
    model = ScriptedCandidates("b", answers=answers, confidences=(0.9,) * 3)
    engine = make_engine(model, candidates=3, min_confidence=0)
    method = "class Store:\n    def values(self):\n        return {}\n"
    alone = engine.complete_blocking(*at_cursor(method.format("|")))
    assert [alone.text, *(c.text for c in alone.others)] == ["self.keys()", "self.values()"]
    inside = engine.complete_blocking(*at_cursor(method.format("list(|)")))
    assert [(c.text, c.replace_chars) for c in inside.others][0] == (unmatched, 1)
    engine.close()


def test_the_gate_says_why_with_the_digits_that_show_it() -> None:
    # A score just under the gate: rounded to two digits both would read 0.41.
    model = ScriptedCandidates("b", answers=("b", "c"), confidences=(0.4099, 0.3))
    engine = make_engine(model, min_confidence=0.41)
    hidden = engine.complete_blocking(*at_cursor("x = a +|\n"))
    assert hidden.text == ""
    assert "hidden by the confidence gate (0.4099 < minConfidence 0.41)" in hidden.reason
    engine.close()


def test_typing_through_goes_on_with_every_candidate_it_begins() -> None:
    model = ScriptedCandidates("b", answers=("b + c", "b * d", "e"), confidences=(0.9,) * 3)
    engine = make_engine(model, candidates=3, min_confidence=0)
    text, offset = at_cursor("x = a + |\n")
    shown = engine.complete_blocking(text, offset)
    assert [shown.text, *(c.text for c in shown.others)] == ["b + c", "b * d", "e"]
    typed = text[:offset] + "b" + text[offset:]
    rest = engine.complete_blocking(typed, offset + 1)
    assert rest.cached and [rest.text, *(c.text for c in rest.others)] == [" + c", " * d"]
    # Typing on along the second candidate leaves only it.
    typed = text[:offset] + "b *" + text[offset:]
    rest = engine.complete_blocking(typed, offset + 3)
    assert (rest.text, rest.others) == (" d", ())
    assert model.counts == [3]
    engine.close()
