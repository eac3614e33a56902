"""Memory with a ceiling, and large documents that hold up nobody: parse state is kept
for the documents used most recently only, and a large document's first parse runs on
a thread of its own while other requests are answered."""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc

from wire import (
    InProcessServer,
    did_open,
    initialize,
    inline,
    notification,
    request,
    scripted_engine,
)

from fim_server.cache import CompletionCache
from fim_server.completion import Completion
from fim_server.config.settings import UserSettings
from fim_server.context.crossfile import MAX_INDEXED_CHARS
from fim_server.context.documents import (
    RECENT_CLOSED_CHARS,
    TREE_BUDGET_CHARS,
    DocumentStore,
    Position,
    TextChange,
    _SlicedParse,
)
from fim_server.context.languages import LANGUAGES, parse


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


def test_a_sliced_parse_leaves_neither_its_tree_nor_its_source_behind() -> None:
    # py-tree-sitter keeps every object the read callback returns, and a Tree that the
    # parse object refers to (and that refers back to it through its callback) is a
    # cycle the garbage collector cannot see: both leaked a tree and the source per
    # large document (about 10 MB for 316 KB).
    spec = LANGUAGES["python"]
    source = large_text(316_000, 1).encode()
    references = sys.getrefcount(source)
    tracemalloc.start()
    try:
        for _ in range(2):  # the first fills the pool of read buffers
            sliced = _SlicedParse(spec, source)
            while not sliced.step(0.001):
                pass
            assert str(sliced.tree.root_node) == str(parse(spec, source).root_node)
            del sliced
            gc.collect()
        held = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            sliced = _SlicedParse(spec, source)
            while not sliced.step(0.001):
                pass
            del sliced
            gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - held
    finally:
        tracemalloc.stop()
    assert sys.getrefcount(source) == references  # no tree or parse holds it
    assert grown < 100_000, f"{grown:,} bytes kept after three parses of {len(source):,}"


async def test_closed_large_documents_leave_no_state_behind() -> None:
    server = InProcessServer()
    server.send(*initialize(options={"fim": {"debounceMs": 0, "crossFile": True}}))
    await server.answer("init")
    engine = server.engine
    uris = [f"file:///large/{n}.py" for n in range(8)]

    async def cycle(round_: int) -> None:
        for n, uri in enumerate(uris):
            text = large_text(316_000, round_ * 100 + n)
            server.send(did_open(uri, text))
            server.send(inline(f"{round_}-{n}", uri, text.count("\n") - 1, 11))
            assert (await server.answer(f"{round_}-{n}"))["result"]["items"]
            assert engine.documents.held_tree_chars() <= TREE_BUDGET_CHARS
            assert engine._cross_file.chars <= MAX_INDEXED_CHARS
        assert len(engine._cross_file) > 0  # the open documents gave context
        for uri in uris:
            server.send(notification("textDocument/didClose", {"textDocument": {"uri": uri}}))
        server.send(request(f"stats-{round_}", "fim/stats"))  # answered once the closes are done
        await server.answer(f"stats-{round_}")
        server.out.__init__()  # what the collector kept of the answers
        gc.collect()

    await cycle(0)
    blocks = sys.getallocatedblocks()  # tree-sitter allocates its trees through PyMem
    await cycle(1)
    assert engine.documents.uris() == set()
    assert len(engine._cross_file) == 0 and engine._cross_file.chars == 0
    assert not any(engine._cache.holds(uri) for uri in uris)
    assert engine.documents.held_tree_chars() == 0
    # A 316 KB document's tree is about 100,000 blocks: none may outlive its document.
    grown = sys.getallocatedblocks() - blocks
    assert grown < 30_000, f"{grown:,} blocks more after a second cycle"
    await server.close()


def test_the_cache_is_bounded_in_characters_and_forgets_closed_documents() -> None:
    cache = CompletionCache(size=256, max_chars=100_000)
    for n in range(200):
        key = (f"file:///{n % 4}.py", "python", "", "x" * 5_000, "y" * 1_000, n)
        cache.put(key, Completion("z" * 100, None, "test"))
        assert cache.chars <= 100_000
    assert 0 < len(cache) < 20
    cache.shown("file:///1.py", "a" * 300_000, 10, Completion("b", None, "test"))
    assert cache.holds("file:///1.py")
    cache.forget("file:///1.py")
    assert not cache.holds("file:///1.py") and cache.after_accepting("file:///1.py") is None
    assert cache.holds("file:///2.py") or cache.holds("file:///3.py")  # others stay
    held = cache.chars
    cache.put(("file:///big.py", "p" * 200_000), Completion("c", None, "test"))
    assert cache.chars == held  # an entry larger than the bound is not kept


def test_closed_documents_kept_for_context_are_bounded_in_characters() -> None:
    store = DocumentStore()
    for n in range(8):
        uri = f"file:///recent/{n}.py"
        store.open(uri, "x = 1\n" * 100_000, "python")  # 600,000 characters
        store.change(uri, 2, [TextChange("# edited\n", Position(0, 0), Position(0, 0))])
        store.close(uri)
    kept = [d for d in store.neighbours(None)]
    assert sum(len(d.text) for d in kept) <= RECENT_CLOSED_CHARS
    assert kept and kept[0].uri == "file:///recent/7.py"  # the newest stay
