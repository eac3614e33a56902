"""`DiffusionBackend`: an open-weight diffusion coder loaded from a local folder."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..base import Backend, BackendError, BackendSpec, Infill, InfillRequest
from . import FAMILIES, detect_family, unsupported_reason
from .architecture import Architecture
from .checkpoint import (
    GIB,
    TokenizerFiles,
    Weights,
    available_bytes,
    config_int,
    load_tokenizer,
    needed_bytes,
    read_json,
    scan_weights,
)
from .decoding import (
    DecodeCall,
    Decoded,
    decode_bidirectional,
    decode_block_causal,
    decode_variable_length,
)
from .dreamon import INITIAL_MASKS
from .family import Family, Prompt, SpecialTokens
from .official import Run
from .official import decode as decode_recipe
from .recipes import FAST, Recipe, recipe_for
from .transformer import Transformer, internal_names

logger = logging.getLogger(__name__)


def parameter_count(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def precision(device: str) -> torch.dtype:
    """bf16 on GPUs (what the checkpoints are stored in), fp32 on CPUs (bf16 matmuls are
    slow or missing there)."""
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


@dataclass
class Folder:
    """What a model folder holds, read without loading any weights."""

    path: Path
    config: dict[str, Any]
    family: Family
    architecture: Architecture
    weights: Weights
    tokenizer: TokenizerFiles
    special: SpecialTokens

    def names(self) -> dict[str, str]:
        """Our parameter name -> the checkpoint's, for every parameter."""
        return {n: self.family.weight_name(n) for n in internal_names(self.architecture)}


def read_folder(path: str | Path, family: Family | None = None) -> Folder:
    """Recognise and check a model folder; BackendError names what is wrong."""
    folder = Path(path)
    if not folder.is_dir():
        raise BackendError(f"model folder {folder} does not exist")
    config = read_json(folder, "config.json", required=True)
    assert config is not None
    family = family or detect_family(config, folder)
    if family is None:
        raise BackendError(f"model folder {folder} {unsupported_reason(config)}")
    try:
        arch = family.architecture(config)
        family.block_size(config)  # checked now rather than at the first request
    except BackendError as exc:
        raise BackendError(f"model folder {folder}: {exc}") from None
    weights = scan_weights(folder)
    if arch.tied_embeddings and family.weight_name("lm_head.weight") in weights.files:
        arch = _untied(arch)
    tokenizer = load_tokenizer(folder)
    special = family.special_tokens(folder, config, tokenizer)
    result = Folder(folder, config, family, arch, weights, tokenizer, special)
    _check_names(result)
    return result


def _untied(arch: Architecture) -> Architecture:
    from dataclasses import replace

    return replace(arch, tied_embeddings=False)


def _check_names(folder: Folder) -> None:
    expected = set(folder.names().values())
    present = set(folder.weights.files)
    missing = sorted(expected - present)
    unexpected = sorted(present - expected)
    label = f"model folder {folder.path} ({folder.family.kind})"
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise BackendError(f"{label} lacks weight {missing[0]}{more}: not a {folder.family.title}")
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        raise BackendError(
            f"{label} has weight {unexpected[0]}{more} that a {folder.family.title} lacks"
        )


def memory_line(folder: Folder, device: str) -> tuple[int, int | None]:
    bytes_per = 2 if precision(device) == torch.bfloat16 else 4
    return needed_bytes(folder.weights.parameters, bytes_per), available_bytes(device)


def check_memory(folder: Folder, device: str) -> None:
    need, free = memory_line(folder, device)
    if free is not None and need > free:
        dtype = "bf16" if precision(device) == torch.bfloat16 else "fp32"
        advice = (
            "use --device cuda on a machine with a GPU, or a smaller model (Open-dCoder-0.5B)"
            if device == "cpu"
            else "free GPU memory or use a smaller model"
        )
        count = parameter_count(folder.weights.parameters)
        raise BackendError(
            f"model folder {folder.path}: {count} parameters need "
            f"about {need / GIB:.1f} GiB in {dtype} on {device}, but only {free / GIB:.1f} GiB "
            f"is free: {advice}"
        )


def load_model(folder: Folder, device: str, dtype: torch.dtype) -> Transformer:
    """Build the network and load every weight by its checkpoint name, strictly."""
    from safetensors import safe_open

    with torch.device("meta"):
        model = Transformer(folder.architecture)
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for ours, theirs in folder.names().items():
        if folder.weights.shapes[theirs] != shapes[ours]:
            raise BackendError(
                f"model folder {folder.path}: weight {theirs} has shape "
                f"{list(folder.weights.shapes[theirs])}, config.json implies {list(shapes[ours])}"
            )
        by_file.setdefault(folder.weights.files[theirs], []).append((ours, theirs))
    state: dict[str, torch.Tensor] = {}
    for path, pairs in by_file.items():
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for ours, theirs in pairs:
                state[ours] = f.get_tensor(theirs).to(dtype=dtype).to(device)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


