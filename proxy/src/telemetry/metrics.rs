//! Prometheus metrics (`/metrics`) and the JSON summary (`/stats`).
//!
//! Both are fed by the same `observe` calls, one per finished request, under
//! one lock that `render` and `stats` also take, so a scrape never sees a
//! request counted in one family and not yet in another, and the request
//! counters always add up to `/stats`'s totals.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
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

/// The `model` label of every request for a model the config does not serve,
/// so that clients choosing names cannot create series without end.
pub const UNKNOWN_MODEL: &str = "unknown";

/// Reads how many log lines have been dropped since startup.
pub type DroppedLines = Box<dyn Fn() -> u64 + Send + Sync>;

pub struct Metrics {
    registry: Registry,
    /// The names the `model` label may take besides [`UNKNOWN_MODEL`] (and
    /// the empty name of a request that never named a model).
    known_models: OnceLock<HashSet<String>>,
    /// Log lines dropped by the log writer so far, read at each render.
    dropped_log_lines: OnceLock<DroppedLines>,
    log_lines_dropped: IntCounter,
    log_lines_counted: AtomicU64,
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
            known_models: OnceLock::new(),
            dropped_log_lines: OnceLock::new(),
            log_lines_dropped: counter(
                "switchyard_log_lines_dropped_total",
                "Log lines dropped because the log destination could not keep up.",
            ),
            log_lines_counted: AtomicU64::new(0),
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

    /// The models the config serves: any other name is labelled
    /// [`UNKNOWN_MODEL`]. Set once, by the router, from the config; until then
    /// (tests of this module alone) every name is its own label.
    pub fn label_models(&self, names: impl IntoIterator<Item = String>) {
        if self.known_models.set(names.into_iter().collect()).is_err() {
            tracing::debug!("the metrics' model names were already set");
        }
    }

    fn model_label<'a>(&self, model: &'a str) -> &'a str {
        match self.known_models.get() {
            Some(known) if !model.is_empty() && !known.contains(model) => UNKNOWN_MODEL,
            _ => model,
        }
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
        let model = self.model_label(&outcome.model);

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

    /// Where `switchyard_log_lines_dropped_total` comes from (the log writer's
    /// own count); set once, by the binary.
    pub fn count_dropped_log_lines(&self, dropped: DroppedLines) {
        if self.dropped_log_lines.set(dropped).is_err() {
            tracing::debug!("the dropped log lines' source was already set");
        }
    }

    /// The Prometheus text exposition format (`prometheus::TEXT_FORMAT`).
    pub fn render(&self) -> String {
        if let Some(dropped) = self.dropped_log_lines.get() {
            let now = dropped();
            let counted = self.log_lines_counted.fetch_max(now, Ordering::Relaxed);
            self.log_lines_dropped.inc_by(now.saturating_sub(counted));
        }
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
mod tests;
