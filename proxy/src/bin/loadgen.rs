//! The benchmark's load generator (`scripts/bench.py` drives it).
//!
//! Open loop (`--mode open`): requests go out on a fixed timetable, `--rate` per second,
//! whatever the answers do, and each latency is measured from the request's SCHEDULED send
//! time, so a stall is charged to every request it delays (no coordinated omission).
//! Closed loop (`--mode closed`): `--concurrency` workers each send the next request when the
//! previous one is answered; the figure is the throughput.
//!
//! Several `--target NAME=URL`s take turns in slices of `--slice-ms` (A, B, A, B, ...), so a
//! drift of the machine during the run touches every target alike. Each target first gets
//! `--warmup-ms` of unmeasured load. With `--stream`, the time to the first SSE event and the
//! gaps between events are recorded too. The result is one JSON line on stdout: per target,
//! the counts, the errors, the achieved rate and nearest-rank percentiles of sorted samples.
//!
//! `--mix KIND=WEIGHT,...` (the soak, `scripts/soak.py`) replaces the one request body with a
//! mix of kinds, spread evenly over the run (a smooth weighted round robin): `whole` and
//! `stream` chat completions and `responses` and `responses_stream` requests, each with a text
//! of its own (never a cache hit), and `repeat` and `repeat_stream` chat requests drawn from a
//! pool of `--repeat-pool` texts (cache hits once each text was seen). Per-kind figures are
//! then reported too. `--bucket-ms MS` (repeatable) adds a timeline per target: the counts,
//! errors and latency percentiles of the requests due in each MS-long bucket of the run.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const CACHE_HEADER: &str = "x-switchyard-cache";
const CHAT_PATH: &str = "/v1/chat/completions";
const RESPONSES_PATH: &str = "/v1/responses";
/// What ends a complete stream: chat's last event, and the Responses API's.
const CHAT_DONE: &[u8] = b"[DONE]";
const RESPONSES_DONE: &[u8] = b"response.completed";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Open,
    Closed,
}

/// Load generator for the switchyard benchmark.
#[derive(Parser, Debug)]
struct Cli {
    /// open: a fixed request rate; closed: a fixed number of concurrent requests.
    #[arg(long, value_enum, default_value = "open")]
    mode: Mode,
    /// NAME=URL of a target (URL: scheme, host and port); repeat it to interleave targets.
    #[arg(long = "target", required = true)]
    targets: Vec<String>,
    /// The path requested on every target.
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// Requests per second (open loop), across whichever target has the slice.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Concurrent requests (closed loop).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured seconds per target.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Length of one slice: the targets take turns slice by slice.
    #[arg(long, default_value_t = 1000)]
    slice_ms: u64,
    /// Unmeasured load per target before the measured slices.
    #[arg(long, default_value_t = 500)]
    warmup_ms: u64,
    /// A request not answered in full within this long counts as an error.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Ask for SSE streams; record time to first event and the gaps between events.
    #[arg(long)]
    stream: bool,
    /// The model of the default request body.
    #[arg(long, default_value = "bench")]
    model: String,
    /// The request body (JSON) instead of the default small chat request.
    #[arg(long)]
    body: Option<String>,
    /// An extra request header, `NAME: VALUE`; repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Client runtime threads (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A mix of request kinds instead of one body: `KIND=WEIGHT,...` with kinds whole, stream,
    /// responses, responses_stream, repeat, repeat_stream (e.g. `whole=40,stream=30,repeat=30`).
    #[arg(long)]
    mix: Option<String>,
    /// Distinct texts the `repeat` kinds draw from.
    #[arg(long, default_value_t = 32)]
    repeat_pool: u64,
    /// Report a timeline with buckets this many milliseconds long; repeatable.
    #[arg(long = "bucket-ms")]
    bucket_ms: Vec<u64>,
}

// ------------------------------------------------------------------------ the mix

