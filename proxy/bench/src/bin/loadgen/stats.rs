//! Latency figures: nearest-rank percentiles and summaries in microseconds.

use serde_json::{Value, json};

/// The nearest-rank percentile of sorted samples, `q` in thousandths of a percent
/// (50_000 = p50, 99_900 = p99.9, 100_000 = the maximum): the smallest sample with at
/// least q% of the samples at or below it. Integer arithmetic, so p99.9 of 1000 samples is
/// the 999th, not the 1000th.
pub(crate) fn percentile(sorted: &[u64], q: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len() as u64;
    let rank = (q * n).div_ceil(100_000).clamp(1, n);
    sorted[(rank - 1) as usize]
}

pub(crate) fn micros(nanos: u64) -> f64 {
    (nanos as f64 / 100.0).round() / 10.0
}

/// Count, min, mean, p50, p90, p99, p99.9 and max of nanosecond samples, in microseconds.
pub(crate) fn summary(samples: &mut [u64]) -> Value {
    samples.sort_unstable();
    let count = samples.len();
    let mean = if count == 0 {
        0
    } else {
        (samples.iter().map(|&v| u128::from(v)).sum::<u128>() / count as u128) as u64
    };
    json!({
        "count": count,
        "min": micros(samples.first().copied().unwrap_or(0)),
        "mean": micros(mean),
        "p50": micros(percentile(samples, 50_000)),
        "p90": micros(percentile(samples, 90_000)),
        "p99": micros(percentile(samples, 99_000)),
        "p999": micros(percentile(samples, 99_900)),
        "max": micros(percentile(samples, 100_000)),
    })
}

// ------------------------------------------------------------------------ requests
