//! Server-sent-event streams towards the client: the byte-for-byte relay of an
//! upstream stream, and the Responses stream translated from a chat stream.
//! Both forward each upstream chunk as soon as it arrives; nothing is buffered
//! beyond an incomplete line.

use std::convert::Infallible;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::error::error_body;
use crate::translate::{ResponsesStreamTranslator, SseEvent, sse_frame};
use crate::upstream::{BodyChunk, UpstreamBody, error_chain};

/// One dispatched SSE event. `event` is `None` for plain `data:` events
/// (everything the chat stream sends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    pub event: Option<String>,
    pub data: String,
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
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.pending.extend_from_slice(chunk);
        let mut messages = Vec::new();
        let mut line_start = 0;
        let mut search_from = self.scanned;
        while let Some(offset) = self.pending[search_from..].iter().position(|&b| b == b'\n') {
            let line_end = search_from + offset;
            let raw = &self.pending[line_start..line_end];
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = String::from_utf8_lossy(raw).into_owned();
            messages.extend(self.take_line(&line));
            line_start = line_end + 1;
            search_from = line_start;
        }
        self.pending.drain(..line_start);
        self.scanned = self.pending.len();
        messages
    }

    /// Flushes what a stream that ended without a final blank line left behind.
    pub fn finish(&mut self) -> Vec<SseMessage> {
        let rest = std::mem::take(&mut self.pending);
        self.scanned = 0;
        let mut messages = Vec::new();
        if !rest.is_empty() {
            let raw = rest.strip_suffix(b"\r").unwrap_or(&rest);
            messages.extend(self.take_line(&String::from_utf8_lossy(raw)));
        }
        messages.extend(self.take_line(""));
        messages
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
            _ => {}
        }
        None
    }
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
    code: String,
    message: String,
}

