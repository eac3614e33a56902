"""Check `syntax check`: whether an edit adds syntax problems anywhere in the document.
Golden: tests/golden/syntax.txt.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import cache

import tree_sitter

from ..context import CompletionContext
from ..context.languages import LANGUAGES, LanguageSpec, parse
from .rule import Edit


@cache
def _problem_query(language: str) -> tree_sitter.Query:
    patterns = "(ERROR) @error (MISSING) @missing"
    if LANGUAGES[language].indented_blocks:
        # Empty blocks parse fine in tree-sitter but not in Python: `if x:` and nothing.
        patterns += " (block) @block"
    return tree_sitter.Query(LANGUAGES[language].tree_sitter_language, patterns)


def _point_after(start: tuple[int, int], data: bytes) -> tuple[int, int]:
    lines = data.count(b"\n")
    if not lines:
        return (start[0], start[1] + len(data))
    return (start[0] + lines, len(data) - data.rfind(b"\n") - 1)


class _ParsedText:
    """A text around the cursor with its parse, to compare with edited versions of it."""

    def __init__(
        self, spec: LanguageSpec, source: bytes, tree: tree_sitter.Tree, cursor: int
    ) -> None:
        self._spec = spec
        self._source = source
        self._tree = tree
        self._cursor = cursor
        line_start = source.rfind(b"\n", 0, cursor) + 1
        self._cursor_point = (source.count(b"\n", 0, cursor), cursor - line_start)

    def _problems(
        self,
        tree: tree_sitter.Tree,
        lo: int,
        hi: int,
        empty_blocks: bool,
        where: Callable[[int], int | None],
    ) -> tuple[Counter[tuple[str, int | None]], int]:
        """The problems of `tree` that overlap bytes `lo`..`hi`, keyed by kind and start
        (`where` maps it to the text before the edit), and the first byte they start at."""
        cursor = tree_sitter.QueryCursor(_problem_query(self._spec.name))
        cursor.set_byte_range(lo, hi)
        found: Counter[tuple[str, int | None]] = Counter()
        first = lo
        for name, nodes in cursor.captures(tree.root_node).items():
            for node in nodes:
                if name == "block":
                    if not empty_blocks or node.child_count:
                        continue
                    found["empty block", where(node.start_byte)] += 1
                elif node.is_missing:
                    found[f"missing {node.type}", None] += 1  # wherever it moved
                else:
                    found["error", where(node.start_byte)] += 1
                first = min(first, node.start_byte)
        return found, first

    def damages(self, replaced: bytes, inserted: bytes, empty_blocks: bool) -> tuple[bool, bool]:
        """Whether putting `inserted` in place of `replaced` at the cursor adds a problem,
        and whether the syntax it changed runs to the end of the text."""
        start = self._cursor
        old_end, new_end = start + len(replaced), start + len(inserted)
        source = self._source[:start] + inserted + self._source[old_end:]
        edited = self._tree.copy()
        edited.edit(
            start_byte=start,
            old_end_byte=old_end,
            new_end_byte=new_end,
            start_point=self._cursor_point,
            old_end_point=_point_after(self._cursor_point, replaced),
            new_end_point=_point_after(self._cursor_point, inserted),
        )
        tree = parse(self._spec, source, edited)
        lo, hi = start, new_end
        for changed in edited.changed_ranges(tree):
            lo, hi = min(lo, changed.start_byte), max(hi, changed.end_byte)
        to_the_end = hi >= len(source.rstrip())
        shift = len(replaced) - len(inserted)

        def before_edit(at: int) -> int | None:  # a position of `tree` in the old text
            return at if at < start else at + shift if at >= new_end else None

        after, first = self._problems(tree, lo, hi + 1, empty_blocks, before_edit)
        if not after:
            return False, to_the_end
        # The same span before the edit, widened to where the problems found start: an
        # error the user already had, which now reaches into the edit, starts there.
        before, _ = self._problems(self._tree, first, hi + shift + 1, empty_blocks, lambda at: at)
        return bool(after - before), to_the_end


class SyntaxCheck:
    """Whether an edit at the cursor adds syntax problems anywhere in the document: parse
    errors, missing tokens and (Python) empty blocks.

    The text is parsed before the edit and re-parsed incrementally with it, and only the
    ranges whose syntax changed are compared, so an error the edit shifts rows below (an
    unterminated string) counts, and an error the user already had does not. A missing
    token that only moved (the same `}` still missing, now after the completion) is the
    same problem. The window around the cursor is checked first (a small parse); when the
    edit's effect runs to the window's end, the whole document (`ctx.document`: its tree
    from the request) decides, since the damage may only show beyond the window.
    """

    def __init__(self, ctx: CompletionContext) -> None:
        assert ctx.language is not None
        self._ctx = ctx
        spec = LANGUAGES[ctx.language]
        source = (ctx.prefix + ctx.suffix).encode("utf-8")
        cursor = len(ctx.prefix.encode("utf-8"))
        self._window = _ParsedText(spec, source, parse(spec, source), cursor)
        document = ctx.document
        self._document = (
            _ParsedText(spec, document.source, document.tree, document.cursor)
            if document is not None
            else None
        )

    def damages(self, edit: Edit, *, empty_blocks: bool) -> bool:
        """Whether `edit` (at the cursor) adds a problem."""
        replaced = self._ctx.suffix[: edit.replace_chars].encode("utf-8")
        inserted = edit.text.encode("utf-8")
        damaged, to_the_end = self._window.damages(replaced, inserted, empty_blocks)
        if not to_the_end or self._document is None:
            return damaged
        # Either way the whole document decides: the damage may only show beyond the
        # window, and damage the window shows at its end may be its own cut (a header
        # whose body is below closes a block whose closer the window left out; seen on
        # gson's JsonObject.java, results/cleanup/qwen-0.5b-outside).
        return self._document.damages(replaced, inserted, empty_blocks)[0]
