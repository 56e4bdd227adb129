//! Server-sent events on the wire: the incremental parser for upstream
//! streams (bytes kept exactly as received), and the encoding of the events
//! the proxy writes itself.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

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
///
/// What it holds is bounded by its limit (`with_limit`): the event being read,
/// its complete lines and the line still arriving together, may not grow past
/// it. Past it the parser is `overflowed`: it drops what it held and reads
/// nothing more, so a stream without newlines cannot grow the proxy's memory.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    overflowed: bool,
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

impl Default for SseParser {
    fn default() -> Self {
        SseParser::with_limit(usize::MAX)
    }
}

impl SseParser {
    /// A parser whose unfinished event may hold at most `limit` bytes.
    pub fn with_limit(limit: usize) -> Self {
        SseParser {
            limit,
            overflowed: false,
            pending: Vec::new(),
            scanned: 0,
            event: None,
            data_lines: Vec::new(),
            raw: Vec::new(),
            stray: false,
        }
    }

    /// An event outgrew the limit: it was dropped, and nothing after it is read.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes held for the event being read (its lines, the unfinished one included).
    pub fn buffered(&self) -> usize {
        self.raw.len() + self.pending.len()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        messages(self.push_raw(chunk))
    }

    /// Flushes what a stream that ended without a final blank line left behind.
    pub fn finish(&mut self) -> Vec<SseMessage> {
        messages(self.finish_raw())
    }

    /// The events `chunk` completes. Events complete before an overflow are
    /// still returned; check `overflowed` afterwards.
    pub fn push_raw(&mut self, chunk: &[u8]) -> Vec<RawEvent> {
        if self.overflowed {
            return Vec::new();
        }
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut line_start = 0;
        let mut search_from = self.scanned;
        while let Some(offset) = self.pending[search_from..].iter().position(|&b| b == b'\n') {
            let line_end = search_from + offset;
            if self.raw.len() + (line_end + 1 - line_start) > self.limit {
                self.overflow();
                return events;
            }
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
        if self.buffered() > self.limit {
            self.overflow();
        }
        events
    }

    fn overflow(&mut self) {
        self.take_unfinished();
        // The memory goes too, not only the bytes.
        self.pending = Vec::new();
        self.raw = Vec::new();
        self.overflowed = true;
    }

    pub fn finish_raw(&mut self) -> Vec<RawEvent> {
        if self.overflowed {
            return Vec::new();
        }
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

#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// `event: {event}\ndata: {compact json}\n\n`
pub fn sse_frame(ev: &SseEvent) -> Bytes {
    Bytes::from(format!("event: {}\ndata: {}\n\n", ev.event, ev.data))
}

/// The frames of several events, in order.
pub fn encode_events(events: &[SseEvent]) -> Bytes {
    let mut out = BytesMut::new();
    for event in events {
        out.extend_from_slice(&sse_frame(event));
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn a_line_longer_than_the_limit_overflows_and_frees_its_bytes() {
        let mut parser = SseParser::with_limit(64);
        let events = parser.push_raw(b"data: small\n\ndata: ");
        assert_eq!(
            events.len(),
            1,
            "the complete event before it still comes out"
        );
        assert!(!parser.overflowed());
        // A line that never ends, in small pieces: held up to the limit, no further.
        for _ in 0..10 {
            assert!(parser.push_raw(&[b'x'; 10]).is_empty());
            assert!(parser.buffered() <= 64, "holds {}", parser.buffered());
        }
        assert!(parser.overflowed());
        assert_eq!(parser.buffered(), 0);
        assert!(parser.push_raw(b"\n\ndata: late\n\n").is_empty());
        assert!(parser.finish_raw().is_empty());
    }

    #[test]
    fn an_event_of_many_short_lines_counts_them_together() {
        let mut parser = SseParser::with_limit(64);
        for _ in 0..6 {
            assert!(parser.push_raw(b"data: 123\n").is_empty());
        }
        assert!(!parser.overflowed(), "60 bytes fit");
        assert!(parser.push_raw(b"data: 123\n").is_empty());
        assert!(parser.overflowed());
        assert_eq!(parser.buffered(), 0);
    }

    #[test]
    fn a_whole_oversized_line_in_one_chunk_overflows_after_the_events_before_it() {
        let mut parser = SseParser::with_limit(32);
        let mut chunk = b"data: a\n\n".to_vec();
        chunk.extend_from_slice(b"data: ");
        chunk.extend_from_slice(&[b'y'; 40]);
        chunk.extend_from_slice(b"\n\ndata: b\n\n");
        let events = parser.push(&chunk);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data, "a");
        assert!(parser.overflowed());
    }

    #[test]
    fn events_up_to_the_limit_pass() {
        let event = b"data: 0123456789\n\n";
        let mut parser = SseParser::with_limit(event.len());
        for _ in 0..100 {
            assert_eq!(parser.push_raw(event).len(), 1);
        }
        for byte in event.iter().cycle().take(event.len() * 5) {
            parser.push_raw(&[*byte]);
        }
        assert!(!parser.overflowed());
    }

    #[test]
    fn sse_frame_format() {
        let ev = SseEvent {
            event: "response.output_text.delta".into(),
            data: json!({"type": "response.output_text.delta", "delta": "a\nb"}),
        };
        assert_eq!(
            &sse_frame(&ev)[..],
            b"event: response.output_text.delta\ndata: {\"delta\":\"a\\nb\",\"type\":\"response.output_text.delta\"}\n\n"
        );
    }
}
