"""fim-server with the prompt layout it had before the typed line moved after the FIM
middle token: llama.cpp's /infill lays the prompt out (the cursor line's typed start
appended to the prefix, before the suffix). For side-by-side measurements only.

    .venv/bin/python benchmarks/typing_replay.py --server-cmd \
        ".venv/bin/python benchmarks/server_infill_layout.py --stdio --model qwen2.5-coder-0.5b"
"""

from __future__ import annotations

import sys

from fim_server import cli
from fim_server.backends import remote


async def _no_fim_tokens(self: remote.LlamaCppBackend) -> remote.FimTokens:
    return remote.FimTokens()  # as for a model without Qwen's tokens: /infill


remote.LlamaCppBackend._ask_fim_tokens = _no_fim_tokens  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main())
