//! The metrics tests: every family, the stats summary and the SLO figures.

use super::*;

fn outcome(status: u16, latency_ms: u64) -> RequestOutcome {
    RequestOutcome {
        tenant: "acme".into(),
        request_id: "r".into(),
        route: Route::ChatCompletions,
        model: "m".into(),
        upstream: Some("a".into()),
        attempts: 1,
        fallbacks: 0,
        retries: 0,
        stream: false,
        cache: CacheResult::Miss,
        status,
        error_type: None,
        prompt_tokens: 1,
        completion_tokens: 1,
        latency: Duration::from_millis(latency_ms),
        upstream_time: Duration::from_millis(latency_ms / 2),
        ttft: None,
    }
}

fn metrics() -> Metrics {
    Metrics::new(&["a".to_owned(), "b".to_owned()], SloConfig::default())
}

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Enough of the text format for the label values these tests use.
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap(),
            }
        })
        .collect()
}

fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(value))
        })
        .map(|sample| sample.value)
        .sum()
}

fn observe_mix(metrics: &Metrics) {
    metrics.observe(&outcome(200, 10));
    metrics.observe(&RequestOutcome {
        fallbacks: 2,
        retries: 1,
        upstream: Some("b".into()),
        ..outcome(200, 30)
    });
    metrics.observe(&RequestOutcome {
        route: Route::Responses,
        stream: true,
        ttft: Some(Duration::from_millis(5)),
        ..outcome(200, 40)
    });
    metrics.observe(&RequestOutcome {
        cache: CacheResult::Hit,
        upstream: None,
        attempts: 0,
        upstream_time: Duration::ZERO,
        ..outcome(200, 1)
    });
    metrics.observe(&RequestOutcome {
        cache: CacheResult::Bypass,
        ..outcome(502, 20)
    });
    // Client went away mid-stream, before any content.
    metrics.observe(&RequestOutcome {
        stream: true,
        upstream_time: Duration::from_secs(10),
        ..outcome(499, 100)
    });
}

#[test]
fn metrics_can_be_shared_across_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<Metrics>();
    shared::<InFlight>();
}

