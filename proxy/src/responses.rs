//! `POST /v1/responses` for upstreams that only speak Chat Completions: the
//! request is translated onto chat, the answer translated back, and the
//! conversation remembered so a later `previous_response_id` can continue it.

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::extract::optional_string;
use crate::proxy::UpstreamCall;
use crate::state::{SharedState, unix_now};
use crate::streaming::translated_body;
use crate::translate::{self, ResponsesStreamTranslator};
use crate::upstream::{Endpoint, build_response, client_response_headers, is_event_stream};

pub async fn via_chat(
    state: &SharedState,
    call: &UpstreamCall<'_>,
    upstream_model: &str,
    body: Map<String, Value>,
    streaming: bool,
) -> Result<Response, ApiError> {
    let history = match optional_string(&body, "previous_response_id")? {
        Some(id) => state
            .store
            .get(id)
            .ok_or_else(|| ApiError::PreviousResponseNotFound(id.to_owned()))?,
        None => Default::default(),
    };
    let request = Value::Object(body);
    let chat_request = translate::responses_to_chat_request(&request, &history, upstream_model)
        .map_err(|err| ApiError::InvalidRequest {
            message: err.message,
            param: err.param,
        })?;
    let response_id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let created_at = unix_now();
    // OpenAI semantics: `store: false` responses cannot be continued later.
    let memory = (request.get("store") != Some(&Value::Bool(false))).then(|| Memory {
        state: state.clone(),
        response_id: response_id.clone(),
        conversation: conversation_without_instructions(&chat_request, &request),
    });

    let reply = call.send(Endpoint::ChatCompletions, &chat_request).await?;
    if !reply.status().is_success() {
        return Ok(call.read(reply).await?.into_client_response());
    }

    if streaming {
        if !is_event_stream(reply.headers()) {
            return Err(bad_response(
                call,
                "expected an event stream for a streaming request",
            ));
        }
        let mut headers = client_response_headers(reply.headers());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let translator = ResponsesStreamTranslator::new(&request, response_id, created_at);
        let body = translated_body(
            call.upstream.body(reply),
            translator,
            Box::new(move |final_response| {
                if let Some(memory) = memory {
                    memory.remember(&final_response);
                }
            }),
            call.stream_context(),
        );
        return Ok(build_response(StatusCode::OK, headers, body));
    }

    let reply = call.read(reply).await?;
    let chat = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| bad_response(call, "the chat completion is not a JSON object"))?;
    let response = translate::chat_to_responses_response(&chat, &request, &response_id, created_at);
    if let Some(memory) = memory {
        memory.remember(&response);
    }
    let mut headers = client_response_headers(&reply.headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(build_response(
        reply.status,
        headers,
        Body::from(response.to_string()),
    ))
}

fn bad_response(call: &UpstreamCall<'_>, detail: &str) -> ApiError {
    ApiError::UpstreamBadResponse {
        upstream: call.upstream.name.clone(),
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
