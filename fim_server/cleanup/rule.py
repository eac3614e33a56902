"""What a cleanup rule is, and what it leaves behind: the `Edit` shown, the trace of each
rule's effect (benchmarks/bench_cleanup.py reports it by rule name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from ..context import CompletionContext


class Stream(Enum):
    """A rule's verdict on a streamed answer so far (`Rule.stream`)."""

    CUT = "cut"  # the rule cuts what has been written, whatever comes next: close the stream
    # The rule cannot tell until more is written; the rules after it see its result, so
    # they cannot tell either.
    WAIT = "wait"


@dataclass(frozen=True)
class Rule:
    """One cleanup rule: `apply` takes the text so far and the request's context and
    returns what is left ("" when it drops the answer).

    `name` is what `CleanupTrace` records (benchmarks/bench_cleanup.py reports by it).
    `stream`: for a streaming backend's early stop, whether the rule will cut an answer
    of which only the start is written (`Stream.CUT`), cannot tell yet (`Stream.WAIT`), or
    will not cut it (None: ask the next rule). `reshapes_stream`: the early stop applies
    the rule to the text so far before asking the rules after it, since they measure its
    result (the indentation the dedent cut compares).
    """

    name: str
    apply: Callable[[str, CompletionContext], str]
    stream: Callable[[str, CompletionContext], Stream | None] | None = None
    reshapes_stream: bool = False


@dataclass(frozen=True)
class Edit:
    """What to show: `text` replaces the `replace_chars` characters after the cursor."""

    text: str
    replace_chars: int = 0


@dataclass(frozen=True)
class RuleStep:
    """One rule's effect on one completion: the text it was given and what it left
    (`after` replaces `after_replace` characters after the cursor; "" when it dropped)."""

    rule: str
    before: str
    after: str
    after_replace: int = 0


@dataclass
class CleanupTrace:
    """What each rule of one `clean_edit` call changed, in order; rules that left the text
    as it was are not recorded. The clean-up's scoreboard (benchmarks/bench_cleanup.py)
    judges each step against the reference."""

    steps: list[RuleStep] = field(default_factory=list)

    def record(self, rule: str, before: str, after: str, after_replace: int = 0) -> str:
        if before != after or after_replace:
            self.steps.append(RuleStep(rule, before, after, after_replace))
        return after
