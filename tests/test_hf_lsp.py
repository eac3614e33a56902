"""End to end, per diffusion family: a real LSP client drives `fim-server --model DIR` on
a tiny folder of that family and gets answers (text quality is not the point: the random
weights write noise; the pipeline is). A folder with a missing shard is reported to the
editor in one line, and the server keeps answering, empty."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hf_checkpoints import BUILDERS, shared_folder
from lsprotocol import types
from pytest_lsp import LanguageClient, make_test_lsp_client
from safetensors.torch import load_file, save_file
from test_lsp import CAPABILITIES, inline, open_document, wait_for

from fim_server.cli import main

LOAD_TIMEOUT_S = 120.0


async def _start(folder: Path) -> LanguageClient:
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "fim_server", "--stdio", "--model", str(folder))
    await client.initialize_session(
        types.InitializeParams(
            capabilities=CAPABILITIES,
            # Short budgets keep the random models' runs short; no debounce to wait out.
            initialization_options={
                "fim": {"crossFile": False, "lineTokens": 8, "blockTokens": 8, "debounceMs": 0}
            },
        )
    )
    return client


async def _stop(client: LanguageClient) -> None:
    await client.shutdown_session()
    await client.stop()


@pytest.mark.parametrize("kind", list(BUILDERS))
async def test_each_family_serves_inline_completions(kind: str) -> None:
    folder = shared_folder(kind)
    client = await _start(folder)
    try:
        stats = await wait_for(
            client, lambda s: s["modelReady"] or s["modelError"], LOAD_TIMEOUT_S, "the load"
        )
        assert stats["modelReady"], stats["modelError"]
        assert stats["backend"] == kind
        assert str(folder) in stats["backendDescription"]
        uri = open_document(client, "def add(a, b):\n    return \n\nprint(add(1, 2))\n")
        await inline(client, uri, 1, 11)  # an answer (perhaps empty after cleanup), no error
        after = await wait_for(client, lambda s: s["requests"] >= 1, 10, "the request count")
        assert after["modelError"] is None
    finally:
        await _stop(client)


async def test_a_missing_shard_is_shown_and_requests_answer_empty(tmp_path: Path) -> None:
    folder = BUILDERS["llada"](tmp_path / "LLaDA-8B-Base")
    (folder / "model-00002-of-00002.safetensors").unlink()
    client = await _start(folder)
    try:
        stats = await wait_for(client, lambda s: s["modelError"], LOAD_TIMEOUT_S, "the failure")
        assert "model-00002-of-00002.safetensors" in stats["modelError"]
        deadline_messages = [m for m in client.messages if m.type == types.MessageType.Error]
        for _ in range(100):
            if deadline_messages:
                break
            await asyncio.sleep(0.05)
            deadline_messages = [m for m in client.messages if m.type == types.MessageType.Error]
        assert any(str(folder) in m.message and "missing shard" in m.message
                   for m in deadline_messages), client.messages  # fmt: skip
        uri = open_document(client, "def f():\n    \n")
        assert await inline(client, uri, 1, 4) is None
    finally:
        await _stop(client)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fim_server", *args], capture_output=True, text=True, timeout=300
    )


def test_complete_and_inspect_on_a_tiny_folder(tmp_path: Path) -> None:
    folder = shared_folder("sdar")
    source = tmp_path / "add.py"
    source.write_text("def add(a, b):\n    return \n\nprint(add(1, 2))\n")
    done = _cli("complete", "--model", str(folder), f"{source}:2:12")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("backend=sdar ")
    shown = _cli("inspect", str(folder), "--device", "cpu")
    assert shown.returncode == 0, shown.stdout
    assert "family: sdar" in shown.stdout and "will load: yes" in shown.stdout
    assert "mask 151669" in shown.stdout


def test_eval_scores_a_tiny_folder(tmp_path: Path) -> None:
    folder = shared_folder("open-dcoder")
    out = tmp_path / "results.json"
    done = _cli(
        "eval", "--model", str(folder), "--suite", "humaneval-single", "--limit", "1",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "humaneval-single | 1 |" in done.stdout
    assert "Open-dCoder" in json.loads(out.read_text())["model"]


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("no_mask_token", "tokenizer.json has no mask token"),
        ("autoregressive", "plain autoregressive model"),
        ("unknown", "not a supported architecture"),
        ("renamed_weight", "lacks weight model.transformer.blocks.0.q_proj.weight"),
    ],
)
def test_folders_that_cannot_load_get_one_line_naming_them(
    tmp_path: Path, breakage: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = BUILDERS["llada"](tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    if breakage == "no_mask_token":
        config["mask_token_id"] = 126999  # beyond the tokenizer
    elif breakage == "autoregressive":
        config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    elif breakage == "unknown":
        config = {"model_type": "mamba"}
    else:
        # A checkpoint of the wrong layout: LLaDA's older fused att_proj name.
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        wm = index["weight_map"]
        old = "model.transformer.blocks.0.q_proj.weight"
        new = "model.transformer.blocks.0.att_proj.weight"
        shard = folder / wm[old]
        tensors = load_file(shard)
        tensors[new] = tensors.pop(old)
        save_file(tensors, shard)
        wm[new] = wm.pop(old)
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps(config))
    assert main(["inspect", str(folder)]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert expected in last and str(folder) in last, last
    if breakage != "no_mask_token":
        return  # one complete run shows the same line reaches `fim-server complete`
    source = tmp_path / "f.py"
    source.write_text("x = 1\n")
    done = _cli("complete", "--model", str(folder), f"{source}:1:6")
    assert done.returncode == 1
    assert "could not load the model" in done.stderr and str(folder) in done.stderr
