"""Test instrumentation for tests/editors, imported by the server's Python when a test puts
this folder on PYTHONPATH:

- FIM_TEST_LOAD_GATE: the background model load waits until that file exists. A test can
  so type while the model is still loading, then let the real model load and check the
  editor asks again by itself.
- FIM_TEST_START_GATE: the process waits at startup, before the server runs at all, until
  that file exists: a server that is slow to start, so the editor connects to it only
  after the user has typed.

Nothing else changes."""

import os
import time

_start_gate = os.environ.get("FIM_TEST_START_GATE")
if _start_gate:
    while not os.path.exists(_start_gate):
        time.sleep(0.05)

_gate = os.environ.get("FIM_TEST_LOAD_GATE")
if _gate:
    from fim_model.api import InfillModel

    _load = InfillModel.load.__func__

    def _gated_load(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        while not os.path.exists(_gate):
            time.sleep(0.05)
        return _load(cls, *args, **kwargs)

    InfillModel.load = classmethod(_gated_load)  # type: ignore[method-assign]
