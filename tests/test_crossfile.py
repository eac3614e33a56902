"""Cross-file context: the most similar chunks of other documents, within a budget."""

from __future__ import annotations

from fim_server.context import ContextSettings, build_context
from fim_server.context.crossfile import (
    CrossFileIndex,
    Snippet,
    Source,
    display_path,
    format_snippets,
    identifiers,
    query_text,
)


def count_words(text: str) -> int:
    return len(text.split())


PRICES = Source(
    "file:///proj/shop/prices.py",
    "".join(f"# filler line {i}\n" for i in range(40))
    + "def apply_discount(price, discount_rate):\n"
    + "    return price * (1 - discount_rate)\n"
    + "".join(f"# more filler {i}\n" for i in range(40)),
    1,
)
UNRELATED = Source(
    "file:///proj/shop/log.py", "import logging\nlogger = logging.getLogger(__name__)\n", 1
)
CURSOR_TEXT = "def checkout(cart, discount_rate):\n    total = apply_discount(|)\n"


def test_identifiers_skip_keywords_and_short_names() -> None:
    assert identifiers("def total(self, xs): return sum_of(xs) if x else None") == {
        "total",
        "sum_of",
    }


def test_the_most_similar_chunk_of_another_file_comes_first() -> None:
    text = CURSOR_TEXT.replace("|", "")
    query = query_text(text, CURSOR_TEXT.index("|"))
    snippets = CrossFileIndex().retrieve(query, [UNRELATED, PRICES], 200, count_words)
    assert snippets, "no snippet found"
    assert snippets[0].path == "shop/prices.py"
    assert "def apply_discount(price, discount_rate):" in snippets[0].text
    assert all("logging" not in s.text for s in snippets)


def test_snippets_fit_the_budget() -> None:
    query = "apply_discount discount_rate price filler"
    for budget in (0, 10, 40, 400):
        snippets = CrossFileIndex().retrieve(query, [PRICES], budget, count_words)
        assert sum(count_words(s.text) + 8 for s in snippets) <= budget


def test_snippets_go_in_front_of_the_prefix_with_their_file_names() -> None:
    text = CURSOR_TEXT.replace("|", "")
    offset = CURSOR_TEXT.index("|")
    settings = ContextSettings(prefix_tokens=200, suffix_tokens=50, cross_file_tokens=80)
    ctx = build_context(
        text, offset, count_words, settings, neighbours=[PRICES], index=CrossFileIndex()
    )
    assert ctx.extra.startswith("# shop/prices.py\n")
    assert "apply_discount(price, discount_rate)" in ctx.extra
    assert ctx.model_prefix == ctx.extra + ctx.prefix
    assert ctx.prefix == text[:offset]  # the document's own window is untouched
    # Within the one budget: other files take from the prefix's share.
    assert count_words(ctx.extra) <= 80 + 8
    js = build_context(
        text,
        offset,
        count_words,
        settings,
        language="javascript",
        neighbours=[PRICES],
        index=CrossFileIndex(),
    )
    assert js.extra.startswith("// shop/prices.py\n")


def test_no_neighbours_no_extra() -> None:
    ctx = build_context(CURSOR_TEXT.replace("|", ""), CURSOR_TEXT.index("|"), count_words)
    assert ctx.extra == ""


def test_format_and_display_path() -> None:
    assert display_path("file:///a/b/c%20d.py") == "b/c d.py"
    assert display_path("/x.py") == "x.py"
    assert format_snippets([Snippet("a.lua", "x = 1", 0.5)], "--") == "-- a.lua\nx = 1\n"


def _large_source(n: int, chars: int = 400_000) -> Source:
    block = "".join(
        f"def helper_{n}_{i}(value_{i}):\n    return value_{i} + {i}\n" for i in range(50)
    )
    return Source(f"file:///proj/large_{n}.py", (block * (chars // len(block) + 1))[:chars], 1)


def test_more_documents_than_fit_are_not_rebuilt_on_every_request(monkeypatch) -> None:
    # 20 documents of 400,000 characters are more than the index holds: the most recent
    # that fit are kept and reused, the rest left out (an LRU taking them in turn
    # rebuilt every one of them on every request, about half a second each time).
    from fim_server.context import crossfile

    built: list[str] = []
    index_one = crossfile._index
    monkeypatch.setattr(crossfile, "_index", lambda s: built.append(s.uri) or index_one(s))
    sources = [_large_source(n) for n in range(20)]
    query = "def total(value_3): return helper_1_3(value_3)"
    index = CrossFileIndex()
    for _ in range(20):
        index.retrieve(query, sources, 200, count_words)
        assert index.chars <= crossfile.MAX_INDEXED_CHARS
    each = min(400_000, crossfile.MAX_DOCUMENT_CHARS)
    fitting = min(crossfile.MAX_INDEXED_CHARS // each, crossfile.MAX_INDEXED_DOCUMENTS)
    assert fitting < len(sources)
    assert sorted(built) == sorted(s.uri for s in sources[:fitting])  # each built once
    built.clear()
    snippets = index.retrieve(query, sources, 200, count_words)
    assert built == [] and snippets and snippets[0].path == "proj/large_1.py"


def test_one_request_indexes_a_bounded_amount_and_the_index_is_small() -> None:
    import tracemalloc

    from fim_server.context import crossfile

    sources = [_large_source(n, 250_000) for n in range(4)]
    index = CrossFileIndex()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index.retrieve("def total(value_3): return value_3", sources, 200, count_words)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert index.chars <= max(crossfile.MAX_INDEXED_PER_REQUEST, 250_000)
    assert len(index) == 1  # the others are indexed by the requests that follow
    assert held < 3 * index.chars, f"{held:,} bytes for {index.chars:,} characters"
    index.retrieve("def total(value_3): return value_3", sources, 200, count_words)
    assert len(index) == 2


def test_a_large_new_neighbour_costs_one_request_little_time() -> None:
    # Indexing runs on the event loop: a document just opened is indexed up to
    # MAX_DOCUMENT_CHARS, and a repetitive one (thousands of chunks scoring alike) is
    # looked at only for its best MAX_CANDIDATES chunks.
    import time

    big = _large_source(0, 990_000)
    query = "def total(value_3): return helper_0_3(value_3)"
    started = time.perf_counter()
    snippets = CrossFileIndex().retrieve(query, [big], 400, count_words)
    took_ms = (time.perf_counter() - started) * 1000
    assert snippets
    assert took_ms < 50, f"{took_ms:.0f} ms"
