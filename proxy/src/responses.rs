//! `POST /v1/responses` for upstreams that only speak Chat Completions: the
//! request is translated onto chat, the answer translated back, and the
//! conversation remembered so a later `previous_response_id` can continue it.

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::dispatch::{CallContext, Reply};
use crate::error::ApiError;
use crate::proxy::{store_whole, stream_tap};
use crate::routing::InFlight;
use crate::state::{AppState, SharedState, unix_now};
use crate::streaming::translated_body;
use crate::tracking::Usage;
use crate::translate::{self, ResponsesStreamTranslator};
use crate::upstream::{build_response, client_response_headers};

/// The chat request a Responses request becomes for one model, with the
/// conversation its `previous_response_id` continues.
pub fn chat_request(
    state: &AppState,
    request: &Value,
    upstream_model: &str,
) -> Result<Value, ApiError> {
    let history = match request.get("previous_response_id") {
        None | Some(Value::Null) => Default::default(),
        Some(Value::String(id)) => state
            .store
            .get(id)
            .ok_or_else(|| ApiError::PreviousResponseNotFound(id.to_owned()))?,
        Some(_) => {
            return Err(ApiError::invalid_request(
                "Invalid type for 'previous_response_id': expected a string",
                Some("previous_response_id"),
            ));
        }
    };
    translate::responses_to_chat_request(request, &history, upstream_model).map_err(|err| {
        ApiError::InvalidRequest {
            message: err.message,
            param: err.param,
        }
    })
}

/// Translates the chat answer back into a Response (streamed or whole) and
/// remembers the conversation for a later `previous_response_id`.
pub async fn relay_translated(
    state: &SharedState,
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
        state: state.clone(),
        response_id: response_id.clone(),
        conversation: conversation_without_instructions(chat_request, request),
    });

    let reply = match reply {
        Reply::Stream(stream) => {
            let mut headers = client_response_headers(&stream.headers);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            let translator = ResponsesStreamTranslator::new(request, response_id, created_at);
            let body = translated_body(
                stream.body,
                translator,
                Box::new(move |final_response| {
                    if let Some(memory) = memory {
                        memory.remember(&final_response);
                    }
                }),
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
    let response = translate::chat_to_responses_response(&chat, request, &response_id, created_at);
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
    state: SharedState,
    response_id: String,
    conversation: Vec<Value>,
}

impl Memory {
    fn remember(self, response: &Value) {
        let mut history = self.conversation;
        history.push(json!({
            "role": "assistant",
            "content": translate::assistant_text(response),
        }));
        self.state.store.insert(self.response_id, history);
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
