"""The soak's pure parts: the RSS trend, reading the load generator's JSON, the latency
windows, the verdict, the report, the options and the config it renders. Nothing here measures
a timing or starts a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.compat import tomllib
from harness.perf import measuring, soak
from harness.perf import soak_report as report
from harness.pytest.proxy_configs import with_upstream

MIB = 1024 * 1024


def latency(p50: float, p99: float, count: int = 100) -> dict[str, Any]:
    return {
        "count": count,
        "min": p50 / 2,
        "mean": p50,
        "p50": p50,
        "p90": (p50 + p99) / 2,
        "p99": p99,
        "p999": p99 * 2,
        "max": p99 * 3,
    }


def figures(completed: int, errors: int = 0, p50: float = 300.0, p99: float = 900.0) -> dict:
    return {
        "completed": completed,
        "ok": completed - errors,
        "errors": errors,
        "error_kinds": {"status_502": errors} if errors else {},
        "cache_hits": completed // 4,
        "latency_us": latency(p50, p99, completed - errors),
    }


def bucket(start_s: float, completed: int, errors: int = 0, p99: float = 900.0) -> dict:
    return {
        "start_s": start_s,
        **figures(completed, errors, p99=p99),
        "non_streaming": figures(completed - 10, errors, p99=p99),
        "streaming": figures(10, 0, p50=20_000.0, p99=30_000.0),
    }


def a_summary(seconds: int = 6, errors_at: int | None = None) -> dict[str, Any]:
    """A loadgen summary of a soak: 1000 req/s, 1 s and 2 s timelines."""
    per_second = [bucket(t, 1000, 1 if t == errors_at else 0) for t in range(seconds)]
    windows = [
        bucket(t, 2000, 1 if errors_at is not None and t <= errors_at < t + 2 else 0)
        for t in range(0, seconds, 2)
    ]
    errors = 0 if errors_at is None else 1
    target = {
        "name": "switchyard",
        "url": "http://127.0.0.1:1",
        "measured_s": float(seconds),
        **figures(1000 * seconds, errors),
        "achieved_rps": 999.8,
        "send_lag_us": latency(40.0, 200.0),
        "ttft_us": None,
        "gap_us": None,
        "kinds": {"whole": figures(600 * seconds), "stream": figures(400 * seconds)},
        "timelines": [
            {"bucket_ms": 1000, "buckets": per_second},
            {"bucket_ms": 2000, "buckets": windows},
        ],
    }
    return {
        "mode": "open",
        "wall_s": float(seconds),
        "mix": {"whole": 60, "stream": 40},
        "targets": [target],
    }


def a_result(errors_at: int | None = None, threshold: float | None = None) -> dict[str, Any]:
    options = soak.options_record(soak.SoakOptions(duration=6.0, warmup=2.0, window=2.0))
    rss = [(t * 0.5, 20 * MIB + (t // 4) * 100) for t in range(13)]
    return report.document(
        machine={"cpus": 2, "cpu_model": "test CPU", "loadavg_before": [0.1, 0.2, 0.3]},
        options=options,
        summary=a_summary(errors_at=errors_at),
        window_ms=2000,
        rss=rss,
        fds={"before": 14, "after": 15, "max": 40, "upstream_connections_after": 1},
        cpu={"proxy_cores": 0.4, "upstream_cores": 0.1, "harness_cores": 0.15, "other_cores": 0.0},
        ledger_records=6000,
        proxy_stats={"requests": {"total": 6001}},
        max_rss_growth_kib_per_min=threshold,
        expected=6000,
        notes=["a note for the reader"],
    )


# --------------------------------------------------------------------------- the RSS trend


def test_the_slope_is_the_least_squares_line() -> None:
    assert report.least_squares_slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2.0)
    # Noise around a line: the slope of the line, not of the end points.
    assert report.least_squares_slope([(0, 0), (1, 2), (2, 0), (3, 2)]) == pytest.approx(0.4)
    assert report.least_squares_slope([(0, 5)]) is None
    assert report.least_squares_slope([(1, 5), (1, 6)]) is None
    assert report.least_squares_slope([]) is None


def test_a_flat_rss_has_no_trend() -> None:
    samples = [(t / 2, 30 * MIB) for t in range(120)]
    trend = report.rss_trend(samples, warmup_s=15, window_s=10)
    assert trend["slope_kib_per_min"] == 0
    assert trend["first_to_last_kib"] == 0
    assert trend["samples"] == 120
    assert trend["samples_after_warmup"] == 90
    assert trend["start_bytes"] == trend["end_bytes"] == 30 * MIB


def test_a_steady_growth_is_measured_in_kib_per_minute() -> None:
    # 1 MiB per minute, sampled every half second for two minutes.
    samples = [(t / 2, 10 * MIB + round(t / 2 / 60 * MIB)) for t in range(240)]
    trend = report.rss_trend(samples, warmup_s=0, window_s=10)
    assert trend["slope_kib_per_min"] == pytest.approx(1024, abs=1)
    # Medians of the first and the last 10 s are about 110 s apart.
    assert trend["first_to_last_kib"] == pytest.approx(1024 * 110 / 60, rel=0.02)
    assert trend["max_bytes"] == samples[-1][1]


def test_growth_during_the_warm_up_is_left_out() -> None:
    warming = [(t / 2, (10 + t) * MIB) for t in range(30)]  # fills up for 15 s
    steady = [(15 + t / 2, 40 * MIB) for t in range(90)]
    trend = report.rss_trend(warming + steady, warmup_s=15, window_s=10)
    assert trend["slope_kib_per_min"] == 0
    assert trend["first_to_last_kib"] == 0
    assert trend["start_bytes"] == 10 * MIB
    assert trend["min_bytes"] == 10 * MIB


def test_no_samples_make_an_empty_trend() -> None:
    trend = report.rss_trend([], warmup_s=15, window_s=10)
    assert trend["slope_kib_per_min"] is None
    assert trend["first_to_last_kib"] is None
    assert trend["start_bytes"] is None


# --------------------------------------------------------------------------- loadgen output


def test_the_last_json_line_is_the_summary() -> None:
    lines = ["warming up", json.dumps({"targets": [{"n": 1}]}), json.dumps(a_summary())]
    assert measuring.parse_loadgen(lines)["mix"] == {"whole": 60, "stream": 40}


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["loadgen: cannot connect"], "no JSON summary"),
        (["{not json"], "broken JSON"),
        (['{"targets": []}'], "no targets"),
        ([], "no JSON summary"),
    ],
)
def test_a_summary_that_is_missing_or_broken_is_an_error(lines: list[str], message: str) -> None:
    with pytest.raises(measuring.LoadgenOutputError, match=message):
        measuring.parse_loadgen(lines)


def test_timelines_become_window_rows() -> None:
    target = report.target_of(a_summary())
    assert len(report.timeline(target, 1000)) == 6
    assert report.timeline(target, 5000) == []
    rows = report.window_rows(report.timeline(target, 2000), 2.0)
    assert [row["start_s"] for row in rows] == [0.0, 2.0, 4.0]
    assert rows[0]["requests"] == 2000
    assert rows[0]["rps"] == 1000.0
    assert rows[0]["p99"] == 900.0
    assert rows[0]["streaming"]["p50"] == 20_000.0
    assert rows[0]["non_streaming"]["max"] == 2700.0


def test_a_bucket_without_successes_has_no_class_percentiles() -> None:
    empty = {"start_s": 3, **figures(0), "streaming": figures(0), "non_streaming": None}
    [row] = report.window_rows([empty], 1.0)
    assert row["streaming"] is None and row["non_streaming"] is None
    assert row["requests"] == 0 and row["rps"] == 0.0


# --------------------------------------------------------------------------- the verdict


def test_a_clean_run_passes() -> None:
    trend = {"slope_kib_per_min": 500.0}
    assert report.verdict(0, 6000, 6000, 6000, trend, None) == []
    assert report.verdict(0, 6000, 6000, None, trend, 1000.0) == []


def test_errors_lost_requests_and_lost_records_fail() -> None:
    trend = {"slope_kib_per_min": 0.0}
    assert report.verdict(3, 6000, 6000, 6000, trend, None) == ["3 of 6000 requests failed"]
    assert report.verdict(0, 5999, 6000, 5999, trend, None) == [
        "5999 requests completed, 6000 were scheduled"
    ]
    assert report.verdict(0, 6000, 6000, 5998, trend, None) == [
        "the ledger holds 5998 records for 6000 requests"
    ]


def test_the_rss_threshold_is_enforced_only_when_given() -> None:
    trend = {"slope_kib_per_min": 2048.0}
    assert report.verdict(0, 10, 10, 10, trend, None) == []
    assert report.verdict(0, 10, 10, 10, trend, 4096.0) == []
    [failure] = report.verdict(0, 10, 10, 10, trend, 1024.0)
    assert "2048 KiB/min" in failure and "limit 1024" in failure
    assert report.verdict(0, 10, 10, 10, {"slope_kib_per_min": None}, 1.0) == []


# --------------------------------------------------------------------------- the document


def test_the_document_holds_every_figure() -> None:
    result = a_result()
    assert result["schema"] == report.SCHEMA_VERSION
    assert result["passed"] is True and result["failures"] == []
    assert result["requests"]["completed"] == 6000
    assert result["requests"]["errors"] == 0
    assert result["latency_us"]["p99"] == 900.0
    assert len(result["windows"]) == 3
    assert len(result["seconds"]) == 6
    assert result["rss"]["trend"]["warmup_s"] == 2.0
    assert result["rss"]["threshold_kib_per_min"] is None
    assert result["fds"]["before"] == 14
    assert result["kinds"]["stream"]["completed"] == 2400
    json.dumps(result)  # it is JSON as it stands


def test_errors_fail_the_document() -> None:
    result = a_result(errors_at=3)
    assert result["passed"] is False
    assert result["failures"] == ["1 of 6000 requests failed"]
    assert [row["errors"] for row in result["windows"]] == [0, 1, 0]


def test_the_markdown_reports_the_figures() -> None:
    text = report.markdown(a_result())
    assert text.startswith("## Soak")
    assert "**1000 req/s for 6 s**" in text
    assert "**6,000** of 6,000 scheduled, **0 errors**" in text
    assert "Verdict: **PASS**" in text
    assert "| all | 6,000 | 0.30 | 0.60 | 0.90 | 2.70 |" in text
    assert (
        "| 2 | 2,000 | 1000 | 0 | 0.30 / 0.90 / 2.70 | 0.30 / 0.90 / 2.70 | 20.0 / 30.0 / 90.0 |"
        in text
    )
    assert "RSS growth threshold: not enforced" in text
    assert "14 before, 15 after" in text
    assert "load average 0.10 / 0.20 / 0.30 before" in text
    assert "proxy 40%" in text
    assert text.rstrip().endswith("- a note for the reader")


def test_the_markdown_names_the_failures_and_an_enforced_threshold() -> None:
    text = report.markdown(a_result(errors_at=1, threshold=4096.0))
    assert "Verdict: **FAIL**: 1 of 6000 requests failed" in text
    assert "enforced, 4096 KiB/min" in text
    assert "{'status_502': 1}" in text


def test_milliseconds_and_sizes() -> None:
    assert report.ms(250.0) == "0.25"
    assert report.ms(12_345.0) == "12.3"
    assert report.ms(None) == "-"
    assert report.mib(3 * MIB) == "3.0"
    assert report.signed(-1234.4, "KiB") == "-1,234 KiB"
    assert report.signed(None, "KiB") == "-"


@pytest.mark.slow
def test_the_plot_is_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "soak.png"
    assert report.plot(a_result(), path)
    assert path.read_bytes().startswith(b"\x89PNG")


def test_results_are_written(tmp_path: Path) -> None:
    written = soak.RESULTS.write(a_result(), tmp_path / "out", plot=False)
    assert [path.name for path in written] == ["soak.json", "soak.md"]
    assert json.loads(written[0].read_text())["requests"]["completed"] == 6000
    assert written[1].read_text().startswith("## Soak")


# --------------------------------------------------------------------------- options


def test_the_defaults_are_a_minute_at_1000_per_second_after_a_warm_up() -> None:
    options = soak.parse_args([])
    assert (options.rate, options.duration, options.warmup, options.window) == (
        1000.0,
        90.0,
        30.0,
        10.0,
    )
    assert options.duration - options.warmup >= 60, "a minute measured after the warm-up"
    assert options.build and options.plot
    assert options.max_rss_growth == soak.DEFAULT_MAX_RSS_GROWTH
    assert options.results.parts[-2:] == ("reports", "soak")
    assert options.mix == soak.DEFAULT_MIX


def test_quick_no_build_and_the_results_dir(tmp_path: Path) -> None:
    options = soak.parse_args(["--no-build", "--quick", "--results-dir", str(tmp_path)])
    assert (options.duration, options.warmup, options.window) == (10.0, 3.0, 2.0)
    assert not options.build
    assert options.results == tmp_path
    longer = soak.parse_args(["--quick", "--duration", "20", "--rate", "500"])
    assert (longer.duration, longer.rate) == (20.0, 500.0)
    assert options.max_rss_growth is None, "a quick run is too short for a trend"
    enforced = soak.parse_args(["--max-rss-growth", "2048"])
    assert enforced.max_rss_growth == 2048.0
    assert soak.parse_args(["--max-rss-growth", "0"]).max_rss_growth is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0"],
        ["--duration", "-1"],
        ["--duration", "10", "--warmup", "10"],
        ["--window", "0"],
        ["--sample-interval", "0"],
        ["--repeat-pool", "0"],
    ],
)
def test_bad_options_are_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        soak.parse_args(argv)
    assert exited.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_the_schedule_matches_the_load_generator() -> None:
    assert soak.scheduled(1000, 60) == 60_000
    assert soak.scheduled(333, 1.5) == 500  # 499.5 rounds away from zero, like Rust
    assert soak.scheduled(0.1, 1) == 1
    assert soak.scheduled(1, 2.5) == 3  # half away from zero, not to even


def test_the_load_generator_gets_the_mix_the_buckets_and_the_key() -> None:
    options = soak.SoakOptions(rate=500, duration=30, window=5)
    command = soak.loadgen_command(Path("/bin/loadgen"), "http://127.0.0.1:9", options, "sk-x")
    text = " ".join(command)
    assert command[0] == "/bin/loadgen"
    assert "--target switchyard=http://127.0.0.1:9" in text
    assert "--rate 500" in text and "--duration 30" in text and "--warmup-ms 0" in text
    assert f"--mix {soak.DEFAULT_MIX}" in text
    assert "--bucket-ms 1000 --bucket-ms 5000" in text
    assert "authorization: Bearer sk-x" in command
    one_second = soak.loadgen_command(Path("l"), "u", soak.SoakOptions(window=1), "k")
    assert one_second.count("--bucket-ms") == 1


def test_the_proxy_is_deployed_with_keys_the_sqlite_ledger_and_the_cache() -> None:
    config = tomllib.loads(with_upstream(soak.proxy_config()))
    assert config["ledger"] == {"backend": "sqlite", "path": "soak-ledger.sqlite3"}
    assert config["cache"]["backend"] == "memory"
    assert config["cache"]["max_entries"] == soak.CACHE_ENTRIES
    # Every bounded store fills within the default warm-up at the default rate.
    assert config["slo"]["latency_window"] == soak.STATS_WINDOW
    assert soak.STATS_WINDOW / soak.SoakOptions().rate <= soak.SoakOptions().warmup
    assert config["auth"]["admin_key_env"] == "SOAK_ADMIN_KEY"
    assert config["auth"]["keys"] == [{"tenant": soak.TENANT, "key_env": "SOAK_TENANT_KEY"}]
    assert config["upstreams"] == [
        {"name": "fast", "base_url": "http://127.0.0.1:9/v1", "responses": False}
    ]
    assert config["models"] == [{"name": soak.MODEL, "upstreams": ["fast"]}]


def test_the_soak_stack_is_the_upstream_and_the_proxy_under_the_process_manager(
    tmp_path: Path,
) -> None:
    bins = {name: tmp_path / name for name in soak.BINARIES}
    keys = {"admin": "sk-a", "tenant": "sk-t"}
    the_stack = soak.soak_stack(soak.SoakOptions(), bins, keys, "soak-test")
    services = the_stack.config.services
    assert list(services) == [soak.UPSTREAM, soak.PROXY]
    assert services[soak.UPSTREAM].command[0] == str(tmp_path / "fast_upstream")
    assert services[soak.PROXY].env == {"SWITCHYARD_LOG": "info"}
    # Keys reach the proxy through its environment only, never its command line or config.
    assert the_stack.extra_env[soak.PROXY] == {"SOAK_ADMIN_KEY": "sk-a", "SOAK_TENANT_KEY": "sk-t"}
    assert "sk-" not in the_stack.config_texts[soak.PROXY]
    assert "sk-" not in " ".join(services[soak.PROXY].command)
    assert the_stack.owner_pid is not None


def test_notes_say_when_the_warm_up_is_too_short_and_the_machine_busy() -> None:
    busy = {"cpus": 2, "loadavg_before": [3.5, 2.0, 1.0]}
    # At 200 req/s the /stats window (10,000 requests) takes 50 s to fill.
    found = soak.notes(soak.SoakOptions(rate=200, warmup=15), busy)
    assert any("still filling after the 15 s warm-up" in note for note in found)
    assert any("full after 50 s" in note and "--warmup 60" in note for note in found)
    assert any("load average 3.50" in note for note in found)
    idle = {"cpus": 2, "loadavg_before": [0.1, 0.1, 0.1]}
    long_enough = soak.notes(soak.SoakOptions(rate=1000, warmup=15), idle)
    assert not any("still filling" in note or "not idle" in note for note in long_enough)
    assert any("--quick" in note for note in soak.notes(soak.SoakOptions(quick=True), idle))
