"""User settings from initializationOptions / didChangeConfiguration."""

from __future__ import annotations

from pathlib import Path

import pytest

from fim_server.config.settings import SETTING_KEYS, UserSettings, apply_settings


def test_defaults() -> None:
    settings = UserSettings()
    assert settings.enable and settings.cross_file
    assert settings.context_tokens is None
    assert (settings.debounce_ms, settings.line_tokens, settings.block_tokens) == (50, 48, 64)


@pytest.mark.parametrize(
    "payload",
    [
        {"fim": {"enable": False, "debounceMs": 0, "contextTokens": 256}},
        {"enable": False, "debounceMs": 0, "contextTokens": 256},  # top level of settings
    ],
)
def test_values_are_applied(payload: dict) -> None:
    update = apply_settings(UserSettings(), payload)
    assert update.errors == [] and update.ignored == []
    assert update.settings == UserSettings(enable=False, debounce_ms=0, context_tokens=256)


def test_null_context_tokens_means_sized_from_the_model() -> None:
    update = apply_settings(UserSettings(context_tokens=100), {"contextTokens": None})
    assert update.settings.context_tokens is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("enable", "yes", "enable must be true or false"),
        ("enable", 1, "enable must be true or false"),
        ("debounceMs", True, "debounceMs must be an integer"),
        ("debounceMs", -5, "debounceMs must be at least 0"),
        ("lineTokens", 1.5, "lineTokens must be an integer"),
        ("blockTokens", None, "blockTokens must be an integer"),
        ("contextTokens", "big", "contextTokens must be an integer or null"),
    ],
)
def test_wrong_values_keep_the_old_one_with_a_clear_message(
    key: str, value: object, message: str
) -> None:
    before = UserSettings(enable=False, debounce_ms=10, line_tokens=20, block_tokens=30)
    update = apply_settings(before, {"fim": {key: value, "crossFile": False}})
    assert update.settings == UserSettings(
        enable=False, debounce_ms=10, line_tokens=20, block_tokens=30, cross_file=False
    )
    (error,) = update.errors
    assert message in error and "kept" in error


def test_unknown_keys_are_ignored_and_reported() -> None:
    update = apply_settings(UserSettings(), {"fim": {"temperature": 0.2, "enable": False}})
    assert update.ignored == ["temperature"]
    assert update.settings.enable is False


def test_other_tools_sections_at_the_top_level_are_not_reported() -> None:
    update = apply_settings(UserSettings(), {"python": {"analysis": {}}, "lineTokens": 10})
    assert update.ignored == [] and update.settings.line_tokens == 10


@pytest.mark.parametrize("payload", [[1, 2], "fim", {"fim": 3}])
def test_malformed_payloads_are_errors(payload: object) -> None:
    update = apply_settings(UserSettings(), payload)
    assert update.settings == UserSettings() and len(update.errors) == 1


def test_the_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for key in SETTING_KEYS:
        assert f"`{key}`" in readme, f"README does not document {key}"


@pytest.mark.parametrize(
    "key, value",
    [
        ("headers", [["Authorization", "Bearer sk-secret-9"]]),
        ("headers", "Bearer sk-secret-9"),
        ("headers", {"Authorization": ["Bearer sk-secret-9"]}),
        ("endpoint", ["https://api.example.com/?key=sk-secret-9"]),
        ("fimTemplate", {"prefix": "sk-secret-9"}),
    ],
)
def test_a_wrong_value_is_reported_without_echoing_it(key: str, value: object) -> None:
    update = apply_settings(UserSettings(), {key: value})
    assert len(update.errors) == 1 and key in update.errors[0]
    assert "sk-secret-9" not in update.errors[0], update.errors[0]
