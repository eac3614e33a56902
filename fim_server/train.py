"""Train the embedded model: fim_model's training loop handed the server's grammar
registry, with which its data code samples syntax-node FIM spans.

    python -m fim_server.train --corpus data/corpus --run runs/default --out runs/ckpt
    python -m fim_server.train --help
"""

from __future__ import annotations

from fim_model.train import main as train_main

from .context.languages import syntax_root


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, syntax=syntax_root)


if __name__ == "__main__":
    raise SystemExit(main())
