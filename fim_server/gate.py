"""The confidence gate: whether a cleaned completion is worth showing as ghost text.

Wrong ghost text is worse than none: it distracts, and it gets accepted by mistake. The
gate scores every completion from 0 to 1 from the backend's own confidence (the mean
probability of the tokens it committed) and what post-processing saw while cleaning it
(text it had to cut away, a repeated-token loop, an answer too short to save typing).
A completion scoring below the user's `minConfidence` is not shown.

The weights below were chosen on the typing replay (benchmarks/typing_replay.py; the
curve is in results/typing-replay/): each signal is kept only where it separates the
suggestions users accepted from the ones they typed over.
"""

from __future__ import annotations

from dataclasses import dataclass

from .postprocess import cut_at_newline, is_degenerate, strip_special_tokens

# Backends that cannot tell their confidence are judged on the post-processing signals
# alone.
UNKNOWN_CONFIDENCE = 1.0
# The score is multiplied by (kept fraction) ** CUT_WEIGHT: a model whose text had to be
# cut (past the block, repeating the suffix, not parsing) was wandering, and what is left
# is less likely to be right.
CUT_WEIGHT = 1.0
# Answers with fewer non-blank characters than this save less typing than reading them
# costs; their score is multiplied by SHORT_FACTOR.
SHORT_CHARS = 2
SHORT_FACTOR = 1.0
# A raw answer that loops (`self_self_self...`) says the model is lost, even where the
# cleaned start of it looks fine.
LOOP_FACTOR = 0.5


@dataclass(frozen=True)
class GateSignals:
    model_confidence: float | None  # the backend's, 0-1; None where it cannot tell
    raw_chars: int  # non-blank characters the backend wrote (within the mode's line)
    shown_chars: int  # non-blank characters left after post-processing
    loop: bool  # the raw answer is a repeated-token loop


def _visible(text: str) -> int:
    return sum(not ch.isspace() for ch in text)


def signals(
    raw: str, shown: str, model_confidence: float | None, *, single_line: bool
) -> GateSignals:
    """The gate's inputs for backend text `raw` that post-processing turned into `shown`."""
    text = strip_special_tokens(raw)
    if single_line:
        text = cut_at_newline(text)  # the mode's rule, not something the model got wrong
    return GateSignals(model_confidence, _visible(text), _visible(shown), is_degenerate(text))


def score(s: GateSignals) -> float:
    """The completion's confidence, 0-1, as the gate judges it."""
    value = UNKNOWN_CONFIDENCE if s.model_confidence is None else s.model_confidence
    value = min(max(value, 0.0), 1.0)
    if s.raw_chars > 0:
        kept = min(s.shown_chars / s.raw_chars, 1.0)  # closers balanced in can exceed 1
        value *= kept**CUT_WEIGHT
    if s.shown_chars < SHORT_CHARS:
        value *= SHORT_FACTOR
    if s.loop:
        value *= LOOP_FACTOR
    return value


def shows(confidence: float | None, min_confidence: float) -> bool:
    """Whether a completion of this confidence clears the gate; a gate at 0 shows all."""
    return min_confidence <= 0 or (confidence is not None and confidence >= min_confidence)
