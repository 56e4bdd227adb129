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

mod client;
mod pacing;
mod plan;
mod report;
mod setup;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::client::*;
use crate::pacing::*;
use crate::plan::*;
use crate::report::*;
use crate::setup::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    Open,
    Closed,
}

/// Load generator for the switchyard benchmark.
#[derive(Parser, Debug)]
pub(crate) struct Cli {
    /// open: a fixed request rate; closed: a fixed number of concurrent requests.
    #[arg(long, value_enum, default_value = "open")]
    pub(crate) mode: Mode,
    /// NAME=URL of a target (URL: scheme, host and port); repeat it to interleave targets.
    #[arg(long = "target", required = true)]
    pub(crate) targets: Vec<String>,
    /// The path requested on every target.
    #[arg(long, default_value = "/v1/chat/completions")]
    pub(crate) path: String,
    /// Requests per second (open loop), across whichever target has the slice.
    #[arg(long, default_value_t = 1000.0)]
    pub(crate) rate: f64,
    /// Concurrent requests (closed loop).
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Measured seconds per target.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Length of one slice: the targets take turns slice by slice.
    #[arg(long, default_value_t = 1000)]
    pub(crate) slice_ms: u64,
    /// Unmeasured load per target before the measured slices.
    #[arg(long, default_value_t = 500)]
    pub(crate) warmup_ms: u64,
    /// A request not answered in full within this long counts as an error.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) timeout_ms: u64,
    /// Ask for SSE streams; record time to first event and the gaps between events.
    #[arg(long)]
    pub(crate) stream: bool,
    /// The model of the default request body.
    #[arg(long, default_value = "bench")]
    pub(crate) model: String,
    /// The request body (JSON) instead of the default small chat request.
    #[arg(long)]
    pub(crate) body: Option<String>,
    /// An extra request header, `NAME: VALUE`; repeatable.
    #[arg(long = "header")]
    pub(crate) headers: Vec<String>,
    /// Client runtime threads (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub(crate) threads: usize,
    /// A mix of request kinds instead of one body: `KIND=WEIGHT,...` with kinds whole, stream,
    /// responses, responses_stream, repeat, repeat_stream (e.g. `whole=40,stream=30,repeat=30`).
    #[arg(long)]
    pub(crate) mix: Option<String>,
    /// Distinct texts the `repeat` kinds draw from.
    #[arg(long, default_value_t = 32)]
    pub(crate) repeat_pool: u64,
    /// Report a timeline with buckets this many milliseconds long; repeatable.
    #[arg(long = "bucket-ms")]
    pub(crate) bucket_ms: Vec<u64>,
}

// ------------------------------------------------------------------------ the mix

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
mod tests;
