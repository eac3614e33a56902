"""Memory with a ceiling, and large documents that hold up nobody: parse state is kept
for the documents used most recently only, and a large document's first parse runs on
a thread of its own while other requests are answered."""

from __future__ import annotations

import time

from wire import InProcessServer, did_open, initialize, inline, request, scripted_engine

from fim_server.documents import TREE_BUDGET_CHARS
from fim_server.languages import LANGUAGES, parse
from fim_server.settings import UserSettings


def large_text(chars: int, serial: int) -> str:
    lines, size, i = [], 0, 0
    while size < chars:
        line = f"def helper_{serial}_{i}(value, other):\n    return value + other * {i}\n\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines) + "def total(items):\n    return \n"


async def test_a_large_first_parse_never_blocks_other_requests() -> None:
    text = large_text(990_000, 0)  # below the size the engine slices: parsed whole
    started = time.perf_counter()
    parse(LANGUAGES["python"], text.encode())
    parse_s = time.perf_counter() - started
    server = InProcessServer()
    server.send(*initialize())
    await server.answer("init")
    server.send(did_open("file:///big.py", text))
    sent = time.perf_counter()
    server.send(inline(1, "file:///big.py", text.count("\n") - 1, 11), request(2, "fim/stats"))
    await server.answer(2)
    stats_s = time.perf_counter() - sent
    assert (await server.answer(1))["result"]["items"][0]["insertText"] == "b"
    # The stats answer did not wait for the parse (which alone takes parse_s).
    assert stats_s < parse_s / 2, (
        f"fim/stats took {stats_s * 1000:.0f} ms, a parse {parse_s * 1000:.0f} ms"
    )
    await server.close()


def test_forty_large_documents_keep_parse_state_within_the_budget() -> None:
    engine = scripted_engine()
    engine.configure(UserSettings(debounce_ms=0, cross_file=False))
    for n in range(40):
        uri = f"file:///large/{n}.py"
        text = large_text(316_000, n)
        engine.documents.open(uri, text, "python")
        assert engine.complete_blocking(text, len(text) - 1, uri=uri).text == "b"
        assert engine.documents.held_tree_chars() <= TREE_BUDGET_CHARS
    for n in range(40):
        engine.documents.close(f"file:///large/{n}.py")
    assert engine.documents.held_tree_chars() == 0
    engine.close()
