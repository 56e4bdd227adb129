//! Server-sent-event streams towards the client: the relay of an upstream
//! stream (event by event, bytes unchanged), and the Responses stream
//! translated from a chat stream. Both forward each upstream chunk's complete
//! events as soon as they arrive, and watch them for the request's outcome:
//! content deltas, usage, completion, failure.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::stream;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::caching::StreamCapture;
use crate::error::error_body;
use crate::routing::InFlight;
use crate::tracking::{OutcomeHandle, Usage};
use crate::translate::{ResponsesStreamTranslator, SseEvent, sse_frame};
use crate::upstream::{BodyChunk, UpstreamBody, error_chain};

/// One dispatched SSE event. `event` is `None` for plain `data:` events
/// (everything the chat stream sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    pub event: Option<String>,
    pub data: String,
}

/// An event as received: its exact bytes (through the blank line that ends
/// it), and what it says. `message` is `None` for comments and stray blank lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    pub raw: Bytes,
    pub message: Option<SseMessage>,
    /// It held a line that is no SSE field (`data`, `event`, `id`, `retry`) nor
    /// a comment: the upstream is not speaking server-sent events.
    pub stray: bool,
}

/// Incremental SSE parser: chunks may split lines, `\r\n` pairs or UTF-8
/// sequences anywhere, so bytes are only decoded once a whole line is present.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no newline, so a long line that
    /// arrives in many small chunks is not rescanned from its start each time.
    scanned: usize,
    event: Option<String>,
    data_lines: Vec<String>,
    /// The complete lines of the event being read, as received.
    raw: Vec<u8>,
    /// The event being read has a stray line (see `RawEvent::stray`).
    stray: bool,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        messages(self.push_raw(chunk))
    }

    /// Flushes what a stream that ended without a final blank line left behind.
    pub fn finish(&mut self) -> Vec<SseMessage> {
        messages(self.finish_raw())
    }

    pub fn push_raw(&mut self, chunk: &[u8]) -> Vec<RawEvent> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut line_start = 0;
        let mut search_from = self.scanned;
        while let Some(offset) = self.pending[search_from..].iter().position(|&b| b == b'\n') {
            let line_end = search_from + offset;
            self.raw
                .extend_from_slice(&self.pending[line_start..=line_end]);
            let text = &self.pending[line_start..line_end];
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            let line = String::from_utf8_lossy(text).into_owned();
            let message = self.take_line(&line);
            if line.is_empty() {
                events.push(RawEvent {
                    raw: Bytes::from(std::mem::take(&mut self.raw)),
                    message,
                    stray: std::mem::take(&mut self.stray),
                });
            }
            line_start = line_end + 1;
            search_from = line_start;
        }
        self.pending.drain(..line_start);
        self.scanned = self.pending.len();
        events
    }

    pub fn finish_raw(&mut self) -> Vec<RawEvent> {
        let rest = std::mem::take(&mut self.pending);
        self.scanned = 0;
        if !rest.is_empty() {
            let text = rest.strip_suffix(b"\r").unwrap_or(&rest);
            let line = String::from_utf8_lossy(text).into_owned();
            self.take_line(&line);
            self.raw.extend_from_slice(&rest);
        }
        let message = self.take_line("");
        if self.raw.is_empty() {
            return Vec::new();
        }
        vec![RawEvent {
            raw: Bytes::from(std::mem::take(&mut self.raw)),
            message,
            stray: std::mem::take(&mut self.stray),
        }]
    }

    /// The bytes of an event that has not ended yet, discarding its state.
    pub fn take_unfinished(&mut self) -> Vec<u8> {
        let mut unfinished = std::mem::take(&mut self.raw);
        unfinished.append(&mut self.pending);
        self.scanned = 0;
        self.event = None;
        self.data_lines.clear();
        self.stray = false;
        unfinished
    }

    fn take_line(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            let event = self.event.take();
            if self.data_lines.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data_lines).join("\n");
            return Some(SseMessage { event, data });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => self.data_lines.push(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "id" | "retry" => {}
            _ => self.stray = true,
        }
        None
    }
}

fn messages(events: Vec<RawEvent>) -> Vec<SseMessage> {
    events
        .into_iter()
        .filter_map(|event| event.message)
        .collect()
}

