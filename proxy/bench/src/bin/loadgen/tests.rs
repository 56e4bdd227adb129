//! The load generator's tests.

use crate::stats::*;
use crate::*;
use std::time::{Duration, Instant};

use serde_json::json;

#[test]
fn nearest_rank_percentiles() {
    let samples: Vec<u64> = (1..=1000).collect();
    assert_eq!(percentile(&samples, 50_000), 500);
    assert_eq!(percentile(&samples, 99_000), 990);
    assert_eq!(percentile(&samples, 99_900), 999);
    assert_eq!(percentile(&samples, 100_000), 1000);
    assert_eq!(percentile(&samples, 0), 1);
    assert_eq!(percentile(&[7], 99_000), 7);
    assert_eq!(percentile(&[], 50_000), 0);
    assert_eq!(percentile(&[1, 2, 3, 4], 50_000), 2);
    assert_eq!(percentile(&[1, 2, 3, 4], 50_001), 3);
}

#[test]
fn summaries_are_in_microseconds() {
    let mut samples = vec![3_000, 1_000, 2_000, 1_000_000];
    let figures = summary(&mut samples);
    assert_eq!(figures["count"], 4);
    assert_eq!(figures["min"], 1.0);
    assert_eq!(figures["p50"], 2.0);
    assert_eq!(figures["max"], 1000.0);
    assert_eq!(figures["mean"], 251.5);
    assert_eq!(summary(&mut [])["p99"], 0.0);
}

#[test]
fn the_open_timetable_warms_up_round_robin_then_alternates_slices() {
    let plan = OpenPlan::new(1000.0, 2.0, 500, 100, 2);
    assert_eq!(plan.per_slice, 500);
    assert_eq!(plan.slices_per_target, 4);
    assert_eq!(plan.warmup_total(), 200);
    assert_eq!(plan.total(), 200 + 4000);
    assert_eq!(plan.measured_seconds(), 2.0);
    assert_eq!(plan.item(0).target, 0);
    assert_eq!(plan.item(1).target, 1);
    assert!(!plan.item(199).measured);
    let first = plan.item(200);
    assert!(first.measured);
    assert_eq!(first.target, 0);
    assert_eq!(first.offset, Duration::from_millis(200));
    assert_eq!(plan.item(699).target, 0);
    assert_eq!(plan.item(700).target, 1);
    assert_eq!(plan.item(1200).target, 0);
    assert_eq!(plan.item(4199).target, 1);
    let measured = (0..plan.total())
        .map(|j| plan.item(j))
        .filter(|item| item.measured && item.target == 1)
        .count() as u64;
    assert_eq!(measured, plan.measured_per_target());
}

#[test]
fn the_open_timetable_rounds_to_whole_slices() {
    let plan = OpenPlan::new(100.0, 1.0, 300, 0, 1);
    assert_eq!(plan.per_slice, 30);
    assert_eq!(plan.slices_per_target, 4);
    assert_eq!(plan.measured_per_target(), 120);
    let tiny = OpenPlan::new(1.0, 1.0, 10, 0, 3);
    assert_eq!(tiny.per_slice, 1);
    assert_eq!(tiny.total(), 3);
}

#[test]
fn the_closed_timetable_alternates_slices_after_warming_up() {
    let plan = ClosedPlan::new(1.0, 250, 100, 2);
    assert_eq!(plan.slices_per_target, 4);
    assert_eq!(plan.phase_at(Duration::from_millis(50)), Some((0, false)));
    assert_eq!(plan.phase_at(Duration::from_millis(150)), Some((1, false)));
    assert_eq!(plan.phase_at(Duration::from_millis(200)), Some((0, true)));
    assert_eq!(plan.phase_at(Duration::from_millis(450)), Some((1, true)));
    assert_eq!(plan.phase_at(Duration::from_millis(2199)), Some((1, true)));
    assert_eq!(plan.phase_at(Duration::from_millis(2200)), None);
    assert_eq!(plan.measured_seconds(), 1.0);
}

#[test]
fn the_scanner_counts_events_across_frames() {
    let mut scanner = EventScanner::default();
    assert_eq!(scanner.feed(b"data: {\"a\":1}\n"), 0);
    assert_eq!(scanner.feed(b"\ndata: {}\n\ndata: [DO"), 2);
    assert!(!scanner.done);
    assert_eq!(scanner.feed(b"NE]\r\n\r\n"), 1);
    assert!(scanner.done);
}

#[test]
fn the_ticker_never_wakes_early() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ticker = Ticker::new().unwrap();
        for micros in [0, 1, 250, 2_000] {
            let due = Instant::now() + Duration::from_micros(micros);
            ticker.sleep_until(due).await.unwrap();
            assert!(Instant::now() >= due);
        }
        // A time already past returns at once.
        ticker.sleep_until(Instant::now()).await.unwrap();
    });
}

#[test]
fn the_scanner_finds_the_responses_marker_across_frames() {
    let mut scanner = EventScanner::until(RESPONSES_DONE);
    assert_eq!(
        scanner.feed(b"event: response.in_progress\ndata: {}\n\n"),
        1
    );
    assert!(!scanner.done);
    scanner.feed(b"event: response.comp");
    assert!(!scanner.done);
    scanner.feed(b"leted\ndata: {}\n\n");
    assert!(scanner.done);
}

