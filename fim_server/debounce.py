"""How long an automatic request waits before it runs the model.

A fixed wait is wrong both ways: a fast typist with a slow model still starts runs that
the next keystroke throws away, and a slow typist with a fast model waits for nothing.
So the wait follows what is observed (as Tabby's agent does): the interval between the
user's automatic requests and the model's own latency, each a moving average.

- The model usually finishes before the next keystroke would come: run at once.
- Otherwise wait a little longer than the usual interval: if no keystroke comes by then,
  the user has paused and the run is worth it.

The `debounceMs` setting caps the wait (0 turns it off); an explicit request
(triggerKind Invoked) never waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Requests further apart than this are a pause, not the typing rhythm.
PAUSE_S = 1.0
# Weight of the newest observation in the moving averages.
SMOOTHING = 0.3
# Wait at least this long when the model is slower than the typing: a burst of keystrokes
# arriving together still runs the model once.
MIN_WAIT_MS = 15.0
# Wait this multiple of the usual interval between keystrokes.
INTERVAL_MARGIN = 1.2


def _average(previous: float | None, value: float) -> float:
    return value if previous is None else previous + SMOOTHING * (value - previous)


class AdaptiveDebounce:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_request: float | None = None
        self.interval_ms: float | None = None  # usual time between automatic requests
        self.model_ms: float | None = None  # usual model latency

    def request(self) -> None:
        """An automatic request arrived (a keystroke)."""
        now = self._clock()
        if self._last_request is not None and now - self._last_request < PAUSE_S:
            self.interval_ms = _average(self.interval_ms, (now - self._last_request) * 1000)
        self._last_request = now

    def model_ran(self, ms: float) -> None:
        self.model_ms = _average(self.model_ms, ms)

    def wait_ms(self, cap_ms: float) -> float:
        """The wait before the model runs for the request just seen."""
        if cap_ms <= 0:
            return 0.0
        if self.interval_ms is None or self.model_ms is None:
            return cap_ms  # nothing observed yet
        if self.model_ms <= self.interval_ms:
            return 0.0
        return min(cap_ms, max(MIN_WAIT_MS, self.interval_ms * INTERVAL_MARGIN))
