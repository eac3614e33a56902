"""Every server the tests start serves the embedded model unless the test names another
(`fim-server` otherwise picks the packaged real model where it is installed, as CI has it):
FIM_MODEL is the user's way to choose the default model, inherited by every server the
tests and the editors start."""

import os

os.environ.setdefault("FIM_MODEL", "embedded")
