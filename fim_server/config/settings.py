"""User settings, as editors send them in `initializationOptions` and in
`workspace/didChangeConfiguration` (`settings.fim`, or the keys at the top level of
`settings`).

A bad value never stops the server: it is reported and the previous value stays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ..backends import KINDS, BackendSpec
from ..backends.hf.recipes import RECIPE_NAMES
from . import defaults

# LSP key -> (field name, accepted type, can be null, minimum)
_KEYS: dict[str, tuple[str, type, bool, int | None]] = {
    "enable": ("enable", bool, False, None),
    "debounceMs": ("debounce_ms", int, False, 0),
    "contextTokens": ("context_tokens", int, True, 16),
    "lineTokens": ("line_tokens", int, False, 1),
    "blockTokens": ("block_tokens", int, False, 1),
    "blockMs": ("block_ms", int, False, 0),
    "crossFile": ("cross_file", bool, False, None),
    "minConfidence": ("min_confidence", float, True, 0),
    "candidates": ("candidates", int, True, 1),
    # What fills the middle; null: what the command line chose.
    "backend": ("backend", str, True, None),
    "endpoint": ("endpoint", str, True, None),
    "remoteModel": ("remote_model", str, True, None),
    "apiKeyEnv": ("api_key_env", str, True, None),
    "timeoutMs": ("timeout_ms", int, True, 1),
    "headers": ("headers", dict, True, None),
    "fimTemplate": ("fim_template", str, True, None),
    # Model folders: "fast" or a family's published decoding recipe; null: the command line's.
    "recipe": ("recipe", str, True, None),
}

# Backends a client may choose (`backends.KINDS` plus `auto`); checked here so that a typo
# keeps the running backend instead of unloading it.
BACKEND_CHOICES = ("auto", *KINDS)

# Upper bounds: a value past them only makes a request wait (debounce) or run (budgets)
# far longer than any editor waits for an answer; a confidence is at most 1. A number
# setting without its own bound gets the generic one.
_MAXIMUM: dict[str, int] = {
    "debounceMs": 2_000,
    "contextTokens": 32_768,
    "lineTokens": 256,
    "blockTokens": 1_024,
    "blockMs": 60_000,
    "minConfidence": 1,
    "candidates": 8,
    "timeoutMs": 600_000,
}
_GENERIC_MAXIMUM = 1_000_000


def bounds(key: str) -> tuple[int | None, int]:
    """The smallest (None: no lower bound) and largest value the number setting `key`
    takes: the command line's options of the same meaning check these too."""
    return _KEYS[key][3], _MAXIMUM.get(key, _GENERIC_MAXIMUM)


@dataclass(frozen=True)
class UserSettings:
    enable: bool = True  # False: every request answers empty without running the model
    # Wait this long after a request before running the model, so that a burst of
    # keystrokes runs it once, for the last one; cached answers skip the wait.
    debounce_ms: int = defaults.DEBOUNCE_MS
    # Tokens of the context window (prefix + suffix + other files); None: sized from the
    # loaded model's `context_tokens`.
    context_tokens: int | None = None
    line_tokens: int = defaults.LINE_TOKENS  # budget of rest-of-line and single-line completions
    block_tokens: int = defaults.BLOCK_TOKENS  # budget of block (multi-line) completions
    # An automatic block stops at its first line break after this long (backends that can:
    # llama.cpp); 0: no limit. Explicit requests have none.
    block_ms: int = defaults.BLOCK_MS
    cross_file: bool = True  # chunks of other open documents in front of the prefix
    # Completions the confidence gate (cleanup/gate.py) scores below this are not shown; 0 shows
    # every completion. None: the loaded backend's own default (gate.default_min_confidence).
    min_confidence: float | None = None
    # Completions offered at once, for the editor to cycle through (backends that decode
    # several together; others offer one). None: the backend's default for its device.
    candidates: int | None = None
    # The backend and how to reach it (see BackendSpec); None: the command line's value.
    backend: str | None = None
    endpoint: str | None = None
    remote_model: str | None = None
    api_key_env: str | None = None  # the name of a variable, never the key itself
    timeout_ms: int | None = None
    # Header values may carry secrets: kept out of repr, and so out of the logs.
    headers: tuple[tuple[str, str], ...] | None = field(default=None, repr=False)
    fim_template: str | None = None
    recipe: str | None = None  # backends/hf/recipes.py; None: the command line's value


@dataclass(frozen=True)
class SettingsUpdate:
    settings: UserSettings
    errors: list[str]  # wrong types or values: shown to the user, the old value kept
    ignored: list[str]  # unknown keys: logged


