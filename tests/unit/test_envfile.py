"""Keys from the repository's `.env` (harness.runtime.envfile): the integration tier's three
settings are taken from the file when the environment lacks them, the environment wins, and
nothing else in the file reaches the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.runtime import envfile

FILE = """
# a comment
OPENAI_API_KEY=sk-from-the-file
export OPENAI_BASE_URL="http://127.0.0.1:9/v1"
SWITCHYARD_INTEGRATION_MODEL=
SOMETHING_ELSE=never-taken
"""

CASES = {
    # name: (environment before, keys taken, environment after for the three keys)
    "the file fills what the environment lacks": (
        {},
        ["OPENAI_API_KEY", "OPENAI_BASE_URL"],
        {"OPENAI_API_KEY": "sk-from-the-file", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
    ),
    "the environment wins": (
        {"OPENAI_API_KEY": "sk-from-the-env"},
        ["OPENAI_BASE_URL"],
        {"OPENAI_API_KEY": "sk-from-the-env", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"},
    ),
    "an empty variable counts as unset": (
        {"OPENAI_API_KEY": "", "SWITCHYARD_INTEGRATION_MODEL": "m"},
        ["OPENAI_API_KEY", "OPENAI_BASE_URL"],
        {
            "OPENAI_API_KEY": "sk-from-the-file",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "SWITCHYARD_INTEGRATION_MODEL": "m",
        },
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_keys_come_from_the_file_when_the_environment_lacks_them(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, taken, after = CASES[name]
    for key in (*envfile.KEYS, "SOMETHING_ELSE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in before.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / ".env"
    path.write_text(FILE)
    assert envfile.load_keys(path) == taken
    assert {key: os.environ[key] for key in envfile.KEYS if os.environ.get(key)} == after
    assert "SOMETHING_ELSE" not in os.environ


def test_no_file_sets_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in envfile.KEYS:
        monkeypatch.delenv(key, raising=False)
    assert envfile.load_keys(tmp_path / ".env") == []
    assert not any(os.environ.get(key) for key in envfile.KEYS)


def test_the_repository_ignores_its_env_file_and_ships_an_example() -> None:
    root = envfile.env_file().parent
    assert ".env" in (root / ".gitignore").read_text().splitlines()
    example = (root / ".env.example").read_text()
    assert all(key in example for key in envfile.KEYS)
    assert "sk-" not in example
