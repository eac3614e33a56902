"""Packaged GGUF models: joined from their parts in order into the user's cache, checked
against the pinned sha256, never used when a part is missing or changed. A small model
of three parts stands in for the real ones (their joining is tested on the real files in
test_real_model.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fim_server.backends import BackendError, BackendSpec, gguf, resolve_kind


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[gguf.PackagedModel, list[Path]]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pieces = [gguf.GGUF_MAGIC + b"\x03\x00\x00\x00", b"tensor data " * 1000, b"the end"]
    parts = []
    for n, piece in enumerate(pieces, 1):
        part = tmp_path / f"part{n:02d}.bin"
        part.write_bytes(piece)
        parts.append(part)
    whole = b"".join(pieces)
    model = gguf.PackagedModel(
        name="tiny-coder", title="Tiny Coder", package="tiny-coder-part", parts=3,
        version="1.0", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), extra="tiny",
    )  # fmt: skip
    monkeypatch.setitem(gguf.PACKAGED, model.name, model)
    monkeypatch.setattr(gguf, "_part_files", lambda m: parts if m is model else None)
    return model, parts


def test_parts_are_joined_in_order_once_and_checked(tiny) -> None:
    model, parts = tiny
    path = gguf.packaged_path(model.name)
    assert path.read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert path.parent == gguf.cache_dir() and not list(path.parent.glob("*.part"))
    parts[1].write_bytes(b"changed after joining")  # the joined file is not read again
    assert gguf.packaged_path(model.name) == path
    assert gguf.model_file(model.name) == (path, "Tiny Coder")


def test_a_changed_part_is_refused(tiny) -> None:
    model, parts = tiny
    parts[2].write_bytes(b"the END")
    with pytest.raises(BackendError, match="installed parts are corrupt.*force-reinstall"):
        gguf.packaged_path(model.name)
    assert not list(gguf.cache_dir().glob("*.gguf")) and not list(gguf.cache_dir().glob("*.part"))


def test_a_joined_file_changed_on_disk_is_joined_again(tiny) -> None:
    model, _ = tiny
    path = gguf.packaged_path(model.name)
    path.write_bytes(b"GGUF garbage")
    assert gguf.packaged_path(model.name).read_bytes()[:8] == gguf.GGUF_MAGIC + b"\x03\x00\x00\x00"
    assert path.stat().st_size == model.size


def test_a_model_not_installed_says_how_to_install_it(
    tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = tiny
    monkeypatch.setattr(gguf, "_part_files", lambda m: None)
    with pytest.raises(BackendError, match=r"not installed: pip install -e \".\[tiny\]\""):
        gguf.packaged_path(model.name)


def test_gguf_files_are_checked_before_any_server_starts(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="does not exist"):
        gguf.model_file(str(tmp_path / "nope.gguf"))
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(BackendError, match="is not a GGUF file"):
        gguf.model_file(str(text))
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    with pytest.raises(BackendError, match="cannot be read|not a regular file"):
        gguf.model_file(str(folder))


def test_model_names_choose_the_backend() -> None:
    assert resolve_kind(BackendSpec(model_path="qwen2.5-coder-0.5b")) == "llama.cpp"
    assert resolve_kind(BackendSpec(model_path="/models/any.GGUF")) == "llama.cpp"
    assert resolve_kind(BackendSpec(model_path="embedded")) == "embedded"
    assert resolve_kind(BackendSpec()) == "embedded"
