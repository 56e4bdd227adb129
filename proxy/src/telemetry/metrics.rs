//! Prometheus metrics (`/metrics`) and the JSON summary (`/stats`).
//!
//! Both are fed by the same `observe` calls, one per finished request, under
//! one lock that `render` and `stats` also take, so a scrape never sees a
//! request counted in one family and not yet in another, and the request
//! counters always add up to `/stats`'s totals.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use serde_json::{Value, json};

use crate::config::slo::SloConfig;
use crate::shared::labels::{CacheResult, Route};
use crate::telemetry::outcome::RequestOutcome;

/// Seconds; from well under a millisecond (a cache hit, the proxy's own
/// overhead) to the longest streams.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    fallbacks: IntCounterVec,
    retries: IntCounterVec,
    cache: IntCounterVec,
    cache_errors: IntCounter,
    auth_failures: IntCounter,
    duration: HistogramVec,
    overhead: HistogramVec,
    ttft: HistogramVec,
    in_flight: IntGauge,
    upstream_healthy: IntGaugeVec,
    slo: SloConfig,
    started: Instant,
    stats: Mutex<Stats>,
}

impl Metrics {
    /// Every listed upstream starts out healthy, so the gauge exists before
    /// the first health change.
    pub fn new(upstream_names: &[String], slo: SloConfig) -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let vec = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric names and labels are valid literals");
            register(&registry, vec)
        };
        let histogram_vec = |name: &str, help: &str| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let vec = HistogramVec::new(opts, &["route"])
                .expect("metric names and buckets are valid literals");
            register(&registry, vec)
        };
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help).expect("metric names are valid literals");
            register(&registry, counter)
        };

        let metrics = Metrics {
            requests: counter_vec(
                "switchyard_requests_total",
                "Finished requests to the model endpoints.",
                &["route", "model", "upstream", "status"],
            ),
            fallbacks: counter_vec(
                "switchyard_fallbacks_total",
                "Attempts that moved to another upstream or fallback model.",
                &["model"],
            ),
            retries: counter_vec(
                "switchyard_retries_total",
                "Attempts that repeated the same upstream.",
                &["model"],
            ),
            cache: counter_vec(
                "switchyard_cache_total",
                "Requests by response cache result.",
                &["result"],
            ),
            cache_errors: counter(
                "switchyard_cache_errors_total",
                "Cache backend operations that failed.",
            ),
            auth_failures: counter(
                "switchyard_auth_failures_total",
                "Requests refused for a missing or unknown API key.",
            ),
            duration: histogram_vec(
                "switchyard_request_duration_seconds",
                "Whole request as the client saw it (streams: until the last byte).",
            ),
            overhead: histogram_vec(
                "switchyard_overhead_seconds",
                "Request time not spent waiting on an upstream.",
            ),
            ttft: histogram_vec(
                "switchyard_ttft_seconds",
                "Time to the first content byte of a stream.",
            ),
            in_flight: register(
                &registry,
                IntGauge::new(
                    "switchyard_in_flight_requests",
                    "Requests being served right now.",
                )
                .expect("metric names are valid literals"),
            ),
            upstream_healthy: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "switchyard_upstream_healthy",
                        "1 while the upstream is in rotation, 0 while ejected.",
                    ),
                    &["upstream"],
                )
                .expect("metric names and labels are valid literals"),
            ),
            registry,
            slo,
            started: Instant::now(),
            stats: Mutex::new(Stats {
                counts: Counts::default(),
                latencies: LatencyWindow::new(slo.latency_window),
            }),
        };

        // Series that exist from the start read 0 rather than "no data", which
        // keeps rate() and alerting rules simple.
        for result in [CacheResult::Hit, CacheResult::Miss, CacheResult::Bypass] {
            metrics.cache.with_label_values(&[cache_label(result)]);
        }
        for route in [Route::ChatCompletions, Route::Responses] {
            for histogram in [&metrics.duration, &metrics.overhead, &metrics.ttft] {
                histogram.with_label_values(&[route.as_str()]);
            }
        }
        for name in upstream_names {
            metrics.set_upstream_healthy(name, true);
        }
        metrics
    }

    /// Counts one finished request; call exactly once per request, as for the ledger.
    pub fn observe(&self, outcome: &RequestOutcome) {
        let route = outcome.route.as_str();
        let upstream = outcome
            .upstream
            .as_deref()
            .filter(|name| !name.is_empty())
            .unwrap_or("none");
        let status = outcome.status.to_string();
        let model = outcome.model.as_str();

        let mut stats = self.lock();
        self.requests
            .with_label_values(&[route, model, upstream, &status])
            .inc();
        // inc_by(0) still creates the series, so every model that was served
        // has all its families.
        self.fallbacks
            .with_label_values(&[model])
            .inc_by(u64::from(outcome.fallbacks));
        self.retries
            .with_label_values(&[model])
            .inc_by(u64::from(outcome.retries));
        self.cache
            .with_label_values(&[cache_label(outcome.cache)])
            .inc();
        self.duration
            .with_label_values(&[route])
            .observe(outcome.latency.as_secs_f64());
        self.overhead.with_label_values(&[route]).observe(
            outcome
                .latency
                .saturating_sub(outcome.upstream_time)
                .as_secs_f64(),
        );
        let ttft = outcome.ttft.filter(|_| outcome.stream);
        if let Some(ttft) = ttft {
            self.ttft
                .with_label_values(&[route])
                .observe(ttft.as_secs_f64());
        }
        stats.record(outcome, ttft);
    }

    /// Counts the request as in flight until the guard is dropped; the guard
    /// owns what it needs, so it can travel with a streaming body.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    pub fn set_upstream_healthy(&self, upstream: &str, healthy: bool) {
        self.upstream_healthy
            .with_label_values(&[upstream])
            .set(i64::from(healthy));
    }

    pub fn auth_failure(&self) {
        self.auth_failures.inc();
    }

    pub fn cache_error(&self) {
        self.cache_errors.inc();
    }

    /// The Prometheus text exposition format (`prometheus::TEXT_FORMAT`).
    pub fn render(&self) -> String {
        let families = {
            let _consistent = self.lock();
            self.registry.gather()
        };
        TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|err| {
                tracing::error!("cannot encode metrics: {err}");
                String::new()
            })
    }

    /// The `/stats` body. `avg` latency covers every request since start;
    /// `p50`/`p99` are exact over the most recent `[slo] latency_window`
    /// requests (nearest rank), i.e. exact over all of them until there have
    /// been more.
    /// Averages and percentiles of nothing are 0.
    pub fn stats(&self) -> Value {
        // Copied out so the percentile work does not hold up `observe`.
        let (stats, mut recent) = {
            let guard = self.lock();
            (guard.counts.clone(), guard.latencies.values.clone())
        };
        let uptime = self.started.elapsed();
        let total = stats.total;
        let (p50, p99) = percentiles(&mut recent);
        json!({
            "uptime_seconds": round_to(uptime.as_secs_f64(), 3),
            "requests": {
                "total": total,
                "success": stats.success,
                "errors": total - stats.success,
                "streaming": stats.streaming,
                "non_streaming": total - stats.streaming,
                "cached": stats.cache_hits,
            },
            "requests_per_second": per_second(total, uptime),
            "latency_ms": {
                "avg": round_to(mean(stats.latency_sum_ms, total), 3),
                "p50": round_to(p50, 3),
                "p99": round_to(p99, 3),
            },
            "errors_by_type": stats
                .errors_by_status
                .iter()
                .map(|(status, count)| (status.to_string(), json!(count)))
                .collect::<serde_json::Map<String, Value>>(),
            "streaming": {
                "count": stats.streaming,
                "avg_ttft_ms": round_to(mean(stats.ttft_sum_ms, stats.ttft_count), 3),
            },
            "cache": {
                "hits": stats.cache_hits,
                "misses": stats.cache_misses,
                "bypasses": stats.cache_bypasses,
            },
            "slo": slo(self.slo.success_target, total, stats.success),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Stats> {
        // The counts stay meaningful even if a holder panicked mid-update.
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric name is registered once");
    metric
}

fn cache_label(result: CacheResult) -> &'static str {
    match result {
        CacheResult::Hit => "hit",
        CacheResult::Miss => "miss",
        CacheResult::Bypass => "bypass",
    }
}

/// Decrements `switchyard_in_flight_requests` when dropped.
#[must_use = "the request stops counting as in flight when the guard is dropped"]
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The error budget is the failure rate the target allows, `1 - target`.
/// `error_budget_remaining = 1 - error_rate / budget`: 1 with no errors, 0
/// exactly at the target, negative once overspent (down to `1 - 1 / budget`
/// when everything fails; not clamped, so the depth of a breach stays visible).
/// It is rounded to 9 decimals, which keeps float noise out of the output and
/// lets "exactly at the target" count as at it; the status derives from it:
/// `ok` while the target is met (remaining >= 0), `warning` while errors are
/// under twice the budget (remaining > -1), `breach` beyond.
fn slo(target: f64, total: u64, success: u64) -> Value {
    let (success_rate, error_rate) = if total == 0 {
        (1.0, 0.0)
    } else {
        (
            success as f64 / total as f64,
            (total - success) as f64 / total as f64,
        )
    };
    // `+ 0.0` turns a rounded -0 into 0.
    let remaining = round_to(1.0 - error_rate / (1.0 - target), 9) + 0.0;
    let burn_status = if remaining >= 0.0 {
        "ok"
    } else if remaining > -1.0 {
        "warning"
    } else {
        "breach"
    };
    json!({
        "target": target,
        "success_rate": success_rate,
        "error_budget_remaining": remaining,
        "burn_status": burn_status,
    })
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

fn mean(sum: f64, count: u64) -> f64 {
    if count == 0 { 0.0 } else { sum / count as f64 }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

struct Stats {
    counts: Counts,
    latencies: LatencyWindow,
}

#[derive(Clone, Default)]
struct Counts {
    total: u64,
    success: u64,
    streaming: u64,
    errors_by_status: BTreeMap<u16, u64>,
    latency_sum_ms: f64,
    ttft_sum_ms: f64,
    ttft_count: u64,
    cache_hits: u64,
    cache_misses: u64,
    cache_bypasses: u64,
}

impl Stats {
    fn record(&mut self, outcome: &RequestOutcome, ttft: Option<Duration>) {
        let counts = &mut self.counts;
        counts.total += 1;
        if outcome.succeeded() {
            counts.success += 1;
        } else {
            *counts.errors_by_status.entry(outcome.status).or_default() += 1;
        }
        if outcome.stream {
            counts.streaming += 1;
        }
        let latency_ms = outcome.latency.as_secs_f64() * 1000.0;
        counts.latency_sum_ms += latency_ms;
        self.latencies.push(latency_ms);
        if let Some(ttft) = ttft {
            counts.ttft_sum_ms += ttft.as_secs_f64() * 1000.0;
            counts.ttft_count += 1;
        }
        match outcome.cache {
            CacheResult::Hit => counts.cache_hits += 1,
            CacheResult::Miss => counts.cache_misses += 1,
            CacheResult::Bypass => counts.cache_bypasses += 1,
        }
    }
}

/// The most recent latencies, in a ring buffer of fixed capacity: bounded
/// memory (800 KB at 100,000) and exact percentiles over that window.
struct LatencyWindow {
    values: Vec<f64>,
    capacity: usize,
    /// Where the next value goes once the buffer is full.
    next: usize,
}

impl LatencyWindow {
    fn new(capacity: usize) -> LatencyWindow {
        LatencyWindow {
            values: Vec::new(),
            capacity,
            next: 0,
        }
    }

    fn push(&mut self, value: f64) {
        if self.values.len() < self.capacity {
            self.values.push(value);
        } else if let Some(slot) = self.values.get_mut(self.next) {
            *slot = value;
            self.next = (self.next + 1) % self.capacity;
        }
    }
}

/// (p50, p99) by nearest rank; selection instead of a full sort keeps a
/// `/stats` call linear in the window size.
fn percentiles(values: &mut [f64]) -> (f64, f64) {
    let mut nearest_rank = |fraction: f64| {
        let count = values.len();
        if count == 0 {
            return 0.0;
        }
        let rank = ((fraction * count as f64).ceil() as usize).clamp(1, count);
        *values.select_nth_unstable_by(rank - 1, f64::total_cmp).1
    };
    (nearest_rank(0.5), nearest_rank(0.99))
}

#[cfg(test)]
mod tests {
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
}
