//! The stream relay: one state machine that reads an upstream event stream
//! chunk by chunk, hands each complete event to a [`StreamInspector`], and
//! sends the client what the inspector wrote, as soon as a chunk's events are
//! in. It owns what every stream has in common: the end of the upstream body,
//! its failures (idle, total timeout, a broken connection, a line that is not
//! SSE), the error event that ends a broken stream on an event boundary, and
//! the outcome, health and cache reports of [`StreamTap`].

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::stream;

use crate::gateway::caching::StreamCapture;
use crate::gateway::routing::InFlight;
use crate::gateway::upstream::{BodyChunk, UpstreamBody, error_chain};
use crate::shared::error::ApiError;
use crate::shared::usage::Usage;
use crate::telemetry::handle::OutcomeHandle;
use crate::wire::sse::{RawEvent, SseParser};

/// What one kind of stream does with the upstream's events.
pub trait StreamInspector: Send + 'static {
    /// What the client gets before the upstream's first chunk.
    fn opening(&mut self) -> Bytes {
        Bytes::new()
    }

    /// One complete upstream event. A stray one (a line that is no SSE) never
    /// gets here: the relay ends the stream on it.
    fn on_event(&mut self, event: RawEvent, turn: &mut Turn<'_>);

    /// The upstream closed its body properly, and the answer has neither
    /// completed nor failed: complete it (writing what that takes) or fail it.
    fn on_end(&mut self, turn: &mut Turn<'_>);

    /// The event that ends a broken stream, in the stream's own format.
    fn error_event(&mut self, error: &ApiError) -> Bytes;
}

/// Who is streaming, for log lines about a stream that went wrong.
#[derive(Clone, Debug)]
pub struct StreamContext {
    pub request_id: String,
    pub upstream: String,
}

/// What an inspector may do while it looks at the events of one chunk.
pub struct Turn<'a> {
    out: BytesMut,
    deltas: u64,
    /// Nothing more of this stream goes to the client.
    ended: bool,
    failure: Option<ApiError>,
    /// The last two bytes the client had before this turn.
    tail: [u8; 2],
    tap: &'a mut StreamTap,
}

impl Turn<'_> {
    /// Sends these bytes to the client.
    pub fn forward(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Makes what is forwarded next start on an event boundary.
    pub fn boundary(&mut self) {
        if &tail_after(self.tail, &self.out) != b"\n\n" {
            self.out.extend_from_slice(b"\n\n");
        }
    }

    /// Content deltas the client is sent.
    pub fn count_deltas(&mut self, deltas: u64) {
        self.deltas += deltas;
    }

    pub fn set_usage(&mut self, usage: Usage) {
        self.tap.outcome.set_usage(usage);
    }

    /// The stream carried a whole answer (`[DONE]`, `response.completed`).
    pub fn complete(&mut self) {
        self.tap.completed = true;
    }

    /// The rest of the chunk, and of the stream, is not looked at.
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// The upstream reported an error in its stream, which is relayed as it
    /// came: the request counts as failed, the stream goes on.
    pub fn upstream_failed(&mut self, error: ApiError) {
        log_failure(&self.tap.context, &error, "error event from upstream");
        self.tap.failed(&error);
    }

    /// Ends the stream here with the error event for `error`.
    pub fn fail(&mut self, error: ApiError, cause: &str) {
        log_failure(&self.tap.context, &error, cause);
        self.failure.get_or_insert(error);
        self.ended = true;
    }

    /// The upstream sent something that is not a well-formed event of its
    /// stream (a chunk that is not JSON, a line that is not SSE).
    pub fn malformed(&mut self, what: &'static str) {
        let error = ApiError::UpstreamMalformedStream {
            upstream: self.tap.context.upstream.clone(),
            what,
        };
        self.fail(error, what);
    }

    /// The upstream closed its stream properly, but before the answer was
    /// complete (no `[DONE]` or finish chunk, no `response.completed`).
    pub fn truncated(&mut self) {
        let error = ApiError::UpstreamTruncated {
            upstream: self.tap.context.upstream.clone(),
        };
        self.fail(error, "stream ended early");
    }
}

fn log_failure(context: &StreamContext, error: &ApiError, cause: &str) {
    tracing::warn!(
        request_id = %context.request_id,
        upstream = %context.upstream,
        code = %error.code().unwrap_or(error.error_type()),
        cause,
        "upstream stream ended abnormally"
    );
}

/// What a turn leaves once its borrow of the tap is over.
struct Left {
    out: BytesMut,
    deltas: u64,
    ended: bool,
    failure: Option<ApiError>,
}