/// One kind of request of a `--mix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Whole,
    Stream,
    Responses,
    ResponsesStream,
    Repeat,
    RepeatStream,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Whole,
        Kind::Stream,
        Kind::Responses,
        Kind::ResponsesStream,
        Kind::Repeat,
        Kind::RepeatStream,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Whole => "whole",
            Kind::Stream => "stream",
            Kind::Responses => "responses",
            Kind::ResponsesStream => "responses_stream",
            Kind::Repeat => "repeat",
            Kind::RepeatStream => "repeat_stream",
        }
    }

    fn stream(self) -> bool {
        matches!(
            self,
            Kind::Stream | Kind::ResponsesStream | Kind::RepeatStream
        )
    }

    fn responses(self) -> bool {
        matches!(self, Kind::Responses | Kind::ResponsesStream)
    }

    fn repeated(self) -> bool {
        matches!(self, Kind::Repeat | Kind::RepeatStream)
    }

    /// The request body of the `seq`-th request (of this kind or not): a text of its own, or
    /// for the repeat kinds one of `pool` texts.
    fn body(self, model: &str, seq: u64, pool: u64) -> Value {
        let text = if self.repeated() {
            format!(
                "Repeated question {}: how much time does a proxy add?",
                seq % pool.max(1)
            )
        } else {
            format!("Request {seq}: how much time does a proxy add to a request?")
        };
        let mut body = if self.responses() {
            json!({
                "model": model,
                "instructions": "You are a helpful assistant.",
                "input": text,
                "max_output_tokens": 64,
            })
        } else {
            json!({
                "model": model,
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": text},
                ],
                "max_tokens": 64,
            })
        };
        if self.stream() {
            body["stream"] = json!(true);
        }
        body
    }
}

/// The kinds of a `--mix`, with their weights, and the order requests cycle through.
#[derive(Clone, Debug, PartialEq)]
struct Mix {
    weights: Vec<(Kind, u64)>,
    /// One cycle of a smooth weighted round robin: each kind `weight` times, spread evenly.
    cycle: Vec<Kind>,
}

impl Mix {
    fn parse(text: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Kind, u64)> = Vec::new();
        for part in text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
        {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix {part:?}: expected KIND=WEIGHT"))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|kind| kind.name() == name.trim())
                .ok_or_else(|| {
                    let known: Vec<&str> = Kind::ALL.iter().map(|kind| kind.name()).collect();
                    format!("--mix {part:?}: unknown kind; use {}", known.join(", "))
                })?;
            let weight: u64 = weight
                .trim()
                .parse()
                .map_err(|_| format!("--mix {part:?}: the weight must be a whole number"))?;
            if weights.iter().any(|(seen, _)| *seen == kind) {
                return Err(format!("--mix: {} is given twice", kind.name()));
            }
            if weight > 0 {
                weights.push((kind, weight));
            }
        }
        let total: u64 = weights.iter().map(|(_, weight)| weight).sum();
        if total == 0 {
            return Err("--mix: no kind has a positive weight".to_owned());
        }
        if total > 10_000 {
            return Err("--mix: the weights add up to more than 10000".to_owned());
        }
        let mut current: Vec<i64> = vec![0; weights.len()];
        let mut cycle = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (credit, (_, weight)) in current.iter_mut().zip(&weights) {
                *credit += *weight as i64;
            }
            let best = (0..weights.len())
                .max_by_key(|&index| (current[index], std::cmp::Reverse(index)))
                .unwrap_or(0);
            current[best] -= total as i64;
            cycle.push(weights[best].0);
        }
        Ok(Mix { weights, cycle })
    }

    fn kind(&self, seq: u64) -> Kind {
        self.cycle[(seq % self.cycle.len() as u64) as usize]
    }

    fn describe(&self) -> Value {
        let weights: serde_json::Map<String, Value> = self
            .weights
            .iter()
            .map(|(kind, weight)| (kind.name().to_owned(), json!(weight)))
            .collect();
        Value::Object(weights)
    }
}

// ------------------------------------------------------------------------ the timetables

/// One request of the open-loop timetable.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Item {
    /// When it is due, from the start of the run.
    offset: Duration,
    target: usize,
    measured: bool,
}

