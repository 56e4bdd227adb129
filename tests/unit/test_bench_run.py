"""The benchmark's orchestration (`harness.perf.bench.main` and `run_bench`), end to end in a
private scene, with small Python stand-ins for the Rust binaries (tests/unit/fake_bench_tools.py):
the stack it starts, the phases it drives, the results it writes, the errors it reports, and that
everything it started is stopped whatever happens. The figures themselves are the subject of
tests/unit/test_bench.py; the real binaries are measured by `nox -s bench`."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.perf import bench, bench_options, measuring, sampler
from harness.perf import bench_report as report
from harness.pytest.scene import Scene, make_scene, write_executable
from harness.runtime import stack
from harness.runtime.process import pick_free_port

FAKES = Path(__file__).with_name("fake_bench_tools.py")
# One rate, short phases: the stand-ins send a fixed few requests per target whatever is asked.
SHORT = [
    "--rates",
    "50",
    "--duration",
    "0.1",
    "--slice-ms",
    "50",
    "--warmup-ms",
    "0",
    "--concurrency",
    "4",
    "--no-plot",
    "--no-color",
]


@pytest.fixture
def scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Scene]:
    made = make_scene(tmp_path, monkeypatch)
    monkeypatch.setenv("FAKE_LOADGEN_LOG", str(tmp_path / "loadgen.log"))
    for name in ("FAKE_LOADGEN_EXIT", "FAKE_LOADGEN_NO_JSON", "FAKE_LOADGEN_TERM_PARENT"):
        monkeypatch.delenv(name, raising=False)
    yield made
    # Whatever happened, the benchmark's stack is gone: no process, no PID file, no stack dir.
    assert stack.list_stacks() == []
    assert made.pid_files() == []


def install_fakes(scene: Scene) -> dict[str, Path]:
    """The three binaries where the benchmark looks for them, under the scene's root."""
    roles = {"switchyard": "serve", "fast_upstream": "serve", "loadgen": "loadgen"}
    made = {}
    for name, role in roles.items():
        made[name] = write_executable(
            scene.root / "proxy" / "target" / "release" / name,
            f"#!{sys.executable}\nimport runpy, sys\n"
            f"sys.argv[1:1] = [{role!r}]\n"
            f"runpy.run_path({str(FAKES)!r}, run_name='__main__')\n",
        )
    return made


def loadgen_calls(tmp_path: Path) -> list[list[str]]:
    log = tmp_path / "loadgen.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def targets_of(call: list[str]) -> list[str]:
    return [call[i + 1].split("=")[0] for i, word in enumerate(call) if word == "--target"]


def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


# --------------------------------------------------------------------------- a whole run


