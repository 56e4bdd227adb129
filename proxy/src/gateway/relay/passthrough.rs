//! The passthrough inspector: an upstream event stream relayed event by
//! event, bytes unchanged (except a usage chunk the client did not ask for),
//! and watched for content deltas, usage, completion and errors.

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use crate::gateway::relay::stream::{StreamInspector, Turn};
use crate::shared::error::ApiError;
use crate::shared::usage::Usage;
use crate::wire::sse::{RawEvent, SseMessage};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamFlavor {
    Chat,
    Responses,
}

/// Options of a relayed (not translated) stream.
pub struct Passthrough {
    pub flavor: StreamFlavor,
    /// The proxy asked for `include_usage` on the client's behalf, so the
    /// usage-only chunk is not the client's to see.
    pub strip_usage: bool,
    /// A chat chunk with a `finish_reason` went by.
    finish_seen: bool,
    /// Responses events relayed so far: upstreams number them from 0, so
    /// this is the `sequence_number` an error event of the proxy's takes.
    events_relayed: u64,
    /// Told the id of the response a Responses stream creates.
    on_response_id: Option<OnResponseId>,
}

/// Called with a native response's id as soon as the stream announces it.
pub type OnResponseId = Box<dyn FnOnce(&str) + Send>;

impl Passthrough {
    pub fn new(flavor: StreamFlavor, strip_usage: bool) -> Self {
        Passthrough {
            flavor,
            strip_usage,
            finish_seen: false,
            events_relayed: 0,
            on_response_id: None,
        }
    }

    pub fn on_response_id(mut self, hook: OnResponseId) -> Self {
        self.on_response_id = Some(hook);
        self
    }

    fn inspect_chat(&mut self, message: &SseMessage, raw: &[u8], turn: &mut Turn<'_>) {
        let data = message.data.trim();
        if data == "[DONE]" {
            turn.complete();
            turn.forward(raw);
            return;
        }
        // Relaying a corrupt chunk would only move the failure to the client's
        // parser (the OpenAI SDK raises a JSON error); an error event says what
        // happened.
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            turn.malformed("a stream chunk that is not JSON");
            return;
        };
        if let Some(error) = chunk.get("error").filter(|error| error.is_object()) {
            turn.upstream_failed(ApiError::reported(error));
            turn.forward(raw);
            return;
        }
        let usage = chunk.get("usage").and_then(Usage::from_json);
        if let Some(usage) = usage {
            turn.set_usage(usage);
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
        if usage_only && usage.is_some() && self.strip_usage {
            return;
        }
        turn.count_deltas(chat_content_deltas(&chunk));
        turn.forward(raw);
    }

    fn inspect_responses(&mut self, message: &SseMessage, raw: &[u8], turn: &mut Turn<'_>) {
        let named = message.event.as_deref();
        // Most events are text deltas named by their `event:` line: checking that
        // their data is JSON is enough, without building it.
        let data = if named.is_none_or(needs_data) {
            serde_json::from_str::<Value>(&message.data).map(Some)
        } else {
            serde_json::from_str::<IgnoredAny>(&message.data).map(|_| None)
        };
        let Ok(data) = data else {
            turn.malformed("a stream event that is not JSON");
            return;
        };
        self.events_relayed += 1;
        let event = parsed_type(named, data.as_ref());
        match event.as_deref() {
            Some("response.output_text.delta" | "response.refusal.delta") => turn.count_deltas(1),
            Some("response.created") => {
                let id = data
                    .as_ref()
                    .and_then(|data| data.pointer("/response/id"))
                    .and_then(Value::as_str);
                if let (Some(id), Some(hook)) = (id, self.on_response_id.take()) {
                    hook(id);
                }
            }
            Some("response.completed" | "response.incomplete") => {
                let usage = data
                    .as_ref()
                    .and_then(|data| data.pointer("/response/usage"))
                    .and_then(Usage::from_json);
                if let Some(usage) = usage {
                    turn.set_usage(usage);
                }
                turn.complete();
            }
            Some("error" | "response.failed") => {
                let error = data
                    .as_ref()
                    .map(|data| data.pointer("/response/error").unwrap_or(data))
                    .cloned()
                    .unwrap_or(Value::Null);
                turn.upstream_failed(ApiError::reported(&error));
            }
            _ => {}
        }
        turn.forward(raw);
    }
}