/// The open-loop timetable: request `j` is due at `j / rate`. First `warmup_per_target`
/// requests per target, round robin; then slices of `per_slice` consecutive requests, the
/// targets taking turns, `slices_per_target` slices each.
#[derive(Clone, Copy, Debug, PartialEq)]
struct OpenPlan {
    rate: f64,
    targets: u64,
    per_slice: u64,
    slices_per_target: u64,
    warmup_per_target: u64,
}

impl OpenPlan {
    fn new(rate: f64, duration_s: f64, slice_ms: u64, warmup_ms: u64, targets: usize) -> Self {
        let per_slice = ((rate * slice_ms as f64 / 1000.0).round() as u64).max(1);
        let wanted = ((rate * duration_s).round() as u64).max(1);
        OpenPlan {
            rate,
            targets: targets.max(1) as u64,
            per_slice,
            slices_per_target: wanted.div_ceil(per_slice),
            warmup_per_target: (rate * warmup_ms as f64 / 1000.0).round() as u64,
        }
    }

    fn warmup_total(&self) -> u64 {
        self.warmup_per_target * self.targets
    }

    fn measured_per_target(&self) -> u64 {
        self.per_slice * self.slices_per_target
    }

    fn total(&self) -> u64 {
        self.warmup_total() + self.measured_per_target() * self.targets
    }

    /// Measured seconds of each target (its slices, back to back).
    fn measured_seconds(&self) -> f64 {
        self.measured_per_target() as f64 / self.rate
    }

    fn item(&self, j: u64) -> Item {
        let offset = Duration::from_secs_f64(j as f64 / self.rate);
        let warmup = self.warmup_total();
        if j < warmup {
            return Item {
                offset,
                target: (j % self.targets) as usize,
                measured: false,
            };
        }
        let slice = (j - warmup) / self.per_slice;
        Item {
            offset,
            target: (slice % self.targets) as usize,
            measured: true,
        }
    }
}

/// The closed-loop timetable: a warm-up slice per target, then measured slices in turn.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ClosedPlan {
    targets: u32,
    warmup: Duration,
    slice: Duration,
    slices_per_target: u32,
}

impl ClosedPlan {
    fn new(duration_s: f64, slice_ms: u64, warmup_ms: u64, targets: usize) -> Self {
        let slice_ms = slice_ms.max(1);
        let wanted_ms = (duration_s * 1000.0).round().max(1.0) as u64;
        ClosedPlan {
            targets: targets.max(1) as u32,
            warmup: Duration::from_millis(warmup_ms),
            slice: Duration::from_millis(slice_ms),
            slices_per_target: wanted_ms.div_ceil(slice_ms) as u32,
        }
    }

    fn measured_seconds(&self) -> f64 {
        (self.slice * self.slices_per_target).as_secs_f64()
    }

    /// Which target a request sent `elapsed` after the start goes to, and whether it is
    /// measured; None once the run is over.
    fn phase_at(&self, elapsed: Duration) -> Option<(usize, bool)> {
        let warmup_total = self.warmup * self.targets;
        if elapsed < warmup_total {
            let target = elapsed.as_nanos() / self.warmup.as_nanos();
            return Some((target as usize, false));
        }
        let slice = (elapsed - warmup_total).as_nanos() / self.slice.as_nanos();
        if slice >= u128::from(self.slices_per_target * self.targets) {
            return None;
        }
        Some(((slice % u128::from(self.targets)) as usize, true))
    }
}

// ------------------------------------------------------------------------ percentiles

/// The nearest-rank percentile of sorted samples, `q` in thousandths of a percent
/// (50_000 = p50, 99_900 = p99.9, 100_000 = the maximum): the smallest sample with at
/// least q% of the samples at or below it. Integer arithmetic, so p99.9 of 1000 samples is
/// the 999th, not the 1000th.
fn percentile(sorted: &[u64], q: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len() as u64;
    let rank = (q * n).div_ceil(100_000).clamp(1, n);
    sorted[(rank - 1) as usize]
}

fn micros(nanos: u64) -> f64 {
    (nanos as f64 / 100.0).round() / 10.0
}

