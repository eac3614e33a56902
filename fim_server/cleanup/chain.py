"""Each mode's rule list, and the two ways it is run: `clean_edit` on a whole answer, and
`completion_done` on a streamed answer so far (the backend's early stop, handed to it as
`InfillRequest.done`), so the stream closes exactly where the cleanup would cut.

A rule (rule.py) maps the text so far to what is left. After the mode's text rules, the
edit stage is the same for every mode: the candidates (the text; for a block, each
leading run of its lines, longest first) are fitted to the cursor's line and the first
that writes something new, repeats nothing below and adds no syntax error is the answer.
docs/modes.md describes each rule.
"""

from __future__ import annotations

from ..context import CompletionContext, Mode
from .block_exit import CUT_AT_BLOCK_EXIT
from .body_below import BODY_BELOW
from .dedent import CUT_AT_DEDENT
from .degenerate import DEGENERATE
from .doubled_space import DOUBLED_SPACE
from .first_line import FIRST_LINE_LEFT
from .fit_to_line import fit_to_line
from .indentation import INDENTATION
from .newline import CUT_AT_NEWLINE
from .no_block_opened import NO_BLOCK_OPENED
from .repeated_suffix_lines import REPEATED_SUFFIX_LINES
from .repeats_next_lines import repeats_next_lines
from .rule import CleanupTrace, Edit, Rule, Stream
from .special_tokens import SPECIAL_TOKENS, strip_special_tokens
from .statement_end import keep_statement_end
from .syntax import SyntaxCheck
from .trailing_blank import TRAILING_BLANK, TRAILING_BLANK_AT_LINE_END


def _nothing(text: str, ctx: CompletionContext) -> str:
    return ""


# Where fim-server asks nothing (the backend is not called); a caller that asked anyway
# (benchmarks/bench_cleanup.py) is shown nothing.
MODE_NONE = Rule("mode none", _nothing)

LINE_RULES: tuple[Rule, ...] = (
    SPECIAL_TOKENS,
    DOUBLED_SPACE,
    CUT_AT_NEWLINE,
    TRAILING_BLANK_AT_LINE_END,
    DEGENERATE,
)
BLOCK_RULES: tuple[Rule, ...] = (
    SPECIAL_TOKENS,
    DOUBLED_SPACE,
    NO_BLOCK_OPENED,
    BODY_BELOW,
    INDENTATION,
    CUT_AT_DEDENT,
    CUT_AT_BLOCK_EXIT,
    REPEATED_SUFFIX_LINES,
    TRAILING_BLANK,
    FIRST_LINE_LEFT,
    DEGENERATE,
)
# The one place each mode's rules are listed, in the order they run.
RULES: dict[Mode, tuple[Rule, ...]] = {
    Mode.NONE: (MODE_NONE,),
    Mode.REST_OF_LINE: LINE_RULES,
    Mode.SINGLE_LINE: LINE_RULES,
    Mode.MULTI_LINE: BLOCK_RULES,
}

# The edit stage's checks, by the names the trace records when one turns a candidate down.
NOTHING_NEW = "nothing new"
REPEATS_NEXT_LINES = "repeats next lines"
SYNTAX_CHECK = "syntax check"
FIT_TO_LINE = "fit to line"


def completion_done(text: str, ctx: CompletionContext) -> bool:
    """Whether the cleanup will cut `text` (a streamed answer so far) whatever comes next,
    so the stream can be closed: the mode's rules asked in order (`Rule.stream`)."""
    for rule in RULES[ctx.mode]:
        if rule.stream is not None:
            verdict = rule.stream(text, ctx)
            if verdict is not None:
                return verdict is Stream.CUT
        if rule.reshapes_stream:
            text = rule.apply(text, ctx)
    return False


def _candidates(text: str, ctx: CompletionContext) -> list[str]:
    if ctx.mode.is_line:
        return [text]
    # A block: the longest leading run of lines that passes every check of the edit stage.
    lines = text.split("\n")
    return ["\n".join(lines[:n]).rstrip() for n in range(len(lines), 0, -1)]


def clean_edit(raw: str, ctx: CompletionContext, trace: CleanupTrace | None = None) -> Edit:
    """Apply the rules for `ctx.mode` to the model's raw text; an empty edit when nothing
    useful remains. `trace` records each rule's effect."""
    text = raw
    for rule in RULES[ctx.mode]:
        after = rule.apply(text, ctx)
        text = trace.record(rule.name, text, after) if trace is not None else after
    if not text.strip():
        return Edit("")
    written = strip_special_tokens(raw)  # as the model wrote it: the statement end cuts drop
    check = SyntaxCheck(ctx) if ctx.language is not None else None
    # The model wrote one line, even where a block was asked for (the time limit stops a
    # slow model at its first line break): a block opener ending it is a line whose body
    # comes next, as on a single line.
    one_line = not written.strip().partition("\n")[2].strip()
    # The check that turned down the longest candidate is the one that cut (or dropped) it.
    rejected_by = ""
    for candidate in _candidates(text, ctx):
        if not candidate.strip():
            continue
        edit = fit_to_line(candidate, ctx)
        if not edit.text.strip() or edit.text == ctx.line_suffix[: edit.replace_chars]:
            rejected_by = rejected_by or NOTHING_NEW
            continue  # nothing but what is already there
        if repeats_next_lines(edit, ctx):
            rejected_by = rejected_by or REPEATS_NEXT_LINES
            continue
        # A block opener is fine at the end of a single line continuing typed code (`for x
        # in xs:`: the body comes next) or of the one line the model wrote, not at the end
        # of a block the model went on to write.
        single = "\n" not in edit.text and (bool(ctx.line_prefix.strip()) or one_line)
        if check is None or not check.damages(edit, empty_blocks=not single):
            ended = keep_statement_end(edit, written, ctx)
            if ended != edit and (check is None or not check.damages(ended, empty_blocks=True)):
                edit = ended
            if trace is not None:
                if rejected_by:
                    trace.record(rejected_by, text, edit.text, edit.replace_chars)
                elif (edit.text, edit.replace_chars) != (candidate, 0):
                    trace.record(FIT_TO_LINE, candidate, edit.text, edit.replace_chars)
            return edit
        rejected_by = rejected_by or SYNTAX_CHECK
    if trace is not None and rejected_by:
        trace.record(rejected_by, text, "")
    return Edit("")
