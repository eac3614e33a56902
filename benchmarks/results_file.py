"""Where a benchmark's figures go: OUT.json (everything measured) and OUT.md (the command
that measured it, then its table), side by side under results/."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any


def this_command() -> str:
    """The command line that is running, as one can type it again from the repository."""
    script = Path(sys.argv[0])
    name = f"benchmarks/{script.name}" if script.parent.name == "benchmarks" else str(script)
    return " ".join([name, *(shlex.quote(a) for a in sys.argv[1:])])


def write_results(out: Path, data: Any, markdown: str, note: str = "") -> None:
    """OUT.json with `data`; OUT.md with the command, the date, `note` and `markdown`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_name(out.name + ".json").write_text(json.dumps(data, indent=1))
    head = f"`{this_command()}`, {time.strftime('%Y-%m-%d')}, 2-core machine.\n\n"
    out.with_name(out.name + ".md").write_text(head + (note + "\n\n" if note else "") + markdown)
