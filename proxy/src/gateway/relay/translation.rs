//! The translation inspector: an upstream chat stream turned into a
//! Responses event stream as it arrives.

use bytes::Bytes;
use serde_json::Value;

use crate::gateway::relay::passthrough::chat_content_deltas;
use crate::gateway::relay::stream::{StreamInspector, Turn};
use crate::shared::error::ApiError;
use crate::shared::usage::Usage;
use crate::wire::sse::{RawEvent, encode_events};
use crate::wire::translate::stream::ResponsesStreamTranslator;

/// Called with the final response object once a translated stream completed.
pub type OnComplete = Box<dyn FnOnce(Value) + Send>;

pub struct Translation {
    translator: ResponsesStreamTranslator,
    on_complete: Option<OnComplete>,
}

impl Translation {
    pub fn new(translator: ResponsesStreamTranslator, on_complete: OnComplete) -> Self {
        Translation {
            translator,
            on_complete: Some(on_complete),
        }
    }

    fn complete(&mut self, turn: &mut Turn<'_>) {
        turn.complete();
        turn.end();
        let events = self.translator.finish();
        if let Some(on_complete) = self.on_complete.take() {
            on_complete(self.translator.final_response());
        }
        turn.forward(&encode_events(&events));
    }
}

impl StreamInspector for Translation {
    /// `response.created` and `response.in_progress`, so the client sees them
    /// without waiting for the model.
    fn opening(&mut self) -> Bytes {
        encode_events(&self.translator.start())
    }

    fn on_event(&mut self, event: RawEvent, turn: &mut Turn<'_>) {
        let Some(message) = event.message else {
            return;
        };
        if message.data.trim() == "[DONE]" {
            self.complete(turn);
            return;
        }
        match serde_json::from_str::<Value>(&message.data) {
            Ok(chunk) => match chunk.get("error") {
                None => {
                    if let Some(usage) = chunk.get("usage").and_then(Usage::from_json) {
                        turn.set_usage(usage);
                    }
                    turn.count_deltas(chat_content_deltas(&chunk));
                    turn.forward(&encode_events(&self.translator.on_chat_chunk(&chunk)));
                }
                Some(error) => turn.fail(ApiError::reported(error), "error event from upstream"),
            },
            // Translating past a corrupt chunk could silently drop content, so
            // the stream is reported as failed instead.
            Err(_) => turn.malformed("a stream chunk that is not JSON"),
        }
    }

    /// A stream that ends cleanly without `[DONE]` but after its finish chunk
    /// still carried a whole answer, so it completes normally; without a
    /// finish chunk the answer was cut short.
    fn on_end(&mut self, turn: &mut Turn<'_>) {
        if self.translator.finished() {
            self.complete(turn);
        } else {
            turn.truncated();
        }
    }

    fn error_event(&mut self, error: &ApiError) -> Bytes {
        let code = error.code().unwrap_or(error.error_type());
        encode_events(&self.translator.on_error(&error.to_string(), code))
    }
}
