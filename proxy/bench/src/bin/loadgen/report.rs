//! The JSON report: per-target and per-kind figures, and timelines.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::*;
use crate::plan::*;
use crate::stats::*;

/// Figures of some samples: counts, errors by kind, cache hits and success latencies.
pub(crate) fn sample_figures<'a>(samples: impl Iterator<Item = &'a Sample>) -> Value {
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut cache_hits = 0u64;
    let mut completed = 0u64;
    for sample in samples {
        completed += 1;
        match &sample.error {
            None => latencies.push(sample.latency),
            Some(kind) => *errors.entry(kind.clone()).or_default() += 1,
        }
        cache_hits += u64::from(sample.cache_hit);
    }
    json!({
        "completed": completed,
        "ok": latencies.len(),
        "errors": errors.values().sum::<u64>(),
        "error_kinds": errors,
        "cache_hits": cache_hits,
        "latency_us": summary(&mut latencies),
    })
}

/// The samples in buckets `width` long by when they were due; every bucket from the first to
/// the last is listed, empty ones included. With a mix, each bucket also has the figures of
/// its `streaming` and its `non_streaming` requests apart (their latencies differ in kind).
pub(crate) fn timeline(samples: &[Sample], width: Duration) -> Vec<Value> {
    let width_ns = width.as_nanos().max(1);
    let index = |sample: &Sample| (sample.at.as_nanos() / width_ns) as usize;
    let Some(last) = samples.iter().map(index).max() else {
        return Vec::new();
    };
    let mut buckets: Vec<Vec<&Sample>> = vec![Vec::new(); last + 1];
    for sample in samples {
        buckets[index(sample)].push(sample);
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(number, bucket)| {
            let mut figures = sample_figures(bucket.iter().copied());
            figures["start_s"] = json!((width * number as u32).as_secs_f64());
            if bucket.iter().any(|sample| sample.kind.is_some()) {
                let streaming = |sample: &&&Sample| sample.kind.is_some_and(Kind::stream);
                figures["streaming"] = sample_figures(bucket.iter().filter(streaming).copied());
                figures["non_streaming"] =
                    sample_figures(bucket.iter().filter(|s| !streaming(s)).copied());
            }
            figures
        })
        .collect()
}

pub(crate) fn target_report(
    target: &Target,
    measured_seconds: f64,
    wall_share: f64,
    mix: Option<&Mix>,
    bucket_ms: &[u64],
) -> Value {
    let mut recorder = target.recorder();
    let kinds = mix.map(|mix| {
        let by_kind: serde_json::Map<String, Value> = mix
            .weights
            .iter()
            .map(|(kind, _)| {
                let samples = recorder.samples.iter().filter(|s| s.kind == Some(*kind));
                (kind.name().to_owned(), sample_figures(samples))
            })
            .collect();
        Value::Object(by_kind)
    });
    let timelines: Vec<Value> = bucket_ms
        .iter()
        .map(|&ms| {
            json!({
                "bucket_ms": ms,
                "buckets": timeline(&recorder.samples, Duration::from_millis(ms.max(1))),
            })
        })
        .collect();
    let errors: u64 = recorder.errors.values().sum();
    let achieved = if wall_share > 0.0 {
        recorder.ok as f64 / wall_share
    } else {
        0.0
    };
    let stream_figures = !recorder.ttfts.is_empty();
    let mut report = json!({
        "name": target.name,
        "url": target.url,
        "measured_s": measured_seconds,
        "completed": recorder.ok + errors,
        "ok": recorder.ok,
        "errors": errors,
        "error_kinds": recorder.errors,
        "achieved_rps": (achieved * 10.0).round() / 10.0,
        "cache_hits": recorder.cache_hits,
        "latency_us": summary(&mut recorder.latencies),
        "send_lag_us": summary(&mut recorder.send_lags),
        "ttft_us": if stream_figures { summary(&mut recorder.ttfts) } else { Value::Null },
        "gap_us": if stream_figures { summary(&mut recorder.gaps) } else { Value::Null },
    });
    if let Some(kinds) = kinds {
        report["kinds"] = kinds;
    }
    if !timelines.is_empty() {
        report["timelines"] = Value::Array(timelines);
    }
    report
}