/// Count, min, mean, p50, p90, p99, p99.9 and max of nanosecond samples, in microseconds.
fn summary(samples: &mut [u64]) -> Value {
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

#[derive(Default)]
struct Recorder {
    /// Of successful requests, nanoseconds: from the scheduled time (open) or the send (closed).
    latencies: Vec<u64>,
    /// How late each request left, against its scheduled time (open loop).
    send_lags: Vec<u64>,
    ttfts: Vec<u64>,
    gaps: Vec<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    cache_hits: u64,
    last_done: Option<Instant>,
    /// Every measured request, when a timeline or per-kind figures are wanted.
    samples: Vec<Sample>,
}

/// One measured request, for timelines and per-kind figures.
#[derive(Clone, Debug, PartialEq)]
struct Sample {
    /// When it was due, from the start of the measured load.
    at: Duration,
    /// Nanoseconds, for a success.
    latency: u64,
    kind: Option<Kind>,
    /// None for a success.
    error: Option<String>,
    cache_hit: bool,
}

struct Target {
    name: String,
    url: String,
    uri: Uri,
    chat_uri: Uri,
    responses_uri: Uri,
    recorder: Mutex<Recorder>,
}

impl Target {
    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct Ctx {
    client: Client<HttpConnector, Full<Bytes>>,
    targets: Vec<Target>,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    stream: bool,
    timeout: Duration,
    model: String,
    mix: Option<Mix>,
    repeat_pool: u64,
    /// Keep a sample per measured request (timelines, per-kind figures).
    keep_samples: bool,
    /// Requests made so far: the next one's sequence number.
    sequence: AtomicU64,
}

/// What one request sends, and how its end is recognised.
struct Shot {
    uri: Uri,
    body: Bytes,
    stream: bool,
    done: &'static [u8],
    kind: Option<Kind>,
}

impl Ctx {
    /// The next request to `target`: the one body, or the next kind of the mix.
    fn shot(&self, target: usize) -> Shot {
        let target = &self.targets[target];
        let Some(mix) = &self.mix else {
            return Shot {
                uri: target.uri.clone(),
                body: self.body.clone(),
                stream: self.stream,
                done: CHAT_DONE,
                kind: None,
            };
        };
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let kind = mix.kind(seq);
        let (uri, done) = if kind.responses() {
            (target.responses_uri.clone(), RESPONSES_DONE)
        } else {
            (target.chat_uri.clone(), CHAT_DONE)
        };
        Shot {
            uri,
            body: Bytes::from(kind.body(&self.model, seq, self.repeat_pool).to_string()),
            stream: kind.stream(),
            done,
            kind: Some(kind),
        }
    }
}

/// What one successful exchange showed.
struct Exchange {
    /// Arrival of each complete SSE event (streams only).
    events: Vec<Instant>,
    cache_hit: bool,
}

async fn exchange(ctx: &Ctx, shot: Shot) -> Result<Exchange, String> {
    let mut request = Request::post(shot.uri)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(shot.body))
        .map_err(|err| format!("request: {err}"))?;
    for (name, value) in &ctx.headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    let response = ctx
        .client
        .request(request)
        .await
        .map_err(|err| if err.is_connect() { "connect" } else { "send" }.to_owned())?;
    let status = response.status();
    let cache_hit = response
        .headers()
        .get(CACHE_HEADER)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"hit"));
    let mut body = response.into_body();
    let mut events = Vec::new();
    let mut scanner = EventScanner::until(shot.done);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| "body".to_owned())?;
        if let Some(data) = frame.data_ref()
            && shot.stream
        {
            let now = Instant::now();
            for _ in 0..scanner.feed(data) {
                events.push(now);
            }
        }
    }
    if !status.is_success() {
        return Err(format!("status_{}", status.as_u16()));
    }
    if shot.stream && !scanner.done {
        return Err("stream_incomplete".to_owned());
    }
    Ok(Exchange { events, cache_hit })
}

/// Counts complete SSE events (a blank line ends one) across body frames, and notices the
/// marker of a complete stream (`[DONE]` for chat), even split across frames.
struct EventScanner {
    /// The last byte seen was a newline (carriage returns are ignored).
    after_newline: bool,
    /// The last bytes seen, to find the marker split across frames.
    tail: Vec<u8>,
    marker: &'static [u8],
    done: bool,
}

