"""Reading a Hugging Face model folder: config, weights (one file or shards listed in
model.safetensors.index.json), tokenizer.json and the special tokens, and what the model
needs in memory. Shared by every family; nothing here downloads anything.

Errors are BackendError with one line naming the folder and what is wrong with it.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..base import BackendError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}


def read_json(folder: Path, name: str, *, required: bool) -> dict[str, Any] | None:
    path = folder / name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise BackendError(f"model folder {folder} has no {name}") from None
        return None
    except (OSError, ValueError) as exc:
        raise BackendError(f"model folder {folder}: {name} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BackendError(f"model folder {folder}: {name} is not a JSON object")
    return data


@dataclass
class Weights:
    """Where each tensor of a checkpoint lives, read from the safetensors headers only."""

    folder: Path
    files: dict[str, Path]  # tensor name -> file
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    bytes_on_disk: int = 0

    @property
    def parameters(self) -> int:
        total = 0
        for shape in self.shapes.values():
            n = 1
            for d in shape:
                n *= d
            total += n
        return total


def _header(path: Path) -> dict[str, Any]:
    with path.open("rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(size))


def scan_weights(folder: Path) -> Weights:
    """The checkpoint's tensors: model.safetensors, or the shards its index names (every
    shard must be there)."""
    index = read_json(folder, INDEX, required=False)
    if index is not None:
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise BackendError(f"model folder {folder}: {INDEX} has no weight_map")
        shard_names = sorted(set(weight_map.values()))
        missing = [s for s in shard_names if not (folder / s).is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise BackendError(
                f"model folder {folder} is missing shard {missing[0]}{more} named in {INDEX}: "
                "the download is incomplete"
            )
        shards = [folder / s for s in shard_names]
    elif (folder / SINGLE).is_file():
        shards = [folder / SINGLE]
    else:
        other = sorted(p.name for p in folder.glob("*.bin")) + sorted(
            p.name for p in folder.glob("*.pt")
        )
        hint = f" (found {other[0]}: only safetensors are read)" if other else ""
        raise BackendError(f"model folder {folder} has no {SINGLE} or {INDEX}{hint}")
    weights = Weights(folder, {})
    for shard in shards:
        try:
            header = _header(shard)
        except (OSError, ValueError, struct.error) as exc:
            raise BackendError(
                f"model folder {folder}: {shard.name} is not safetensors ({exc})"
            ) from None
        for name, info in header.items():
            if name == "__metadata__":
                continue
            weights.files[name] = shard
            weights.shapes[name] = tuple(info["shape"])
            n = 1
            for d in info["shape"]:
                n *= d
            weights.bytes_on_disk += n * _DTYPE_BYTES.get(info["dtype"], 4)
    if index is not None:
        listed = set(index["weight_map"])
        absent = sorted(listed - set(weights.files))
        if absent:
            raise BackendError(
                f"model folder {folder}: tensor {absent[0]} listed in {INDEX} is in none of "
                "the shards"
            )
    return weights


# -- memory ------------------------------------------------------------------------------

GIB = 1024**3
# Activations, the key/value cache and the allocator's slack on top of the weights.
OVERHEAD = 1.15


def needed_bytes(parameters: int, bytes_per_parameter: int) -> int:
    return int(parameters * bytes_per_parameter * OVERHEAD)


def available_bytes(device: str) -> int | None:
    """Memory free for the model on `device`; None where it cannot be told."""
    if device.startswith("cuda"):
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(torch.device(device))
        except (RuntimeError, AssertionError):
            return None
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    if hasattr(os, "sysconf"):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return None


# -- tokenizer ---------------------------------------------------------------------------


@dataclass
class TokenizerFiles:
    tokenizer: Any  # tokenizers.Tokenizer
    config: dict[str, Any]  # tokenizer_config.json ({} if absent)

    def token_id(self, token: str | None) -> int | None:
        if not token:
            return None
        return self.tokenizer.token_to_id(token)

    def named(self, key: str) -> str | None:
        """A special token named in tokenizer_config.json (e.g. "mask_token")."""
        value = self.config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        return value if isinstance(value, str) else None


# Qwen2's pre-tokenization split, as transformers' Qwen2 converter writes it into the
# tokenizer.json of Qwen2-family models (transformers convert_slow_tokenizer.Qwen2Converter).
QWEN2_SPLIT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def load_tokenizer(folder: Path) -> TokenizerFiles:
    """tokenizer.json; failing that, a Qwen2-style vocab.json + merges.txt (Dream's slow
    DreamTokenizer ships only those) with the added tokens of tokenizer_config.json."""
    from tokenizers import Tokenizer

    config = read_json(folder, "tokenizer_config.json", required=False) or {}
    path = folder / "tokenizer.json"
    if path.is_file():
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises its own Exception subclass
            raise BackendError(
                f"model folder {folder}: tokenizer.json does not load ({exc})"
            ) from None
    elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
        tokenizer = _byte_level_bpe(folder, config)
    else:
        raise BackendError(
            f"model folder {folder} has no tokenizer.json (nor vocab.json and merges.txt)"
        )
    return TokenizerFiles(tokenizer, config)


def _byte_level_bpe(folder: Path, config: dict[str, Any]) -> Any:
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
    )

    try:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise BackendError(
            f"model folder {folder}: vocab.json/merges.txt unreadable ({exc})"
        ) from None
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    added = config.get("added_tokens_decoder")
    if isinstance(added, dict):
        for key in sorted(added, key=int):
            entry = added[key]
            token = AddedToken(
                entry["content"],
                single_word=entry.get("single_word", False),
                lstrip=entry.get("lstrip", False),
                rstrip=entry.get("rstrip", False),
                normalized=entry.get("normalized", False),
                special=entry.get("special", True),
            )
            tokenizer.add_special_tokens([token]) if token.special else tokenizer.add_tokens(
                [token]
            )
            if tokenizer.token_to_id(entry["content"]) != int(key):
                raise BackendError(
                    f"model folder {folder}: tokenizer_config.json puts {entry['content']} at "
                    f"id {key}, which does not follow vocab.json"
                )
    return tokenizer


def config_int(config: dict[str, Any], key: str, default: int | None = None) -> int | None:
    value = config.get(key, default)
    if isinstance(value, list):  # eos_token_id may be a list
        value = value[0] if value else default
    return value if isinstance(value, int) else default
