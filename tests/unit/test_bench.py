"""The benchmark's pure parts: percentiles, timetable arithmetic, overheads, the result
document, its Markdown, options and the configs it renders. Nothing here measures a timing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.compat import tomllib
from harness.perf import bench, bench_options
from harness.perf import bench_report as report
from harness.pytest.proxy_configs import with_upstream


def latency(p50: float, p99: float, *, p90: float | None = None) -> dict[str, Any]:
    return {
        "count": 100,
        "min": p50 / 2,
        "mean": p50,
        "p50": p50,
        "p90": p90 if p90 is not None else p50 * 1.5,
        "p99": p99,
        "p999": p99 * 2,
        "max": p99 * 3,
    }


def target(
    name: str,
    p50: float,
    p99: float,
    *,
    achieved: float = 1000.0,
    errors: dict[str, int] | None = None,
    hits: int = 0,
    stream: tuple[float, float] | None = None,
) -> dict[str, Any]:
    kinds = errors or {}
    figures: dict[str, Any] = {
        "name": name,
        "url": f"http://127.0.0.1:1/{name}",
        "measured_s": 10.0,
        "completed": 100 + sum(kinds.values()),
        "ok": 100,
        "errors": sum(kinds.values()),
        "error_kinds": kinds,
        "achieved_rps": achieved,
        "cache_hits": hits,
        "latency_us": latency(p50, p99),
        "send_lag_us": latency(40.0, 900.0),
        "ttft_us": None,
        "gap_us": None,
    }
    if stream is not None:
        figures["ttft_us"] = latency(*stream)
        figures["gap_us"] = latency(1000.0 + stream[0] / 10, 2000.0 + stream[1] / 10)
    return figures


def summary(*targets: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "open", "wall_s": 20.0, "targets": list(targets)}


def a_result(rate_figures: dict[float, tuple[float, float]] | None = None) -> dict[str, Any]:
    """A whole result document: per rate, (switchyard p50, p99) over a direct 100/1000 us."""
    rates = rate_figures or {100: (300.0, 1500.0), 1000: (280.0, 1900.0)}
    open_loop = [
        report.open_loop_entry(
            rate,
            summary(target("direct", 100.0, 1000.0, achieved=rate), target("switchyard", *pair)),
            {"switchyard": 150.0},
        )
        for rate, pair in rates.items()
    ]
    closed = {
        "concurrency": 32,
        "targets": report.by_name(
            summary(
                target("direct", 400.0, 2500.0, achieved=50000),
                target("switchyard", 3500.0, 8000.0, achieved=8000),
            )
        ),
    }
    streaming = report.stream_entry(
        100,
        summary(
            target("direct", 20000, 25000, stream=(200.0, 2000.0)),
            target("switchyard", 40000, 45000, stream=(450.0, 4000.0)),
        ),
    )
    cache = report.cache_entry(
        1000,
        summary(
            target("direct", 100.0, 1000.0),
            target("switchyard", 290.0, 1800.0),
            target("switchyard-cache", 150.0, 1200.0, hits=100),
        ),
    )
    return report.document(
        machine={"cpus": 2, "cpu_model": "Test CPU", "loadavg_before": [0.1, 0.2, 0.3]},
        options={"rates": list(rates)},
        targets=[{"name": "direct", "url": "u"}, {"name": "switchyard", "url": "p"}],
        open_loop=open_loop,
        closed_loop=closed,
        streaming=streaming,
        cache=cache,
        memory={"switchyard": report.memory_entry(8 * 2**20, [12 * 2**20, 16 * 2**20], 14 * 2**20)},
        proxy_stats={"requests": {"total": 10}},
        notes=["a note"],
    )


# --------------------------------------------------------------------------- percentiles


def test_percentiles_are_nearest_rank() -> None:
    values = list(range(1, 1001))
    assert report.percentile(values, 50) == 500
    assert report.percentile(values, 90) == 900
    assert report.percentile(values, 99) == 990
    # Integer arithmetic: 99.9% of 1000 is exactly the 999th, not the 1000th.
    assert report.percentile(values, 99.9) == 999
    assert report.percentile(values, 100) == 1000
    assert report.percentile(values, 0) == 1


def test_percentiles_of_small_and_unsorted_samples() -> None:
    assert report.percentile([], 50) == 0.0
    assert report.percentile([7], 99) == 7
    assert report.percentile([4, 1, 3, 2], 50) == 2
    assert report.percentile([4, 1, 3, 2], 50.001) == 3
    assert report.percentile([4, 1, 3, 2], 75) == 3
    assert report.percentile((x / 10 for x in range(10)), 100) == 0.9


# --------------------------------------------------------------------------- timetables


def test_the_open_timetable_matches_the_load_generator() -> None:
    # The same case as the load generator's
    # the_open_timetable_warms_up_round_robin_then_alternates_slices.
    timetable = report.OpenTimetable.of(1000, 2.0, 500, 100, 2)
    assert (timetable.per_slice, timetable.slices, timetable.warmup) == (500, 4, 100)
    assert timetable.measured_per_target == 2000
    assert timetable.sent_per_target == 2100
    assert timetable.total == 4200
    assert timetable.seconds == pytest.approx(4.2)
    assert timetable.target_of(199) is None
    assert timetable.target_of(200) == 0
    assert timetable.target_of(699) == 0
    assert timetable.target_of(700) == 1
    assert timetable.target_of(1200) == 0
    assert timetable.target_of(4199) == 1
    measured = [timetable.target_of(j) for j in range(timetable.total)]
    assert measured.count(0) == measured.count(1) == timetable.measured_per_target


def test_the_open_timetable_rounds_like_rust() -> None:
    # 2.5 requests per slice rounds half away from zero (3), not to even (2).
    assert report.OpenTimetable.of(2.5, 10, 1000, 0, 1).per_slice == 3
    timetable = report.OpenTimetable.of(100, 1.0, 300, 0, 1)
    assert (timetable.per_slice, timetable.slices, timetable.measured_per_target) == (30, 4, 120)
    tiny = report.OpenTimetable.of(1, 1, 10, 0, 3)
    assert tiny.per_slice == 1
    assert tiny.total == 3


def test_closed_loop_seconds() -> None:
    assert report.closed_seconds(1.0, 250, 100, 2) == pytest.approx(2.2)
    assert report.closed_seconds(1.1, 500, 0, 1) == pytest.approx(1.5)


def test_the_estimate_adds_up_the_phases() -> None:
    options = bench_options.BenchOptions(
        rates=[100, 1000],
        duration=2,
        slice_ms=500,
        warmup_ms=0,
        closed_duration=1,
        stream_rate=100,
        stream_duration=1,
        cache_rate=1000,
        cache_duration=1,
    )
    # Open: 2 x 2 s per rate, closed 2 x 1 s, streams 2 x 1 s, cache 3 x 1 s.
    assert bench.estimate_seconds(options, 2) == pytest.approx(8 + 2 + 2 + 3)


# --------------------------------------------------------------------------- overheads


def test_overhead_is_proxy_minus_direct_at_each_percentile() -> None:
    added = report.overhead(latency(100.0, 1000.0), latency(280.5, 1900.0))
    assert added["p50"] == 180.5
    assert added["p99"] == 900.0
    assert added["max"] == 2700.0
    assert set(added) == set(report.PERCENTILES)
    # Faster than direct shows as a negative overhead, not clamped.
    assert report.overhead({"p50": 200}, {"p50": 150})["p50"] == -50.0


def test_noise_is_flagged_by_the_control() -> None:
    quiet = report.open_loop_entry(
        1000, summary(target("direct", 100, 200), target("control", 105, 260))
    )
    noisy = report.open_loop_entry(
        500, summary(target("direct", 100, 18000), target("control", 101, 300))
    )
    notes = report.noise_notes([quiet, noisy])
    assert len(notes) == 1
    assert notes[0].startswith("At 500/s the control differs from direct by p99 -17.700 ms")
    assert report.noise_notes([quiet], limit_us=10) != []


def test_cpu_per_request() -> None:
    assert report.cpu_per_request_us(0.5, 2500) == 200.0
    assert report.cpu_per_request_us(0.5, 0) is None


def test_an_open_loop_entry_has_overheads_and_flags_a_saturated_upstream() -> None:
    entry = report.open_loop_entry(
        2000,
        summary(target("direct", 100, 1000, achieved=1500), target("switchyard", 300, 1800)),
    )
    assert entry["overhead"]["switchyard"]["p50"] == 200.0
    assert "direct" not in entry["overhead"]
    assert entry["direct_saturated"] is True
    healthy = report.open_loop_entry(
        2000, summary(target("direct", 1, 1, achieved=1990), target("switchyard", 2, 2))
    )
    assert healthy["direct_saturated"] is False


def test_the_goal_check() -> None:
    met = report.goal_check(a_result({1000: (250.0, 1800.0)})["open_loop"])
    assert met["measured"] and met["p50_met"] and met["p99_met"]
    assert met["p50_overhead_us"] == 150.0
    missed = report.goal_check(a_result({1000: (301.0, 2500.0)})["open_loop"])
    assert not missed["p50_met"] and not missed["p99_met"]
    absent = report.goal_check(a_result({100: (1.0, 1.0)})["open_loop"])
    assert absent["measured"] is False


def test_streaming_and_cache_entries() -> None:
    result = a_result()
    added = result["streaming"]["added"]["switchyard"]
    assert added["ttft_p50_us"] == 250.0
    assert added["ttft_p99_us"] == 2000.0
    assert added["gap_p50_us"] == pytest.approx(25.0)
    cache = result["cache"]
    assert cache["hit_ratio"] == 1.0
    assert cache["vs_direct"]["p50"] == 50.0
    assert cache["vs_switchyard"]["p50"] == -140.0


def test_memory_in_mebibytes() -> None:
    entry = report.memory_entry(8 * 2**20, [10 * 2**20, 30 * 2**20, 20 * 2**20], 12 * 2**20)
    assert entry == {
        "idle_mib": 8.0,
        "load_p50_mib": 20.0,
        "peak_mib": 30.0,
        "after_mib": 12.0,
        "samples": 3,
    }
    assert report.memory_entry(None, [], None)["peak_mib"] is None


# --------------------------------------------------------------------------- the result


def test_the_result_document_shape() -> None:
    result = json.loads(json.dumps(a_result()))
    assert result["schema"] == report.SCHEMA_VERSION
    assert set(result) == {
        "schema",
        "machine",
        "options",
        "targets",
        "open_loop",
        "closed_loop",
        "streaming",
        "cache",
        "memory",
        "proxy_stats",
        "goal",
        "notes",
    }
    run = result["open_loop"][0]
    assert set(run) >= {"rate", "targets", "overhead", "cpu_us_per_request", "direct_saturated"}
    figures = run["targets"]["switchyard"]
    assert set(figures["latency_us"]) >= {"p50", "p90", "p99", "max"}
    assert set(figures) >= {"achieved_rps", "errors", "error_kinds", "send_lag_us"}
    assert result["goal"]["rate"] == 1000
    assert result["memory"]["switchyard"]["peak_mib"] == 16.0


def test_markdown_tables() -> None:
    text = report.markdown(a_result())
    assert text.startswith("# Switchyard benchmark\n")
    assert "| rate/s | target | achieved/s | errors | p50 | p90 | p99 | max |" in text
    row = "| 1000 | switchyard | 1000 | 0 | 0.280 | 0.420 | 1.900 | 5.700 | +0.180 | +0.900 |"
    assert row in text
    assert "| 1000 | direct | 1000 | 0 | 0.100 |" in text
    assert "Goal at 1000/s" in text and ": met (p50 +0.180 ms, p99 +0.900 ms)" in text
    assert "## Closed loop: throughput at concurrency 32" in text
    assert "| switchyard | 8000 | 0 | 3.500 | 8.000 |" in text
    assert "## Streaming at 100/s (ms)" in text
    assert "+0.250" in text  # added time to first event at p50
    assert "| switchyard-cache | 100/100 | 0 | 0.150 | 1.200 | 3.600 |" in text
    assert "A cache hit against switchyard: p50 -0.140 ms" in text
    assert "| switchyard | 8.0 | 12.0 | 16.0 | 14.0 |" in text
    assert "- a note" in text
    # Every table row has as many cells as its header.
    for block in text.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        assert len({row.count("|") for row in rows}) <= 1, block


def test_markdown_reports_errors_saturation_and_a_missed_goal() -> None:
    result = a_result({1000: (450.0, 2500.0)})
    run = result["open_loop"][0]
    run["targets"]["switchyard"].update(errors=3, error_kinds={"timeout": 2, "status_502": 1})
    run["direct_saturated"] = True
    text = report.markdown(result)
    assert "| 3 (timeout 2, status_502 1) |" in text
    assert "at 1000/s: the upstream or the load generator was the limit" in text
    assert "NOT met (p50 +0.350 ms, p99 +1.500 ms)" in text


def test_ms_formatting() -> None:
    assert report.ms(180.5) == "0.180"
    assert report.ms(180.5, signed=True) == "+0.180"
    assert report.ms(-42.0, signed=True) == "-0.042"
    assert report.ms(None) == "-"


@pytest.mark.slow
def test_the_plot_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "latency.png"
    assert report.plot(a_result(), path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_results_are_written(tmp_path: Path) -> None:
    written = bench.RESULTS.write(a_result(), tmp_path / "out", plot=False)
    assert [path.name for path in written] == ["bench.json", "bench.md"]
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["schema"] == 1


# --------------------------------------------------------------------------- options


def test_defaults_and_the_quick_preset() -> None:
    full = bench_options.parse_args([])
    assert full.rates == [100, 500, 1000, 2000]
    assert (full.duration, full.slice_ms, full.build, full.plot) == (10.0, 1000, True, True)
    assert full.results.parts[-2:] == ("reports", "bench")
    argv = ["--quick", "--duration", "3", "--no-build", "--results", "out"]
    quick = bench_options.parse_args(argv)
    assert quick.rates == [100, 1000]
    assert quick.duration == 3.0  # an explicit option beats the preset
    assert quick.slice_ms == 500
    assert quick.build is False
    assert quick.results == Path("out")


def test_rates_are_validated() -> None:
    assert bench_options.parse_rates("100, 2000,50.5") == [100.0, 2000.0, 50.5]
    for bad in ("100,fast", "0", "-5"):
        with pytest.raises(ValueError):
            bench_options.parse_rates(bad)
    with pytest.raises(SystemExit):
        bench_options.parse_args(["--rates", "x"])


def test_other_proxies_are_named_uniquely() -> None:
    others = bench_options.other_proxies(
        [
            "litellm --port {port} --api-base {upstream_url}",
            "OPENAI_API_KEY=x /opt/bin/LiteLLM --port {port}",
            "mine=./gateway --listen 127.0.0.1:{port}",
        ],
        ["http://127.0.0.1:4000/v1/", "upstream=http://127.0.0.1:5000"],
        "http:/health",
    )
    assert [other.name for other in others] == [
        "litellm",
        "openai_api_key-x",
        "mine",
        "url-1",
        "upstream-2",
    ]
    assert others[0].health == "http:/health"
    assert others[2].command == "./gateway --listen 127.0.0.1:{port}"
    assert others[3].url == "http://127.0.0.1:4000"
    with pytest.raises(ValueError, match="must use"):
        bench_options.other_proxies(["litellm --port 4000"], [], "tcp")
    with pytest.raises(ValueError, match="plain http"):
        bench_options.other_proxies([], ["https://example.com"], "tcp")


def test_phases_can_be_chosen() -> None:
    assert bench_options.parse_args(["--only", "stream, open"]).phases == ["open", "stream"]
    assert bench_options.parse_args([]).phases == ["open", "closed", "stream", "cache"]
    with pytest.raises(ValueError):
        bench_options.parse_phases("open,latency")
    options = bench_options.BenchOptions(phases=["stream"], stream_rate=100, stream_duration=1)
    options.slice_ms, options.warmup_ms = 500, 0
    assert bench.estimate_seconds(options, 2) == pytest.approx(2)


def test_markdown_without_an_open_loop() -> None:
    result = a_result()
    result["open_loop"] = []
    result["goal"] = report.goal_check([])
    text = report.markdown(result)
    assert "## Open loop" not in text and "Goal at" not in text
    assert "## Closed loop" in text


def test_split_name() -> None:
    assert bench_options.split_name("x=http://h:1") == ("x", "http://h:1")
    assert bench_options.split_name("http://h:1/?a=b") == (None, "http://h:1/?a=b")
    assert bench_options.split_name("KEY=1 cmd") == (None, "KEY=1 cmd")


def test_a_proxy_command_becomes_a_stack_command() -> None:
    given = "gw --port {port} --upstream '{upstream_url}' -x {upstream_port}"
    command = bench_options.stack_command(given)
    assert command == [
        "gw",
        "--port",
        "${port}",
        "--upstream",
        "${upstream.url}/v1",
        "-x",
        "${upstream.port}",
    ]


@pytest.mark.parametrize("cache", [False, True])
def test_the_proxy_config_is_one_fast_upstream(cache: bool) -> None:
    text = with_upstream(bench.proxy_config('be"nch', cache))
    config = tomllib.loads(text)
    assert config["cache"]["backend"] == ("memory" if cache else "off")
    assert config["ledger"] == {"backend": "memory"}
    assert config["upstreams"] == [
        {"name": "fast", "base_url": "http://127.0.0.1:9/v1", "responses": False}
    ]
    assert config["models"] == [{"name": 'be"nch', "upstreams": ["fast"]}]
    assert config["server"]["port"] == 0


def test_the_bench_stack_starts_everything_under_the_process_manager(tmp_path: Path) -> None:
    options = bench_options.BenchOptions(
        others=bench_options.other_proxies(["gw --port {port} {upstream_url}"], [], "tcp")
    )
    bins = {name: tmp_path / name for name in bench.BINARIES}
    the_stack = bench.bench_stack(options, bins, "bench-test")
    services = the_stack.config.services
    assert list(services) == ["upstream", "switchyard", "switchyard-cache", "gw"]
    assert services["upstream"].port == "report"
    assert services["switchyard"].env == {"SWITCHYARD_LOG": "info"}
    assert services["gw"].port == "pick"
    assert services["gw"].command == ["gw", "--port", "${port}", "${upstream.url}/v1"]
    assert the_stack.owner_pid is not None
    assert 'backend = "off"' in the_stack.config_texts["switchyard"]
    assert 'backend = "memory"' in the_stack.config_texts["switchyard-cache"]
