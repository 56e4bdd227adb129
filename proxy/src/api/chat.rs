//! `POST /v1/chat/completions`: read the request, dispatch it over the
//! model's candidates, relay the answer; the outcome handle collects what
//! happened on the way.

use axum::Extension;
use axum::extract::State;
use axum::http::header::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::api::admission::{Admission, Arrival, admit};
use crate::api::extract::{JsonObject, required_array, required_string, stream_flag};
use crate::api::state::SharedState;
use crate::gateway::dispatch::{CallContext, Dispatched, Prepared, dispatch};
use crate::gateway::relay::answer::relay_answer;
use crate::gateway::relay::passthrough::{Passthrough, StreamFlavor};
use crate::gateway::upstream::Endpoint;
use crate::shared::error::ApiError;
use crate::shared::labels::Route;
use crate::shared::request::RequestId;
use crate::telemetry::estimate::chat_prompt_words;
use crate::telemetry::handle::OutcomeHandle;

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
    let arrival = Arrival {
        route: Route::ChatCompletions,
        model: &model,
        streaming,
        headers: &headers,
        request_id: &request_id,
        outcome: &outcome,
    };
    let (model, call) = match admit(&state, arrival, &body).await? {
        Admission::Answered(response) => return Ok(response),
        Admission::Forward { model, call } => (model, call),
    };
    forward_chat(&state, &call, model, body).await
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
    let dispatched = dispatch(&state.gateway, call, model, |candidate| {
        body.insert("model".into(), state.upstream_model(candidate.model).into());
        Prepared::encode(Endpoint::ChatCompletions, &body, ())
    })
    .await?;
    let passthrough = Passthrough::new(StreamFlavor::Chat, strip_usage);
    Ok(match dispatched {
        Dispatched::Refused(reply) => reply.into_client_response(),
        Dispatched::Answer(answer) => {
            relay_answer(call, answer.reply, answer.in_flight, passthrough).await
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_support::object;

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
