//! Relaying a 2xx answer to the client: a stream through the stream relay
//! (passed through or translated), a whole answer as is or translated into a
//! Response; both stored in the cache when they may be, and a translated
//! conversation remembered so a later `previous_response_id` can continue it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::gateway::dispatch::{CallContext, Reply};
use crate::gateway::headers::client_response_headers;
use crate::gateway::relay::passthrough::Passthrough;
use crate::gateway::relay::stream::{StreamContext, StreamTap, relay_body};
use crate::gateway::relay::translation::Translation;
use crate::gateway::routing::InFlight;
use crate::gateway::upstream::build_response;
use crate::shared::error::ApiError;
use crate::shared::time::unix_now;
use crate::shared::usage::Usage;
use crate::store::cache::entry::CachedResponse;
use crate::store::conversations::{Kept, ResponseStore};
use crate::wire::items::input_items;
use crate::wire::translate::request::output_messages;
use crate::wire::translate::response::{assistant_text, chat_to_responses_response};
use crate::wire::translate::stream::ResponsesStreamTranslator;

/// Relays a 2xx answer as the upstream sent it.
pub async fn relay_answer(
    call: &CallContext<'_>,
    reply: Reply,
    in_flight: InFlight,
    passthrough: Passthrough,
) -> Response {
    match reply {
        Reply::Stream(stream) => {
            let headers = client_response_headers(&stream.headers);
            let tap = stream_tap(call, in_flight, &headers);
            build_response(
                stream.status,
                headers,
                relay_body(stream.body, passthrough, tap),
            )
        }
        Reply::Complete(reply) => {
            let usage = reply
                .json
                .as_ref()
                .and_then(|body| body.get("usage").and_then(Usage::from_json));
            if let Some(usage) = usage {
                call.outcome.set_usage(usage);
            }
            store_whole(call, &reply.headers, reply.status, &reply.body).await;
            reply.into_client_response()
        }
    }
}

/// `headers` are the ones the client gets (their content type is stored).
pub fn stream_tap(call: &CallContext<'_>, in_flight: InFlight, headers: &HeaderMap) -> StreamTap {
    let upstream = call.outcome.upstream().unwrap_or_default();
    let mut tap = StreamTap::new(
        call.outcome.clone(),
        StreamContext {
            request_id: call.request_id.to_owned(),
            upstream: upstream.clone(),
        },
        in_flight,
    );
    tap.capture = call
        .cache
        .clone()
        .map(|write| write.capture(headers, upstream));
    tap
}

/// Stores a whole (non-stream) 2xx answer as the client gets it.
pub async fn store_whole(
    call: &CallContext<'_>,
    headers: &HeaderMap,
    status: StatusCode,
    body: &Bytes,
) {
    let Some(write) = &call.cache else {
        return;
    };
    let usage = call.outcome.usage().unwrap_or_default();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("application/json");
    write
        .store(CachedResponse {
            status: status.as_u16(),
            content_type: content_type.to_owned(),
            body: body.clone(),
            stream: false,
            upstream: call.outcome.upstream().unwrap_or_default(),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        })
        .await;
}

