"""The answer to one completion request, as every layer after the backend sees it."""

from __future__ import annotations

from dataclasses import dataclass

from .context.modes import Mode


@dataclass(frozen=True)
class Candidate:
    """Another completion for the same position, offered after the first."""

    text: str
    replace_chars: int = 0
    confidence: float | None = None


@dataclass(frozen=True)
class Completion:
    text: str  # what to insert at the cursor; "" when there is nothing to offer
    mode: Mode | None  # None when no context was built (model not ready, disabled)
    reason: str
    tokens: int = 0
    forward_passes: int = 0
    ended: bool = False  # the backend also wrote its end-of-middle token
    model_ms: float = 0.0
    latency_ms: float = 0.0
    cached: bool = False
    # Characters right after the cursor, on its line, that `text` replaces: the closing
    # brackets and quotes that a balanced completion already ends with.
    replace_chars: int = 0
    # How sure the pipeline is of `text` (0-1): the confidence gate's score (cleanup/gate.py),
    # from the backend's own confidence and post-processing's signals.
    confidence: float | None = None
    model_confidence: float | None = None  # the backend's part; None when it cannot tell
    # Why the backend could not answer (a remote server's failure, in one line); None
    # when it answered.
    failure: str | None = None
    # Further completions for the position (several candidates), distinct from `text` and
    # from each other, for the editor to cycle through.
    others: tuple[Candidate, ...] = ()