class DiffusionBackend(Backend):
    def __init__(
        self,
        folder: Folder,
        model: Transformer,
        device: str,
        threshold: float,
        *,
        refresh_every_pass: bool = False,
        recipe: Recipe | None = None,
    ) -> None:
        self.folder = folder
        self.family = folder.family
        self.model = model
        self.device = torch.device(device)
        self.threshold = threshold
        self.refresh_every_pass = refresh_every_pass
        # None: fim-server's fast path (decoding.py); else the authors' loop (recipes.py).
        self.recipe = recipe
        self.name = self.family.kind
        positions = config_int(folder.config, "max_position_embeddings") or config_int(
            folder.config, "max_sequence_length"
        )
        trained = self.family.trained_context
        self.context_tokens: int | None = min(trained, positions) if positions else trained
        dtype = "bf16" if next(model.parameters()).dtype == torch.bfloat16 else "fp32"
        how = f"recipe {recipe.name}" if recipe else f"{FAST} path, threshold {threshold}"
        self.description = (
            f"{self.family.title}: {parameter_count(folder.weights.parameters)} parameters "
            f"from {folder.path} on {device} in {dtype}, {how}"
        )
        self._line_end: dict[int, bool] = {}

    @classmethod
    def load(cls, spec: BackendSpec, kind: str | None = None) -> DiffusionBackend:
        if spec.model_path is None:
            raise BackendError(f"the {kind or 'diffusion'} backend needs --model DIR")
        family = FAMILIES[kind] if kind else None
        folder = read_folder(spec.model_path, family)
        try:
            recipe = recipe_for(spec.recipe, folder.family.kind)
        except BackendError as exc:
            raise BackendError(f"model folder {folder.path}: {exc}") from None
        device = resolve_device(spec.device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"--device {spec.device}: torch sees no CUDA device here")
        check_memory(folder, device)
        if spec.threads is not None:
            torch.set_num_threads(spec.threads)
        model = load_model(folder, device, precision(device))
        backend = cls(folder, model, device, spec.threshold, recipe=recipe)
        # The first forward pass pays for lazy initialisation inside torch (and CUDA's
        # kernels); pay it here rather than in the user's first completion. The fast path
        # does that in a pass or two, where a recipe would run all its steps.
        backend.decode(
            backend.prompt("def f(", "):\n    pass\n"), 2, False, lambda: False, fast=True
        )
        return backend

    # -- Backend ---------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.folder.tokenizer.tokenizer.encode(text, add_special_tokens=False).ids)

    def _encode(self, text: str) -> list[int]:
        return self.folder.tokenizer.tokenizer.encode(text, add_special_tokens=False).ids

    def _is_line_end(self, token: int) -> bool:
        known = self._line_end.get(token)
        if known is None:
            known = "\n" in self.folder.tokenizer.tokenizer.decode([token])
            self._line_end[token] = known
        return known

    def prompt(self, prefix: str, suffix: str) -> Prompt:
        prompt = self.family.prompt(self.folder.special, self._encode(prefix), self._encode(suffix))
        if self.family.shifted and not prompt.before:
            # A shifted model predicts position i from row i-1: the middle needs a token
            # before it; an end-of-text reads as "a new document starts here".
            special = self.folder.special
            lead = special.bos if special.bos is not None else special.eos
            if lead is None:
                raise BackendError("the model has no bos or eos token to start a document")
            prompt = Prompt([lead], prompt.after)
        return prompt

    def decode(
        self,
        prompt: Prompt,
        max_tokens: int,
        single_line: bool,
        should_cancel: Callable[[], bool],
        *,
        seed: int = 0,
        fast: bool = False,
    ) -> Decoded:
        """The middle by the backend's recipe (`fast`: by the fast path whatever it is)."""
        special = self.folder.special
        if self.recipe is not None and not fast:
            run = Run(
                self.model, special, self.family.shifted, self.device, should_cancel, seed,
                pad=config_int(self.folder.config, "pad_token_id"),
                block=self.family.block_size(self.folder.config),
            )  # fmt: skip
            return decode_recipe(run, self.recipe, prompt, max_tokens)
        settings = DecodeCall(self.threshold, single_line, self._is_line_end, should_cancel)
        if self.family.variable_length:
            return decode_variable_length(
                self.model, prompt, max_tokens, INITIAL_MASKS, special, settings,
                device=self.device,
            )  # fmt: skip
        if self.family.block_causal:
            return decode_block_causal(
                self.model, prompt, max_tokens, special, settings,
                block=self.family.block_size(self.folder.config), device=self.device,
            )  # fmt: skip
        return decode_bidirectional(
            self.model, prompt, max_tokens, special, settings,
            shifted=self.family.shifted, block=self.family.block_size(self.folder.config),
            device=self.device, refresh_every_pass=self.refresh_every_pass,
        )  # fmt: skip

    def infill(self, request: InfillRequest) -> list[Infill]:
        # The fast path is greedy: `seed` changes nothing there; a recipe that samples
        # draws from a generator seeded with it. One middle a request (no batching).
        if request.max_tokens < 1:
            return [Infill("", 0, 0, None)]
        decoded = self.decode(
            self.prompt(request.model_prefix, request.suffix),
            request.max_tokens,
            request.single_line,
            request.should_cancel,
            seed=request.seed,
        )
        text = self.folder.tokenizer.tokenizer.decode(decoded.tokens, skip_special_tokens=True)
        if request.single_line:
            text = text.split("\n", 1)[0]
        confidence = (
            sum(decoded.confidences) / len(decoded.confidences) if decoded.confidences else None
        )
        return [Infill(text, len(decoded.tokens), decoded.passes, confidence)]

    def close(self) -> None:
        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
