"""Command line: `fim-server [--stdio | --tcp HOST:PORT]` runs the language server,
`fim-server complete FILE:LINE:COL` prints one completion, `fim-server eval` scores the
pipeline on the infilling benchmarks, `fim-server inspect DIR` says what a model folder is
and whether it will load."""

from __future__ import annotations

import argparse
import logging
import math
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, NoReturn

from .backends import BackendSpec
from .backends.hf.recipes import RECIPE_NAMES
from .config import defaults
from .config.settings import BACKEND_CHOICES, UserSettings
from .config.settings import bounds as settings_bounds
from .engine import Engine, EngineSettings
from .eval.sandbox import SandboxLimits, isolation, unavailable_reason
from .eval.tasks import BENCHMARKS, SUITES, load_suite, spread

EXIT_USAGE = 2  # bad file or position, like argparse's own usage errors
EXIT_MODEL = 1


class UsageError(Exception):
    pass


def _add_common(parser: argparse.ArgumentParser, with_defaults: bool) -> None:
    # The subcommand repeats these options so they may come after it too; there they
    # must not default, or they would reset values given before the subcommand.
    def default(value: object) -> object:
        return value if with_defaults else argparse.SUPPRESS

    parser.add_argument(
        "--backend",
        default=default("auto"),
        choices=BACKEND_CHOICES,
        help="what fills the middle (default auto: the model folder's kind, else embedded)",
    )
    parser.add_argument(
        "--model",
        metavar="PATH",
        default=default(None),
        help="what to serve: qwen2.5-coder-0.5b or qwen2.5-coder-1.5b (packaged, run by "
        "llama.cpp's server), a .gguf file, a model folder, or embedded (default: $FIM_MODEL, "
        "else the packaged 0.5B where it is installed, else the embedded model)",
    )
    parser.add_argument(
        "--device",
        default=default("cpu"),
        help="torch device: cpu, cuda, auto (cuda if there is one), ...",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=default(defaults.THRESHOLD),
        help=f"fast path: commit every position more likely than this (default "
        f"{defaults.THRESHOLD}; lower: fewer passes per token, 1: one token a pass)",
    )
    parser.add_argument(
        "--recipe",
        default=default("fast"),
        choices=list(RECIPE_NAMES),
        help="model folders: decode as the family's authors do (dream-official, "
        "llada-official, ...: docs/models.md) instead of fim-server's fast path (default fast)",
    )
    parser.add_argument(
        "--log-level",
        default=default("WARNING"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level of the messages written to stderr",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=default(defaults.THREADS),
        help=f"torch CPU threads for the model (default {defaults.THREADS}; 0: torch's default)",
    )
    remote = parser.add_argument_group("remote backends (mercury, openai, llama.cpp)")
    remote.add_argument(
        "--endpoint",
        metavar="URL",
        default=default(None),
        help="the inference server's base URL (mercury: https://api.inceptionlabs.ai; "
        "llama.cpp: http://127.0.0.1:8080)",
    )
    remote.add_argument(
        "--remote-model",
        metavar="NAME",
        default=default(None),
        help="the model field of each request (mercury: mercury-edit-2)",
    )
    remote.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=default(None),
        help="environment variable holding the API key (mercury: INCEPTION_API_KEY, "
        "openai: OPENAI_API_KEY)",
    )
    remote.add_argument(
        "--timeout-ms",
        type=int,
        default=default(defaults.REMOTE_TIMEOUT_MS),
        help=f"give up on a request after this long (default {defaults.REMOTE_TIMEOUT_MS})",
    )
    remote.add_argument(
        "--fim-template",
        metavar="TEMPLATE",
        default=default(None),
        help="openai: send one raw prompt, e.g. '<|fim_prefix|>{prefix}<|fim_suffix|>"
        "{suffix}<|fim_middle|>', instead of the suffix field",
    )
    parser.add_argument(
        "--cache-size",
        type=int,
        default=default(defaults.CACHE_SIZE),
        help="completions kept in the LRU cache; 0 turns it off",
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fim-server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, with_defaults=True)
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="LSP over stdio (default)")
    transport.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="LSP over TCP, one independent session per connection (one shared model)",
    )
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=defaults.MAX_SESSIONS,
        help="with --tcp: clients served at once; more are refused "
        f"(default {defaults.MAX_SESSIONS})",
    )
    commands = parser.add_subparsers(dest="command")
    complete = commands.add_parser("complete", help="print the completion at FILE:LINE:COL")
    _add_common(complete, with_defaults=False)
    complete.add_argument(
        "location", metavar="FILE:LINE:COL", help="LINE and COL 1-based, COL in characters"
    )
    complete.add_argument(
        "--min-confidence",
        type=float,
        help="hide completions the confidence gate scores below this, like the server's "
        "minConfidence setting (default: the backend's own, gate.py; 0 shows every one)",
    )
    complete.add_argument(
        "--candidates",
        type=int,
        default=None,
        help="completions to ask for, like the server's candidates setting (default: the "
        "backend's, 1 on CPU); the first is printed, the others listed after it on stderr",
    )
    evaluate = commands.add_parser(
        "eval", help="score the pipeline on HumanEval-Infilling and SAFIM (Python)"
    )
    _add_common(evaluate, with_defaults=False)
    evaluate.add_argument(
        "--suite",
        action="append",
        choices=list(SUITES),
        help="repeatable (default: every suite)",
    )
    evaluate.add_argument(
        "--limit", type=int, help="at most N tasks per suite, evenly spread over the suite"
    )
    evaluate.add_argument(
        "--benchmarks",
        type=Path,
        default=None,
        help="the benchmarks folder (default: the repository's benchmarks/data)",
    )
    evaluate.add_argument("--out", type=Path, help="write per-task results and summary as JSON")
    evaluate.add_argument("--markdown", type=Path, help="write the summary table as markdown")
    evaluate.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per test program (default 10)"
    )
    evaluate.add_argument(
        "--empty-baseline",
        action="store_true",
        help="score an empty answer for every task instead of the model (the floor)",
    )
    evaluate.add_argument(
        "--workers", type=int, default=2, help="test programs run at once (default 2)"
    )
    evaluate.add_argument(
        "--unsafe-no-isolation",
        action="store_true",
        help="where this machine cannot isolate test programs (Linux namespaces), run them "
        "anyway, with access to the network and the file system (default: refuse)",
    )
    inspect = commands.add_parser(
        "inspect", help="say what a model folder is and whether it will load here"
    )
    inspect.add_argument("folder", metavar="DIR")
    inspect.add_argument(
        "--device", default="auto", help="device to check memory for (default auto)"
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> EngineSettings:
    if not 0 < args.threshold <= 1:
        raise UsageError("--threshold must be in (0, 1]")
    if args.cache_size < 0:
        raise UsageError("--cache-size must be 0 or more")
    if args.threads < 0:
        raise UsageError("--threads must be 0 or more")
    low, high = settings_bounds("timeoutMs")  # the setting of the same meaning
    if not low <= args.timeout_ms <= high:
        raise UsageError(f"--timeout-ms must be between {low} and {high}")
    backend = BackendSpec(
        kind=args.backend,
        model_path=_model(args),
        device=args.device,
        threshold=args.threshold,
        recipe=args.recipe,
        threads=args.threads or None,
        endpoint=args.endpoint,
        remote_model=args.remote_model,
        api_key_env=args.api_key_env,
        timeout_ms=args.timeout_ms,
        fim_template=args.fim_template,
    )
    return EngineSettings(backend=backend, cache_size=args.cache_size)


def _model(args: argparse.Namespace) -> str | None:
    """The model to serve: --model, else $FIM_MODEL, else the packaged real model where
    it and llama.cpp's server are installed, else (None) the embedded one."""
    model = args.model or os.environ.get("FIM_MODEL") or None
    if model is not None or args.backend not in ("auto", "llama.cpp") or args.endpoint:
        return model
    from .backends import default_model
    from .backends.gguf import DEFAULT_PACKAGED, PACKAGED

    model = default_model()
    if model is None:
        logging.getLogger("fim_server").warning(
            "serving the small embedded model (a demonstration, rarely right): for real "
            "completions install %s and llama.cpp's server (README: set up and run)",
            PACKAGED[DEFAULT_PACKAGED].title,
        )
    return model


def parse_location(location: str) -> tuple[Path, int, int]:
    parts = location.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        raise UsageError(f"expected FILE:LINE:COL with numbers for LINE and COL, got {location!r}")
    return Path(parts[0]), int(parts[1]), int(parts[2])


def offset_of(text: str, line: int, col: int) -> int:
    """Code-point offset of a 1-based line and column (column in characters)."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise UsageError(f"line {line} is outside the file (1-{len(lines)})")
    content = lines[line - 1].removesuffix("\r")
    if not 1 <= col <= len(content) + 1:
        raise UsageError(f"column {col} is outside line {line} (1-{len(content) + 1})")
    return sum(len(x) + 1 for x in lines[: line - 1]) + col - 1


# The largest file `complete` reads: what an editor may send the server in one message.
MAX_SOURCE_BYTES = 64 * 1024 * 1024


def read_source(path: Path) -> str:
    """The text of a regular file of at most MAX_SOURCE_BYTES: a FIFO would block the
    read forever and a device such as /dev/zero never ends."""
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not wait for one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"cannot read {path}: not a regular file")
        data = file.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise UsageError(f"cannot read {path}: larger than {MAX_SOURCE_BYTES >> 20} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {path}: not UTF-8 ({exc.reason})") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it


def run_complete(args: argparse.Namespace) -> int:
    path, line, col = parse_location(args.location)
    text = read_source(path)
    offset = offset_of(text, line, col)
    for option, key, value in (
        ("--min-confidence", "minConfidence", args.min_confidence),
        ("--candidates", "candidates", args.candidates),
    ):
        low, high = settings_bounds(key)  # the setting's own bounds
        if value is not None and not (low or 0) <= value <= high:
            raise UsageError(f"{option} must be between {low} and {high}")
    engine = Engine(_settings(args))
    engine.configure(UserSettings(min_confidence=args.min_confidence, candidates=args.candidates))
    try:
        completion = engine.complete_blocking(text, offset, path=str(path))
    finally:
        engine.close()
    if engine.load_error is not None:
        print(f"fim-server: could not load the model: {engine.load_error}", file=sys.stderr)
        return EXIT_MODEL
    if completion.failure is not None:
        print(f"fim-server: the backend failed: {completion.failure}", file=sys.stderr)
        return EXIT_MODEL
    stats = engine.stats()
    confidence = ""
    if completion.confidence is not None:
        model = completion.model_confidence
        gate = "hidden" if stats.gated else "shown"
        confidence = (
            f" confidence={completion.confidence:.2f}"
            f" model_confidence={'none' if model is None else f'{model:.2f}'}"
            f" gate={gate} (minConfidence {stats.min_confidence:.2f})"
        )
    if completion.text:
        sys.stdout.write(completion.text + "\n")
    # Each candidate with the closing brackets after the cursor it replaces: without them
    # `f(x))` in `g(|)` reads as one `)` too many.
    for rank, other in enumerate(completion.others, start=2):
        replaced = f"replace_chars={other.replace_chars}"
        print(f"candidate {rank}: {other.text!r} {replaced}", file=sys.stderr)
    # A completion may replace the closing brackets after the cursor (replace_chars of
    # them): what is printed is the text that takes their place.
    print(
        f"backend={stats.backend} mode={completion.mode} replace_chars={completion.replace_chars} "
        f"tokens={completion.tokens} "
        f"forward_passes={completion.forward_passes} model_ms={completion.model_ms:.1f} "
        f"total_ms={completion.latency_ms:.1f}{confidence} ({completion.reason})",
        file=sys.stderr,
    )
    return 0


def _benchmarks_folder(given: Path | None) -> Path:
    folder = given if given is not None else BENCHMARKS
    if not folder.is_dir():
        raise UsageError(f"benchmarks folder {folder} not found: pass --benchmarks DIR")
    return folder


def run_eval(args: argparse.Namespace) -> int:
    from .eval.run import EmptyAnswers, evaluate, markdown_table, summarise, write_results

    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be 1 or more")
    if args.workers < 1 or args.timeout <= 0:
        raise UsageError("--workers must be 1 or more and --timeout positive")
    folder = _benchmarks_folder(args.benchmarks)
    suites = args.suite or list(SUITES)
    try:
        tasks = {suite: spread(load_suite(folder, suite), args.limit) for suite in suites}
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read the benchmarks: {exc}") from exc
    # Every task is a different file: the completion cache would only cost memory.
    if isolation() is None and not args.unsafe_no_isolation:
        raise UsageError(unavailable_reason())
    engine = Engine(replace(_settings(args), cache_size=0))
    # pass@1 scores every answer the pipeline writes; the confidence gate, which decides
    # what an editor shows, is measured by benchmarks/typing_replay.py.
    engine.configure(UserSettings(min_confidence=0.0))
    limits = SandboxLimits(
        wall_s=args.timeout,
        cpu_s=max(1, math.ceil(args.timeout)),
        unsafe_no_isolation=args.unsafe_no_isolation,
    )
    results, summaries = {}, {}
    try:
        engine.start_loading().result()
        if engine.load_error is not None:
            print(f"fim-server: could not load the model: {engine.load_error}", file=sys.stderr)
            return EXIT_MODEL
        answerer = EmptyAnswers() if args.empty_baseline else engine
        for suite, suite_tasks in tasks.items():
            results[suite] = evaluate(answerer, suite_tasks, limits, args.workers)
            summaries[suite] = summarise(results[suite])
    except KeyboardInterrupt:
        print("\ninterrupted: scoring the suites finished so far", file=sys.stderr)
    finally:
        engine.close()
    model = (
        "empty answers (baseline)"
        if args.empty_baseline
        else engine.stats().backend_description or args.model or "embedded"
    )
    table = markdown_table(summaries, model)
    sys.stdout.write(table)
    if args.markdown:
        args.markdown.write_text(table)
    if args.out:
        write_results(args.out, model, summaries, results)
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from .backends import BackendError, BackendSpec, resolve_kind

    try:
        kind = resolve_kind(BackendSpec(model_path=args.folder))
    except BackendError as exc:
        print(f"folder: {args.folder}\nwill not load: {exc}")
        return EXIT_MODEL
    if kind == "embedded":
        from fim_model.weights import check_checkpoint

        try:
            cfg = check_checkpoint(Path(args.folder))
        except ValueError as exc:
            print(f"folder: {args.folder}\nwill not load: {exc}")
            return EXIT_MODEL
        print(
            f"folder: {args.folder}\nfamily: embedded (fim-server's own block-diffusion model)"
            f"\nnetwork: {cfg.n_layers} layers, dim {cfg.dim}, {cfg.n_heads} heads, "
            f"blocks of {cfg.block_size}, vocabulary {cfg.vocab_size}\nwill load: yes"
        )
        return 0
    from .backends.hf.folder_report import describe

    lines, ok = describe(args.folder, args.device)
    print("\n".join(lines))
    return 0 if ok else EXIT_MODEL


def _claim_stdout() -> BinaryIO:
    """Keep the real stdout for LSP messages and point fd 1 at stderr, so a stray print
    from any library cannot corrupt the protocol stream."""
    sys.stdout.flush()
    lsp_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return lsp_out


def parse_tcp_address(address: str) -> tuple[str, int]:
    """HOST and PORT of `--tcp HOST:PORT`; an IPv6 host in brackets, as in URLs
    (`[::1]:2087`): the brackets are not part of the name."""
    host, _, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port_text.isdigit() or "[" in host or "]" in host:
        raise UsageError(f"--tcp expects HOST:PORT (IPv6: [HOST]:PORT), got {address!r}")
    return host, int(port_text)


def run_server(args: argparse.Namespace) -> int:
    from .lsp.server import create_server  # pygls is only needed for the server
    from .lsp.transport import serve_stdio, serve_tcp

    host, port = "", 0
    if args.tcp:
        host, port = parse_tcp_address(args.tcp)
    if args.max_sessions < 1:
        raise UsageError("--max-sessions must be 1 or more")
    engine = Engine(_settings(args))
    engine.start_loading()  # overlaps the load with the client's handshake
    try:
        if args.tcp:
            # Each connection: its own documents, settings and cancellation; one model.
            try:
                code = serve_tcp(
                    lambda: create_server(engine.session()),
                    host,
                    port,
                    max_sessions=args.max_sessions,
                    on_session_end=lambda server: server.engine.close(),  # type: ignore[attr-defined]
                )
            except OSError as exc:
                raise UsageError(f"cannot listen on {args.tcp}: {exc}") from exc
        else:
            # The exit code LSP asks for: 0 after shutdown and exit, 1 otherwise.
            code = serve_stdio(create_server(engine), sys.stdin.buffer, _claim_stdout())
    finally:
        engine.close()
    _exit_now(code)


def _exit_now(code: int) -> NoReturn:
    """End the process without joining the model's worker thread: a model load or run in
    progress would otherwise hold it up long after the client said `exit`."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.log_level != "DEBUG":
        logging.getLogger("pygls").setLevel(logging.WARNING)  # it logs every message at INFO
    try:
        if args.command == "complete":
            return run_complete(args)
        if args.command == "eval":
            return run_eval(args)
        if args.command == "inspect":
            return run_inspect(args)
        return run_server(args)
    except UsageError as exc:
        print(f"fim-server: {exc}", file=sys.stderr)
        return EXIT_USAGE
