"""The confidence gate: its score, the engine hiding completions below `minConfidence`
(scripted backend of known confidences), the setting's validation, and where the
confidence shows (fim/stats, `fim-server complete`)."""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

from fim_server import cli, gate
from fim_server.backends import Backend, Infill, InfillRequest
from fim_server.context import ContextSettings
from fim_server.engine import Engine, EngineSettings
from fim_server.server import stats_payload
from fim_server.settings import UserSettings, apply_settings


@dataclass
class ConfidentModel(Backend):
    """Answers the infills in order, each with the confidence it is given."""

    answers: list[tuple[str, float | None]]
    name: str = "scripted"
    description: str = "a scripted backend with known confidences"
    context_tokens: int | None = None
    calls: int = 0
    seen: list[str] = field(default_factory=list)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def infill(self, request: InfillRequest) -> list[Infill]:
        text, confidence = self.answers[self.calls]
        self.calls += 1
        return [Infill(text, tokens=2, forward_passes=2, confidence=confidence)]

    def close(self) -> None:
        pass


def make_engine(model: ConfidentModel, min_confidence: float) -> Engine:
    engine = Engine(EngineSettings(context=ContextSettings(), cache_size=16))
    engine.use_backend(model)
    engine.configure(UserSettings(debounce_ms=0, min_confidence=min_confidence))
    return engine


# -- the score -------------------------------------------------------------------------


def test_an_answer_scores_the_models_confidence() -> None:
    s = gate.signals("total + 1", 0.62)
    assert not s.loop
    assert gate.score(s) == pytest.approx(0.62)


def test_a_looping_answer_scores_lower_than_the_same_confidence_without_a_loop() -> None:
    looping = gate.signals("self: str, t: str, t: str, t: str,", 0.9)
    assert looping.loop
    assert gate.score(looping) == pytest.approx(0.9 * gate.LOOP_FACTOR)


@pytest.mark.parametrize(
    "text",
    [
        "ss.util.s.s.s.s.s.s",  # short loops the embedded model wrote in the typing replay
        "#define XT_MAX_C_C_C_C_C_C",
        "self: str, t: str, t: str, t: str,",
        "_self" * 30,  # long enough for the cleanup's `degenerate` rule
    ],
)
def test_loops_are_recognised(text: str) -> None:
    assert gate.repeats_itself(text)


@pytest.mark.parametrize(
    "text",
    [
        "mask = 0x00000000;",
        "# ------------------",
        "        return self.name",
        "self.a = a; self.b = b",
        "point(x, y, z)",
    ],
)
def test_ordinary_code_is_no_loop(text: str) -> None:
    assert not gate.repeats_itself(text)


def test_a_backend_without_confidence_is_judged_on_postprocessing_alone() -> None:
    assert gate.score(gate.signals("abc", None)) == 1.0
    assert gate.score(gate.signals("ab_ab_ab_ab", None)) == gate.LOOP_FACTOR


@pytest.mark.parametrize(
    ("confidence", "min_confidence", "shown"),
    [(0.5, 0.0, True), (0.5, 0.5, True), (0.49, 0.5, False), (None, 0.0, True), (None, 0.1, False)],
)
def test_shows_compares_with_the_setting(
    confidence: float | None, min_confidence: float, shown: bool
) -> None:
    assert gate.shows(confidence, min_confidence) is shown


# -- the engine ------------------------------------------------------------------------

# Different documents, so that no answer comes from the cache.
LINES = [f"x{i} = a + " for i in range(6)]
CONFIDENCES = [0.9, 0.2, 0.45, 0.5, None, 0.05]


def test_exactly_the_completions_at_or_above_the_gate_are_shown() -> None:
    model = ConfidentModel([("b", c) for c in CONFIDENCES])
    engine = make_engine(model, 0.45)
    shown = []
    for line in LINES:
        completion = engine.complete_blocking(line + "\n", len(line), uri=f"file:///{line[:2]}.py")
        shown.append(completion.text)
        if not completion.text:
            assert "confidence gate" in completion.reason
            assert "minConfidence 0.45" in completion.reason
    # None: the backend cannot tell, so only post-processing judges it (nothing was cut).
    assert shown == ["b", "", "b", "b", "b", ""]
    stats = engine.stats()
    assert (stats.completions, stats.gated, stats.model_runs) == (4, 2, 6)
    assert stats.last_confidence == pytest.approx(0.05)
    assert stats.last_model_confidence == pytest.approx(0.05)
    engine.close()


def test_a_gate_at_zero_shows_every_completion() -> None:
    model = ConfidentModel([("b", c) for c in CONFIDENCES])
    engine = make_engine(model, 0.0)
    texts = [
        engine.complete_blocking(line + "\n", len(line), uri=f"file:///{line[:2]}.py").text
        for line in LINES
    ]
    assert texts == ["b"] * 6 and engine.stats().gated == 0
    engine.close()


