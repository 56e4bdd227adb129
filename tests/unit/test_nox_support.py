"""The noxfile's helpers (`harness.dev.nox_support`): pyenv interpreters put on PATH from a fake
PYENV_ROOT, and the stack prepared (built, redis-server found) in a private scene."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from harness.dev import nox_support
from harness.pytest.scene import make_scene, toy_service, write_executable
from harness.runtime.toolchain import ToolMissing


def fake_pyenv(root: Path, *versions: str, without_bin: tuple[str, ...] = ()) -> Path:
    for version in versions:
        (root / "versions" / version / "bin").mkdir(parents=True)
    for version in without_bin:
        (root / "versions" / version).mkdir(parents=True)
    return root


def bin_of(root: Path, version: str) -> str:
    return str(root / "versions" / version / "bin")


@pytest.fixture
def path_before(monkeypatch: pytest.MonkeyPatch) -> str:
    before = "/usr/local/bin:/usr/bin"
    monkeypatch.setenv("PATH", before)
    return before


def test_the_newest_patch_of_each_wanted_version_goes_first_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_before: str
) -> None:
    root = fake_pyenv(
        tmp_path / "pyenv",
        "3.11.4",
        "3.11.9",
        "3.12.1",
        "3.12.4",
        "3.1.5",
        "3.13.0",
        without_bin=("3.12.8",),
    )
    monkeypatch.setenv("PYENV_ROOT", str(root))
    nox_support.expose_pyenv_interpreters(["3.11", "3.12", "3.10"])
    assert os.environ["PATH"].split(os.pathsep) == [
        bin_of(root, "3.11.9"),
        # 3.12.8 has no bin directory: not an interpreter.
        bin_of(root, "3.12.4"),
        *path_before.split(os.pathsep),
    ]


def test_a_version_is_not_matched_by_a_longer_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_before: str
) -> None:
    root = fake_pyenv(tmp_path / "pyenv", "3.10.12", "3.1.5")
    monkeypatch.setenv("PYENV_ROOT", str(root))
    nox_support.expose_pyenv_interpreters(["3.1"])
    assert os.environ["PATH"].split(os.pathsep)[0] == bin_of(root, "3.1.5")
    assert bin_of(root, "3.10.12") not in os.environ["PATH"]


def test_the_newest_patch_release_wins_by_number_not_by_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_before: str
) -> None:
    root = fake_pyenv(tmp_path / "pyenv", "3.12.9", "3.12.10", "3.12.2")
    monkeypatch.setenv("PYENV_ROOT", str(root))
    nox_support.expose_pyenv_interpreters(["3.12"])
    assert os.environ["PATH"].split(os.pathsep)[0] == bin_of(root, "3.12.10")


def test_path_is_unchanged_when_pyenv_has_none_of_the_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_before: str
) -> None:
    monkeypatch.setenv("PYENV_ROOT", str(fake_pyenv(tmp_path / "pyenv", "3.9.1")))
    nox_support.expose_pyenv_interpreters(["3.12", "3.13"])
    assert os.environ["PATH"] == path_before
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv-here"))
    nox_support.expose_pyenv_interpreters(["3.12"])
    assert os.environ["PATH"] == path_before


def test_without_pyenv_root_the_home_pyenv_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path_before: str
) -> None:
    root = fake_pyenv(tmp_path / ".pyenv", "3.12.2")
    monkeypatch.delenv("PYENV_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    nox_support.expose_pyenv_interpreters(["3.12"])
    assert os.environ["PATH"] == os.pathsep.join([bin_of(root, "3.12.2"), path_before])


class SessionLog:
    """What prepare_stack uses of a nox session: its log."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def test_prepare_stack_builds_the_services_and_finds_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(tmp_path, monkeypatch)
    build = [sys.executable, "-c", "open('built', 'w').close()"]
    scene.write_config(toy_service("back") + toy_service("front", build=build))
    redis = write_executable(tmp_path / "redis" / "redis-server", "#!/bin/sh\n")
    monkeypatch.setenv("SWITCHYARD_REDIS_SERVER", str(redis))
    session = SessionLog()
    nox_support.prepare_stack(session)
    assert (scene.root / "built").exists()
    assert [line.split(":")[0] for line in session.lines] == ["building front"]


def test_prepare_stack_builds_nothing_for_an_external_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(tmp_path, monkeypatch)
    build = [sys.executable, "-c", "open('built', 'w').close()"]
    scene.write_config(toy_service("front", build=build))
    monkeypatch.setenv("SWITCHYARD_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PATH", str(scene.bin))  # no redis-server either: none is needed
    session = SessionLog()
    nox_support.prepare_stack(session)
    assert not (scene.root / "built").exists()
    assert session.lines == [
        "SWITCHYARD_BASE_URL is set: testing http://127.0.0.1:9, nothing to build"
    ]


def test_prepare_stack_without_redis_and_without_apt_get_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = make_scene(tmp_path, monkeypatch)
    scene.write_config(toy_service("front"))
    monkeypatch.delenv("SWITCHYARD_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(scene.bin))
    with pytest.raises(ToolMissing, match="redis-server not found"):
        nox_support.prepare_stack(SessionLog())