@pytest.mark.slow
def test_a_whole_run_drives_every_phase_and_writes_the_results(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fakes(scene)
    results = results_dir(tmp_path)
    argv = [*SHORT, "--no-build", "--results", str(results), "--model", "m-1", "--control"]
    with Canned(200, json.dumps(bench_ready_reply())) as other:
        # Another proxy, already running: measured too, but not started (nor sampled) here.
        code = bench.main([*argv, "--proxy-url", f"other={other.url}/v1"])
    out, err = capsys.readouterr()
    assert code == 0, err

    calls = loadgen_calls(tmp_path)
    assert len(calls) == 4, "open loop at one rate, closed loop, streaming, cache hits"
    open_call, closed_call, stream_call, cache_call = calls
    for call in calls:
        assert call[call.index("--model") + 1] == "m-1"
    assert targets_of(open_call) == ["direct", "switchyard", "control", "other"]
    assert f"other={other.url}" in open_call, "the /v1 of a proxy URL is dropped"
    assert open_call[open_call.index("--rate") + 1] == "50.0"
    assert closed_call[closed_call.index("--mode") + 1] == "closed"
    assert closed_call[closed_call.index("--concurrency") + 1] == "4"
    assert "--stream" in stream_call
    assert targets_of(cache_call) == ["direct", "switchyard", "switchyard-cache"]

    result = json.loads((results / "bench.json").read_text())
    assert (results / "bench.md").read_text() == report.markdown(result)
    assert not (results / "latency.png").exists(), "--no-plot"
    assert [t["name"] for t in result["targets"]] == ["direct", "switchyard", "control", "other"]
    [open_run] = result["open_loop"]
    assert open_run["rate"] == 50.0
    assert set(open_run["overhead"]) == {"switchyard", "control", "other"}
    assert open_run["cpu_us_per_request"]["switchyard"] is not None
    assert result["closed_loop"]["concurrency"] == 4
    # The canned "other" answers a stream with one plain body: no TTFT to compare.
    assert set(result["streaming"]["added"]) == {"switchyard", "control"}
    # The stand-in proxy caches in memory: the first of its identical requests misses.
    cached = result["cache"]["targets"]["switchyard-cache"]
    assert cached["cache_hits"] == cached["ok"] - 1
    # The readiness check, then every phase sent the same few requests through switchyard.
    per_phase = result["closed_loop"]["targets"]["switchyard"]["completed"]
    assert result["proxy_stats"]["requests"]["total"] == 1 + 4 * per_phase
    assert result["memory"]["switchyard"]["idle_mib"] > 0
    assert result["memory"]["switchyard"]["after_mib"] > 0
    assert set(result["memory"]) == {"switchyard", "control"}, "the processes it started"
    assert result["options"]["results"] == str(results)
    assert result["options"]["others"] == [
        {"name": "other", "command": None, "url": other.url, "health": "tcp"}
    ]
    assert any("noise floor" in note for note in result["notes"])

    assert "## Open loop" in out, "the Markdown goes to stdout"
    assert "bench starting the stack bench-" in err
    assert "the load takes about" in err
    assert "bench stopping the stack" in err
    assert f"wrote {results / 'bench.json'}, {results / 'bench.md'}" in err


# --------------------------------------------------------------------------- failures


def test_missing_binaries_are_named(scene: Scene, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main([*SHORT, "--no-build"]) == 1
    err = capsys.readouterr().err
    assert "bench failed" in err
    release = scene.root / "proxy" / "target" / "release"
    for name in bench.BINARIES:
        assert str(release / name) in err
    assert "build them (`invoke build`)" in err


def test_the_build_runs_cargo_in_the_root_and_a_failed_build_is_reported(
    scene: Scene,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    install_fakes(scene)
    log = tmp_path / "cargo.log"
    scene.tool("cargo", f'echo "$(pwd) $*" >> {log}\nexit 2\n')
    monkeypatch.setenv("PATH", f"{scene.bin}{os.pathsep}{os.environ['PATH']}")
    assert bench.main(SHORT) == 1
    err = capsys.readouterr().err
    assert "cargo build failed (exit code 2)" in err
    manifest = "--manifest-path proxy/Cargo.toml"
    assert log.read_text() == f"{scene.root} build --release {manifest} --workspace\n"
    assert loadgen_calls(tmp_path) == []


def test_without_cargo_the_build_fails_clearly(
    scene: Scene, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(scene.bin))
    assert bench.main(SHORT) == 1
    assert "cargo not found on PATH" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "only", "code", "said", "unsaid", "mode", "targets"),
    [
        pytest.param(
            "FAKE_LOADGEN_EXIT=3",
            "closed",  # the first phase run
            1,
            [
                "the load generator failed (exit code 3)",
                "fake loadgen: giving up on purpose",
                "bench stopping the stack",
            ],
            [],
            "closed",
            None,
            id="a failing load generator is reported with its output, the stack stopped",
        ),
        pytest.param(
            "FAKE_LOADGEN_NO_JSON=1",
            "cache",
            1,
            ["printed no JSON summary", "fake loadgen: 3 targets"],
            [],
            None,
            ["direct", "switchyard", "switchyard-cache"],
            id="a load generator without a summary is an error",
        ),
        pytest.param(
            "FAKE_LOADGEN_TERM_PARENT=1",
            "open",
            130,
            ["bench interrupted (received SIGTERM); everything was stopped"],
            # The load generator, which ignores nothing, was stopped with the stack (see the
            # fixture).
            ["the load generator failed"],
            None,
            None,
            id="SIGTERM in the middle of a phase stops everything and exits 130",
        ),
    ],
)
def test_a_load_generator_that_fails_or_is_interrupted(
    scene: Scene,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    only: str,
    code: int,
    said: list[str],
    unsaid: list[str],
    mode: str | None,
    targets: list[str] | None,
) -> None:
    install_fakes(scene)
    monkeypatch.setenv(*fault.split("="))
    assert bench.main([*SHORT, "--no-build", "--only", only]) == code
    err = capsys.readouterr().err
    [call] = loadgen_calls(tmp_path)
    if mode is not None:
        assert call[call.index("--mode") + 1] == mode, f"--only {only}: the first phase run"
    if targets is not None:
        assert targets_of(call) == targets
    for text in said:
        assert text in err
    for text in unsaid:
        assert text not in err
    assert not (tmp_path / "results").exists()


def test_an_unreachable_other_proxy_fails_before_any_load(
    scene: Scene, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_fakes(scene)
    url = f"http://127.0.0.1:{pick_free_port()}"
    assert bench.main([*SHORT, "--no-build", "--proxy-url", f"gone={url}"]) == 1
    assert f"gone at {url}: ConnectError" in capsys.readouterr().err
    assert loadgen_calls(tmp_path) == []


# --------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--proxy-cmd", "  "], "--proxy-cmd '  ': empty command"),
        (["--proxy-url", "ftp://example.com"], "expected an http:// URL"),
        (["--proxy-url", "https://example.com"], "the load generator speaks plain http only"),
        (["--proxy-health", "ping"], "unknown health check 'ping'"),
        (["--only", "open,soak"], "choose among open, closed, stream, cache"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        bench_options.parse_args(argv)
    assert caught.value.code == 2
    assert problem in capsys.readouterr().err


def bench_ready_reply() -> dict[str, Any]:
    return {"choices": [{"index": 0}], "usage": {"total_tokens": 3}}


class Canned:
    """An HTTP server in a thread that answers every request with one status and body."""

    def __init__(self, status: int, body: str):
        status_code, text = status, body.encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *values: Any) -> None:
                pass

            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(status_code)
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            do_GET = do_POST = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> Canned:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (200, json.dumps(bench_ready_reply()), None),
        (503, "overloaded", "HTTP 503: overloaded"),
        (200, "not json", "no chat completion with usage: not json"),
        (200, json.dumps({"choices": [], "usage": {"total_tokens": 3}}), "no chat completion"),
        (200, json.dumps({"choices": [{}], "usage": {"total_tokens": 0}}), "no chat completion"),
        (200, json.dumps({"choices": [{}]}), "no chat completion"),
    ],
)
def test_check_target_wants_a_chat_completion_with_usage(
    status: int, body: str, problem: str | None
) -> None:
    with Canned(status, body) as server:
        if problem is None:
            bench.check_target("t", server.url, "m")
        else:
            with pytest.raises(bench.BenchError, match=f"^t at {server.url}: {problem}"):
                bench.check_target("t", server.url, "m")


