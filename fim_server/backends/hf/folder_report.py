"""`fim-server inspect DIR`: what a model folder is and whether it will load here, read
from its files without loading the weights."""

from __future__ import annotations

from ..base import BackendError
from .checkpoint import GIB


def describe(path: str, device: str = "auto") -> tuple[list[str], bool]:
    """Lines to print, and whether the folder will load on `device`."""
    from .backend import memory_line, parameter_count, precision, read_folder, resolve_device

    lines = [f"folder: {path}"]
    try:
        folder = read_folder(path)
    except BackendError as exc:
        return [*lines, f"will not load: {exc}"], False
    arch, special, tok = folder.architecture, folder.special, folder.tokenizer.tokenizer
    family = folder.family
    lines += [
        f"family: {family.kind} ({family.title})",
        f"network: {arch.layers} layers, hidden {arch.hidden_size}, {arch.heads} heads "
        f"({arch.kv_heads} key/value), vocabulary {arch.vocab_size}",
        f"parameters: {parameter_count(folder.weights.parameters)} in "
        f"{len(set(folder.weights.files.values()))} safetensors file(s), "
        f"{folder.weights.bytes_on_disk / GIB:.2f} GiB on disk",
        "tokens: "
        + ", ".join(
            f"{label} {tid} {tok.id_to_token(tid)}"
            for label, tid in (
                ("mask", special.mask),
                ("bos", special.bos),
                ("eos", special.eos),
                ("expand", special.expand),
            )
            if tid is not None
        ),  # fmt: skip
        f"logits: {'shifted by one' if family.shifted else 'unshifted'}; attention: "
        f"{'block-causal' if family.block_causal else 'bidirectional'}",
        f"infilling: {family.infilling}",
        f"conventions from: {family.reference}",
    ]
    resolved = resolve_device(device)
    need, free = memory_line(folder, resolved)
    dtype = "bf16" if str(precision(resolved)).endswith("bfloat16") else "fp32"
    free_text = "unknown" if free is None else f"{free / GIB:.1f} GiB"
    lines.append(f"memory: about {need / GIB:.2f} GiB in {dtype} on {resolved}; free {free_text}")
    if free is not None and need > free:
        lines.append("will not load: not enough memory on this device")
        return lines, False
    lines.append(f"will load: yes, as --backend {family.kind} (chosen by --model automatically)")
    return lines, True