def test_the_gate_judges_cached_answers_with_the_setting_in_force() -> None:
    model = ConfidentModel([("b", 0.3)])
    engine = make_engine(model, 0.0)
    text, offset = "x = a + \n", 8
    assert engine.complete_blocking(text, offset, uri="file:///a.py").text == "b"
    engine.configure(UserSettings(debounce_ms=0, min_confidence=0.6))
    again = engine.complete_blocking(text, offset, uri="file:///a.py")
    assert again.cached and again.text == "" and again.confidence == pytest.approx(0.3)
    assert model.calls == 1
    engine.close()


def test_text_postprocessing_cut_away_does_not_lower_the_score() -> None:
    # A block whose second line leaves the block, and loops: the cleanup cuts it (a block
    # runs to its budget unless the model ends it, so a cut is the normal case).
    raw = "return 1\nprint('outside the function')\nx_x_x_x_x_x_x"
    model = ConfidentModel([(raw, 0.7)])
    engine = make_engine(model, 0.5)
    completion = engine.complete_blocking("def f():\n    \n", 13, uri="file:///f.py")
    assert completion.text == "return 1"
    assert completion.confidence == pytest.approx(0.7)
    engine.close()


def test_typing_through_a_shown_completion_keeps_its_confidence() -> None:
    model = ConfidentModel([("total + 1", 0.8)])
    engine = make_engine(model, 0.5)
    text = "y = \n"
    first = engine.complete_blocking(text, 4, uri="file:///t.py")
    assert first.text == "total + 1"
    rest = engine.complete_blocking("y = to\n", 6, uri="file:///t.py")
    assert (rest.text, rest.cached) == ("tal + 1", True)
    assert rest.confidence == pytest.approx(first.confidence)
    engine.close()


def test_stats_report_shown_hidden_and_the_acceptance_rate() -> None:
    model = ConfidentModel([("b", c) for c in (0.9, 0.1, 0.8, 0.7)])
    engine = make_engine(model, 0.5)
    for line in LINES[:4]:
        engine.complete_blocking(line + "\n", len(line), uri=f"file:///{line[:2]}.py")
    assert engine.stats().acceptance_rate is None  # no client has reported acceptance
    engine.accepted("file:///x3.py", 1, partial=True)
    payload = stats_payload(engine.stats())
    assert (payload["completions"], payload["gated"], payload["accepted"]) == (3, 1, 1)
    assert payload["acceptanceRate"] == pytest.approx(1 / 3)
    assert payload["lastConfidence"] == pytest.approx(0.7)
    engine.close()


async def test_a_completion_computed_ahead_counts_as_shown_only_when_it_is() -> None:
    model = ConfidentModel([("total += x", 0.9), (" + 1", 0.9)])
    engine = make_engine(model, 0.0)
    uri = "file:///sum.py"
    text = "def f(xs):\n    total = 0\n    for x in xs:\n        \n"
    offset = text.index("        \n") + 8
    shown = await engine.complete(text, offset, uri=uri)
    ahead = engine.accepted(uri, len(shown.text), partial=False)
    assert ahead is not None
    await ahead
    assert model.calls == 2
    stats = engine.stats()
    assert (stats.completions, stats.acceptance_rate) == (1, 1.0)
    # The user gets there: now it is shown.
    accepted_text = text[:offset] + shown.text + text[offset:]
    following = await engine.complete(accepted_text, offset + len(shown.text), uri=uri)
    assert following.cached and following.text == " + 1"
    assert engine.stats().completions == 2
    engine.close()


# -- the setting -----------------------------------------------------------------------


def test_without_a_setting_each_backend_has_its_own_gate() -> None:
    assert UserSettings().min_confidence is None
    for backend, value in gate.DEFAULT_MIN_CONFIDENCE.items():
        assert gate.default_min_confidence(backend) == value and 0 <= value < 1
    # The diffusion families score as the embedded model does, uncalibrated on their own.
    assert gate.default_min_confidence("dream") == gate.DEFAULT_MIN_CONFIDENCE["embedded"]
    # No confidence (mercury, openai): the score is 1, or half that for a loop.
    no_confidence = gate.default_min_confidence("mercury")
    assert gate.shows(gate.score(gate.signals("total + 1", None)), no_confidence)
    looping = gate.signals("self: str, t: str, t: str, t: str,", None)
    assert not gate.shows(gate.score(looping), no_confidence)


def test_the_engine_gates_with_the_backends_default_until_the_user_sets_one() -> None:
    answers = [("x + 1", None), ("t, t, t, t, t", None), ("x + 2", 0.3), ("x + 3", 0.3)]
    engine = Engine(EngineSettings(context=ContextSettings(), cache_size=0))
    engine.use_backend(ConfidentModel(answers, name="mercury"))
    engine.configure(UserSettings(debounce_ms=0))
    text = "def f(x):\n    return "
    assert engine.stats().min_confidence == gate.LOOPS_ONLY
    # A backend that cannot tell its confidence: shown, unless the answer loops.
    assert engine.complete_blocking(text, len(text)).text == "x + 1"
    assert engine.complete_blocking(text, len(text)).text == ""
    assert engine.stats().gated == 1
    engine.configure(UserSettings(debounce_ms=0, min_confidence=0.5))  # the user's wins
    assert engine.stats().min_confidence == 0.5
    assert engine.complete_blocking(text, len(text)).text == ""
    engine.configure(UserSettings(debounce_ms=0, min_confidence=0.2))
    assert engine.complete_blocking(text, len(text)).text == "x + 3"
    engine.close()


