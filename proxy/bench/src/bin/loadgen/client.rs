//! One measured request: the HTTP client, the stream event scanner and the
//! recorder of samples.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::plan::*;

#[derive(Default)]
pub(crate) struct Recorder {
    /// Of successful requests, nanoseconds: from the scheduled time (open) or the send (closed).
    pub(crate) latencies: Vec<u64>,
    /// How late each request left, against its scheduled time (open loop).
    pub(crate) send_lags: Vec<u64>,
    pub(crate) ttfts: Vec<u64>,
    pub(crate) gaps: Vec<u64>,
    pub(crate) ok: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) cache_hits: u64,
    pub(crate) last_done: Option<Instant>,
    /// Every measured request, when a timeline or per-kind figures are wanted.
    pub(crate) samples: Vec<Sample>,
}

/// One measured request, for timelines and per-kind figures.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    /// When it was due, from the start of the measured load.
    pub(crate) at: Duration,
    /// Nanoseconds, for a success.
    pub(crate) latency: u64,
    pub(crate) kind: Option<Kind>,
    /// None for a success.
    pub(crate) error: Option<String>,
    pub(crate) cache_hit: bool,
}

pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) uri: Uri,
    pub(crate) chat_uri: Uri,
    pub(crate) responses_uri: Uri,
    pub(crate) recorder: Mutex<Recorder>,
}

impl Target {
    pub(crate) fn recorder(&self) -> MutexGuard<'_, Recorder> {
        self.recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) struct Ctx {
    pub(crate) client: Client<HttpConnector, Full<Bytes>>,
    pub(crate) targets: Vec<Target>,
    pub(crate) body: Bytes,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) stream: bool,
    pub(crate) timeout: Duration,
    pub(crate) model: String,
    pub(crate) mix: Option<Mix>,
    pub(crate) repeat_pool: u64,
    /// Keep a sample per measured request (timelines, per-kind figures).
    pub(crate) keep_samples: bool,
    /// Requests made so far: the next one's sequence number.
    pub(crate) sequence: AtomicU64,
}

/// What one request sends, and how its end is recognised.
pub(crate) struct Shot {
    pub(crate) uri: Uri,
    pub(crate) body: Bytes,
    pub(crate) stream: bool,
    pub(crate) done: &'static [u8],
    pub(crate) kind: Option<Kind>,
}

impl Ctx {
    /// The next request to `target`: the one body, or the next kind of the mix.
    pub(crate) fn shot(&self, target: usize) -> Shot {
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
pub(crate) struct Exchange {
    /// Arrival of each complete SSE event (streams only).
    pub(crate) events: Vec<Instant>,
    pub(crate) cache_hit: bool,
}

pub(crate) async fn exchange(ctx: &Ctx, shot: Shot) -> Result<Exchange, String> {
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
pub(crate) struct EventScanner {
    /// The last byte seen was a newline (carriage returns are ignored).
    pub(crate) after_newline: bool,
    /// The last bytes seen, to find the marker split across frames.
    pub(crate) tail: Vec<u8>,
    pub(crate) marker: &'static [u8],
    pub(crate) done: bool,
}

impl Default for EventScanner {
    fn default() -> Self {
        EventScanner::until(CHAT_DONE)
    }
}

impl EventScanner {
    pub(crate) fn until(marker: &'static [u8]) -> Self {
        EventScanner {
            after_newline: false,
            tail: Vec::new(),
            marker,
            done: false,
        }
    }

    pub(crate) fn feed(&mut self, data: &[u8]) -> usize {
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

pub(crate) fn elapsed_nanos(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_nanos() as u64
}

/// When a request was due or sent, against the start of the measured load; whether it is
/// measured at all.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) target: usize,
    pub(crate) measured: bool,
    pub(crate) at: Duration,
}

/// Sends one request and records it against its target; latency runs from `start`.
pub(crate) async fn measure(ctx: &Ctx, slot: Slot, start: Instant, sent: Instant) {
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
