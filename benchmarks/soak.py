"""Soak: a long typing replay against the real server, with cancels, documents opened and
closed as tabs come and go, and the server's memory (RSS) printed as it goes.

Starts `fim-server --stdio` (the shipped model unless --server says otherwise) and speaks
LSP to it byte for byte. Each keystroke is a didChange that types one more character of a
Python file and an inline completion request at the cursor; a share of the requests are
cancelled a moment later, as editors do when the user types on. Keystrokes come every
--interval-ms whether or not the previous answer has arrived (and a --pause-share of
them are followed by a --pause-ms pause, long enough for the model to answer), so the
server's debounce, supersession and model runs are exercised as in an editor. Every
--reopen-every keystrokes a document is closed and a new one opened. At the end it
waits for every answer and reports the requests never answered (must be 0), latency
percentiles and RSS from the first 1,000 requests to the end. Before the typing, 40
large documents (316 KB each) are opened, completed in and closed, in four cycles; RSS
after each cycle must be back within 10% of its start.

    .venv/bin/python benchmarks/soak.py --requests 10000 --cancel 0.3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_SERVER = f"{shlex.quote(sys.executable)} -m fim_server --stdio"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.answers: dict[Any, dict[str, Any]] = {}
        self.sent_at: dict[Any, float] = {}
        self.latency_ms: dict[Any, float] = {}
        self.waiters: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.reader = asyncio.ensure_future(self._read())

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        if "id" in message and "method" in message:
            self.sent_at[message["id"]] = time.perf_counter()
        self.process.stdin.write(frame(message))

    def request(self, msg_id: Any, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    async def call(self, msg_id: Any, method: str, params: Any) -> dict[str, Any]:
        self.waiters[msg_id] = asyncio.get_running_loop().create_future()
        self.request(msg_id, method, params)
        return await asyncio.wait_for(self.waiters[msg_id], 300)

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            try:
                header = await stdout.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = int(header.split(b"Content-Length:")[1].split(b"\r\n")[0])
            message = json.loads(await stdout.readexactly(length))
            if "method" in message and "id" in message:  # a request of the server's
                self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                continue
            if "id" not in message or "method" in message:
                continue
            msg_id = message["id"]
            if msg_id in self.answers:
                raise AssertionError(f"a second answer to {msg_id}")
            self.answers[msg_id] = message
            if msg_id in self.sent_at:
                self.latency_ms[msg_id] = (time.perf_counter() - self.sent_at[msg_id]) * 1000
            waiter = self.waiters.pop(msg_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message)


def large_text(chars: int, serial: int) -> str:
    """About `chars` characters of Python made of the examples, names made unique per
    document (so no two documents share a parse or a cache entry)."""
    base = source_text()
    parts, size, copy = [], 0, 0
    while size < chars:
        part = base.replace("def ", f"def d{serial}_{copy}_")
        parts.append(part)
        size += len(part)
        copy += 1
    return "".join(parts)[:chars].rsplit("\n", 1)[0] + "\n\ndef total(items):\n    return \n"


async def large_documents(client: Client, pid: int, args: argparse.Namespace) -> bool:
    """Open --large-documents documents of --large-chars each, ask a completion in each (so
    each is parsed), close them all; --large-cycles times. RSS after each cycle must be
    back within 10% of what it was before the first."""
    start = rss_mb(pid)
    print(
        f"large documents: {args.large_documents} x {args.large_chars:,} characters, "
        f"{args.large_cycles} cycles; RSS before {start:.1f} MB",
        flush=True,
    )
    within = True
    cycles: list[dict[str, float]] = []
    for cycle in range(1, args.large_cycles + 1):
        uris = []
        for n in range(args.large_documents):
            uri = f"file:///soak/large_{cycle}_{n}.py"
            text = large_text(args.large_chars, cycle * 1000 + n)
            item = {"uri": uri, "languageId": "python", "version": 1, "text": text}
            client.notify("textDocument/didOpen", {"textDocument": item})
            line = text.count("\n") - 1
            params = {
                "textDocument": {"uri": uri},
                "position": {"line": line, "character": 11},
                "context": {"triggerKind": 1},
            }
            await client.call(f"large-{cycle}-{n}", "textDocument/inlineCompletion", params)
            uris.append(uri)
        peak = rss_mb(pid)
        for uri in uris:
            client.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        await client.call(f"large-stats-{cycle}", "fim/stats", None)  # the closes are done
        after = rss_mb(pid)
        change = (after - start) / start
        within = within and change <= 0.10
        cycles.append(
            {"cycle": cycle, "rss_open_mb": peak, "rss_closed_mb": after, "change": change}
        )
        print(
            f"cycle {cycle}: RSS {peak:.1f} MB with all open, {after:.1f} MB after closing "
            f"({change:+.1%} from the start)",
            flush=True,
        )
    if args.json:
        record = {
            "documents": args.large_documents,
            "chars": args.large_chars,
            "rss_start_mb": start,
            "cycles": cycles,
            "within_10_percent": within,
        }
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return within


def source_text() -> str:
    texts = [p.read_text() for p in sorted(EXAMPLES.glob("*.py"))]
    return "\n\n".join(texts) or "def f(a, b):\n    return a + b\n"


async def soak(args: argparse.Namespace) -> int:
    process = await asyncio.create_subprocess_exec(
        *shlex.split(args.server),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        limit=64 * 1024 * 1024,
    )
    client = Client(process)
    options = {"fim": {"crossFile": True}}
    params = {"processId": None, "rootUri": None, "capabilities": {}}
    params["initializationOptions"] = options
    await client.call("init", "initialize", params)
    client.notify("initialized", {})
    deadline = time.monotonic() + 300
    while True:
        stats = (await client.call(f"stats-{time.monotonic()}", "fim/stats", None))["result"]
        if stats["modelReady"] or stats["modelError"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    if not stats["modelReady"]:
        print(f"the model did not load: {stats['modelError']}", file=sys.stderr)
        return 1
    print(f"server pid {process.pid}, model ready; RSS {rss_mb(process.pid):.0f} MB", flush=True)
    large_ok = True
    if args.large_documents:
        large_ok = await large_documents(client, process.pid, args)

    rng = random.Random(args.seed)
    text = source_text()
    documents: dict[str, dict[str, Any]] = {}
    serial = 0

    def open_document() -> str:
        nonlocal serial
        serial += 1
        uri = f"file:///soak/module_{serial}.py"
        start = rng.randrange(0, max(len(text) - 2000, 1))
        documents[uri] = {"typed": "", "source": text[start:], "version": 1}
        item = {"uri": uri, "languageId": "python", "version": 1, "text": ""}
        client.notify("textDocument/didOpen", {"textDocument": item})
        return uri

    for _ in range(args.documents):
        open_document()
    samples: list[tuple[int, float]] = []
    cancelled = 0
    started = time.perf_counter()
    for n in range(1, args.requests + 1):
        uri = rng.choice(list(documents))
        doc = documents[uri]
        if len(doc["typed"]) >= len(doc["source"]):
            doc["typed"] = ""  # start over: the document is emptied below
            change = {"text": ""}
        else:
            char = doc["source"][len(doc["typed"])]
            lines = doc["typed"].split("\n")
            at = {"line": len(lines) - 1, "character": len(lines[-1].encode("utf-16-le")) // 2}
            change = {"range": {"start": at, "end": at}, "text": char}
            doc["typed"] += char
        doc["version"] += 1
        versioned = {"uri": uri, "version": doc["version"]}
        client.notify(
            "textDocument/didChange", {"textDocument": versioned, "contentChanges": [change]}
        )
        lines = doc["typed"].split("\n")
        position = {"line": len(lines) - 1, "character": len(lines[-1].encode("utf-16-le")) // 2}
        client.request(
            n,
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": position,
                "context": {"triggerKind": 2},
            },
        )
        if rng.random() < args.cancel:
            await asyncio.sleep(rng.uniform(0, args.interval_ms) / 1000)
            client.notify("$/cancelRequest", {"id": n})
            cancelled += 1
        # Mostly fast typing, now and then a pause long enough for the model to answer.
        pause = args.pause_ms if rng.random() < args.pause_share else args.interval_ms
        await asyncio.sleep(pause / 1000)
        if n % args.reopen_every == 0:
            gone = rng.choice(list(documents))
            del documents[gone]
            client.notify("textDocument/didClose", {"textDocument": {"uri": gone}})
            open_document()
        if n % args.sample_every == 0:
            samples.append((n, rss_mb(process.pid)))
            answered = sum(1 for i in range(1, n + 1) if i in client.answers)
            print(
                f"{n:6d} requests  {answered:6d} answered  RSS {samples[-1][1]:7.1f} MB  "
                f"{time.perf_counter() - started:6.0f} s",
                flush=True,
            )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(
        i not in client.answers for i in range(1, args.requests + 1)
    ):
        await asyncio.sleep(0.1)
    unanswered = [i for i in range(1, args.requests + 1) if i not in client.answers]
    final_rss = rss_mb(process.pid)
    stats = (await client.call("stats-end", "fim/stats", None))["result"]
    await client.call("shutdown", "shutdown", None)
    client.notify("exit", None)
    code = await asyncio.wait_for(process.wait(), 60)

    errors: dict[int, int] = {}
    for i in range(1, args.requests + 1):
        answer = client.answers.get(i)
        if answer is not None and "error" in answer:
            errors[answer["error"]["code"]] = errors.get(answer["error"]["code"], 0) + 1
    shown = sum(
        1
        for i in range(1, args.requests + 1)
        if client.answers.get(i, {}).get("result", {}).get("items")
    )
    latencies = sorted(
        client.latency_ms[i] for i in range(1, args.requests + 1) if i in client.latency_ms
    )
    at_1000 = next((rss for n, rss in samples if n >= 1000), samples[0][1] if samples else 0)
    print()
    share = cancelled / args.requests if args.requests else 0.0
    print(f"requests {args.requests}, cancelled {cancelled} ({share:.0%})")
    print(f"unanswered {len(unanswered)}" + (f": first {unanswered[:10]}" if unanswered else ""))
    print(f"answers with a completion {shown}; errors by code {errors}")
    if latencies:
        p = lambda q: latencies[min(int(q * len(latencies)), len(latencies) - 1)]  # noqa: E731
        print(
            f"latency ms: p50 {p(0.5):.0f}  p90 {p(0.9):.0f}  p99 {p(0.99):.0f}  "
            f"mean {statistics.fmean(latencies):.0f}"
        )
    if at_1000:
        print(
            f"RSS: {at_1000:.1f} MB after 1,000 requests, {final_rss:.1f} MB at the end "
            f"({(final_rss - at_1000) / at_1000:+.1%})"
        )
    print(
        f"server: {stats['requests']} requests, {stats['superseded']} superseded, "
        f"{stats['cancelled']} cancelled, {stats['cacheHits']} from the cache, "
        f"{stats['errors']} errors; exit code {code}"
    )
    return 1 if unanswered or code != 0 or not large_ok else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=DEFAULT_SERVER, help="the server command")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--cancel", type=float, default=0.3, help="share of requests cancelled")
    parser.add_argument("--interval-ms", type=float, default=15.0, help="between keystrokes")
    parser.add_argument("--pause-share", type=float, default=0.1, help="keystrokes then a pause")
    parser.add_argument("--pause-ms", type=float, default=250.0)
    parser.add_argument("--documents", type=int, default=12, help="documents open at once")
    parser.add_argument("--reopen-every", type=int, default=100, help="keystrokes per tab swap")
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "--large-documents", type=int, default=40, help="large documents per cycle (0: none)"
    )
    parser.add_argument("--large-chars", type=int, default=316_000)
    parser.add_argument("--large-cycles", type=int, default=4)
    parser.add_argument("--json", help="write the large-document cycles' RSS here")
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
