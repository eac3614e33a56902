"""Test instrumentation for tests/editors, imported by the server's Python when a test puts
this folder on PYTHONPATH: with FIM_TEST_LOAD_GATE set, the background model load waits
until that file exists. A test can so type while the model is still loading, then let the
real model load and check the editor asks again by itself. Nothing else changes."""

import os

_gate = os.environ.get("FIM_TEST_LOAD_GATE")
if _gate:
    import time

    from fim_model.api import InfillModel

    _load = InfillModel.load.__func__

    def _gated_load(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        while not os.path.exists(_gate):
            time.sleep(0.05)
        return _load(cls, *args, **kwargs)

    InfillModel.load = classmethod(_gated_load)  # type: ignore[method-assign]