/// Translates the chat answer back into a Response (streamed or whole) and
/// remembers the conversation for a later `previous_response_id`.
pub async fn relay_translated(
    store: &Arc<ResponseStore>,
    call: &CallContext<'_>,
    request: &Value,
    chat_request: &Value,
    reply: Reply,
    in_flight: InFlight,
) -> Result<Response, ApiError> {
    let response_id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let created_at = unix_now();
    // OpenAI semantics: `store: false` responses cannot be continued later.
    let memory = (request.get("store") != Some(&Value::Bool(false))).then(|| Memory {
        store: store.clone(),
        response_id: response_id.clone(),
        parent: request
            .get("previous_response_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        conversation: conversation_without_instructions(chat_request, request),
        input_items: input_items(request.get("input")),
    });

    let reply = match reply {
        Reply::Stream(stream) => {
            let mut headers = client_response_headers(&stream.headers);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            let translator = ResponsesStreamTranslator::new(request, response_id, created_at);
            let translation = Translation::new(
                translator,
                Box::new(move |final_response| {
                    if let Some(memory) = memory {
                        memory.remember(&final_response);
                    }
                }),
            );
            let body = relay_body(
                stream.body,
                translation,
                stream_tap(call, in_flight, &headers),
            );
            return Ok(build_response(StatusCode::OK, headers, body));
        }
        Reply::Complete(reply) => reply,
    };
    let upstream = call.outcome.upstream().unwrap_or_default();
    if call.streaming {
        return Err(bad_response(
            upstream,
            "expected an event stream for a streaming request",
        ));
    }
    let chat = reply
        .json
        .map(Value::Object)
        .ok_or_else(|| bad_response(upstream, "the chat completion is not a JSON object"))?;
    if let Some(usage) = chat.get("usage").and_then(Usage::from_json) {
        call.outcome.set_usage(usage);
    }
    let response = chat_to_responses_response(&chat, request, &response_id, created_at);
    if let Some(memory) = memory {
        memory.remember(&response);
    }
    let mut headers = client_response_headers(&reply.headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = Bytes::from(response.to_string());
    store_whole(call, &headers, reply.status, &body).await;
    Ok(build_response(reply.status, headers, Body::from(body)))
}

fn bad_response(upstream: String, detail: &str) -> ApiError {
    ApiError::UpstreamBadResponse {
        upstream,
        detail: detail.to_owned(),
    }
}

/// What a finished response adds to the store, prepared before the upstream
/// call because the chat request is needed to build it.
struct Memory {
    store: Arc<ResponseStore>,
    response_id: String,
    /// The response this one continues, whose kept conversation it extends.
    parent: Option<String>,
    conversation: Vec<Value>,
    input_items: Vec<Value>,
}

impl Memory {
    /// Keeps the assistant's turn as it was (text, refusal and tool calls, so
    /// the next turn's tool results follow their calls), and the output items
    /// for later item references.
    fn remember(self, response: &Value) {
        let output = response
            .get("output")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut history = self.conversation;
        match output_messages(output) {
            Ok(turn) => history.extend(turn),
            // Output the translator built always translates back; should it
            // not, the text is still worth keeping.
            Err(_) => history.push(json!({
                "role": "assistant",
                "content": assistant_text(response),
            })),
        }
        let kept = Kept {
            parent: self.parent,
            history,
            response: response.clone(),
            input_items: self.input_items,
        };
        self.store.insert(self.response_id, kept);
    }
}

/// The chat messages worth carrying into the next turn. Instructions are not
/// among them: a follow-up request brings its own (OpenAI semantics), so the
/// system message the translator built from them is left out.
fn conversation_without_instructions(chat_request: &Value, request: &Value) -> Vec<Value> {
    let messages = chat_request
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let instructions = request.get("instructions").and_then(Value::as_str);
    let built_from_instructions = |message: &Value| {
        matches!(
            message.get("role").and_then(Value::as_str),
            Some("system" | "developer")
        ) && message.get("content").and_then(Value::as_str) == instructions
    };
    let skip = match (instructions, messages.first()) {
        (Some(_), Some(first)) if built_from_instructions(first) => 1,
        _ => 0,
    };
    messages.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_assistant_turn_is_remembered() {
        let store = Arc::new(ResponseStore::new(4));
        let memory = Memory {
            store: store.clone(),
            response_id: "resp_1".into(),
            parent: None,
            conversation: vec![json!({"role": "user", "content": "q"})],
            input_items: vec![json!({"id": "msg_in", "role": "user", "content": "q"})],
        };
        let message = json!({"type": "message", "id": "msg_1", "status": "completed",
        "role": "assistant", "content": [
            {"type": "output_text", "text": "Partly.", "annotations": [], "logprobs": []},
            {"type": "refusal", "refusal": "Not that."},
        ]});
        let call = json!({"type": "function_call", "id": "fc_1", "call_id": "call_1",
                          "name": "w", "arguments": "{\"c\":1}", "status": "completed"});
        memory.remember(&json!({"output": [message.clone(), call.clone()]}));
        assert_eq!(
            store.get("resp_1").unwrap().as_slice(),
            &[
                json!({"role": "user", "content": "q"}),
                json!({"role": "assistant", "content": "Partly.", "refusal": "Not that.",
                       "tool_calls": [{"id": "call_1", "type": "function",
                                       "function": {"name": "w", "arguments": "{\"c\":1}"}}]}),
            ]
        );
        assert_eq!(store.item("fc_1"), Some(call));
        assert_eq!(store.item("msg_1"), Some(message));
        assert_eq!(store.input_items("resp_1").unwrap()[0]["id"], "msg_in");
        assert!(store.response("resp_1").unwrap()["output"].is_array());
    }

    #[test]
    fn instructions_message_is_not_remembered() {
        let chat = json!({"messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ]});
        let request = json!({"instructions": "be brief", "input": "hi"});
        assert_eq!(
            conversation_without_instructions(&chat, &request),
            vec![json!({"role": "user", "content": "hi"})]
        );
    }

    #[test]
    fn system_messages_from_the_input_are_remembered() {
        let chat = json!({"messages": [
            {"role": "system", "content": "from input"},
            {"role": "user", "content": "hi"},
        ]});
        let without_instructions = json!({"input": []});
        assert_eq!(
            conversation_without_instructions(&chat, &without_instructions).len(),
            2
        );
        let other_instructions = json!({"instructions": "different", "input": []});
        assert_eq!(
            conversation_without_instructions(&chat, &other_instructions).len(),
            2
        );
    }
}
