"""Rule `repeated suffix lines`: cut a block where it starts repeating the code after the
cursor. Golden: tests/golden/duplicates.txt, tests/golden/blocks.txt.
"""

from __future__ import annotations

from ..context import CompletionContext
from .rule import Rule
from .text import CLOSER_TOKEN, language_spec, squeeze

# Lines in a row that repeat the suffix's next lines and end the completion there, even
# when the model writes on after them.
REPEATED_RUN = 2


def _only_closes(line: str, closer_words: tuple[str, ...]) -> bool:
    """Whether a line only closes (`}`, `});`, `end`): such a line repeats the suffix's
    closer when it closes the completion's own block, so it proves no repetition."""
    tokens = CLOSER_TOKEN.findall(line)
    return all(t in ")]};," or t in closer_words for t in tokens)


def drop_repeated_suffix_lines(
    text: str, suffix: str, line_prefix: str = "", closer_words: tuple[str, ...] = ()
) -> str:
    """Cut a completion where it starts repeating the code after the cursor.

    Compared line by line, ignoring whitespace and blank lines, against the lines after the
    cursor's own: the completion is cut before its first line equal to the next non-blank
    line, when every non-blank line from there on matches the following lines in order
    or the next REPEATED_RUN of them do (the model wrote on past the suffix's code), and
    one of the matching lines does more than close (`}`, `end`: `closer_words`; the
    block-exit rule judges those). The first line is compared as the whole line it completes
    (`line_prefix` + it), so a completion that only repeats the next lines becomes empty.
    """
    after_cursor_line = suffix.split("\n", 1)[1] if "\n" in suffix else ""
    wanted = [squeeze(line) for line in after_cursor_line.split("\n") if line.strip()]
    if not wanted:
        return text
    lines = text.split("\n")
    whole = [line_prefix + lines[0], *lines[1:]]
    for i, line in enumerate(whole):
        if squeeze(line) != wanted[0]:
            continue
        tail = [squeeze(t) for t in whole[i:] if t.strip()]
        run = 0  # lines from here on equal to the suffix's, in order
        while run < min(len(tail), len(wanted)) and tail[run] == wanted[run]:
            run += 1
        # All of the rest repeats the suffix, or two lines of it do and the model wrote on
        # past them (a small model writes the rest of the function, suffix and all).
        if (run == len(tail) or run >= REPEATED_RUN) and not all(
            _only_closes(t, closer_words) for t in tail[:run]
        ):
            return "\n".join(lines[:i])
    return text


def _cut(text: str, ctx: CompletionContext) -> str:
    spec = language_spec(ctx)
    closer_words = spec.block_closers if spec is not None else ()
    return drop_repeated_suffix_lines(text, ctx.suffix, ctx.line_prefix, closer_words)


REPEATED_SUFFIX_LINES = Rule("repeated suffix lines", _cut)
