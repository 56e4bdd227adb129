"""The smoke check's command line (`harness.checks.smoke_cli`): which proxy it checks, `--start`
with a stack of its own that is stopped afterwards, and what it prints. The "proxies" here are toy
servers that accept connections and close them, so every check fails fast: the subject is the
command line's plumbing, not the checks (tests/unit/test_smoke.py, tests/mock/test_smoke_run.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.checks import smoke_cli
from harness.pytest.scene import Scene, make_scene, toy_service
from harness.runtime import stack
from harness.runtime.process import pick_free_port, port_in_use

FAST = ["--timeout", "0.3", "--requests", "2", "--no-color"]


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    made = make_scene(tmp_path, monkeypatch)
    made.write_config(toy_service("front"))
    yield made
    made.stop_everything()


def test_host_and_port_name_the_proxy(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    port = pick_free_port()
    assert smoke_cli.main(["--host", "127.0.0.1", "--port", str(port), *FAST]) == 1
    said = capsys.readouterr().out
    assert f"smoke checking http://127.0.0.1:{port}" in said
    assert "FAILED" in said and "health" in said


def test_without_a_stack_the_default_address_is_checked(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    # Whatever answers there (usually nothing), that is the address checked.
    smoke_cli.main([*FAST, "--timeout", "0.05"])
    assert "smoke checking http://127.0.0.1:8080" in capsys.readouterr().out


def test_the_proxy_of_the_running_default_stack_is_checked(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    services = stack.load().up()
    front = services["front"]
    assert smoke_cli.main(FAST) == 1
    assert f"smoke checking {front.url}" in capsys.readouterr().out
    assert front.alive(), "a stack it did not start is left running"


def test_start_runs_a_stack_of_its_own_and_stops_it(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    assert smoke_cli.main(["--start", *FAST]) == 1
    said = capsys.readouterr().out
    assert stack.list_stacks() == [] and scene.pid_files() == []
    # Its server's log outlives the stack: the port it served is the one that was checked.
    [log] = (scene.state / "logs").glob("smoke-*/front.log")
    port = int(log.read_text().split("starting on port ")[1].split()[0])
    assert f"smoke checking http://127.0.0.1:{port}" in said
    assert not port_in_use(port), "the server was stopped"


def test_json_goes_alone_to_stdout_and_quiet_drops_the_progress(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    port = pick_free_port()
    assert smoke_cli.main(["--port", str(port), "--json", "--quiet", *FAST]) == 1
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["base_url"] == f"http://127.0.0.1:{port}"
    assert report["passed"] is False
    assert report["checks"][0]["name"] == "health" and report["checks"][0]["ok"] is False
    assert "smoke checking" not in err, "--quiet"
    assert "FAILED" in err, "the final report is still shown, on stderr"