fn take(turn: Turn<'_>) -> Left {
    Left {
        out: turn.out,
        deltas: turn.deltas,
        ended: turn.ended,
        failure: turn.failure,
    }
}

/// The last two bytes the client will have once `out` is sent after `tail`.
fn tail_after(tail: [u8; 2], out: &[u8]) -> [u8; 2] {
    match out {
        [] => tail,
        [only] => [tail[1], *only],
        [.., before_last, last] => [*before_last, *last],
    }
}

/// What a relayed stream reports about itself: to the request's outcome, to
/// the upstream's health when the stream breaks, and to the cache once it
/// completed.
pub struct StreamTap {
    outcome: OutcomeHandle,
    context: StreamContext,
    /// Held until the stream ends: the upstream has a request in flight until then.
    in_flight: InFlight,
    pub capture: Option<StreamCapture>,
    completed: bool,
    failed: bool,
}

impl StreamTap {
    pub fn new(outcome: OutcomeHandle, context: StreamContext, in_flight: InFlight) -> Self {
        StreamTap {
            outcome,
            context,
            in_flight,
            capture: None,
            completed: false,
            failed: false,
        }
    }

    fn sent(&mut self, bytes: &Bytes, content_deltas: u64, upstream_waited: Duration) {
        self.outcome
            .stream_progress(content_deltas, upstream_waited);
        if let Some(capture) = &mut self.capture {
            capture.record(bytes);
        }
    }

    fn failed(&mut self, error: &ApiError) {
        self.failed = true;
        self.outcome.stream_failed(
            error.status().as_u16(),
            error.code().unwrap_or(error.error_type()),
        );
        self.in_flight.record_failure();
    }

    /// Called before the bytes that complete the answer go out: a client may
    /// hang up as soon as it has read them (the OpenAI SDK stops at `[DONE]`),
    /// and by then the answer must be stored and counted as delivered.
    async fn deliver(&mut self) {
        let capture = self.capture.take();
        if !self.completed || self.failed {
            return;
        }
        self.outcome.stream_delivered();
        if let Some(capture) = capture {
            capture.store(self.outcome.produced_usage()).await;
        }
    }

    /// Reads what the upstream still sends after the answer completed (usually
    /// just the end of its body), so its request ends normally rather than
    /// being cut; bounded, since nothing of it goes to the client.
    async fn drain(&self, body: &mut UpstreamBody) {
        if !self.completed {
            return;
        }
        let _ = tokio::time::timeout(DRAIN_LIMIT, async {
            while let BodyChunk::Data(_) = body.next_chunk().await {}
        })
        .await;
    }
}

/// How long a completed stream's upstream may take to close its body.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// The client's body for an upstream event stream, as `inspector` makes it.
/// If the stream breaks off or stalls, one error event in the stream's own
/// format ends it, so the client learns why instead of seeing a silent
/// truncation.
pub fn relay_body(body: UpstreamBody, inspector: impl StreamInspector, tap: StreamTap) -> Body {
    let relay = Relay {
        parser: SseParser::with_limit(body.max_event_bytes),
        body,
        inspector,
        tap,
        ended: false,
        tail: [b'\n'; 2],
        deltas: 0,
        opened: false,
    };
    Body::from_stream(stream::unfold(relay, |mut relay| async move {
        let bytes = relay.next_bytes().await?;
        Some((Ok::<_, Infallible>(bytes), relay))
    }))
}

struct Relay<I> {
    body: UpstreamBody,
    parser: SseParser,
    inspector: I,
    tap: StreamTap,
    ended: bool,
    /// The last two bytes sent, to know whether an appended error event would
    /// start on an event boundary or glue onto a half-sent line.
    tail: [u8; 2],
    /// Content deltas looked at but not yet reported as sent.
    deltas: u64,
    opened: bool,
}

impl<I: StreamInspector> Relay<I> {
    async fn next_bytes(&mut self) -> Option<Bytes> {
        if !std::mem::replace(&mut self.opened, true) {
            let opening = self.inspector.opening();
            if !opening.is_empty() {
                self.send(&opening, Duration::ZERO);
                return Some(opening);
            }
        }
        while !self.ended {
            let chunk = self.body.next_chunk().await;
            let out = match chunk {
                BodyChunk::Data(data) => {
                    let events = self.parser.push_raw(&data);
                    let mut out = self.turn(events, false);
                    if self.parser.overflowed() && !self.ended && !self.tap.completed {
                        self.overflowed(&mut out);
                    }
                    out
                }
                BodyChunk::End => {
                    self.ended = true;
                    let events = self.parser.finish_raw();
                    self.turn(events, true)
                }
                broken => {
                    self.ended = true;
                    self.broken(broken)
                }
            };
            // Once the answer is complete nothing more goes to the client.
            if self.tap.completed {
                self.ended = true;
            }
            if !out.is_empty() {
                let out = out.freeze();
                let waited = self.body.take_waited();
                self.send(&out, waited);
                if self.ended {
                    self.tap.deliver().await;
                }
                return Some(out);
            }
        }
        self.tap.deliver().await;
        self.tap.drain(&mut self.body).await;
        None
    }

