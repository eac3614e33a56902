"""The remote backends against a server that speaks their wire formats on 127.0.0.1:
what each request carries, streaming and the early stop, cancellation, every failure a
user can meet, and that the API key never leaks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from remote_servers import (
    COMPLETION_PATH,
    COMPLETIONS_PATH,
    FIM_PATH,
    INFILL_PATH,
    QWEN_IDS,
    Plan,
    WireServer,
)

from fim_server.backends import (
    BackendError,
    BackendSpec,
    InfillCancelled,
    InfillRequest,
    load_backend,
    remote,
)
from fim_server.backends.remote import RemoteBackend
from fim_server.context import ContextSettings, build_context
from fim_server.engine import Engine, EngineSettings
from fim_server.pipeline import completion_done, infill_request

KEY = "test-key-123"


@pytest.fixture
def server() -> Iterator[WireServer]:
    wire = WireServer(key=KEY)
    yield wire
    wire.close()


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    # Refusals make the next requests wait; tests that go on after one wait this out.
    monkeypatch.setattr(remote, "RETRY_S", 0.05)


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCEPTION_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


def backend(kind: str, url: str, **kw: object) -> RemoteBackend:
    spec = BackendSpec(kind=kind, endpoint=url, **kw)  # type: ignore[arg-type]
    loaded = load_backend(spec)
    assert isinstance(loaded, RemoteBackend)
    return loaded


def fill(b: RemoteBackend, prefix: str = "def add(a, b):\n    ", suffix: str = "\n", **kw):
    options = {"max_tokens": 16, "single_line": False, "should_cancel": lambda: False, "seed": 0}
    options.update(kw)
    (infill,) = b.infill(InfillRequest(prefix, suffix, **options))
    return infill


def after_backoff() -> None:
    time.sleep(0.1)


# -- what each request carries --------------------------------------------------------------


def test_mercury_request_and_streamed_answer(server: WireServer) -> None:
    b = backend("mercury", server.url)
    try:
        infill = fill(b, max_tokens=20)
    finally:
        b.close()
    assert infill.text == "return a + b\n"
    assert infill.tokens == 3  # usage.completion_tokens of the last event
    (seen,) = server.wait_finished(1)
    assert seen.path == FIM_PATH
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body == {
        "model": "mercury-edit-2",
        "prompt": "def add(a, b):\n    ",
        "suffix": "\n",
        "max_tokens": 20,
        "stream": True,
    }
    assert b.description == f"mercury (mercury-edit-2) at {server.url}"


def test_endpoint_with_v1_and_a_chosen_model(server: WireServer) -> None:
    b = backend("mercury", server.url + "/v1/", remote_model="mercury-coder")
    try:
        fill(b, single_line=True)
    finally:
        b.close()
    (seen,) = server.wait_finished(1)
    assert seen.path == FIM_PATH  # no /v1/v1
    assert seen.body["model"] == "mercury-coder" and seen.body["stop"] == ["\n"]


def test_openai_prompt_and_suffix(server: WireServer) -> None:
    b = backend("openai", server.url, remote_model="qwen2.5-coder", headers=(("X-Team", "a"),))
    try:
        assert fill(b).text == "return a + b\n"
    finally:
        b.close()
    (seen,) = server.wait_finished(1)
    assert seen.path == COMPLETIONS_PATH and seen.headers["x-team"] == "a"
    assert seen.body["model"] == "qwen2.5-coder"
    assert (seen.body["prompt"], seen.body["suffix"]) == ("def add(a, b):\n    ", "\n")
    assert seen.body["stream"] is True and seen.body["max_tokens"] == 16


def test_openai_raw_fim_prompt(server: WireServer) -> None:
    template = "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    b = backend("openai", server.url, fim_template=template)
    try:
        # Braces in the code stay as they are.
        fill(b, prefix="x = {prefix}\n", suffix="{suffix}\n")
    finally:
        b.close()
    (seen,) = server.wait_finished(1)
    assert seen.body["prompt"] == (
        "<|fim_prefix|>x = {prefix}\n<|fim_suffix|>{suffix}\n<|fim_middle|>"
    )
    assert "suffix" not in seen.body and "model" not in seen.body


def test_a_template_without_both_slots_is_refused() -> None:
    with pytest.raises(BackendError, match="fimTemplate"):
        load_backend(
            BackendSpec(kind="openai", endpoint="http://127.0.0.1:9", fim_template="{prefix}")
        )


def test_llama_cpp_infill_puts_other_files_in_input_extra(server: WireServer) -> None:
    server.key = None  # llama.cpp's server runs without a key by default
    text = "def add(a, b):\n    \n"
    ctx = build_context(text, text.index("\n") + 5, lambda s: len(s) // 4, ContextSettings())
    ctx = type(ctx)(
        **{
            **ctx.__dict__,
            "extra": "# other.py\nimport math\n",
            "extra_chunks": (("other.py", "import math\n"),),
        }
    )
    b = backend("llama.cpp", server.url)
    try:
        (infill,) = b.infill(infill_request(ctx, should_cancel=lambda: False, seed=3, count=1))
    finally:
        b.close()
    assert infill.text == "return a + b\n" and infill.tokens == 3
    (seen,) = server.wait_finished(1)
    assert seen.path == INFILL_PATH and "authorization" not in seen.headers
    body = seen.body
    # The cursor's line up to the cursor in `prompt`, which llama.cpp appends to the
    # prefix: the lines above stay one run of tokens for its prompt cache.
    assert (body["input_prefix"], body["prompt"]) == ("def add(a, b):\n", "    ")
    assert body["input_prefix"] + body["prompt"] == ctx.prefix
    assert body["input_suffix"] == ctx.suffix
    # Each file its own chunk, named: llama.cpp lays them out as <|file_sep|>name\ntext.
    assert body["input_extra"] == [{"filename": "other.py", "text": "import math\n"}]
    assert body["cache_prompt"] is True and body["n_probs"] == 1
    assert body["n_predict"] == ctx.max_tokens and body["seed"] == 3 and body["stream"] is True
    assert b.last_exchange is not None and b.last_exchange.server_ms == 4.0  # its timings
    # A model without Qwen's FIM tokens: asked once, then /infill lays the prompt out.
    assert [t["parse_special"] for t in server.tokenized] == [True]


def test_llama_cpp_with_qwen_tokens_puts_the_typed_line_after_the_fim_middle(
    server: WireServer,
) -> None:
    server.key = None
    server.fim_tokens = True
    server.plans = [Plan(pieces=["ret", "urn a", " + b"]), Plan(pieces=["x = 0"])]
    b = backend("llama.cpp", server.url)
    try:
        first = fill(b, prefix="def add(a, b):\n    ret", suffix="\n\nprint(add(1, 2))\n")
        second = fill(b, prefix="def add(a, b):\n    return a +", suffix="\n")
    finally:
        b.close()
    # The answer starts with the held-back word the user is typing: only what follows it
    # is the completion.
    assert first.text == "urn a + b"
    # An answer that does not start with it (a server that ignored the grammar) is no
    # continuation of what was typed: nothing, rather than "return a +x = 0".
    assert second.text == ""
    seen = server.wait_finished(2)
    assert [s.path for s in seen] == [COMPLETION_PATH, COMPLETION_PATH]
    ids = QWEN_IDS
    # Whole lines and the cursor line's indentation in the FIM prefix, the code typed
    # after it after the FIM middle token, so a keystroke only appends to what the
    # server has cached; the word being typed (its last pre-token, here "ret") is held
    # back and the answer made to start with it by a grammar.
    assert seen[0].body["prompt"] == [
        ids["<|repo_name|>"],
        "project\n",
        ids["<|file_sep|>"],
        "file\n",
        ids["<|fim_prefix|>"],
        "def add(a, b):\n    ",
        ids["<|fim_suffix|>"],
        "\n\nprint(add(1, 2))\n",
        ids["<|fim_middle|>"],
    ]
    assert seen[0].body["grammar"] == 'root ::= "ret" .*'
    assert seen[1].body["prompt"][-2:] == [ids["<|fim_middle|>"], "return a"]
    assert seen[1].body["grammar"] == 'root ::= " +" .*'
    assert seen[0].body["cache_prompt"] is True and "input_prefix" not in seen[0].body
    # The model's tokens were asked for once.
    assert len(server.tokenized) == 1


def test_llama_cpp_puts_the_lines_written_since_the_anchor_row_after_the_fim_middle(
    server: WireServer,
) -> None:
    server.key = None
    server.fim_tokens = True
    server.default = Plan(pieces=[" b"])
    b = backend("llama.cpp", server.url)
    written = "    total = a\n    return total +"
    try:
        fill(b, prefix="def add(a, b):\n" + written, suffix="\n", middle=len(written))
    finally:
        b.close()
    (seen,) = server.wait_finished(1)
    ids = QWEN_IDS
    # The middle written so far (InfillRequest.middle) follows the FIM middle token; the
    # anchor row's indentation stays in the prefix, and the word being typed is held back.
    assert seen.body["prompt"][-6:] == [
        ids["<|fim_prefix|>"],
        "def add(a, b):\n    ",
        ids["<|fim_suffix|>"],
        "\n",
        ids["<|fim_middle|>"],
        "total = a\n    return total",
    ]
    assert seen.body["grammar"] == 'root ::= " +" .*'


def test_llama_cpp_limits_the_writing_time_of_automatic_blocks_only(server: WireServer) -> None:
    """An automatic block is cut at a line break after its `block_ms` (a CPU writes a long
    block for seconds while the user types); one the user asked for and waits for is not,
    and a single line stops at its line break either way."""
    server.key = None
    b = backend("llama.cpp", server.url)
    try:
        fill(b, block_ms=700)
        fill(b)
        fill(b, single_line=True, block_ms=700)
    finally:
        b.close()
    automatic, invoked, line = (s.body for s in server.wait_finished(3))
    assert automatic["t_max_predict_ms"] == 700
    assert "t_max_predict_ms" not in invoked and "stop" not in invoked
    assert line["stop"] == ["\n"] and "t_max_predict_ms" not in line


def test_llama_cpp_holds_back_no_line_break_at_the_start_of_a_line(server: WireServer) -> None:
    """A cursor at the start of a line after the middle's first: the line break is no word
    being typed, and a single line that had to start with it would stop before it began."""
    server.key = None
    server.fim_tokens = True
    server.default = Plan(pieces=["    return total"])
    b = backend("llama.cpp", server.url)
    written = "    total = a + b\n"
    try:
        infill = fill(
            b,
            prefix="def add(a, b):\n" + written,
            suffix="\n",
            middle=len(written),
            single_line=True,
        )
    finally:
        b.close()
    (seen,) = server.wait_finished(1)
    assert seen.body["prompt"][-1] == "total = a + b\n" and "grammar" not in seen.body
    assert infill.text == "    return total"


def test_llama_cpp_sends_text_that_spells_a_special_token_as_plain_text(
    server: WireServer,
) -> None:
    server.key = None
    server.fim_tokens = True
    server.default = Plan(pieces=["x = 1"])
    b = backend("llama.cpp", server.url)
    try:
        fill(b, prefix='END = "<|fim_middle|>"\n', suffix="\n")
    finally:
        b.close()
    (seen,) = server.wait_finished(1)
    prompt = seen.body["prompt"]
    # The document's `<|fim_middle|>` is not the model's FIM token: it went to /tokenize
    # without special-token parsing and arrives as the ids of its characters.
    assert prompt.count(QWEN_IDS["<|fim_middle|>"]) == 1
    assert not any(isinstance(p, str) and "<|" in p for p in prompt)
    assert server.tokenized[-1] == {"content": 'END = "<|fim_middle|>"\n', "parse_special": False}


@pytest.mark.parametrize("kind", ["mercury", "openai", "llama.cpp"])
def test_an_unstreamed_json_answer_is_read(server: WireServer, kind: str) -> None:
    server.default = Plan(pieces=["return ", "a + b"], whole=True)
    if kind == "llama.cpp":
        server.key = None
    b = backend(kind, server.url)
    try:
        assert fill(b).text == "return a + b"
    finally:
        b.close()


# -- streaming: the early stop and cancellation ------------------------------------------------


def test_single_line_stops_the_stream_at_the_line_break(server: WireServer) -> None:
    server.default = Plan(pieces=["a + b", "\n", *["    x = 1\n"] * 100], delay_s=0.05)
    b = backend("mercury", server.url)
    started = time.monotonic()
    try:
        infill = fill(b, single_line=True)
    finally:
        b.close()
    assert infill.text == "a + b\n"
    assert time.monotonic() - started < 4.0  # not the 5 s the whole answer takes
    (seen,) = server.wait_finished(1)
    assert seen.hung_up and seen.pieces_sent < 100  # the stream was closed, not read out
    assert b.last_exchange is not None and b.last_exchange.early_stop


def test_a_block_stops_where_post_processing_cuts_it() -> None:
    text = "def f(x):\n    \n\nprint(f(2))\n"
    ctx = build_context(text, text.index("\n") + 5, lambda s: len(s) // 4, ContextSettings())
    assert not ctx.mode.is_line
    assert not completion_done("y = x * 2\n    return y\n", ctx)
    assert completion_done("y = x * 2\n    return y\nd", ctx)  # a dedented line began
    js = "function f(x) {\n  \n}\n"
    ctx = build_context(
        js, js.index("\n") + 3, lambda s: len(s) // 4, ContextSettings(), language="javascript"
    )
    assert completion_done("return x;\n}", ctx)  # a line left of the block began
    # A closer of the enclosing code counts once its line is complete.
    assert not completion_done("return x; }", ctx)
    assert completion_done("return x; }\n", ctx)


def test_cancellation_mid_stream_closes_the_connection(server: WireServer) -> None:
    server.default = Plan(pieces=["x"] * 200, delay_s=0.05)
    b = backend("mercury", server.url)
    cancelled_at: list[float] = []

    def should_cancel() -> bool:
        # The user moves on once the answer is streaming.
        if not cancelled_at and server.seen and server.seen[0].pieces_sent >= 3:
            cancelled_at.append(time.monotonic())
        return bool(cancelled_at)

    try:
        with pytest.raises(InfillCancelled):
            fill(b, should_cancel=should_cancel)
        stopped = time.monotonic() - cancelled_at[0]
        (seen,) = server.wait_finished(1)
        assert stopped < 4.0, stopped  # not after the 10 s answer
        assert seen.hung_up and seen.pieces_sent < 100
        # The backend serves the next request on a fresh connection.
        server.default = Plan()
        assert fill(b).text == "return a + b\n"
    finally:
        b.close()


def test_cancelled_before_the_request_sends_nothing(server: WireServer) -> None:
    b = backend("mercury", server.url)
    try:
        with pytest.raises(InfillCancelled):
            fill(b, should_cancel=lambda: True)
    finally:
        b.close()
    assert server.seen == []


# -- failures ------------------------------------------------------------------------------------


def failure(b: RemoteBackend, **kw: object) -> str:
    with pytest.raises(BackendError) as caught:
        fill(b, **kw)
    return str(caught.value)


def test_connection_refused() -> None:
    port = WireServer()  # bind a port, then free it: nothing listens there
    url = port.url
    port.close()
    b = backend("openai", url)
    try:
        message = failure(b)
    finally:
        b.close()
    assert message.startswith(f"openai at {url}: cannot connect (connection refused)")


def test_a_slow_server_times_out(server: WireServer) -> None:
    server.default = Plan(first_byte_delay_s=6.0)
    b = backend("mercury", server.url, timeout_ms=200)
    started = time.monotonic()
    try:
        message = failure(b)
    finally:
        b.close()
    assert time.monotonic() - started < 4.0  # not the 6 s the server takes
    assert "no complete answer within 200 ms (timeoutMs)" in message


def test_a_stream_slower_than_the_timeout_times_out(server: WireServer) -> None:
    server.default = Plan(pieces=["x"] * 50, delay_s=0.02)
    b = backend("mercury", server.url, timeout_ms=300)
    try:
        assert "within 300 ms" in failure(b)
    finally:
        b.close()


def test_a_refused_key_names_the_variable_and_never_the_key(server: WireServer) -> None:
    server.key = "the-right-key"  # the server echoes the key it refused
    b = backend("mercury", server.url)
    try:
        message = failure(b)
    finally:
        b.close()
    assert "HTTP 401, the API key was refused (check $INCEPTION_API_KEY)" in message
    assert KEY not in message and "***" in message


def test_a_missing_key_stops_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCEPTION_API_KEY")
    with pytest.raises(BackendError, match="set the environment variable INCEPTION_API_KEY"):
        load_backend(BackendSpec(kind="mercury"))


def test_a_key_from_another_variable(server: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INCEPTION_API_KEY")
    monkeypatch.setenv("MY_MERCURY_KEY", KEY)
    b = backend("mercury", server.url, api_key_env="MY_MERCURY_KEY")
    try:
        assert fill(b).text
    finally:
        b.close()


def test_wrong_path_or_model_is_a_404(server: WireServer) -> None:
    b = backend("mercury", server.url + "/api", remote_model="mercury-nope")
    try:
        message = failure(b)
    finally:
        b.close()
    assert "HTTP 404 for /v1/fim/completions: wrong path or model 'mercury-nope'" in message


def test_infill_unsupported_by_the_model_is_explained(server: WireServer) -> None:
    server.key = None
    server.default = Plan(status=501, error="Infill is not supported by this model")
    b = backend("llama.cpp", server.url)
    try:
        message = failure(b)
    finally:
        b.close()
    assert message.startswith(
        f"llama.cpp at {server.url}: HTTP 501, not supported: Infill is not supported by "
        "this model (/infill needs a model with fill-in-the-middle tokens"
    )


def test_rate_limits_back_off_quietly(server: WireServer) -> None:
    server.plans = [Plan(status=429, error="slow down", headers={"Retry-After": "1"})]
    b = backend("mercury", server.url)
    try:
        assert "HTTP 429, rate limited: slow down" in failure(b)
        # Within the server's Retry-After: answered at once, without a request.
        assert "HTTP 429" in failure(b)
        assert len(server.seen) == 1
        time.sleep(1.1)
        assert fill(b).text == "return a + b\n"
        assert len(server.seen) == 2
    finally:
        b.close()


def test_server_errors_wait_a_moment_and_a_server_back_is_used_at_once(
    server: WireServer,
) -> None:
    server.default = Plan(status=503, error="overloaded")
    b = backend("openai", server.url)
    try:
        for _ in range(4):  # an outage: every try waits the same short moment, no doubling
            assert "HTTP 503, server error: overloaded" in failure(b)
            assert b._quiet_until - time.monotonic() <= remote.RETRY_S
            assert "HTTP 503" in failure(b)  # within the wait: answered without a request
            time.sleep(remote.RETRY_S + 0.01)
        assert len(server.seen) == 4
        server.default = Plan()  # the server is back: the first try after the wait gets it
        assert fill(b).text == "return a + b\n"
    finally:
        b.close()


def test_a_wrong_key_waits_doubling_up_to_the_cap(server: WireServer) -> None:
    server.key = "the-right-key"
    b = backend("mercury", server.url)
    try:
        waits = []
        for _ in range(3):
            failure(b)
            waits.append(b._config_backoff_s)
            time.sleep(max(b._quiet_until - time.monotonic(), 0) + 0.01)
        assert waits == [0.05, 0.1, 0.2]
        b._config_backoff_s = 20.0
        failure(b)
        assert b._config_backoff_s == remote.CONFIG_BACKOFF_CAP_S
    finally:
        b.close()


def test_a_timeout_never_makes_the_next_request_answer_empty(server: WireServer) -> None:
    # A slow model is not a broken one: the request after a timed-out one goes to the
    # server at once and gets its answer.
    server.plans = [Plan(first_byte_delay_s=1.0)]
    b = backend("mercury", server.url, timeout_ms=300)
    try:
        assert "no complete answer within 300 ms" in failure(b)
        assert fill(b).text == "return a + b\n"
        assert len(server.seen) == 2
    finally:
        b.close()


@pytest.mark.parametrize("malformed", ["json", "sse"])
def test_malformed_streams(server: WireServer, malformed: str) -> None:
    server.default = Plan(pieces=["a", "b", "c"], malformed=malformed)
    b = backend("mercury", server.url)
    try:
        message = failure(b)
        expected = "malformed JSON in an event" if malformed == "json" else "malformed event stream"
        assert expected in message
        after_backoff()
        server.default = Plan()
        assert fill(b).text  # still serving
    finally:
        b.close()


def test_a_server_dying_mid_answer(server: WireServer) -> None:
    server.default = Plan(pieces=["a", "b", "c", "d"], die_after=2)
    b = backend("mercury", server.url)
    try:
        assert "the connection broke mid-answer" in failure(b)
    finally:
        b.close()


def test_malformed_whole_answer(server: WireServer) -> None:
    server.default = Plan(pieces=[], whole=True)  # {"choices": [{"text": ""...}]} is fine
    b = backend("openai", server.url)
    try:
        assert fill(b).text == ""
    finally:
        b.close()


def test_endpoint_must_be_http() -> None:
    with pytest.raises(BackendError, match="not an http:// or https:// URL"):
        load_backend(BackendSpec(kind="openai", endpoint="127.0.0.1:8000"))
    with pytest.raises(BackendError, match="needs an endpoint"):
        load_backend(BackendSpec(kind="openai"))


# -- in the engine: failures answer empty, the cache stays in front -------------------------------


def test_engine_answers_empty_on_failure_and_the_cache_avoids_the_network(
    server: WireServer,
) -> None:
    spec = BackendSpec(kind="mercury", endpoint=server.url)
    engine = Engine(EngineSettings(backend=spec))
    try:
        text = "def add(a, b):\n    \n"
        server.plans = [Plan(status=500, error="boom")]
        failed = engine.complete_blocking(text, 19)
        assert failed.text == "" and failed.failure is not None and "HTTP 500" in failed.failure
        assert engine.stats().last_error == failed.failure
        after_backoff()
        answered = engine.complete_blocking(text, 19)
        assert answered.text == "return a + b" and answered.failure is None
        assert engine.stats().last_error is None
        again = engine.complete_blocking(text, 19)
        assert again.cached and again.text == answered.text
        assert len(server.seen) == 2  # the cached answer never reached the server
    finally:
        engine.close()


def test_nothing_connects_without_a_remote_backend() -> None:
    """The embedded backend opens no socket and does not even import the HTTP client."""
    script = textwrap.dedent(
        """
        import socket, sys
        connects = []
        real = socket.socket.connect
        def connect(self, address):
            connects.append(address)
            return real(self, address)
        socket.socket.connect = connect
        socket.socket.connect_ex = lambda self, address: connects.append(address) or 1
        from fim_server.engine import Engine
        engine = Engine()
        completion = engine.complete_blocking("def add(a, b):\\n    return a", 27)
        engine.close()
        assert engine.stats().backend == "embedded", engine.stats()
        assert connects == [], connects
        assert "httpx" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