def _section(payload: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The settings object inside `initializationOptions` or didChangeConfiguration's
    `settings`: the `fim` section if there is one, else the object itself."""
    if payload is None:
        return None, None
    if not isinstance(payload, dict):
        return None, f"fim-server settings must be an object, got {type(payload).__name__}"
    section = payload.get("fim", payload)
    if not isinstance(section, dict):
        return None, f"fim-server settings `fim` must be an object, got {type(section).__name__}"
    return section, None


def apply_settings(current: UserSettings, payload: Any) -> SettingsUpdate:
    """`current` with the valid values of `payload` applied."""
    section, problem = _section(payload)
    if section is None:
        return SettingsUpdate(current, [problem] if problem else [], [])
    changes: dict[str, Any] = {}
    errors: list[str] = []
    ignored: list[str] = []
    for key, value in section.items():
        if key not in _KEYS:
            # A top-level `settings` also holds other tools' sections: skip those quietly.
            if section is payload and isinstance(value, dict):
                continue
            ignored.append(key)
            continue
        name, kind, nullable, minimum = _KEYS[key]
        if value is None and nullable:
            changes[name] = None
            continue
        # bool is an int in Python; a JSON true is no token count, nor 1 a switch. A
        # number setting takes JSON integers too (0, 1).
        accepted = (int, float) if kind is float else kind
        if (
            not isinstance(value, accepted)
            or (kind is not bool and isinstance(value, bool))
            or (kind is float and not math.isfinite(value))
        ):
            expected = {
                bool: "true or false",
                int: "an integer",
                float: "a number",
                str: "a string",
            }.get(kind, "an object")
            expected += " or null" if nullable else ""
            errors.append(
                f"setting {key} must be {expected}, got {_kind_of(value)}; "
                f"kept {_now(current, name)}"
            )
            continue
        if minimum is not None and value < minimum:
            errors.append(
                f"setting {key} must be at least {minimum}, got {value}; kept {_now(current, name)}"
            )
            continue
        maximum = _MAXIMUM.get(key, _GENERIC_MAXIMUM)
        if kind in (int, float) and value > maximum:
            errors.append(
                f"setting {key} must be at most {maximum}, got {value}; kept {_now(current, name)}"
            )
            continue
        problem = _check(key, value)
        if problem is not None:
            errors.append(f"setting {key} {problem}; kept {_now(current, name)}")
            continue
        if isinstance(value, dict):
            value = tuple(sorted(value.items()))
        changes[name] = float(value) if kind is float else value
    return SettingsUpdate(replace(current, **changes), errors, ignored)


def _kind_of(value: Any) -> str:
    """A wrong value as a message may show it: numbers and switches as they are; text,
    lists and objects by their type only, since they may hold a secret (`headers` sent as
    a list of pairs) or code."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    kind = {str: "a string", list: "a list", dict: "an object"}.get(type(value), "a value")
    unit = "character" if isinstance(value, str) else "item"
    return f"{kind} of {len(value)} {unit}{'' if len(value) == 1 else 's'}"


def _check(key: str, value: Any) -> str | None:
    """What is wrong with a value of the right type, if anything."""
    if key == "backend" and value not in BACKEND_CHOICES:
        return f"must be one of {', '.join(BACKEND_CHOICES)}, got {value!r}"
    if key == "recipe" and value not in RECIPE_NAMES:
        return f"must be one of {', '.join(RECIPE_NAMES)}, got {value!r}"
    if key == "headers" and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return "must map header names to string values"
    return None


def _now(current: UserSettings, name: str) -> str:
    value = getattr(current, name)
    if name == "headers" and value is not None:
        return "{" + ", ".join(sorted(k for k, _ in value)) + "}"  # values may be secrets
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


# The keys the server understands, as editors spell them (the README documents each).
SETTING_KEYS = tuple(_KEYS)


# Backend fields a setting of the same name replaces when set.
_SPEC_FIELDS = (
    "endpoint",
    "remote_model",
    "api_key_env",
    "timeout_ms",
    "headers",
    "fim_template",
    "recipe",
)


def backend_spec(base: BackendSpec, user: UserSettings) -> BackendSpec:
    """`base` (the command line's backend) with what the client's settings choose."""
    changes: dict[str, Any] = {}
    if user.backend is not None:
        changes["kind"] = user.backend
    for name in _SPEC_FIELDS:
        value = getattr(user, name)
        if value is not None:
            changes[name] = value
    return replace(base, **changes)
