"""An isolated world for tests of the harness's commands: a private repository root, state
directory and stack file (toy servers), and small executables standing in for tools on PATH.

Nothing here touches the real `.switchyard/`, `reports/` or `proxy/target/`: every path the
harness derives comes from the environment variables the `Scene` sets.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.pytest.procs import TOY, gone
from harness.runtime import console, paths, stack


def toy_service(
    name: str, *flags: str, port: str = '"pick"', build: list[str] | None = None
) -> str:
    """A stack-file table for a toy server (`harness/pytest/toy_server.py`)."""
    extra = "".join(f', "{flag}"' for flag in flags)
    build_line = f"build = {_toml_list(build)}\n" if build is not None else ""
    return (
        f"\n[services.{name}]\n"
        f'command = ["${{python}}", "{TOY}", "${{port}}"{extra}]\n'
        f'port = {port}\nhealth = "tcp"\nstop_grace = 0.5\nstartup_timeout = 15\n' + build_line
    )


def _toml_list(words: list[str]) -> str:
    return "[" + ", ".join(f'"{word}"' for word in words) + "]"


def write_executable(path: Path, text: str) -> Path:
    """A script (its first line a shebang) that can be run by name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@dataclass
class Scene:
    root: Path
    state: Path
    config: Path
    bin: Path

    def write_config(self, body: str, proxy: str = "front") -> Path:
        self.config.write_text(f'[stack]\nproxy = "{proxy}"\n' + body)
        return self.config

    def tool(self, name: str, script: str = "exit 0\n") -> Path:
        """An executable called `name` on the scene's PATH directory, run by /bin/sh."""
        return write_executable(self.bin / name, "#!/bin/sh\n" + script)

    def pid_files(self) -> list[Path]:
        return sorted(self.state.rglob("*.pid"))

    def stop_everything(self) -> None:
        """Stop every stack of this scene, through the harness, and check nothing survived."""
        if not self.config.exists():
            return
        pids = []
        for stack_id in stack.list_stacks():
            the_stack = stack.load(stack_id)
            pids += [service.record.pid for service in the_stack.services().values()]
            the_stack.down()
        assert all(gone(pid) for pid in pids)


def make_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Scene:
    """Point the harness at private paths under tmp_path, with plain (colourless) output."""
    scene = Scene(
        root=tmp_path / "root",
        state=tmp_path / "state",
        config=tmp_path / "stack.toml",
        bin=tmp_path / "bin",
    )
    scene.root.mkdir()
    scene.bin.mkdir()
    monkeypatch.setenv("SWITCHYARD_ROOT", str(scene.root))
    monkeypatch.setenv("SWITCHYARD_STATE_DIR", str(scene.state))
    monkeypatch.setenv("SWITCHYARD_STACK_CONFIG", str(scene.config))
    monkeypatch.setenv("NO_COLOR", "1")
    # A fresh console, made under NO_COLOR and writing to the captured stdout.
    monkeypatch.setattr(console, "_console", None)
    assert paths.root() == scene.root and paths.state_dir() == scene.state
    return scene
