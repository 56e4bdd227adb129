//! The proxied OpenAI endpoints. One direction through each handler: read the
//! request, dispatch it over the model's candidates, relay the answer; the
//! outcome handle collects what happened on the way.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::cache::CachedResponse;
use crate::caching::{Consulted, consult};
use crate::dispatch::{CallContext, Dispatched, Prepared, Reply, dispatch};
use crate::error::ApiError;
use crate::estimate::{chat_prompt_words, responses_prompt_words};
use crate::extract::{JsonObject, required_array, required_string, stream_flag};
use crate::outcome::Route;
use crate::request_id::RequestId;
use crate::responses;
use crate::routing::InFlight;
use crate::state::SharedState;
use crate::streaming::{Relay, StreamContext, StreamFlavor, StreamTap, passthrough_body};
use crate::tracking::{OutcomeHandle, Usage};
use crate::upstream::{Endpoint, build_response, client_response_headers};

pub async fn chat_completions(
    State(state): State<SharedState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(outcome): Extension<OutcomeHandle>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let model = required_string(&body, "model")?.to_owned();
    required_array(&body, "messages")?;
    let streaming = stream_flag(&body)?;
    outcome.describe(&model, streaming);
    let model = state.model_index(&model)?;
    let cache = match consult(&state, Route::ChatCompletions, &headers, &body, &outcome).await {
        Consulted::Hit(response) => return Ok(response),
        Consulted::Proceed(write) => write,
    };
    let call = CallContext {
        headers: &headers,
        request_id: &request_id,
        streaming,
        outcome: &outcome,
        cache,
    };
    forward_chat(&state, &call, model, body).await
}

pub async fn responses(
    State(state): State<SharedState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(outcome): Extension<OutcomeHandle>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let model = required_string(&body, "model")?.to_owned();
    let streaming = stream_flag(&body)?;
    outcome.describe(&model, streaming);
    let model = state.model_index(&model)?;
    let cache = match consult(&state, Route::Responses, &headers, &body, &outcome).await {
        Consulted::Hit(response) => return Ok(response),
        Consulted::Proceed(write) => write,
    };
    let call = CallContext {
        headers: &headers,
        request_id: &request_id,
        streaming,
        outcome: &outcome,
        cache,
    };
    forward_responses(&state, &call, model, Value::Object(body)).await
}

async fn forward_chat(
    state: &SharedState,
    call: &CallContext<'_>,
    model: usize,
    mut body: Map<String, Value>,
) -> Result<Response, ApiError> {
    // Usage is what the ledger bills, and a stream only reports it when asked.
    let strip_usage = call.streaming && !asked_for_usage(&body);
    if strip_usage {
        ask_for_usage(&mut body);
    }
    call.outcome
        .set_prompt_estimate(chat_prompt_words(body.get("messages")));
    let dispatched = dispatch(state, call, model, |candidate| {
        body.insert("model".into(), state.upstream_model(candidate.model).into());
        Ok(Prepared {
            endpoint: Endpoint::ChatCompletions,
            payload: encode(&body)?,
            extra: (),
        })
    })
    .await?;
    let relay = Relay {
        flavor: StreamFlavor::Chat,
        strip_usage,
    };
    Ok(match dispatched {
        Dispatched::Refused(reply) => reply.into_client_response(),
        Dispatched::Answer(answer) => {
            relay_answer(call, answer.reply, answer.in_flight, relay).await
        }
    })
}

/// How one candidate serves a Responses request.
enum ResponsesMode {
    /// The upstream speaks the Responses API.
    Native,
    /// Translated onto the upstream's chat completions.
    Translated { chat_request: Value },
}

async fn forward_responses(
    state: &SharedState,
    call: &CallContext<'_>,
    model: usize,
    request: Value,
) -> Result<Response, ApiError> {
    let mut native = request.clone();
    let dispatched = dispatch(state, call, model, |candidate| {
        let upstream_model = state.upstream_model(candidate.model);
        if state.upstream(candidate.upstream).responses {
            native["model"] = upstream_model.into();
            call.outcome
                .set_prompt_estimate(responses_prompt_words(&request));
            return Ok(Prepared {
                endpoint: Endpoint::Responses,
                payload: encode(&native)?,
                extra: ResponsesMode::Native,
            });
        }
        let chat_request = responses::chat_request(state, &request, upstream_model)?;
        call.outcome
            .set_prompt_estimate(chat_prompt_words(chat_request.get("messages")));
        Ok(Prepared {
            endpoint: Endpoint::ChatCompletions,
            payload: encode(&chat_request)?,
            extra: ResponsesMode::Translated { chat_request },
        })
    })
    .await?;
    let answer = match dispatched {
        Dispatched::Refused(reply) => return Ok(reply.into_client_response()),
        Dispatched::Answer(answer) => answer,
    };
    match answer.extra {
        ResponsesMode::Native => {
            let relay = Relay {
                flavor: StreamFlavor::Responses,
                strip_usage: false,
            };
            Ok(relay_answer(call, answer.reply, answer.in_flight, relay).await)
        }
        ResponsesMode::Translated { chat_request } => {
            responses::relay_translated(
                state,
                call,
                &request,
                &chat_request,
                answer.reply,
                answer.in_flight,
            )
            .await
        }
    }
}

/// Relays a 2xx answer as the upstream sent it.
async fn relay_answer(
    call: &CallContext<'_>,
    reply: Reply,
    in_flight: InFlight,
    relay: Relay,
) -> Response {
    match reply {
        Reply::Stream(stream) => {
            let headers = client_response_headers(&stream.headers);
            let tap = stream_tap(call, in_flight, &headers);
            build_response(
                stream.status,
                headers,
                passthrough_body(stream.body, relay, tap),
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

fn asked_for_usage(body: &Map<String, Value>) -> bool {
    body.get("stream_options")
        .and_then(|options| options.get("include_usage"))
        == Some(&Value::Bool(true))
}

/// Sets `stream_options.include_usage`, keeping any other stream options.
fn ask_for_usage(body: &mut Map<String, Value>) {
    match body.get_mut("stream_options") {
        Some(Value::Object(options)) => {
            options.insert("include_usage".into(), Value::Bool(true));
        }
        _ => {
            body.insert("stream_options".into(), json!({"include_usage": true}));
        }
    }
}

fn encode(body: &impl serde::Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|err| {
        ApiError::invalid_request(format!("request body cannot be encoded: {err}"), None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test input is an object"),
        }
    }

    #[test]
    fn usage_is_requested_without_losing_other_stream_options() {
        let mut body = object(json!({"stream_options": {"other": 1}}));
        assert!(!asked_for_usage(&body));
        ask_for_usage(&mut body);
        assert_eq!(
            body["stream_options"],
            json!({"other": 1, "include_usage": true})
        );
        assert!(asked_for_usage(&body));

        let mut body = object(json!({"stream_options": null}));
        ask_for_usage(&mut body);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert!(!asked_for_usage(&object(
            json!({"stream_options": {"include_usage": false}})
        )));
    }
}
