"""The confidence gate: whether a cleaned completion is worth showing as ghost text.

Wrong ghost text is worse than none: it distracts, and it gets accepted by mistake. The
gate scores every completion from 0 to 1 from the backend's own confidence (the mean
probability of the tokens it committed) and what the cleaned text shows (a
repeated-token loop). A completion scoring below the user's `minConfidence` is not
shown.

The weights were chosen on the typing replay (benchmarks/typing_replay.py, curve and
figures in results/typing-replay/). There a loop is the strongest signal besides the
model's confidence: the embedded model is at its most confident when it repeats itself
(`.s.s.s.s`, `_C_C_C_C`, 0.6-0.7 mean probability), and nearly no such suggestion was
accepted. Very short answers are not penalised: one-character suggestions were accepted
more often than longer ones. Nor is text post-processing cut away: a block or
inside-brackets completion runs to its token budget unless the model ends it, so a cut
is the normal case there (the editor tests' `os.path.join(|)` keeps `path)` of 64
tokens), and on the replay's lines cuts touched 2 of 1,379 suggestions. For the same
reason a loop counts only in the text that is shown: what the model wrote past the cut
is budget filling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .cleanup import is_degenerate

# Backends that cannot tell their confidence are judged on the post-processing signals
# alone.
UNKNOWN_CONFIDENCE = 1.0
# An answer that loops (`.s.s.s.s`, `t: str, t: str, t: str`) says the model is lost,
# even where the start of it looks fine (a first word can still be right: a penalty, not
# a ban).
LOOP_FACTOR = 0.5
# A unit of 2-12 characters with a letter in it, three times in a row. Long loops are
# already dropped by cleanup's `degenerate` rule; these are short enough to survive it.
# The letter keeps number and separator runs (0x00000000, `# ------`) out.
_REPEATED = re.compile(r"(.{2,12}?)\1{2,}")


@dataclass(frozen=True)
class GateSignals:
    model_confidence: float | None  # the backend's, 0-1; None where it cannot tell
    loop: bool  # the text shown is (or holds) a repeated-token loop


def repeats_itself(text: str) -> bool:
    """Whether `text` is (or contains) a model stuck in a loop."""
    if is_degenerate(text):
        return True
    return any(any(ch.isalpha() for ch in m.group(1)) for m in _REPEATED.finditer(text))


def signals(shown: str, model_confidence: float | None) -> GateSignals:
    """The gate's inputs for the cleaned text `shown` of an answer."""
    return GateSignals(model_confidence, repeats_itself(shown))


def score(s: GateSignals) -> float:
    """The completion's confidence, 0-1, as the gate judges it."""
    value = UNKNOWN_CONFIDENCE if s.model_confidence is None else s.model_confidence
    value = min(max(value, 0.0), 1.0)
    if s.loop:
        value *= LOOP_FACTOR
    return value


def shows(confidence: float | None, min_confidence: float) -> bool:
    """Whether a completion of this confidence clears the gate; a gate at 0 shows all."""
    return min_confidence <= 0 or (confidence is not None and confidence >= min_confidence)


def below(confidence: float, min_confidence: float) -> str:
    """`0.4099 < minConfidence 0.41`: why a completion was hidden, with as many digits of
    its score as it takes for the comparison to read true (rounded to two, both would
    read 0.41)."""
    for digits in range(2, 7):
        shown = f"{confidence:.{digits}f}"
        if float(shown) < min_confidence:
            break
    else:
        shown = repr(confidence)
    return f"{shown} < minConfidence {min_confidence:g}"


# The default minConfidence of each backend (by its `name`): a score means something else
# for each model (how sure a 1.8M-parameter model is of anything, a 0.5B one's token
# probabilities), so each gets its own threshold, chosen on the typing replay over code
# from outside its training data (benchmarks/data/outside/tune) and checked on a second
# set it was not chosen on (check/). The user's minConfidence, when set, overrides it.
DEFAULT_MIN_CONFIDENCE: dict[str, float] = {
    # results/gate/embedded/tune/gate-0.00.json (the curve it was chosen on: 24.6% of
    # suggestions accepted, 4.0% of characters; no gate reaches 30% while keeping 4%),
    # checked in results/gate/embedded/check/
    "embedded": 0.37,
    # results/gate/llama.cpp/tune/gate-0.00.json: the score (llama.cpp's n_probs
    # probability of each generated token, backends/remote.py, averaged) does not tell the
    # accepted suggestions of Qwen2.5-Coder-0.5B from the others there (35-37% accepted at
    # every gate up to 0.76, while the characters typed by completions fall from 77% to
    # 45%), so the gate is off: 0 meets both targets with the most characters. Checked in
    # results/gate/llama.cpp/check/.
    "llama.cpp": 0.0,
}
# The diffusion families (dream, dreamon, llada, sdar, open-dcoder) score like the
# embedded model (the mean probability of the tokens they committed) and take its
# threshold: not calibrated on their own, since no such weights nor an accelerator to run
# them at typing speed were at hand (results/gate/README.md).
# The backends that cannot tell their confidence (mercury, openai: their APIs give no token
# probabilities) score UNKNOWN_CONFIDENCE, halved for a loop: their gate sits between the
# two, hiding loops and nothing else.
NO_CONFIDENCE = ("mercury", "openai")
LOOPS_ONLY = (1 + LOOP_FACTOR) * UNKNOWN_CONFIDENCE / 2


def default_min_confidence(backend: str | None) -> float:
    """The gate a backend gets when the user sets no minConfidence; any other backend
    (or none loaded yet) the embedded model's."""
    if backend in NO_CONFIDENCE:
        return LOOPS_ONLY
    return DEFAULT_MIN_CONFIDENCE.get(backend or "", DEFAULT_MIN_CONFIDENCE["embedded"])