# -- settings ---------------------------------------------------------------------------------


def test_backend_settings_replace_the_command_line_parts_they_name() -> None:
    from fim_server.config.settings import UserSettings, apply_settings, backend_spec

    base = BackendSpec(kind="openai", endpoint="http://a:1", timeout_ms=900)
    payload = {
        "backend": "mercury",
        "remoteModel": "m",
        "apiKeyEnv": "K",
        "headers": {"X-Secret": "hunter2"},
    }
    update = apply_settings(UserSettings(), {"fim": payload})
    assert update.errors == []
    spec = backend_spec(base, update.settings)
    assert (spec.kind, spec.endpoint, spec.remote_model, spec.api_key_env, spec.timeout_ms) == (
        "mercury", "http://a:1", "m", "K", 900,
    )  # fmt: skip
    assert spec.headers == (("X-Secret", "hunter2"),)
    # Header values stay out of anything that is logged.
    assert "hunter2" not in repr(update.settings) and "hunter2" not in repr(spec)
    assert backend_spec(base, UserSettings()) == base


def test_bad_backend_settings_keep_the_previous_values() -> None:
    from fim_server.config.settings import UserSettings, apply_settings

    current = UserSettings(backend="openai")
    update = apply_settings(
        current, {"backend": "gpt", "headers": {"X": 1}, "timeoutMs": 0, "endpoint": 5}
    )
    assert update.settings == current
    assert len(update.errors) == 4
    assert "must be one of auto, embedded, dream," in update.errors[0]
    assert "mercury, openai, llama.cpp, got 'gpt'" in update.errors[0]