#[test]
fn a_mix_parses_and_spreads_its_kinds_evenly() {
    let mix = Mix::parse("whole=40, stream=30,repeat=30").unwrap();
    assert_eq!(mix.cycle.len(), 100);
    let count = |kind: Kind| mix.cycle.iter().filter(|k| **k == kind).count();
    assert_eq!(
        (count(Kind::Whole), count(Kind::Stream), count(Kind::Repeat)),
        (40, 30, 30)
    );
    // Smooth: no kind waits long. Any ten requests in a row hold each kind at least twice.
    for start in 0..200u64 {
        let window: Vec<Kind> = (start..start + 10).map(|seq| mix.kind(seq)).collect();
        for kind in [Kind::Whole, Kind::Stream, Kind::Repeat] {
            assert!(
                window.iter().filter(|k| **k == kind).count() >= 2,
                "{window:?}"
            );
        }
    }
    assert_eq!(
        mix.describe(),
        json!({"whole": 40, "stream": 30, "repeat": 30})
    );
    let zero = Mix::parse("whole=1,stream=0").unwrap();
    assert_eq!(zero.weights, vec![(Kind::Whole, 1)]);
}

#[test]
fn a_bad_mix_is_refused() {
    for bad in [
        "",
        "whole",
        "whole=x",
        "whole=-1",
        "nope=3",
        "whole=1,whole=2",
        "stream=0",
        "whole=20000",
    ] {
        assert!(Mix::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn each_kind_has_its_body() {
    let unique = Kind::Whole.body("m", 7, 4);
    assert_eq!(unique["model"], "m");
    assert!(unique.get("stream").is_none());
    assert!(
        unique["messages"][1]["content"]
            .as_str()
            .unwrap()
            .contains('7')
    );
    assert_ne!(
        Kind::Whole.body("m", 8, 4),
        unique,
        "each request its own text"
    );
    let streamed = Kind::Stream.body("m", 7, 4);
    assert_eq!(streamed["stream"], true);
    let responses = Kind::ResponsesStream.body("m", 7, 4);
    assert!(responses["input"].is_string() && responses["stream"] == true);
    assert!(responses.get("messages").is_none());
    // Repeats come from the pool: sequence numbers 4 apart ask the same question.
    assert_eq!(Kind::Repeat.body("m", 1, 4), Kind::Repeat.body("m", 5, 4));
    assert_ne!(Kind::Repeat.body("m", 1, 4), Kind::Repeat.body("m", 2, 4));
    assert_eq!(Kind::RepeatStream.body("m", 1, 4)["stream"], true);
    assert!(
        Kind::ALL
            .iter()
            .all(|kind| kind.stream() == kind.name().ends_with("stream"))
    );
}

fn sample(at_ms: u64, latency_us: u64, error: Option<&str>) -> Sample {
    Sample {
        at: Duration::from_millis(at_ms),
        latency: latency_us * 1000,
        kind: Some(Kind::Whole),
        error: error.map(str::to_owned),
        cache_hit: at_ms % 2 == 1,
    }
}

#[test]
fn a_timeline_buckets_samples_by_when_they_were_due() {
    let samples = vec![
        sample(0, 100, None),
        sample(999, 300, None),
        sample(1000, 0, Some("status_502")),
        sample(2500, 200, None),
        sample(2501, 400, None),
    ];
    let buckets = timeline(&samples, Duration::from_secs(1));
    assert_eq!(buckets.len(), 3);
    assert_eq!(buckets[0]["start_s"], 0.0);
    assert_eq!(buckets[0]["completed"], 2);
    assert_eq!(buckets[0]["cache_hits"], 1);
    assert_eq!(buckets[0]["latency_us"]["max"], 300.0);
    assert_eq!(buckets[1]["errors"], 1);
    assert_eq!(buckets[1]["ok"], 0);
    assert_eq!(buckets[1]["error_kinds"], json!({"status_502": 1}));
    assert_eq!(buckets[2]["start_s"], 2.0);
    assert_eq!(buckets[2]["latency_us"]["p50"], 200.0);
    let coarse = timeline(&samples, Duration::from_secs(5));
    assert_eq!(coarse.len(), 1);
    assert_eq!(coarse[0]["completed"], 5);
    assert_eq!(coarse[0]["non_streaming"]["completed"], 5);
    assert_eq!(coarse[0]["streaming"]["completed"], 0);
    let mut mixed = samples.clone();
    mixed[4].kind = Some(Kind::ResponsesStream);
    let split = timeline(&mixed, Duration::from_secs(5));
    assert_eq!(split[0]["streaming"]["latency_us"]["max"], 400.0);
    assert_eq!(split[0]["non_streaming"]["latency_us"]["max"], 300.0);
    let plain: Vec<Sample> = samples
        .iter()
        .map(|s| Sample {
            kind: None,
            ..s.clone()
        })
        .collect();
    assert!(
        timeline(&plain, Duration::from_secs(5))[0]
            .get("streaming")
            .is_none()
    );
    assert!(timeline(&[], Duration::from_secs(1)).is_empty());
}

#[test]
fn targets_and_headers_parse() {
    let target = parse_target("direct=http://127.0.0.1:9/", "/v1/chat/completions").unwrap();
    assert_eq!(target.name, "direct");
    assert_eq!(target.uri, "http://127.0.0.1:9/v1/chat/completions");
    assert_eq!(target.responses_uri, "http://127.0.0.1:9/v1/responses");
    assert!(parse_target("nameless", "/").is_err());
    assert!(parse_target("tls=https://example.com", "/").is_err());
    let (name, value) = parse_header("Cache-Control: no-cache").unwrap();
    assert_eq!(name, "cache-control");
    assert_eq!(value, "no-cache");
}