def test_null_min_confidence_goes_back_to_the_backends_default() -> None:
    update = apply_settings(UserSettings(min_confidence=0.2), {"fim": {"minConfidence": None}})
    assert update.errors == [] and update.settings.min_confidence is None


@pytest.mark.parametrize("value", [0, 1, 0.35])
def test_min_confidence_takes_numbers_from_0_to_1(value: float) -> None:
    update = apply_settings(UserSettings(), {"fim": {"minConfidence": value}})
    assert update.errors == []
    assert update.settings.min_confidence == value
    assert isinstance(update.settings.min_confidence, float)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-0.1, "minConfidence must be at least 0"),
        (1.5, "minConfidence must be at most 1"),
        ("high", "minConfidence must be a number"),
        (True, "minConfidence must be a number"),
        (math.nan, "minConfidence must be a number"),
    ],
)
def test_a_bad_min_confidence_keeps_the_old_value(value: object, message: str) -> None:
    update = apply_settings(UserSettings(min_confidence=0.2), {"fim": {"minConfidence": value}})
    assert update.settings.min_confidence == 0.2
    (error,) = update.errors
    assert message in error and "kept 0.2" in error


# -- fim-server complete ---------------------------------------------------------------


@pytest.mark.parametrize(("min_confidence", "decision"), [("0", "shown"), ("1", "hidden")])
def test_complete_prints_the_gate_decision(
    tmp_path, capsys: pytest.CaptureFixture[str], min_confidence: str, decision: str
) -> None:
    source = tmp_path / "area.py"
    source.write_text('def circle_area(radius):\n    """Area of a circle."""\n    \n')
    code = cli.main(["complete", f"{source}:3:5", "--min-confidence", min_confidence])
    out, err = capsys.readouterr()
    assert code == 0
    assert f"gate={decision} (minConfidence {float(min_confidence):.2f})" in err
    assert "model_confidence=" in err
    assert (out.strip() != "") is (decision == "shown")


def test_complete_refuses_a_gate_outside_0_to_1(tmp_path, capsys) -> None:
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    assert cli.main(["complete", f"{source}:1:1", "--min-confidence", "2"]) == cli.EXIT_USAGE
    assert "--min-confidence must be between 0 and 1" in capsys.readouterr().err


# -- over LSP, with the shipped model ---------------------------------------------------

SERVER = [sys.executable, "-m", "fim_server", "--stdio"]
# Where the shipped model answers (tests/test_lsp.py's MEAN): `return total / `.
MEAN = "def mean(values):\n    total = sum(values)\n    return total / \n"


async def lsp_stats(client: LanguageClient) -> dict[str, Any]:
    return (await client.protocol.send_request_async("fim/stats", None))._asdict()


async def lsp_inline(client: LanguageClient, uri: str) -> list[types.InlineCompletionItem]:
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=2, character=19),
        )
    )
    assert result is not None
    return result.items


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER))
async def gated_client(lsp_client: LanguageClient):
    # A gate no completion clears: 1 would need every token at probability 1.
    await lsp_client.initialize_session(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities()
                )
            ),
            initialization_options={"fim": {"minConfidence": 1, "crossFile": False}},
        )
    )
    deadline = time.monotonic() + 180
    while not (await lsp_stats(lsp_client))["modelReady"]:
        assert time.monotonic() < deadline, "the shipped model did not load"
        await asyncio.sleep(0.05)
    yield
    await lsp_client.shutdown_session()


async def test_the_gate_over_lsp_hides_then_shows_and_stats_count_it(
    gated_client: LanguageClient,
) -> None:
    uri = "file:///tmp/fim-gate/mean.py"
    gated_client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=MEAN
            )
        )
    )
    assert not await lsp_inline(gated_client, uri)
    stats = await lsp_stats(gated_client)
    assert (stats["completions"], stats["gated"], stats["modelRuns"]) == (0, 1, 1)
    confidence = stats["lastConfidence"]
    assert confidence is not None and 0 < confidence < 1
    # The user lowers the gate: the same completion (from the cache) is shown.
    gated_client.workspace_did_change_configuration(
        types.DidChangeConfigurationParams(settings={"fim": {"minConfidence": 0}})
    )
    (item,) = await lsp_inline(gated_client, uri)
    stats = await lsp_stats(gated_client)
    assert (stats["completions"], stats["gated"], stats["modelRuns"]) == (1, 1, 1)
    assert stats["lastConfidence"] == pytest.approx(confidence)
    assert stats["acceptanceRate"] is None
    text = item.insert_text
    assert isinstance(text, str)
    gated_client.protocol.notify("fim/accepted", {"uri": uri, "chars": len(text), "partial": True})
    deadline = time.monotonic() + 5
    while (stats := await lsp_stats(gated_client))["accepted"] == 0:
        assert time.monotonic() < deadline, "fim/accepted was not counted"
        await asyncio.sleep(0.02)
    assert stats["acceptanceRate"] == pytest.approx(1.0)