#[test]
fn render_exposes_every_family_with_the_observed_values() {
    let metrics = metrics();
    observe_mix(&metrics);
    let in_flight = metrics.in_flight();
    let second = metrics.in_flight();
    drop(second);
    metrics.set_upstream_healthy("b", false);
    metrics.auth_failure();
    metrics.cache_error();
    metrics.cache_error();

    let text = metrics.render();
    for family in [
        "switchyard_requests_total counter",
        "switchyard_fallbacks_total counter",
        "switchyard_retries_total counter",
        "switchyard_cache_total counter",
        "switchyard_cache_errors_total counter",
        "switchyard_auth_failures_total counter",
        "switchyard_request_duration_seconds histogram",
        "switchyard_overhead_seconds histogram",
        "switchyard_ttft_seconds histogram",
        "switchyard_in_flight_requests gauge",
        "switchyard_upstream_healthy gauge",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "{family}\n{text}"
        );
    }

    let samples = parse(&text);
    let requests = "switchyard_requests_total";
    assert_eq!(sum(&samples, requests, &[]), 6.0);
    assert_eq!(
        sum(
            &samples,
            requests,
            &[
                ("route", "chat_completions"),
                ("model", "m"),
                ("upstream", "a"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(sum(&samples, requests, &[("upstream", "none")]), 1.0);
    assert_eq!(sum(&samples, requests, &[("route", "responses")]), 1.0);
    assert_eq!(sum(&samples, requests, &[("status", "499")]), 1.0);
    assert_eq!(
        sum(&samples, "switchyard_fallbacks_total", &[("model", "m")]),
        2.0
    );
    assert_eq!(
        sum(&samples, "switchyard_retries_total", &[("model", "m")]),
        1.0
    );
    for (result, count) in [("hit", 1.0), ("miss", 4.0), ("bypass", 1.0)] {
        assert_eq!(
            sum(&samples, "switchyard_cache_total", &[("result", result)]),
            count,
            "{result}"
        );
    }
    assert_eq!(sum(&samples, "switchyard_cache_errors_total", &[]), 2.0);
    assert_eq!(sum(&samples, "switchyard_auth_failures_total", &[]), 1.0);
    assert_eq!(sum(&samples, "switchyard_in_flight_requests", &[]), 1.0);
    drop(in_flight);
    assert_eq!(
        sum(
            &parse(&metrics.render()),
            "switchyard_in_flight_requests",
            &[]
        ),
        0.0
    );
    assert_eq!(
        sum(
            &samples,
            "switchyard_upstream_healthy",
            &[("upstream", "a")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &samples,
            "switchyard_upstream_healthy",
            &[("upstream", "b")]
        ),
        0.0
    );

    let duration = "switchyard_request_duration_seconds";
    assert_eq!(sum(&samples, &format!("{duration}_count"), &[]), 6.0);
    assert_eq!(
        sum(
            &samples,
            &format!("{duration}_count"),
            &[("route", "responses")]
        ),
        1.0
    );
    let seconds = sum(&samples, &format!("{duration}_sum"), &[]);
    assert!((seconds - 0.201).abs() < 1e-9, "{seconds}");
    // A 1 ms cache hit lands in the 1 ms bucket, not the 0.5 ms one.
    let hit_bucket = |le: &str| {
        sum(
            &samples,
            &format!("{duration}_bucket"),
            &[("route", "chat_completions"), ("le", le)],
        )
    };
    assert_eq!(hit_bucket("0.0005"), 0.0);
    assert_eq!(hit_bucket("0.001"), 1.0);

    // Overheads: 5 + 15 + 20 + 1 + 10 ms, and 0 (not negative) for the
    // request whose upstream time exceeds its latency.
    let overhead = sum(&samples, "switchyard_overhead_seconds_sum", &[]);
    assert!((overhead - 0.051).abs() < 1e-9, "{overhead}");
    assert_eq!(sum(&samples, "switchyard_overhead_seconds_count", &[]), 6.0);
    // Only the stream that produced a first byte has a TTFT.
    assert_eq!(sum(&samples, "switchyard_ttft_seconds_count", &[]), 1.0);
    assert_eq!(
        sum(
            &samples,
            "switchyard_ttft_seconds_count",
            &[("route", "responses")]
        ),
        1.0
    );
}

#[test]
fn stats_agree_with_the_counters() {
    let metrics = metrics();
    observe_mix(&metrics);
    let stats = metrics.stats();
    let requests = &stats["requests"];
    let total = requests["total"].as_u64().unwrap();
    assert_eq!(total, 6);
    assert_eq!(
        total,
        requests["success"].as_u64().unwrap() + requests["errors"].as_u64().unwrap()
    );
    assert_eq!(
        total,
        requests["streaming"].as_u64().unwrap() + requests["non_streaming"].as_u64().unwrap()
    );
    assert_eq!(requests["success"], 4);
    assert_eq!(requests["streaming"], 2);
    assert_eq!(requests["cached"], 1);
    let samples = parse(&metrics.render());
    assert_eq!(
        sum(&samples, "switchyard_requests_total", &[]),
        total as f64
    );
    assert_eq!(stats["errors_by_type"], json!({"499": 1, "502": 1}));
    assert_eq!(stats["streaming"], json!({"count": 2, "avg_ttft_ms": 5.0}));
    assert_eq!(
        stats["cache"],
        json!({"hits": 1, "misses": 4, "bypasses": 1})
    );
    assert_eq!(stats["latency_ms"]["avg"], 33.5);
    assert!(stats["requests_per_second"].as_f64().unwrap() > 0.0);
    assert!(stats["uptime_seconds"].as_f64().unwrap() >= 0.0);
    let keys: Vec<&String> = stats.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "cache",
            "errors_by_type",
            "latency_ms",
            "requests",
            "requests_per_second",
            "slo",
            "streaming",
            "uptime_seconds"
        ]
    );
}

#[test]
fn percentiles_are_exact_nearest_rank() {
    let metrics = metrics();
    // Out of order, to show nothing relies on arrival order.
    for latency in (1..=100).rev() {
        metrics.observe(&outcome(200, latency));
    }
    let latency = &metrics.stats()["latency_ms"];
    assert_eq!(latency["p50"], 50.0);
    assert_eq!(latency["p99"], 99.0);
    assert_eq!(latency["avg"], 50.5);
}

#[test]
fn the_latency_window_keeps_only_the_most_recent_values() {
    let mut window = LatencyWindow::new(4);
    assert_eq!(percentiles(&mut window.values.clone()), (0.0, 0.0));
    for value in [1000.0, 1000.0, 1.0, 2.0, 3.0, 4.0] {
        window.push(value);
    }
    assert_eq!(window.values.len(), 4);
    assert_eq!(percentiles(&mut window.values.clone()), (2.0, 4.0));
}

#[test]
fn no_requests_means_a_full_budget() {
    let stats = metrics().stats();
    assert_eq!(
        stats["slo"],
        json!({"target": 0.99, "success_rate": 1.0, "error_budget_remaining": 1.0, "burn_status": "ok"})
    );
    assert_eq!(
        stats["latency_ms"],
        json!({"avg": 0.0, "p50": 0.0, "p99": 0.0})
    );
    assert_eq!(stats["requests_per_second"], 0.0);
    assert_eq!(stats["errors_by_type"], json!({}));
}

#[test]
fn slo_status_moves_from_ok_to_warning_to_breach() {
    let target = 0.9;
    // (successes, failures) -> (budget remaining, status); the budget is 10%.
    let cases = [
        (10, 0, 1.0, "ok"),
        (19, 1, 0.5, "ok"),
        (9, 1, 0.0, "ok"),
        (9, 2, 1.0 - (2.0 / 11.0) / 0.1, "warning"),
        (8, 2, -1.0, "breach"),
        (0, 5, -9.0, "breach"),
    ];
    for (successes, failures, remaining, status) in cases {
        let slo = slo(target, successes + failures, successes);
        assert_eq!(slo["burn_status"], status, "{successes}/{failures}: {slo}");
        let actual = slo["error_budget_remaining"].as_f64().unwrap();
        assert!(
            (actual - remaining).abs() < 1e-6,
            "{successes}/{failures}: {slo}"
        );
    }
    // Exactly at target: 0, not a float-noise negative.
    assert_eq!(
        slo(0.99, 100, 99)["error_budget_remaining"].to_string(),
        "0.0"
    );

    let metrics = Metrics::new(
        &[],
        SloConfig {
            success_target: 0.5,
            ..SloConfig::default()
        },
    );
    metrics.observe(&outcome(200, 1));
    metrics.observe(&outcome(500, 1));
    metrics.observe(&outcome(500, 1));
    let slo = &metrics.stats()["slo"];
    assert_eq!(slo["target"], 0.5);
    assert_eq!(slo["burn_status"], "warning", "{slo}");
}

#[test]
fn slo_config_parses_and_rejects_impossible_targets() {
    let default: SloConfig = toml::from_str("").unwrap();
    assert_eq!(default.success_target, 0.99);
    let custom: SloConfig = toml::from_str("success_target = 0.995").unwrap();
    assert_eq!(custom.success_target, 0.995);
    for bad in ["1.0", "0", "1.5", "-0.5", "nan"] {
        let err = toml::from_str::<SloConfig>(&format!("success_target = {bad}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("must be greater than 0 and less than 1"),
            "{bad}: {err}"
        );
    }
    assert!(toml::from_str::<SloConfig>("target = 0.9").is_err());
}

#[test]
fn the_stats_window_is_configurable_and_never_empty() {
    assert_eq!(SloConfig::default().latency_window, 100_000);
    let small: SloConfig = toml::from_str("latency_window = 3").unwrap();
    let metrics = Metrics::new(&[], small);
    for latency_ms in [50, 1, 2, 3] {
        metrics.observe(&outcome(200, latency_ms));
    }
    // The 50 ms request has left the window: only 1, 2 and 3 ms remain.
    assert_eq!(
        metrics.stats()["latency_ms"]["p99"],
        3.0,
        "{}",
        metrics.stats()
    );
    let err = toml::from_str::<SloConfig>("latency_window = 0")
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be greater than 0"), "{err}");
}

#[test]
fn models_the_config_does_not_serve_share_one_label() {
    let metrics = metrics();
    metrics.label_models(["m".to_owned()]);
    metrics.observe(&outcome(200, 1));
    metrics.observe(&RequestOutcome {
        model: "not-served".into(),
        status: 404,
        upstream: None,
        ..outcome(404, 1)
    });
    let before = metrics.render().len();
    for index in 0..100_000 {
        metrics.observe(&RequestOutcome {
            model: format!("not-served-{index}"),
            status: 404,
            upstream: None,
            ..outcome(404, 1)
        });
    }
    let text = metrics.render();
    // The counts change, the series do not: a few more digits at most.
    assert!(text.len() <= before + 256, "{} -> {}", before, text.len());
    assert!(!text.contains("not-served"));
    let samples = parse(&text);
    let requests = |model: &str| {
        sum(
            &samples,
            "switchyard_requests_total",
            &[("model", model), ("status", "404")],
        )
    };
    assert_eq!(requests(UNKNOWN_MODEL), 100_001.0);
    assert_eq!(
        sum(&samples, "switchyard_requests_total", &[("model", "m")]),
        1.0
    );
}

#[test]
fn dropped_log_lines_are_counted_from_the_log_writer() {
    let metrics = metrics();
    let dropped = std::sync::Arc::new(AtomicU64::new(0));
    let source = dropped.clone();
    metrics.count_dropped_log_lines(Box::new(move || source.load(Ordering::Relaxed)));
    let value = |metrics: &Metrics| {
        sum(
            &parse(&metrics.render()),
            "switchyard_log_lines_dropped_total",
            &[],
        )
    };
    assert_eq!(value(&metrics), 0.0);
    dropped.store(7, Ordering::Relaxed);
    assert_eq!(value(&metrics), 7.0);
    dropped.store(9, Ordering::Relaxed);
    assert_eq!(value(&metrics), 9.0);
    assert_eq!(value(&metrics), 9.0);
}