impl StreamFailure {
    /// `None` for chunks that are not failures.
    fn from_chunk(chunk: BodyChunk, context: &StreamContext) -> Option<Self> {
        let (code, message, cause) = match chunk {
            BodyChunk::Data(_) | BodyChunk::End => return None,
            BodyChunk::IdleTimeout => (
                "upstream_timeout",
                format!("Upstream \"{}\" stopped sending data", context.upstream),
                "idle timeout".to_owned(),
            ),
            BodyChunk::Failed(err) => (
                "upstream_disconnected",
                format!("Upstream \"{}\" closed the stream early", context.upstream),
                error_chain(&err),
            ),
        };
        let failure = StreamFailure {
            code: code.to_owned(),
            message,
        };
        failure.log(context, &cause);
        Some(failure)
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

/// Relays an upstream event stream unchanged. If it breaks off or stalls, one
/// error event in the stream's own format is appended so the client learns why
/// it ended instead of seeing a silent truncation.
pub fn passthrough_body(body: UpstreamBody, flavor: StreamFlavor, context: StreamContext) -> Body {
    let relay = Passthrough {
        body,
        flavor,
        context,
        ended: false,
        tail: [b'\n'; 2],
    };
    Body::from_stream(stream::unfold(relay, |mut relay| async move {
        let bytes = relay.next_bytes().await?;
        Some((Ok::<_, Infallible>(bytes), relay))
    }))
}

struct Passthrough {
    body: UpstreamBody,
    flavor: StreamFlavor,
    context: StreamContext,
    ended: bool,
    /// The last two bytes relayed, to know whether an appended error event would
    /// start on an event boundary or glue onto a half-sent line.
    tail: [u8; 2],
}

impl Passthrough {
    async fn next_bytes(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        match self.body.next_chunk().await {
            BodyChunk::Data(data) => {
                self.remember_tail(&data);
                Some(data)
            }
            BodyChunk::End => {
                self.ended = true;
                None
            }
            failed => {
                self.ended = true;
                let failure = StreamFailure::from_chunk(failed, &self.context)?;
                let separator = if &self.tail == b"\n\n" { "" } else { "\n\n" };
                Some(Bytes::from(format!(
                    "{separator}{}",
                    failure.frame(self.flavor)
                )))
            }
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

/// Called with the final response object once a translated stream completed.
pub type OnComplete = Box<dyn FnOnce(Value) + Send>;

/// Turns an upstream chat stream into a Responses event stream as it arrives.
pub fn translated_body(
    body: UpstreamBody,
    mut translator: ResponsesStreamTranslator,
    on_complete: OnComplete,
    context: StreamContext,
) -> Body {
    // Sent before the upstream's first chunk, so the client sees
    // `response.created` without waiting for the model.
    let opening = encode(&translator.start());
    let translation = Translation {
        body,
        parser: SseParser::default(),
        translator,
        on_complete: Some(on_complete),
        context,
        ended: false,
    };
    let rest = stream::unfold(translation, |mut translation| async move {
        let bytes = translation.next_bytes().await?;
        Some((Ok::<_, Infallible>(bytes), translation))
    });
    Body::from_stream(stream::once(async move { Ok(opening) }).chain(rest))
}

struct Translation {
    body: UpstreamBody,
    parser: SseParser,
    translator: ResponsesStreamTranslator,
    on_complete: Option<OnComplete>,
    context: StreamContext,
    ended: bool,
}

impl Translation {
    async fn next_bytes(&mut self) -> Option<Bytes> {
        while !self.ended {
            let events = match self.body.next_chunk().await {
                BodyChunk::Data(data) => {
                    let messages = self.parser.push(&data);
                    self.translate(messages)
                }
                // A stream that ends cleanly without `[DONE]` still carried a
                // whole answer, so it completes normally.
                BodyChunk::End => {
                    let messages = self.parser.finish();
                    let mut events = self.translate(messages);
                    if !self.ended {
                        events.extend(self.complete());
                    }
                    events
                }
                failed => match StreamFailure::from_chunk(failed, &self.context) {
                    Some(failure) => self.fail(failure),
                    None => Vec::new(),
                },
            };
            if !events.is_empty() {
                return Some(encode(&events));
            }
        }
        None
    }

    fn translate(&mut self, messages: Vec<SseMessage>) -> Vec<SseEvent> {
        let mut events = Vec::new();
        for message in messages {
            if self.ended {
                break;
            }
            if message.data.trim() == "[DONE]" {
                events.extend(self.complete());
                break;
            }
            let failure = match serde_json::from_str::<Value>(&message.data) {
                Ok(chunk) => match chunk.get("error") {
                    None => {
                        events.extend(self.translator.on_chat_chunk(&chunk));
                        continue;
                    }
                    Some(error) => {
                        let text = |field: &str| {
                            error.get(field).and_then(Value::as_str).map(str::to_owned)
                        };
                        let failure = StreamFailure {
                            code: text("code").unwrap_or_else(|| "upstream_error".to_owned()),
                            message: text("message")
                                .unwrap_or_else(|| "Upstream stream failed".to_owned()),
                        };
                        failure.log(&self.context, "error event from upstream");
                        failure
                    }
                },
                // Translating past a corrupt chunk could silently drop content,
                // so the stream is reported as failed instead.
                Err(_) => {
                    let failure = StreamFailure {
                        code: "upstream_bad_response".to_owned(),
                        message: format!(
                            "Upstream \"{}\" sent a malformed stream chunk",
                            self.context.upstream
                        ),
                    };
                    failure.log(&self.context, "malformed chunk");
                    failure
                }
            };
            events.extend(self.fail(failure));
        }
        events
    }

    fn fail(&mut self, failure: StreamFailure) -> Vec<SseEvent> {
        self.ended = true;
        self.translator.on_error(&failure.message, &failure.code)
    }

    fn complete(&mut self) -> Vec<SseEvent> {
        self.ended = true;
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
