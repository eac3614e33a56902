"""Model backends behind one interface (base.Backend), chosen by `--backend`/`--model`
or the client's `backend` setting.

- embedded: the block-diffusion model shipped inside the package (fim_model).
- dream, dreamon, llada, sdar, open-dcoder: open-weight diffusion coders from a local
  Hugging Face folder (backends/hf, docs/models.md), recognised from its config.json.
- mercury, openai, llama.cpp: an inference server over HTTP (remote.py); llama.cpp with
  a GGUF model (`--model qwen2.5-coder-0.5b`, `--model FILE.gguf`) over a llama-server
  that fim-server starts and stops itself (llama_server.py, gguf.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .base import Backend, BackendError, BackendSpec, Infill, InfillCancelled, InfillRequest
from .gguf import EMBEDDED, is_gguf_name

__all__ = [
    "KINDS",
    "Backend",
    "BackendError",
    "BackendSpec",
    "Infill",
    "InfillCancelled",
    "InfillRequest",
    "load_backend",
    "resolve_kind",
]


def _embedded(spec: BackendSpec) -> Backend:
    from .embedded import EmbeddedBackend  # torch is only imported for local models

    return EmbeddedBackend.load(spec)


def _diffusion(kind: str) -> Callable[[BackendSpec], Backend]:
    def load(spec: BackendSpec) -> Backend:
        from .hf.backend import DiffusionBackend

        return DiffusionBackend.load(spec, kind)

    return load


def _remote(kind: str) -> Callable[[BackendSpec], Backend]:
    def load(spec: BackendSpec) -> Backend:
        if kind == "llama.cpp" and spec.model_path is not None and spec.endpoint is None:
            from .llama_server import load_managed

            return load_managed(spec)
        from .remote import load_remote  # httpx is only imported for remote backends

        return load_remote(spec, kind)

    return load


# Backend kind -> loader. Loaders import their module lazily: a remote backend must not
# pay for torch, nor the embedded one for an HTTP client.
KINDS: dict[str, Callable[[BackendSpec], Backend]] = {
    "embedded": _embedded,
    **{kind: _diffusion(kind) for kind in ("dream", "dreamon", "llada", "sdar", "open-dcoder")},
    "mercury": _remote("mercury"),
    "openai": _remote("openai"),
    "llama.cpp": _remote("llama.cpp"),
}


# Backends that decode in their own way: a recipe (backends/hf/recipes.py) means nothing there.
_REMOTE_OR_EMBEDDED = ("embedded", "mercury", "openai", "llama.cpp")


def resolve_kind(spec: BackendSpec) -> str:
    """The backend kind `spec` asks for; `auto` looks at the model folder."""
    if spec.kind != "auto":
        if spec.kind not in KINDS:
            raise BackendError(
                f"unknown backend {spec.kind!r}; choose one of: {', '.join(sorted(KINDS))}"
            )
        return spec.kind
    if spec.model_path is None or spec.model_path == EMBEDDED:
        return "embedded"
    if is_gguf_name(spec.model_path):
        return "llama.cpp"  # served by a llama-server of our own
    folder = Path(spec.model_path)
    if not folder.is_dir():
        raise BackendError(f"model folder {folder} does not exist")
    try:
        config = json.loads((folder / "config.json").read_text())
    except OSError:
        raise BackendError(f"model folder {folder} has no config.json") from None
    except ValueError as exc:
        raise BackendError(f"model folder {folder}: config.json is not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise BackendError(f"model folder {folder}: config.json is not a JSON object")
    if "block_size" in config and "model_type" not in config:
        return "embedded"
    from .hf import detect_family, unsupported_reason  # reads config files only, no torch

    family = detect_family(config, folder)
    if family is None:
        raise BackendError(f"model folder {folder} {unsupported_reason(config)}")
    return family.kind


def default_model() -> str | None:
    """The packaged model `fim-server` serves when no model is named, if it is installed
    and llama.cpp's server can be found; None: the embedded model."""
    from .gguf import DEFAULT_PACKAGED, installed
    from .llama_server import find_binary

    if installed(DEFAULT_PACKAGED) and find_binary() is not None:
        return DEFAULT_PACKAGED
    return None


def load_backend(spec: BackendSpec) -> Backend:
    """Load the backend `spec` names; BackendError says what is wrong if it cannot."""
    kind = resolve_kind(spec)
    if spec.recipe != "fast" and kind in _REMOTE_OR_EMBEDDED:
        raise BackendError(
            f"recipe {spec.recipe} decodes a model folder (dream, llada, ...), not the {kind} "
            "backend: use recipe fast"
        )
    if kind == "embedded" and spec.model_path is not None:
        if spec.model_path == EMBEDDED or is_gguf_name(spec.model_path):
            # The embedded model asked for by name, or by a client's `backend` setting
            # over the command line's GGUF model.
            spec = replace(spec, model_path=None)
    if spec.device == "auto" and kind == "embedded":
        import torch

        spec = replace(spec, device="cuda" if torch.cuda.is_available() else "cpu")
    return KINDS[kind](spec)
