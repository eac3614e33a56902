"""The seam between the completion pipeline and whatever fills the middle.

Every model backend (the embedded block-diffusion model, open-weight diffusion coders
from a local folder, remote inference servers) implements `Backend`; the engine talks to
nothing else. A backend is called from one worker thread at a time, so it may keep state
between calls (a key/value cache, a connection pool).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..config import defaults


@dataclass(frozen=True)
class Infill:
    text: str  # the middle, as the backend wrote it (post-processing comes later)
    tokens: int  # tokens written (0 where the backend cannot count them)
    forward_passes: int  # model passes it took (0 for a remote backend)
    # The model's confidence in `text`, 0-1 (the mean probability of the tokens it
    # committed); None where the backend cannot tell.
    confidence: float | None = None
    # The model wrote its end-of-middle token (one more token it generated, in a pass of
    # its own or not); False where it stopped otherwise or the backend cannot tell.
    ended: bool = False


class InfillCancelled(Exception):
    """`should_cancel()` returned True: the backend stopped before finishing."""


class BackendError(Exception):
    """A backend that cannot load or answer, in one line a user can act on: it names the
    folder or endpoint and what is wrong with it."""


@dataclass(frozen=True)
class BackendSpec:
    """Which backend to load and how: from the command line and the client's settings."""

    kind: str = "auto"  # a name from `backends.KINDS`; auto: from `model_path`
    model_path: str | None = None  # None: the checkpoint shipped inside fim_model
    device: str = "cpu"
    threshold: float = defaults.THRESHOLD
    # Model folders: "fast" (fim-server's threshold + cache path) or a family's published
    # decoding recipe (backends/hf/recipes.py, docs/models.md).
    recipe: str = "fast"
    threads: int | None = defaults.THREADS  # torch CPU threads; None: torch's default
    # Remote backends (mercury, openai, llama.cpp); None: the kind's default.
    endpoint: str | None = None  # base URL of the inference server
    remote_model: str | None = None  # the `model` field of each request
    api_key_env: str | None = None  # environment variable holding the API key
    timeout_ms: int = defaults.REMOTE_TIMEOUT_MS  # one request, connecting included
    # Extra HTTP headers sent with every request, as (name, value) pairs.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # may hold secrets
    # openai only: a raw prompt with the model's own FIM tokens, `{prefix}` and `{suffix}`
    # standing for the code, sent instead of the `suffix` field.
    fim_template: str | None = None


def _never() -> bool:
    return False


@dataclass(frozen=True)
class InfillRequest:
    """One request from the engine to a backend: the same for every backend."""

    prefix: str  # the code before the cursor (it ends at the cursor)
    suffix: str  # the code after the cursor
    max_tokens: int  # at most this many tokens
    single_line: bool = False  # the middle ends at its first line break
    # Asked between steps (passes, reads of a stream); True: stop, raise InfillCancelled.
    should_cancel: Callable[[], bool] = _never
    seed: int = 0
    # Middles wanted, the first the one a request for one writes. A backend that `batches`
    # decodes them together; any other writes one whatever this says.
    count: int = 1
    # Other files' chunks as one text (`model_prefix` puts it in front of the prefix) and
    # one by one, (file name, text), for a server that lays them out itself (llama.cpp's
    # input_extra).
    extra: str = ""
    extra_chunks: tuple[tuple[str, str], ...] = ()
    # Characters at the end of `prefix` that are the middle written so far (the backend's
    # `middle_lines`): a server with a place after the FIM middle token puts them there.
    middle: int = 0
    # Called with the text streamed so far; True: post-processing will cut it whatever
    # comes next, so a streaming backend may stop reading. None: a single-line middle is
    # done at its first line break, any other when the model ends it.
    done: Callable[[str], bool] | None = None
    # A block stops at its first line break after this long (milliseconds) where the
    # server can (llama.cpp's t_max_predict_ms); 0: only the token budget limits it. The
    # engine sets it for automatic requests (the `blockMs` setting), not for one the user
    # asked for and waits for (an explicit trigger, the command line, evaluation).
    block_ms: int = 0

    @property
    def model_prefix(self) -> str:
        """What a model with no place of its own for other files reads before the cursor."""
        return self.extra + self.prefix


class Backend(Protocol):
    """What fills the middle. Subclass it to take the defaults of the optional abilities."""

    name: str  # short, for logs, `fim/stats` and summaries: "embedded", "dream", ...
    description: str  # one line for status displays: what model, where, on what device
    # Context (prefix + suffix tokens) the model was trained on; None: unknown.
    context_tokens: int | None
    # Optional abilities, declared rather than probed for. `batches`: it decodes
    # `InfillRequest.count` middles together (the embedded model, in one batch), and
    # `candidates` is how many the engine asks for by default (what its device does at
    # little cost) unless the user's `candidates` setting says.
    batches: bool = False
    candidates: int = 1
    # For a server that keeps a prompt cache (llama.cpp): the lines since the last row
    # that is a multiple of this are sent after the FIM middle token as the middle
    # written so far, so that new lines only append to the prompt (context/window.py).
    # 0: the window is measured from the cursor's line.
    middle_lines: int = 0

    def count_tokens(self, text: str) -> int:
        """Tokens `text` takes in the model's input (an estimate where unknown)."""
        ...

    def infill(self, request: InfillRequest) -> list[Infill]:
        """Write the middle between the request's prefix and suffix: `request.count`
        middles where the backend batches (they may coincide: the engine keeps the
        distinct ones after post-processing), else one. Checks `request.should_cancel`
        between steps and raises InfillCancelled when it says so."""
        ...

    def close(self) -> None:
        """Release what the backend holds (connections, memory)."""
        ...