impl Default for EventScanner {
    fn default() -> Self {
        EventScanner::until(CHAT_DONE)
    }
}

impl EventScanner {
    fn until(marker: &'static [u8]) -> Self {
        EventScanner {
            after_newline: false,
            tail: Vec::new(),
            marker,
            done: false,
        }
    }

    fn feed(&mut self, data: &[u8]) -> usize {
        let mut complete = 0;
        for &byte in data {
            match byte {
                b'\r' => {}
                b'\n' if self.after_newline => {
                    complete += 1;
                    self.after_newline = false;
                }
                b'\n' => self.after_newline = true,
                _ => self.after_newline = false,
            }
        }
        if !self.done {
            self.tail.extend_from_slice(data);
            let marker = self.marker;
            self.done = self
                .tail
                .windows(marker.len())
                .any(|window| window == marker);
            let keep = self.tail.len().saturating_sub(marker.len() - 1);
            self.tail.drain(..keep);
        }
        complete
    }
}

fn elapsed_nanos(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_nanos() as u64
}

/// When a request was due or sent, against the start of the measured load; whether it is
/// measured at all.
#[derive(Clone, Copy, Debug)]
struct Slot {
    target: usize,
    measured: bool,
    at: Duration,
}

/// Sends one request and records it against its target; latency runs from `start`.
async fn measure(ctx: &Ctx, slot: Slot, start: Instant, sent: Instant) {
    let shot = ctx.shot(slot.target);
    let kind = shot.kind;
    let result = tokio::time::timeout(ctx.timeout, exchange(ctx, shot)).await;
    let finished = Instant::now();
    if !slot.measured {
        return;
    }
    let mut recorder = ctx.targets[slot.target].recorder();
    recorder.last_done = Some(
        recorder
            .last_done
            .map_or(finished, |last| last.max(finished)),
    );
    if ctx.keep_samples {
        let (latency, error, cache_hit) = match &result {
            Ok(Ok(exchange)) => (elapsed_nanos(start, finished), None, exchange.cache_hit),
            Ok(Err(kind)) => (0, Some(kind.clone()), false),
            Err(_) => (0, Some("timeout".to_owned()), false),
        };
        recorder.samples.push(Sample {
            at: slot.at,
            latency,
            kind,
            error,
            cache_hit,
        });
    }
    match result {
        Ok(Ok(exchange)) => {
            recorder.ok += 1;
            recorder.latencies.push(elapsed_nanos(start, finished));
            recorder.send_lags.push(elapsed_nanos(start, sent));
            recorder.cache_hits += u64::from(exchange.cache_hit);
            if let Some(&first) = exchange.events.first() {
                recorder.ttfts.push(elapsed_nanos(start, first));
                let gaps: Vec<u64> = exchange
                    .events
                    .windows(2)
                    .map(|pair| elapsed_nanos(pair[0], pair[1]))
                    .collect();
                recorder.gaps.extend(gaps);
            }
        }
        Ok(Err(kind)) => *recorder.errors.entry(kind).or_default() += 1,
        Err(_) => *recorder.errors.entry("timeout".to_owned()).or_default() += 1,
    }
}

// ------------------------------------------------------------------------ the two modes

/// Limits how late a sleeping thread may wake (Linux's default slack is 50 us).
fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK only changes the calling thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// A one-shot timer with microsecond precision that the runtime waits on like any socket
/// (a Linux timerfd): the runtime's own timer has millisecond granularity, and a pacing
/// thread of its own would add a cross-thread wake-up to every send.
struct Ticker {
    fd: AsyncFd<OwnedFd>,
}