/// Who is streaming, for log lines about a stream that went wrong.
#[derive(Clone, Debug)]
pub struct StreamContext {
    pub request_id: String,
    pub upstream: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFlavor {
    Chat,
    Responses,
}

/// Why a stream could not be relayed to its end, as told to the client.
struct StreamFailure {
    /// What the request counts as in its outcome (the client already got a 200).
    status: u16,
    code: String,
    message: String,
}

impl StreamFailure {
    /// `None` for chunks that are not failures.
    fn from_chunk(chunk: BodyChunk, context: &StreamContext) -> Option<Self> {
        let (status, code, message, cause) = match chunk {
            BodyChunk::Data(_) | BodyChunk::End => return None,
            BodyChunk::IdleTimeout => (
                504,
                "upstream_timeout",
                format!("Upstream \"{}\" stopped sending data", context.upstream),
                "idle timeout".to_owned(),
            ),
            BodyChunk::TimedOut => (
                504,
                "upstream_timeout",
                format!("Upstream \"{}\" did not finish in time", context.upstream),
                "total timeout".to_owned(),
            ),
            BodyChunk::Failed(err) => (
                502,
                "upstream_disconnected",
                format!("Upstream \"{}\" closed the stream early", context.upstream),
                error_chain(&err),
            ),
        };
        let failure = StreamFailure {
            status,
            code: code.to_owned(),
            message,
        };
        failure.log(context, &cause);
        Some(failure)
    }

    /// The upstream sent something that is not a well-formed event of its
    /// stream (a chunk that is not JSON, a line that is not SSE).
    fn malformed(context: &StreamContext, what: &str) -> Self {
        let failure = StreamFailure {
            status: 502,
            code: "upstream_bad_response".to_owned(),
            message: format!("Upstream \"{}\" sent {what}", context.upstream),
        };
        failure.log(context, what);
        failure
    }

    /// The upstream closed its stream properly, but before the answer was
    /// complete (no `[DONE]` or finish chunk, no `response.completed`).
    fn truncated(context: &StreamContext) -> Self {
        let failure = StreamFailure {
            status: 502,
            code: "upstream_truncated".to_owned(),
            message: format!(
                "Upstream \"{}\" ended the stream before the answer was complete",
                context.upstream
            ),
        };
        failure.log(context, "stream ended early");
        failure
    }

    /// An error the upstream reported inside its stream.
    fn reported(error: &Value) -> Self {
        let text = |field: &str| error.get(field).and_then(Value::as_str).map(str::to_owned);
        StreamFailure {
            status: 502,
            code: text("code").unwrap_or_else(|| "upstream_error".to_owned()),
            message: text("message").unwrap_or_else(|| "Upstream stream failed".to_owned()),
        }
    }

    fn log(&self, context: &StreamContext, cause: &str) {
        tracing::warn!(
            request_id = %context.request_id,
            upstream = %context.upstream,
            code = %self.code,
            cause,
            "upstream stream ended abnormally"
        );
    }