def test_proxy_stats_are_none_unless_a_json_200() -> None:
    with Canned(200, '{"requests": {"total": 7}}') as server:
        assert measuring.proxy_stats(server.url) == {"requests": {"total": 7}}
    with Canned(500, '{"requests": {"total": 7}}') as server:
        assert measuring.proxy_stats(server.url) is None
    with Canned(200, "<html>") as server:
        assert measuring.proxy_stats(server.url) is None
    assert measuring.proxy_stats(f"http://127.0.0.1:{pick_free_port()}") is None


def test_cpu_and_rss_of_a_process_tree() -> None:
    me = os.getpid()
    assert sampler.tree_processes(me)[0].pid == me
    assert sampler.cpu_seconds(me) > 0
    finished = psutil.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    assert sampler.tree_processes(finished.pid) == []
    assert sampler.cpu_seconds(finished.pid) == 0.0

    watching = sampler.Sampler({"me": me, "gone": finished.pid}, interval=0.01)
    now = watching.now()
    assert now["me"] is not None and now["me"].rss >= psutil.Process(me).memory_info().rss // 2
    assert now["gone"] is None
    watching.start()
    try:
        for _ in range(500):
            if watching.samples["me"]:
                break
            threading.Event().wait(0.01)
    finally:
        watching.stop()
    assert watching.rss("me") and all(rss > 0 for rss in watching.rss("me"))
    assert watching.samples["gone"] == []
    assert not watching._thread.is_alive()


def test_rss_of_a_tree_that_exits_after_it_was_resolved_is_none() -> None:
    child = psutil.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        watching = sampler.Sampler({"child": child.pid}, refresh=60.0)
        assert watching.now()["child"] is not None, "resolved while it runs"
    finally:
        child.kill()
        child.wait()
    assert watching.now()["child"] is None, "the same (resolved) tree, gone"


def test_machine_info_and_notes() -> None:
    machine = measuring.machine_info()
    assert machine["cpus"] == os.cpu_count()
    assert machine["cpu_model"] and len(machine["loadavg_before"]) == 3
    calm = bench.notes({"cpus": 2, "loadavg_before": [0.1]}, bench_options.BenchOptions())
    assert len(calm) == 1 and "2 CPUs" in calm[0]
    busy = bench.notes(
        {"cpus": 2, "loadavg_before": [1.5]}, bench_options.BenchOptions(control=True, quick=True)
    )
    assert any("load average 1.50" in note for note in busy)
    assert any("noise floor" in note for note in busy)
    assert any("--quick" in note for note in busy)
