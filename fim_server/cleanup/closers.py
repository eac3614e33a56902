"""The edit that replaces the closers the editor inserted after the cursor (`foo(|)`):
part of `fit to line`. Golden: tests/golden/closers.txt, tests/golden/brackets_block.txt.
"""

from __future__ import annotations

from ..context import CompletionContext
from ..modes import only_closers
from .brackets import scan_for
from .line_suffix import drop_suffix_overlap
from .rule import Edit
from .text import CLOSERS, OPENERS, QUOTES, indent_of


def replace_closers(text: str, ctx: CompletionContext) -> Edit | None:
    """When the rest of the line only closes brackets or quotes (`foo(|)`, `"|")`, `{|})`),
    the edit that replaces them: the completion, then what it left open closed, then the
    closers it did not write itself. Accepting it leaves the line balanced, whether the
    completion closes brackets it opened or ones opened before the cursor
    (`Math.max(Math.min(|))` + `value, max), min);`).

    A multi-line completion that leaves the closers to the suffix gets them on a line of
    their own, at the cursor line's indentation (`{|})` + a body). None when this does not
    apply: other code after the cursor, or a completion closing more than the line does or
    closing the wrong kind (the insert rules and the syntax check judge that one).
    """
    line_suffix = ctx.line_suffix
    if not only_closers(line_suffix):
        return None
    # A single line may end with the closers the model copied from the suffix; a block
    # writes them on its last line, where the scan below finds them.
    core = text if "\n" in text else drop_suffix_overlap(text, line_suffix)
    outer_at = [(ch, i + 1) for i, ch in enumerate(line_suffix) if ch in CLOSERS or ch in QUOTES]
    outer = "".join(ch for ch, _ in outer_at)
    scan = scan_for(core, ctx, outer)
    closed = "".join(ch for ch, _ in scan.closed_outer)
    if scan.mismatched or not outer.startswith(closed):
        return None
    own = scan.open_quote + "".join(OPENERS[ch] for ch in reversed(scan.open_brackets))
    rest = line_suffix[outer_at[len(closed) - 1][1] :] if closed else line_suffix
    if closed and rest.strip() and not own and core.rstrip().endswith(rest.strip()):
        rest = ""  # the completion ended the statement itself: `x);` for `);`
    if "\n" in core and (not closed or own):
        # Also a block that closed the line's opener and opened its own (`} else {`).
        indent = ctx.line_prefix[: indent_of(ctx.line_prefix)]
        tail = own + rest.strip()
        result = core + ("\n" + indent + tail if tail else "")
    else:
        result = core + own + rest
    return Edit(result, len(line_suffix))