    fn frame(&self, flavor: StreamFlavor) -> String {
        match flavor {
            StreamFlavor::Chat => {
                let body = error_body(&self.message, "upstream_error", None, Some(&self.code));
                format!("data: {body}\n\n")
            }
            StreamFlavor::Responses => {
                let body = json!({
                    "type": "error",
                    "code": self.code,
                    "message": self.message,
                    "param": null,
                });
                format!("event: error\ndata: {body}\n\n")
            }
        }
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

    fn failed(&mut self, failure: &StreamFailure) {
        self.failed = true;
        self.outcome.stream_failed(failure.status, &failure.code);
        self.in_flight.record_failure();
    }

    /// The stream carried a whole answer (`[DONE]`, `response.completed`).
    fn completed(&mut self) {
        self.completed = true;
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

/// Options of a relayed (not translated) stream.
pub struct Relay {
    pub flavor: StreamFlavor,
    /// The proxy asked for `include_usage` on the client's behalf, so the
    /// usage-only chunk is not the client's to see.
    pub strip_usage: bool,
}

/// Relays an upstream event stream event by event, bytes unchanged (except a
/// usage chunk the client did not ask for). If it breaks off or stalls, one
/// error event in the stream's own format is appended so the client learns why
/// it ended instead of seeing a silent truncation.
pub fn passthrough_body(body: UpstreamBody, relay: Relay, tap: StreamTap) -> Body {
    let relay = Passthrough {
        body,
        parser: SseParser::default(),
        relay,
        tap,
        ended: false,
        tail: [b'\n'; 2],
        finish_seen: false,
    };
    Body::from_stream(stream::unfold(relay, |mut relay| async move {
        let bytes = relay.next_bytes().await?;
        Some((Ok::<_, Infallible>(bytes), relay))
    }))
}

struct Passthrough {
    body: UpstreamBody,
    parser: SseParser,
    relay: Relay,
    tap: StreamTap,
    ended: bool,
    /// The last two bytes relayed, to know whether an appended error event would
    /// start on an event boundary or glue onto a half-sent line.
    tail: [u8; 2],
    /// A chat chunk with a `finish_reason` went by.
    finish_seen: bool,
}

/// What to do with one upstream event.
enum Verdict {
    /// Relay it; it carries this many content deltas.
    Forward(u64),
    /// Leave it out (a usage chunk the client did not ask for).
    Drop,
    /// End the stream here with an error event instead.
    Fail(StreamFailure),
}

impl Passthrough {
    async fn next_bytes(&mut self) -> Option<Bytes> {
        while !self.ended {
            let chunk = self.body.next_chunk().await;
            let (out, deltas) = match chunk {
                BodyChunk::Data(data) => {
                    let events = self.parser.push_raw(&data);
                    self.select(events)
                }
                BodyChunk::End => {
                    self.ended = true;
                    let events = self.parser.finish_raw();
                    let (mut out, deltas) = self.select(events);
                    self.end_cleanly(&mut out);
                    (out, deltas)
                }
                failed => {
                    self.ended = true;
                    let failure = StreamFailure::from_chunk(failed, &self.tap.context)?;
                    self.tap.failed(&failure);
                    // Half an event is left out: a client would have to parse it
                    // (the OpenAI SDK fails on it with a JSON error instead of
                    // reading the error event after it).
                    let unfinished = self.parser.take_unfinished();
                    if !unfinished.is_empty() {
                        tracing::debug!(
                            request_id = %self.tap.context.request_id,
                            bytes = unfinished.len(),
                            "the unfinished last event of a broken stream is not relayed"
                        );
                    }
                    let mut out = BytesMut::new();
                    if &self.tail != b"\n\n" {
                        out.extend_from_slice(b"\n\n");
                    }
                    out.extend_from_slice(failure.frame(self.relay.flavor).as_bytes());
                    (out, 0)
                }
            };
            // Once the answer is complete nothing more goes to the client.
            if self.tap.completed {
                self.ended = true;
            }
            if !out.is_empty() {
                self.remember_tail(&out);
                let out = out.freeze();
                self.tap.sent(&out, deltas, self.body.take_waited());
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

    /// The bytes to forward from these events, and how many content deltas
    /// they carry. An event the proxy cannot make sense of ends the stream: it
    /// is replaced by an error event and nothing after it is relayed.
    fn select(&mut self, events: Vec<RawEvent>) -> (BytesMut, u64) {
        let mut out = BytesMut::new();
        let mut deltas = 0;
        for event in events {
            let verdict = match &event.message {
                _ if event.stray => Verdict::Fail(StreamFailure::malformed(
                    &self.tap.context,
                    "a line that is not server-sent events",
                )),
                Some(message) => match self.relay.flavor {
                    StreamFlavor::Chat => self.inspect_chat(message),
                    StreamFlavor::Responses => self.inspect_responses(message),
                },
                None => Verdict::Forward(0),
            };
            match verdict {
                Verdict::Forward(carried) => {
                    out.extend_from_slice(&event.raw);
                    deltas += carried;
                }
                Verdict::Drop => {}
                Verdict::Fail(failure) => {
                    self.fail_with(&mut out, &failure);
                    break;
                }
            }
        }
        (out, deltas)
    }

    /// Appends the failure's error event to `out` (on an event boundary) and
    /// ends the stream.
    fn fail_with(&mut self, out: &mut BytesMut, failure: &StreamFailure) {
        self.ended = true;
        self.tap.failed(failure);
        let tail = self.tail_after(out);
        if &tail != b"\n\n" {
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(failure.frame(self.relay.flavor).as_bytes());
    }

    /// The upstream closed its body properly. A chat stream whose finish chunk
    /// came is whole even without `[DONE]`, which is added for the client;
    /// anything else short of its completion is a truncated answer.
    fn end_cleanly(&mut self, out: &mut BytesMut) {
        if self.tap.completed || self.tap.failed {
            return;
        }
        if self.relay.flavor == StreamFlavor::Chat && self.finish_seen {
            if &self.tail_after(out) != b"\n\n" {
                out.extend_from_slice(b"\n\n");
            }
            out.extend_from_slice(b"data: [DONE]\n\n");
            self.tap.completed();
            return;
        }
        let failure = StreamFailure::truncated(&self.tap.context);
        self.fail_with(out, &failure);
    }

    /// The last two bytes the client will have once `out` is sent.
    fn tail_after(&self, out: &[u8]) -> [u8; 2] {
        match out {
            [] => self.tail,
            [only] => [self.tail[1], *only],
            [.., before_last, last] => [*before_last, *last],
        }
    }

    fn inspect_chat(&mut self, message: &SseMessage) -> Verdict {
        let data = message.data.trim();
        if data == "[DONE]" {
            self.tap.completed();
            return Verdict::Forward(0);
        }
        // Relaying a corrupt chunk would only move the failure to the client's
        // parser (the OpenAI SDK raises a JSON error); an error event says what
        // happened.
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            return Verdict::Fail(StreamFailure::malformed(
                &self.tap.context,
                "a stream chunk that is not JSON",
            ));
        };
        if let Some(error) = chunk.get("error").filter(|error| error.is_object()) {
            let failure = StreamFailure::reported(error);
            failure.log(&self.tap.context, "error event from upstream");
            self.tap.failed(&failure);
            return Verdict::Forward(0);
        }
        let usage = chunk.get("usage").and_then(Usage::from_json);
        if let Some(usage) = usage {
            self.tap.outcome.set_usage(usage);
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        if choices.is_some_and(|choices| {
            choices
                .iter()
                .any(|choice| choice.get("finish_reason").is_some_and(Value::is_string))
        }) {
            self.finish_seen = true;
        }
        let usage_only = choices.is_some_and(Vec::is_empty);
        if usage_only && usage.is_some() && self.relay.strip_usage {
            return Verdict::Drop;
        }
        Verdict::Forward(chat_content_deltas(&chunk))
    }

    fn inspect_responses(&mut self, message: &SseMessage) -> Verdict {
        let named = message.event.as_deref();
        // Most events are text deltas named by their `event:` line: checking that
        // their data is JSON is enough, without building it.
        let data = if named.is_none_or(needs_data) {
            serde_json::from_str::<Value>(&message.data).map(Some)
        } else {
            serde_json::from_str::<IgnoredAny>(&message.data).map(|_| None)
        };
        let Ok(data) = data else {
            return Verdict::Fail(StreamFailure::malformed(
                &self.tap.context,
                "a stream event that is not JSON",
            ));
        };
        let event = parsed_type(named, data.as_ref());
        match event.as_deref() {
            Some("response.output_text.delta" | "response.refusal.delta") => Verdict::Forward(1),
            Some("response.completed" | "response.incomplete") => {
                let usage = data
                    .as_ref()
                    .and_then(|data| data.pointer("/response/usage"))
                    .and_then(Usage::from_json);
                if let Some(usage) = usage {
                    self.tap.outcome.set_usage(usage);
                }
                self.tap.completed();
                Verdict::Forward(0)
            }
            Some("error" | "response.failed") => {
                let error = data
                    .as_ref()
                    .map(|data| data.pointer("/response/error").unwrap_or(data))
                    .cloned()
                    .unwrap_or(Value::Null);
                let failure = StreamFailure::reported(&error);
                failure.log(&self.tap.context, "error event from upstream");
                self.tap.failed(&failure);
                Verdict::Forward(0)
            }
            _ => Verdict::Forward(0),
        }
    }

    fn remember_tail(&mut self, data: &[u8]) {
        match data {
            [] => {}
            [only] => self.tail = [self.tail[1], *only],
            [.., before_last, last] => self.tail = [*before_last, *last],
        }
    }
}

/// Responses events whose payload matters for the outcome.
fn needs_data(event: &str) -> bool {
    matches!(
        event,
        "response.completed" | "response.incomplete" | "response.failed" | "error"
    )
}

fn parsed_type(event: Option<&str>, data: Option<&Value>) -> Option<String> {
    event
        .map(str::to_owned)
        .or_else(|| Some(data?.get("type")?.as_str()?.to_owned()))
}

/// Content (or refusal) text deltas in a chat chunk; the role chunk's empty
/// content is not one.
pub fn chat_content_deltas(chunk: &Value) -> u64 {
    let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
        return 0;
    };
    choices
        .iter()
        .filter_map(|choice| choice.get("delta"))
        .flat_map(|delta| ["content", "refusal"].map(|key| delta.get(key)))
        .filter(|text| text.and_then(Value::as_str).is_some_and(|t| !t.is_empty()))
        .count() as u64
}

/// Called with the final response object once a translated stream completed.
pub type OnComplete = Box<dyn FnOnce(Value) + Send>;

/// Turns an upstream chat stream into a Responses event stream as it arrives.
pub fn translated_body(
    body: UpstreamBody,
    mut translator: ResponsesStreamTranslator,
    on_complete: OnComplete,
    tap: StreamTap,
) -> Body {
    // Sent before the upstream's first chunk, so the client sees
    // `response.created` without waiting for the model.
    let opening = encode(&translator.start());
    let translation = Translation {
        body,
        parser: SseParser::default(),
        translator,
        on_complete: Some(on_complete),
        tap,
        ended: false,
        deltas: 0,
        opening: Some(opening),
    };
    Body::from_stream(stream::unfold(translation, |mut translation| async move {
        let bytes = translation.next_bytes().await?;
        Some((Ok::<_, Infallible>(bytes), translation))
    }))
}

struct Translation {
    body: UpstreamBody,
    parser: SseParser,
    translator: ResponsesStreamTranslator,
    on_complete: Option<OnComplete>,
    tap: StreamTap,
    ended: bool,
    /// Content deltas translated but not yet reported as sent.
    deltas: u64,
    /// `response.created` and `response.in_progress`, until sent.
    opening: Option<Bytes>,
}

impl Translation {
    async fn next_bytes(&mut self) -> Option<Bytes> {
        if let Some(opening) = self.opening.take() {
            self.tap.sent(&opening, 0, Duration::ZERO);
            return Some(opening);
        }
        while !self.ended {
            let events = match self.body.next_chunk().await {
                BodyChunk::Data(data) => {
                    let raw = self.parser.push_raw(&data);
                    self.translate(raw)
                }
                // A stream that ends cleanly without `[DONE]` but after its
                // finish chunk still carried a whole answer, so it completes
                // normally; without a finish chunk the answer was cut short.
                BodyChunk::End => {
                    let raw = self.parser.finish_raw();
                    let mut events = self.translate(raw);
                    if !self.ended {
                        if self.translator.finished() {
                            events.extend(self.complete());
                        } else {
                            events.extend(self.fail(StreamFailure::truncated(&self.tap.context)));
                        }
                    }
                    events
                }
                failed => match StreamFailure::from_chunk(failed, &self.tap.context) {
                    Some(failure) => self.fail(failure),
                    None => Vec::new(),
                },
            };
            if !events.is_empty() {
                let out = encode(&events);
                let deltas = std::mem::take(&mut self.deltas);
                self.tap.sent(&out, deltas, self.body.take_waited());
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

    fn translate(&mut self, raw: Vec<RawEvent>) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for event in raw {
            if self.ended {
                break;
            }
            if event.stray {
                let failure = StreamFailure::malformed(
                    &self.tap.context,
                    "a line that is not server-sent events",
                );
                events.extend(self.fail(failure));
                break;
            }
            let Some(message) = event.message else {
                continue;
            };
            if message.data.trim() == "[DONE]" {
                events.extend(self.complete());
                break;
            }
            let failure = match serde_json::from_str::<Value>(&message.data) {
                Ok(chunk) => match chunk.get("error") {
                    None => {
                        if let Some(usage) = chunk.get("usage").and_then(Usage::from_json) {
                            self.tap.outcome.set_usage(usage);
                        }
                        self.deltas += chat_content_deltas(&chunk);
                        events.extend(self.translator.on_chat_chunk(&chunk));
                        continue;
                    }
                    Some(error) => {
                        let failure = StreamFailure::reported(error);
                        failure.log(&self.tap.context, "error event from upstream");
                        failure
                    }
                },
                // Translating past a corrupt chunk could silently drop content,
                // so the stream is reported as failed instead.
                Err(_) => {
                    StreamFailure::malformed(&self.tap.context, "a stream chunk that is not JSON")
                }
            };
            events.extend(self.fail(failure));
        }
        events
    }

    fn fail(&mut self, failure: StreamFailure) -> Vec<SseEvent> {
        self.ended = true;
        self.tap.failed(&failure);
        self.translator.on_error(&failure.message, &failure.code)
    }

    fn complete(&mut self) -> Vec<SseEvent> {
        self.ended = true;
        self.tap.completed();
        let events = self.translator.finish();
        if let Some(on_complete) = self.on_complete.take() {
            on_complete(self.translator.final_response());
        }
        events
    }
}

fn encode(events: &[SseEvent]) -> Bytes {
    let mut out = BytesMut::new();
    for event in events {
        out.extend_from_slice(&sse_frame(event));
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "data: {\"a\":\"h\u{e9}llo\"}\n\n\
        : keep-alive comment\n\n\
        event: response.created\r\ndata: {\"b\":1}\r\n\r\n\
        data: line one\ndata: line two\n\n\
        data:no-space\n\n\
        data: [DONE]\n\n";

    fn expected() -> Vec<SseMessage> {
        let plain = |data: &str| SseMessage {
            event: None,
            data: data.to_owned(),
        };
        vec![
            plain("{\"a\":\"h\u{e9}llo\"}"),
            SseMessage {
                event: Some("response.created".to_owned()),
                data: "{\"b\":1}".to_owned(),
            },
            plain("line one\nline two"),
            plain("no-space"),
            plain("[DONE]"),
        ]
    }

    fn parse_in_pieces(pieces: &[&[u8]]) -> Vec<SseMessage> {
        let mut parser = SseParser::default();
        let mut messages = Vec::new();
        for piece in pieces {
            messages.extend(parser.push(piece));
        }
        messages.extend(parser.finish());
        messages
    }

    #[test]
    fn parses_a_whole_stream_in_one_chunk() {
        assert_eq!(parse_in_pieces(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn every_single_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for split in 0..=bytes.len() {
            let (head, tail) = bytes.split_at(split);
            assert_eq!(
                parse_in_pieces(&[head, tail]),
                expected(),
                "split at {split}"
            );
        }
    }

    #[test]
    fn byte_by_byte_and_uneven_chunks_give_the_same_events() {
        let bytes = STREAM.as_bytes();
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_in_pieces(&single), expected());
        for size in [2, 3, 5, 7, 13] {
            let pieces: Vec<&[u8]> = bytes.chunks(size).collect();
            assert_eq!(parse_in_pieces(&pieces), expected(), "chunk size {size}");
        }
    }

    #[test]
    fn finish_flushes_an_unterminated_last_event() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: {\"x\":").is_empty());
        assert!(parser.push(b"1}").is_empty());
        assert_eq!(
            parser.finish(),
            vec![SseMessage {
                event: None,
                data: "{\"x\":1}".to_owned()
            }]
        );
        assert!(parser.finish().is_empty());
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .push(b"\n\n\r\n: comment\n\nretry: 10\nid: 3\n\n")
                .is_empty()
        );
    }

    #[test]
    fn chat_failure_frame_is_an_openai_error_data_event() {
        let failure = StreamFailure {
            status: 504,
            code: "upstream_timeout".to_owned(),
            message: "stalled".to_owned(),
        };
        let frame = failure.frame(StreamFlavor::Chat);
        let data = frame
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        let json: Value = serde_json::from_str(data).unwrap();
        assert_eq!(json["error"]["code"], "upstream_timeout");
        assert_eq!(json["error"]["type"], "upstream_error");
        assert_eq!(json["error"]["message"], "stalled");
    }

    #[test]
    fn responses_failure_frame_is_an_error_event() {
        let failure = StreamFailure {
            status: 502,
            code: "upstream_disconnected".to_owned(),
            message: "cut".to_owned(),
        };
        let frame = failure.frame(StreamFlavor::Responses);
        let messages = parse_in_pieces(&[frame.as_bytes()]);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].event.as_deref(), Some("error"));
        let json: Value = serde_json::from_str(&messages[0].data).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["code"], "upstream_disconnected");
    }
}