impl StreamInspector for Passthrough {
    fn on_event(&mut self, event: RawEvent, turn: &mut Turn<'_>) {
        match &event.message {
            Some(message) => match self.flavor {
                StreamFlavor::Chat => self.inspect_chat(message, &event.raw, turn),
                StreamFlavor::Responses => self.inspect_responses(message, &event.raw, turn),
            },
            None => turn.forward(&event.raw),
        }
    }

    /// A chat stream whose finish chunk came is whole even without `[DONE]`,
    /// which is added for the client; anything else short of its completion
    /// is a truncated answer.
    fn on_end(&mut self, turn: &mut Turn<'_>) {
        if self.flavor == StreamFlavor::Chat && self.finish_seen {
            turn.boundary();
            turn.forward(b"data: [DONE]\n\n");
            turn.complete();
            return;
        }
        turn.truncated();
    }

    fn error_event(&mut self, error: &ApiError) -> Bytes {
        error_frame(self.flavor, error, self.events_relayed)
    }
}

/// The error event that ends a relayed stream: an OpenAI error body as a
/// chat `data:` event, or a Responses `error` event numbered after the
/// `sequence_number` events before it.
pub fn error_frame(flavor: StreamFlavor, error: &ApiError, sequence_number: u64) -> Bytes {
    let frame = match flavor {
        StreamFlavor::Chat => format!("data: {}\n\n", error.body()),
        StreamFlavor::Responses => {
            let body = json!({
                "type": "error",
                "code": error.code(),
                "message": error.to_string(),
                "param": null,
                "sequence_number": sequence_number,
            });
            format!("event: error\ndata: {body}\n\n")
        }
    };
    Bytes::from(frame)
}

/// Responses events whose payload matters for the outcome.
fn needs_data(event: &str) -> bool {
    matches!(
        event,
        "response.created"
            | "response.completed"
            | "response.incomplete"
            | "response.failed"
            | "error"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sse::SseParser;

    #[test]
    fn chat_failure_frame_is_an_openai_error_data_event() {
        let failure = ApiError::UpstreamStalled {
            upstream: "a".into(),
        };
        let frame = error_frame(StreamFlavor::Chat, &failure, 0);
        let frame = std::str::from_utf8(&frame).unwrap();
        let data = frame
            .strip_prefix("data: ")
            .unwrap()
            .strip_suffix("\n\n")
            .unwrap();
        let json: Value = serde_json::from_str(data).unwrap();
        assert_eq!(json["error"]["code"], "upstream_timeout");
        assert_eq!(json["error"]["type"], "upstream_error");
        assert_eq!(
            json["error"]["message"],
            "Upstream \"a\" stopped sending data"
        );
        assert_eq!(json["error"]["param"], Value::Null);
    }

    #[test]
    fn responses_failure_frame_is_an_error_event() {
        let failure = ApiError::UpstreamStreamCut {
            upstream: "a".into(),
        };
        let frame = error_frame(StreamFlavor::Responses, &failure, 7);
        let messages = SseParser::default().push(&frame);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].event.as_deref(), Some("error"));
        let json: Value = serde_json::from_str(&messages[0].data).unwrap();
        assert_eq!(json["type"], "error");
        assert_eq!(json["code"], "upstream_disconnected");
        assert_eq!(json["message"], "Upstream \"a\" closed the stream early");
        assert_eq!(json["sequence_number"], 7);
    }
}
