"""Finding and provisioning tools (`harness.runtime.toolchain`), against a fake PATH of small
scripts: nothing is really installed, and no real apt-get or cargo is run."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.pytest.scene import write_executable
from harness.runtime import toolchain
from harness.runtime.config import load_stack_config
from harness.runtime.process import ProcessError


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The only directory on PATH: a tool is there only if the test puts it there."""
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", str(path))
    monkeypatch.delenv("SWITCHYARD_REDIS_SERVER", raising=False)
    return path


def said_by() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


# --------------------------------------------------------------------------- redis-server


def test_redis_server_is_found_on_path(bin_dir: Path) -> None:
    redis = write_executable(bin_dir / "redis-server", "#!/bin/sh\n")
    assert toolchain.redis_server() == str(redis)


def test_the_configured_redis_server_wins_over_path(
    bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_executable(bin_dir / "redis-server", "#!/bin/sh\n")
    chosen = write_executable(tmp_path / "elsewhere" / "redis-server", "#!/bin/sh\n")
    monkeypatch.setenv("SWITCHYARD_REDIS_SERVER", str(chosen))
    assert toolchain.redis_server() == str(chosen)


def test_a_configured_redis_server_that_is_not_a_file_is_named(
    bin_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-redis"
    monkeypatch.setenv("SWITCHYARD_REDIS_SERVER", str(missing))
    with pytest.raises(toolchain.ToolMissing, match=f"SWITCHYARD_REDIS_SERVER={missing} is not"):
        toolchain.redis_server()
    monkeypatch.setenv("SWITCHYARD_REDIS_SERVER", str(tmp_path))
    with pytest.raises(toolchain.ToolMissing, match="is not a file"):
        toolchain.redis_server()


def test_missing_redis_server_says_how_to_get_it(bin_dir: Path) -> None:
    with pytest.raises(toolchain.ToolMissing) as caught:
        toolchain.redis_server()
    assert str(caught.value) == toolchain.REDIS_HINT


def test_ensure_redis_installs_nothing_when_it_is_present(bin_dir: Path) -> None:
    redis = write_executable(bin_dir / "redis-server", "#!/bin/sh\n")
    # An apt-get that would fail the test if it were ever run.
    write_executable(bin_dir / "apt-get", "#!/bin/sh\nexit 99\n")
    lines, say = said_by()
    assert toolchain.ensure_redis(say) == str(redis)
    assert lines == []


def test_ensure_redis_without_apt_get_raises_the_hint(bin_dir: Path) -> None:
    lines, say = said_by()
    with pytest.raises(toolchain.ToolMissing) as caught:
        toolchain.ensure_redis(say)
    assert str(caught.value) == toolchain.REDIS_HINT
    assert lines == []


def fake_apt_get(bin_dir: Path, log: Path, installable: bool) -> None:
    """An apt-get that records each call; `install` works only after `update` (a fresh machine
    without package lists), and puts a redis-server on PATH; unless `installable` is False."""
    write_executable(
        bin_dir / "apt-get",
        f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
bin_dir, log = Path({str(bin_dir)!r}), Path({str(log)!r})
with log.open("a") as out:
    out.write(json.dumps([sys.argv[1:], os.environ.get("DEBIAN_FRONTEND")]) + "\\n")
lists = bin_dir / ".lists"
if sys.argv[1] == "update":
    lists.write_text("")
    sys.exit(0)
if not {installable!r} or not lists.exists():
    sys.exit(100)
redis = bin_dir / "redis-server"
redis.write_text("#!/bin/sh\\n")
redis.chmod(0o755)
""",
    )


def calls(log: Path) -> list[tuple[str, str | None]]:
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    return [(args[0], frontend) for args, frontend in entries]


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get is only tried as root")
def test_ensure_redis_as_root_installs_it_with_apt_get(bin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "apt.log"
    fake_apt_get(bin_dir, log, installable=True)
    lines, say = said_by()
    assert toolchain.ensure_redis(say) == str(bin_dir / "redis-server")
    assert lines == ["installing redis-server with apt-get"]
    # The first install fails without package lists: update, then install again.
    assert calls(log) == [
        ("install", "noninteractive"),
        ("update", "noninteractive"),
        ("install", "noninteractive"),
    ]
    first_install = json.loads(log.read_text().splitlines()[0])[0]
    assert first_install[-1] == "redis-server" and "-y" in first_install


@pytest.mark.skipif(os.geteuid() != 0, reason="apt-get is only tried as root")
def test_ensure_redis_reports_an_apt_get_that_cannot_install_it(
    bin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "apt.log"
    fake_apt_get(bin_dir, log, installable=False)
    lines, say = said_by()
    with pytest.raises(toolchain.ToolMissing) as caught:
        toolchain.ensure_redis(say)
    assert str(caught.value).startswith("apt-get could not install redis-server. ")
    assert toolchain.REDIS_HINT in str(caught.value)
    assert [name for name, _ in calls(log)] == ["install", "update", "install"]
    assert lines == ["installing redis-server with apt-get"]
    assert not (bin_dir / "redis-server").exists()


# --------------------------------------------------------------------------- cargo and builds


def test_require_finds_a_tool_or_names_it_with_the_hint(bin_dir: Path) -> None:
    tool = write_executable(bin_dir / "frob", "#!/bin/sh\n")
    assert toolchain.require("frob", "unused hint") == str(tool)
    with pytest.raises(toolchain.ToolMissing, match=r"^zork not found on PATH\. get it at x$"):
        toolchain.require("zork", "get it at x")


def test_check_cargo_present_and_missing(bin_dir: Path) -> None:
    with pytest.raises(toolchain.ToolMissing, match=r"rustc 1\.85 or later"):
        toolchain.check_cargo()
    cargo = write_executable(bin_dir / "cargo", "#!/bin/sh\n")
    assert toolchain.check_cargo() == str(cargo)


def stack_with_builds(tmp_path: Path, builds: dict[str, list[str] | None]) -> Path:
    text = '[stack]\nproxy = "front"\n'
    for name, build in builds.items():
        text += f'\n[services.{name}]\ncommand = ["bin/{name}"]\n'
        if build is not None:
            text += "build = [" + ", ".join(json.dumps(word) for word in build) + "]\n"
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return path


def recording_cargo(bin_dir: Path, log: Path, code: int) -> None:
    write_executable(
        bin_dir / "cargo",
        f"#!{sys.executable}\nimport os, sys\n"
        f"with open({str(log)!r}, 'a') as out:\n"
        "    out.write(os.getcwd() + ' ' + ' '.join(sys.argv[1:]) + '\\n')\n"
        f"sys.exit({code})\n",
    )


def test_build_services_runs_each_build_in_the_root_in_order(bin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "cargo.log"
    recording_cargo(bin_dir, log, 0)
    root = tmp_path / "root"
    root.mkdir()
    config = load_stack_config(
        stack_with_builds(
            tmp_path,
            {
                "back": ["cargo", "build", "-p", "back"],
                "side": None,
                "front": ["cargo", "build", "-p", "front"],
            },
        ),
        root,
    )
    lines, say = said_by()
    toolchain.build_services(config, say)
    assert log.read_text().splitlines() == [f"{root} build -p back", f"{root} build -p front"]
    assert lines == ["building back: cargo build -p back", "building front: cargo build -p front"]


def test_a_failed_build_names_the_service_and_exit_code_and_stops_there(
    bin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "cargo.log"
    recording_cargo(bin_dir, log, 101)
    config = load_stack_config(
        stack_with_builds(
            tmp_path, {"back": ["cargo", "build"], "front": ["cargo", "build", "--release"]}
        ),
        tmp_path,
    )
    lines, say = said_by()
    with pytest.raises(ProcessError, match=r"^building back failed \(exit code 101\)$"):
        toolchain.build_services(config, say)
    assert len(log.read_text().splitlines()) == 1, "front is not built after back failed"
    assert lines == ["building back: cargo build"]


def test_a_cargo_build_needs_cargo_other_builds_do_not(bin_dir: Path, tmp_path: Path) -> None:
    made = tmp_path / "made"
    config = load_stack_config(
        stack_with_builds(
            tmp_path,
            {
                "back": [sys.executable, "-c", f"open({str(made)!r}, 'w').close()"],
                "front": ["cargo", "build"],
            },
        ),
        tmp_path,
    )
    lines, say = said_by()
    with pytest.raises(toolchain.ToolMissing, match="cargo not found on PATH"):
        toolchain.build_services(config, say)
    assert made.exists(), "the non-cargo build ran without cargo"
    assert [line.split(":")[0] for line in lines] == ["building back"]
