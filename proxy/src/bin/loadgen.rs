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

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
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
}

struct Target {
    name: String,
    url: String,
    uri: Uri,
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
}

/// What one successful exchange showed.
struct Exchange {
    /// Arrival of each complete SSE event (streams only).
    events: Vec<Instant>,
    cache_hit: bool,
}

async fn exchange(ctx: &Ctx, target: usize) -> Result<Exchange, String> {
    let mut request = Request::post(ctx.targets[target].uri.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(ctx.body.clone()))
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
    let mut scanner = EventScanner::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| "body".to_owned())?;
        if let Some(data) = frame.data_ref()
            && ctx.stream
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
    if ctx.stream && !scanner.done {
        return Err("stream_incomplete".to_owned());
    }
    Ok(Exchange { events, cache_hit })
}

/// Counts complete SSE events (a blank line ends one) across body frames, and notices
/// `data: [DONE]`.
#[derive(Default)]
struct EventScanner {
    /// The last byte seen was a newline (carriage returns are ignored).
    after_newline: bool,
    /// The last bytes seen, to find `[DONE]` split across frames.
    tail: Vec<u8>,
    done: bool,
}

impl EventScanner {
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
            self.done = self.tail.windows(6).any(|window| window == b"[DONE]");
            let keep = self.tail.len().saturating_sub(5);
            self.tail.drain(..keep);
        }
        complete
    }
}

fn elapsed_nanos(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_nanos() as u64
}

/// Sends one request and records it against `target`; latency runs from `start`.
async fn measure(ctx: &Ctx, target: usize, start: Instant, sent: Instant, measured: bool) {
    let result = tokio::time::timeout(ctx.timeout, exchange(ctx, target)).await;
    let finished = Instant::now();
    if !measured {
        return;
    }
    let mut recorder = ctx.targets[target].recorder();
    recorder.last_done = Some(
        recorder
            .last_done
            .map_or(finished, |last| last.max(finished)),
    );
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
            requests.spawn(async move {
                let sent = Instant::now();
                measure(&ctx, item.target, due, sent, item.measured).await;
            });
            while requests.try_join_next().is_some() {}
        }
        while requests.join_next().await.is_some() {}
        Ok::<(), String>(())
    })?;
    Ok(start + plan.item(plan.warmup_total()).offset)
}

/// Runs the closed loop; returns when the measured load began.
fn run_closed(runtime: &Runtime, ctx: Arc<Ctx>, plan: ClosedPlan, concurrency: usize) -> Instant {
    let start = Instant::now();
    runtime.block_on(async {
        let mut workers = JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let ctx = ctx.clone();
            workers.spawn(async move {
                while let Some((target, measured)) = plan.phase_at(start.elapsed()) {
                    let sent = Instant::now();
                    measure(&ctx, target, sent, sent, measured).await;
                }
            });
        }
        while workers.join_next().await.is_some() {}
    });
    start + plan.warmup * plan.targets
}

// ------------------------------------------------------------------------ setup and report

fn parse_target(text: &str, path: &str) -> Result<Target, String> {
    let (name, url) = text
        .split_once('=')
        .ok_or_else(|| format!("--target {text:?}: expected NAME=URL"))?;
    let url = url.trim_end_matches('/');
    let uri: Uri = format!("{url}{path}")
        .parse()
        .map_err(|err| format!("--target {text:?}: {err}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "--target {text:?}: only http:// URLs are supported"
        ));
    }
    Ok(Target {
        name: name.to_owned(),
        url: url.to_owned(),
        uri,
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

fn target_report(target: &Target, measured_seconds: f64, wall_share: f64) -> Value {
    let mut recorder = target.recorder();
    let errors: u64 = recorder.errors.values().sum();
    let achieved = if wall_share > 0.0 {
        recorder.ok as f64 / wall_share
    } else {
        0.0
    };
    let stream_figures = !recorder.ttfts.is_empty();
    json!({
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
    })
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
        .map(|target| target_report(target, measured_seconds, share))
        .collect();
    Ok(json!({
        "mode": match cli.mode { Mode::Open => "open", Mode::Closed => "closed" },
        "stream": cli.stream,
        "duration_s": cli.duration,
        "slice_ms": cli.slice_ms,
        "warmup_ms": cli.warmup_ms,
        "threads": cli.threads,
        "plan": plan,
        "wall_s": (wall * 1000.0).round() / 1000.0,
        "targets": reports,
    }))
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
    fn targets_and_headers_parse() {
        let target = parse_target("direct=http://127.0.0.1:9/", "/v1/chat/completions").unwrap();
        assert_eq!(target.name, "direct");
        assert_eq!(target.uri, "http://127.0.0.1:9/v1/chat/completions");
        assert!(parse_target("nameless", "/").is_err());
        assert!(parse_target("tls=https://example.com", "/").is_err());
        let (name, value) = parse_header("Cache-Control: no-cache").unwrap();
        assert_eq!(name, "cache-control");
        assert_eq!(value, "no-cache");
    }
}
