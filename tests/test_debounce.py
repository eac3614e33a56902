"""The adaptive debounce: the wait follows the typing rhythm and the model's latency."""

from __future__ import annotations

from fim_server.debounce import MIN_WAIT_MS, AdaptiveDebounce


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def typed(debounce: AdaptiveDebounce, clock: Clock, interval_ms: float, keys: int) -> None:
    for _ in range(keys):
        clock.now += interval_ms / 1000
        debounce.request()


def test_nothing_observed_waits_the_cap() -> None:
    assert AdaptiveDebounce().wait_ms(50) == 50


def test_a_model_faster_than_the_typing_runs_at_once() -> None:
    clock = Clock()
    debounce = AdaptiveDebounce(clock)
    typed(debounce, clock, 200, 5)
    debounce.model_ran(30)
    assert debounce.wait_ms(50) == 0


def test_a_model_slower_than_the_typing_waits_a_little_over_the_interval() -> None:
    clock = Clock()
    debounce = AdaptiveDebounce(clock)
    typed(debounce, clock, 100, 10)
    debounce.model_ran(300)
    assert debounce.interval_ms is not None and 99 < debounce.interval_ms < 101
    assert 110 < debounce.wait_ms(1000) < 130
    assert debounce.wait_ms(50) == 50  # the setting caps it
    assert debounce.wait_ms(0) == 0  # and 0 turns it off


def test_a_burst_still_waits_the_minimum_and_pauses_do_not_count() -> None:
    clock = Clock()
    debounce = AdaptiveDebounce(clock)
    typed(debounce, clock, 0.1, 5)  # keystrokes arriving together
    debounce.model_ran(100)
    assert debounce.wait_ms(200) == MIN_WAIT_MS
    before = debounce.interval_ms
    clock.now += 30  # the user stopped for half a minute
    debounce.request()
    assert debounce.interval_ms == before
