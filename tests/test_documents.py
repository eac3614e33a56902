"""The document store: edits applied like an editor sends them, trees kept incrementally."""

from __future__ import annotations

import asyncio
import random

import pytest

from fim_server.context.documents import DocumentStore, Position, TextChange, units_to_chars
from fim_server.context.languages import LANGUAGES, parse

SOURCE = "def f(a):\n    return a + 1\n\n\nclass C:\n    name = 'é😀'\n"


def position_of(text: str, offset: int) -> Position:
    """LSP position (UTF-16 units) of a code-point offset."""
    line_start = text.rfind("\n", 0, offset) + 1
    units = len(text[line_start:offset].encode("utf-16-le")) // 2
    return Position(text.count("\n", 0, offset), units)


def test_units_to_chars_per_encoding() -> None:
    line = "a😀é b"
    assert units_to_chars(line, 3, "utf-16") == 2  # the emoji is two UTF-16 units
    assert units_to_chars(line, 5, "utf-8") == 2  # four bytes for the emoji
    assert units_to_chars(line, 3, "utf-32") == 3
    assert units_to_chars(line, 99, "utf-16") == len(line)


def test_random_edits_keep_text_and_tree_equal_to_a_fresh_parse() -> None:
    rng = random.Random(4)
    store = DocumentStore()
    store.open("file:///x/a.py", SOURCE, "python", 1)
    expected = SOURCE
    pieces = ["x", "\n", "    ", "(", ")", "😀", "def g():\n    pass\n", ""]
    for version in range(2, 80):
        start = rng.randrange(len(expected) + 1)
        end = min(len(expected), start + rng.choice([0, 0, 1, 3, 10]))
        new = rng.choice(pieces)
        change = TextChange(new, position_of(expected, start), position_of(expected, end))
        document = store.change("file:///x/a.py", version, [change])
        expected = expected[:start] + new + expected[end:]
        assert document.text == expected
        if version % 7 == 0:  # parse every few edits: edits accumulate on the old tree
            fresh = parse(LANGUAGES["python"], expected.encode())
            assert str(document.tree().root_node) == str(fresh.root_node)
    assert document.full_parses == 1
    assert document.incremental_parses >= 10


def test_full_replacement_and_several_changes_in_one_notification() -> None:
    store = DocumentStore()
    store.open("file:///x/m.go", "package m\n", "go", 1)
    changes = [
        TextChange("package n\n\nfunc f() {}\n"),
        TextChange("int", Position(2, 9), Position(2, 9)),
        TextChange(" ", Position(2, 12), Position(2, 12)),
    ]
    document = store.change("file:///x/m.go", 2, changes)
    assert document.text == "package n\n\nfunc f() int {}\n"
    assert not document.tree().root_node.has_error


def test_language_from_language_id_or_extension() -> None:
    store = DocumentStore()
    store.open("file:///x/a.rs", "", "rust")
    store.open("file:///x/b.lua", "", "unknown-id")
    store.open("file:///x/notes.txt", "", "plaintext")
    assert store.get("file:///x/a.rs").language.name == "rust"
    assert store.get("file:///x/b.lua").language.name == "lua"
    assert store.get("file:///x/notes.txt").language is None
    assert store.get("file:///x/notes.txt").tree() is None


def test_change_to_an_unopened_document_is_an_error() -> None:
    with pytest.raises(KeyError):
        DocumentStore().change("file:///nope.py", 1, [TextChange("x")])


def test_closed_edited_documents_stay_as_recent_neighbours() -> None:
    store = DocumentStore()
    store.open("file:///x/edited.py", "a = 1\n", "python")
    store.open("file:///x/untouched.py", "b = 1\n", "python")
    store.open("file:///x/current.py", "c = 1\n", "python")
    store.change("file:///x/edited.py", 2, [TextChange("a = 2\n")])
    store.close("file:///x/edited.py")
    store.close("file:///x/untouched.py")
    assert [d.uri for d in store.neighbours("file:///x/current.py")] == ["file:///x/edited.py"]


# -- parse state with a ceiling ---------------------------------------------------------

BODY = "".join(f"def f{i}(a, b):\n    return a + b * {i}\n\n" for i in range(200))


def test_parse_state_is_capped_and_dropped_trees_are_rebuilt_on_demand() -> None:
    store = DocumentStore(tree_budget_chars=3 * len(BODY))
    documents = []
    for i in range(10):
        store.open(f"file:///x/m{i}.py", BODY, "python")
        documents.append(store.get(f"file:///x/m{i}.py"))
        store.tree(documents[-1])
        assert store.held_tree_chars() <= 3 * len(BODY)
    assert [d.has_tree for d in documents] == [False] * 7 + [True] * 3  # the recent ones
    first = documents[0]
    tree = store.tree(first)  # dropped: parsed again, whole
    assert str(tree.root_node) == str(parse(LANGUAGES["python"], BODY.encode()).root_node)
    assert first.full_parses == 2 and store.held_tree_chars() <= 3 * len(BODY)


def test_closed_documents_kept_for_context_keep_no_tree() -> None:
    store = DocumentStore()
    store.open("file:///x/a.py", BODY, "python")
    document = store.change(
        "file:///x/a.py", 2, [TextChange("x = 1\n", Position(0, 0), Position(0, 0))]
    )
    store.tree(document)
    store.close("file:///x/a.py")
    assert [d.uri for d in store.neighbours(None)] == ["file:///x/a.py"]
    assert not document.has_tree and store.held_tree_chars() == 0


async def test_edits_made_during_a_sliced_parse_reach_its_tree() -> None:
    store = DocumentStore()
    text = BODY * 20  # over BACKGROUND_PARSE_CHARS
    store.open("file:///x/big.py", text, "python")
    document = store.get("file:///x/big.py")
    assert document.needs_long_parse()
    parsing = asyncio.ensure_future(document.parse_without_blocking())
    await asyncio.sleep(0)  # the first slice ran; the edits come in between
    expected = text
    for version, (line, new) in enumerate([(0, "import os\n"), (5, "    # note\n")], start=2):
        at = Position(line, 0)
        store.change("file:///x/big.py", version, [TextChange(new, at, at)])
        offset = sum(len(x) + 1 for x in expected.split("\n")[:line])
        expected = expected[:offset] + new + expected[offset:]
    assert document.text == expected
    await parsing
    fresh = parse(LANGUAGES["python"], expected.encode())
    assert str(document.tree().root_node) == str(fresh.root_node)
    assert document.full_parses == 1  # the sliced one; then only the edits re-parsed