    fn send(&mut self, out: &Bytes, upstream_waited: Duration) {
        self.tail = tail_after(self.tail, out);
        let deltas = std::mem::take(&mut self.deltas);
        self.tap.sent(out, deltas, upstream_waited);
    }

    /// The events of one chunk (the last one when `at_end`, the upstream
    /// having closed its body), through the inspector; what to send for them.
    fn turn(&mut self, events: Vec<RawEvent>, at_end: bool) -> BytesMut {
        let mut turn = Turn {
            out: BytesMut::new(),
            deltas: 0,
            ended: false,
            failure: None,
            tail: self.tail,
            tap: &mut self.tap,
        };
        for event in events {
            if turn.ended {
                break;
            }
            if event.stray {
                turn.malformed("a line that is not server-sent events");
                break;
            }
            self.inspector.on_event(event, &mut turn);
        }
        let left = take(turn);
        let (mut out, failure) = self.close(left);
        if let Some(failure) = failure {
            self.fail(&mut out, &failure);
        }
        if at_end && !(self.tap.completed || self.tap.failed) {
            let mut turn = Turn {
                out,
                deltas: 0,
                ended: false,
                failure: None,
                tail: self.tail,
                tap: &mut self.tap,
            };
            self.inspector.on_end(&mut turn);
            let left = take(turn);
            let (end_out, failure) = self.close(left);
            out = end_out;
            if let Some(failure) = failure {
                self.fail(&mut out, &failure);
            }
        }
        out
    }

    /// Keeps what a turn counted; its bytes, and the failure that ends the stream.
    fn close(&mut self, left: Left) -> (BytesMut, Option<ApiError>) {
        self.deltas += left.deltas;
        self.ended |= left.ended;
        (left.out, left.failure)
    }

    /// Appends the failure's error event to `out` (on an event boundary) and
    /// ends the stream.
    fn fail(&mut self, out: &mut BytesMut, failure: &ApiError) {
        self.ended = true;
        self.tap.failed(failure);
        if &tail_after(self.tail, out) != b"\n\n" {
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(&self.inspector.error_event(failure));
    }

    /// An event outgrew the upstream's `max_event_bytes`: the events before it
    /// went out, the error event ends the stream (the parser dropped the rest).
    fn overflowed(&mut self, out: &mut BytesMut) {
        let failure = ApiError::UpstreamEventTooLarge {
            upstream: self.tap.context.upstream.clone(),
            limit: self.body.max_event_bytes,
        };
        log_failure(&self.tap.context, &failure, "max_event_bytes");
        self.fail(out, &failure);
    }

    /// The upstream body broke off: the error event is all that is sent.
    fn broken(&mut self, chunk: BodyChunk) -> BytesMut {
        let upstream = self.tap.context.upstream.clone();
        let (failure, cause) = match chunk {
            BodyChunk::IdleTimeout => (
                ApiError::UpstreamStalled { upstream },
                "idle timeout".to_owned(),
            ),
            BodyChunk::TimedOut => (
                ApiError::UpstreamOvertime { upstream },
                "total timeout".to_owned(),
            ),
            BodyChunk::Failed(err) => (ApiError::UpstreamStreamCut { upstream }, error_chain(&err)),
            BodyChunk::Data(_) | BodyChunk::End => return BytesMut::new(),
        };
        log_failure(&self.tap.context, &failure, &cause);
        // Half an event is left out: a client would have to parse it (the
        // OpenAI SDK fails on it with a JSON error instead of reading the error
        // event after it).
        let unfinished = self.parser.take_unfinished();
        if !unfinished.is_empty() {
            tracing::debug!(
                request_id = %self.tap.context.request_id,
                bytes = unfinished.len(),
                "the unfinished last event of a broken stream is not relayed"
            );
        }
        let mut out = BytesMut::new();
        self.fail(&mut out, &failure);
        out
    }
}
