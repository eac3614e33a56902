"""Test instrumentation for tests/test_lsp.py, imported by the server's Python when a test
puts this folder on PYTHONPATH: with FIM_TEST_MODEL_HOLD set, a model run waits before
each of its steps for as long as that file exists, until its request is cancelled or
superseded, and says so by creating the file's name + ".held". A test can so cancel (or
supersede) a request whose model run is certainly still going, instead of racing a run of
a few tens of milliseconds. The wait is inside the model's own `should_cancel` check, so
a cancel stops the run the way it stops any other (the sampler raises DecodingCancelled at
that step). Nothing else changes."""

import os

_hold = os.environ.get("FIM_TEST_MODEL_HOLD")
if _hold:
    import time

    from fim_model.api import InfillModel

    _generate_candidates = InfillModel.generate_candidates

    def _held_generate_candidates(self, *args, should_cancel=None, **kwargs):  # type: ignore[no-untyped-def]
        def cancelled() -> bool:
            return should_cancel is not None and should_cancel()

        def held_should_cancel() -> bool:
            if os.path.exists(_hold):
                open(_hold + ".held", "a").close()
                while os.path.exists(_hold) and not cancelled():
                    time.sleep(0.005)
            return cancelled()

        return _generate_candidates(self, *args, should_cancel=held_should_cancel, **kwargs)

    InfillModel.generate_candidates = _held_generate_candidates  # type: ignore[method-assign]
