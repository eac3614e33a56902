"""Does cross-file context earn its place? Exact lines with and without other files' chunks.

Repository-level cases from the outside projects (benchmarks/data/outside, both sets): in
every project with two or more code files, seeded code lines of each file are emptied
after their indentation (as in the typing replay) and the backend is asked to fill the
line twice: once with the chunks fim-server takes from the project's other files (as when
they are open in the editor: `crossfile.py`, the pipeline's `CROSS_FILE_DOCUMENTS`
nearest; the chunks take their tokens from the prefix's budget, as in the engine), once
without. An answer is exact when the completed line
equals the original one (trailing blanks aside), after fim-server's clean-up. Cases where
no chunk made it into the window ask the same twice and are counted once, apart.

Prints per language group: cases, cases with chunks, exact without and with, and how many
each way changed from wrong to right. Writes JSON (every case: both answers) and markdown.

    nice -n 15 .venv/bin/python benchmarks/bench_crossfile.py --lines 3 \\
        --out results/crossfile/qwen-0.5b
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench_cleanup import ask
from typing_replay import (
    DEFAULT_LANGUAGES,
    OUTSIDE_SETS,
    HeldOutFile,
    chosen_rows,
    emptied_line,
    outside_files,
    report_group,
)

from fim_server.backends import BackendSpec, gguf, load_backend
from fim_server.cleanup import clean_edit
from fim_server.context import ContextSettings, Mode, build_context
from fim_server.context.crossfile import CrossFileIndex, Source
from fim_server.pipeline import CROSS_FILE_DOCUMENTS


@dataclass
class Case:
    path: str
    group: str
    row: int
    reference: str  # the line's text after its indentation
    chunks: int  # other files' chunks in the window (0: the two requests are the same)
    mode: str
    without: str  # cleaned answer without other files' chunks
    with_chunks: str  # cleaned answer with them
    exact_without: bool
    exact_with: bool


def project_of(file: HeldOutFile) -> str:
    return "/".join(file.path.split("/")[:3])  # outside/<set>/<owner>__<repo>


def run_case(backend, settings, file: HeldOutFile, row: int, others: list[Source]) -> Case:
    document, offset, reference = emptied_line(file, row)

    def answer(neighbours: list[Source]) -> tuple[str, int, str]:
        ctx = build_context(
            document,
            offset,
            backend.count_tokens,  # as the engine counts: the loaded backend's measure
            settings,
            language=file.language,
            neighbours=neighbours,
            index=CrossFileIndex() if neighbours else None,
        )
        if ctx.mode is Mode.NONE:
            return "", len(ctx.extra_chunks), str(ctx.mode)
        edit = clean_edit(ask(backend, ctx), ctx)
        rest = document[offset + edit.replace_chars :].split("\n", 1)[0]
        return edit.text.split("\n", 1)[0] + rest, len(ctx.extra_chunks), str(ctx.mode)

    with_chunks, chunks, mode = answer(others)
    without = answer([])[0] if chunks else with_chunks
    return Case(
        file.path,
        report_group(file.language),
        row,
        reference,
        chunks,
        mode,
        without,
        with_chunks,
        without.rstrip() == reference.rstrip(),
        with_chunks.rstrip() == reference.rstrip(),
    )


def report(cases: list[Case]) -> str:
    rows = [
        "| language | cases | with chunks | exact without | exact with "
        "| wrong → right | right → wrong |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    groups = sorted({c.group for c in cases})
    for group in [*groups, "all"]:
        part = [c for c in cases if group in ("all", c.group)]
        chunked = [c for c in part if c.chunks]
        name = "**all**" if group == "all" else group
        rows.append(
            f"| {name} | {len(part)} | {len(chunked)} "
            f"| {sum(c.exact_without for c in part)} | {sum(c.exact_with for c in part)} "
            f"| {sum(c.exact_with and not c.exact_without for c in chunked)} "
            f"| {sum(c.exact_without and not c.exact_with for c in chunked)} |"
        )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=gguf.DEFAULT_PACKAGED, help="backend model")
    parser.add_argument("--languages", default=",".join(DEFAULT_LANGUAGES))
    parser.add_argument("--lines", type=int, default=3, help="lines per file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)

    files = [
        f for which in OUTSIDE_SETS for f in outside_files(which, args.languages.split(","), 1)
    ]
    projects: dict[str, list[HeldOutFile]] = {}
    for f in files:
        projects.setdefault(project_of(f), []).append(f)
    backend = load_backend(BackendSpec(model_path=args.model, timeout_ms=120_000))
    settings = ContextSettings.sized_for(getattr(backend, "context_tokens", None) or 640)
    cases: list[Case] = []
    started = time.perf_counter()
    try:
        for project, members in projects.items():
            if len(members) < 2:
                continue
            for file in members:
                others = [Source(f"file:///{o.path}", o.text, 1) for o in members if o is not file]
                others = others[:CROSS_FILE_DOCUMENTS]
                for row in chosen_rows(file, args.lines, args.seed):
                    case = run_case(backend, settings, file, row, others)
                    cases.append(case)
                    mark = "+" if case.exact_with else "="
                    mark = mark if case.exact_with or case.exact_without else "."
                    print(mark if case.chunks else "_", end="", flush=True, file=sys.stderr)
            print(f" {project}", file=sys.stderr)
    finally:
        backend.close()
    table = report(cases)
    heading = (
        f"Cross-file context: {args.model}, {len(cases)} cases "
        f"({time.perf_counter() - started:.0f} s)\n"
    )
    print(heading + "\n" + table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        data = {"model": args.model, "lines": args.lines, "seed": args.seed}
        data["cases"] = [asdict(c) for c in cases]
        args.out.parent.joinpath(args.out.name + ".json").write_text(json.dumps(data, indent=1))
        args.out.parent.joinpath(args.out.name + ".md").write_text(f"# {heading}\n{table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