impl Ticker {
    fn new() -> std::io::Result<Ticker> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new fd we own.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` is a valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns `fd`, which stays open and unchanged until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|err| std::io::Error::other(err.to_string()))?;
        Ok(Ticker { fd })
    }

    async fn sleep_until(&self, due: Instant) -> std::io::Result<()> {
        let Some(wait) = due
            .checked_duration_since(Instant::now())
            .filter(|w| !w.is_zero())
        else {
            return Ok(());
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: wait.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(wait.subsec_nanos() as i32),
            },
        };
        // SAFETY: `spec` outlives the call; the old value is not asked for (null).
        let set =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if set < 0 {
            return Err(std::io::Error::last_os_error());
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let expired = guard.try_io(|fd| {
                let mut count = [0u8; 8];
                // SAFETY: reads at most 8 bytes into `count`, which is 8 bytes long.
                let read =
                    unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
                if read < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match expired {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

/// Runs the open-loop timetable; returns when the measured load began.
fn run_open(runtime: &Runtime, ctx: Arc<Ctx>, plan: OpenPlan) -> Result<Instant, String> {
    tighten_timer_slack();
    let start = Instant::now() + Duration::from_millis(20);
    let measured_from = plan.item(plan.warmup_total()).offset;
    runtime.block_on(async {
        let ticker = Ticker::new().map_err(|err| format!("cannot create a timerfd: {err}"))?;
        let mut requests = JoinSet::new();
        for j in 0..plan.total() {
            let item = plan.item(j);
            let due = start + item.offset;
            ticker
                .sleep_until(due)
                .await
                .map_err(|err| format!("timerfd: {err}"))?;
            let ctx = ctx.clone();
            let slot = Slot {
                target: item.target,
                measured: item.measured,
                at: item.offset.saturating_sub(measured_from),
            };
            requests.spawn(async move {
                let sent = Instant::now();
                measure(&ctx, slot, due, sent).await;
            });
            while requests.try_join_next().is_some() {}
        }
        while requests.join_next().await.is_some() {}
        Ok::<(), String>(())
    })?;
    Ok(start + measured_from)
}

/// Runs the closed loop; returns when the measured load began.
fn run_closed(runtime: &Runtime, ctx: Arc<Ctx>, plan: ClosedPlan, concurrency: usize) -> Instant {
    let start = Instant::now();
    let measured_from = plan.warmup * plan.targets;
    runtime.block_on(async {
        let mut workers = JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let ctx = ctx.clone();
            workers.spawn(async move {
                while let Some((target, measured)) = plan.phase_at(start.elapsed()) {
                    let sent = Instant::now();
                    let at = sent.saturating_duration_since(start + measured_from);
                    let slot = Slot {
                        target,
                        measured,
                        at,
                    };
                    measure(&ctx, slot, sent, sent).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
    });
    start + measured_from
}

// ------------------------------------------------------------------------ setup and report

fn parse_target(text: &str, path: &str) -> Result<Target, String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| format!("--target {text:?}: expected NAME=URL"))?;
    let url = url.trim_end_matches('/');
    let parse = |path: &str| -> Result<Uri, String> {
        format!("{url}{path}")
            .parse()
            .map_err(|err| format!("--target {text:?}: {err}"))
    };
    let uri = parse(path)?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--target {text:?}: only http:// URLs are supported"
        ));
    }
    Ok(Target {
        name: name.to_owned(),
        url: url.to_owned(),
        uri,
        chat_uri: parse(CHAT_PATH)?,
        responses_uri: parse(RESPONSES_PATH)?,
        recorder: Mutex::default(),
    })
}

fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("--header {text:?}: expected NAME: VALUE"))?;
    let name = HeaderName::try_from(name.trim()).map_err(|err| format!("--header: {err}"))?;
    let value = HeaderValue::try_from(value.trim()).map_err(|err| format!("--header: {err}"))?;
    Ok((name, value))
}

fn default_body(model: &str, stream: bool) -> Value {
    let mut body = json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "How much time does a proxy add to a request?"},
        ],
        "max_tokens": 64,
    });
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Figures of some samples: counts, errors by kind, cache hits and success latencies.
fn sample_figures<'a>(samples: impl Iterator<Item = &'a Sample>) -> Value {
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
fn timeline(samples: &[Sample], width: Duration) -> Vec<Value> {
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

fn target_report(
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

fn run(cli: Cli) -> Result<Value, String> {
    if !(cli.rate.is_finite() && cli.rate > 0.0) {
        return Err("--rate must be a positive number".to_owned());
    }
    if !(cli.duration.is_finite() && cli.duration > 0.0) {
        return Err("--duration must be a positive number".to_owned());
    }
    let targets = cli
        .targets
        .iter()
        .map(|text| parse_target(text, &cli.path))
        .collect::<Result<Vec<_>, _>>()?;
    let headers = cli
        .headers
        .iter()
        .map(|text| parse_header(text))
        .collect::<Result<Vec<_>, _>>()?;
    let mix = cli.mix.as_deref().map(Mix::parse).transpose()?;
    if mix.is_some() && (cli.body.is_some() || cli.stream) {
        return Err("--mix chooses the bodies itself: drop --body and --stream".to_owned());
    }
    if cli.bucket_ms.contains(&0) {
        return Err("--bucket-ms must be positive".to_owned());
    }
    let body = match &cli.body {
        Some(text) => {
            serde_json::from_str::<Value>(text).map_err(|err| format!("--body: {err}"))?;
            Bytes::from(text.clone())
        }
        None => Bytes::from(default_body(&cli.model, cli.stream).to_string()),
    };
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    }
    .map_err(|err| format!("cannot start the runtime: {err}"))?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = {
        let _entered = runtime.enter();
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(usize::MAX)
            .build(connector)
    };
    let ctx = Arc::new(Ctx {
        client,
        targets,
        body,
        headers,
        stream: cli.stream,
        timeout: Duration::from_millis(cli.timeout_ms),
        model: cli.model.clone(),
        keep_samples: mix.is_some() || !cli.bucket_ms.is_empty(),
        mix,
        repeat_pool: cli.repeat_pool.max(1),
        sequence: AtomicU64::new(0),
    });
    let count = ctx.targets.len();
    let (measured_start, measured_seconds, plan) = match cli.mode {
        Mode::Open => {
            let plan = OpenPlan::new(cli.rate, cli.duration, cli.slice_ms, cli.warmup_ms, count);
            let began = run_open(&runtime, ctx.clone(), plan)?;
            let described = json!({
                "rate": cli.rate,
                "per_slice": plan.per_slice,
                "slices_per_target": plan.slices_per_target,
                "scheduled_per_target": plan.measured_per_target(),
            });
            (began, plan.measured_seconds(), described)
        }
        Mode::Closed => {
            let plan = ClosedPlan::new(cli.duration, cli.slice_ms, cli.warmup_ms, count);
            let began = run_closed(&runtime, ctx.clone(), plan, cli.concurrency);
            let described = json!({
                "concurrency": cli.concurrency,
                "slices_per_target": plan.slices_per_target,
            });
            (began, plan.measured_seconds(), described)
        }
    };
    let last_done = ctx
        .targets
        .iter()
        .filter_map(|target| target.recorder().last_done)
        .max()
        .unwrap_or(measured_start);
    let wall = last_done
        .saturating_duration_since(measured_start)
        .as_secs_f64();
    // Open loop: each target's share of the measured wall time (its answers may trail its
    // timetable). Closed loop: its slices.
    let share = match cli.mode {
        Mode::Open => wall / count as f64,
        Mode::Closed => measured_seconds,
    };
    let reports: Vec<Value> = ctx
        .targets
        .iter()
        .map(|target| {
            target_report(
                target,
                measured_seconds,
                share,
                ctx.mix.as_ref(),
                &cli.bucket_ms,
            )
        })
        .collect();
    let mut result = json!({
        "mode": match cli.mode { Mode::Open => "open", Mode::Closed => "closed" },
        "stream": cli.stream,
        "duration_s": cli.duration,
        "slice_ms": cli.slice_ms,
        "warmup_ms": cli.warmup_ms,
        "threads": cli.threads,
        "plan": plan,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "targets": reports,
    });
    if let Some(mix) = &ctx.mix {
        result["mix"] = mix.describe();
        result["repeat_pool"] = json!(ctx.repeat_pool);
    }
    Ok(result)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
