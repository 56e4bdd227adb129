//! `POST /v1/responses`: natively on upstreams that speak the Responses
//! API, translated onto chat completions on the others.

use axum::Extension;
use axum::extract::State;
use axum::http::header::HeaderMap;
use axum::response::Response;
use serde_json::Value;

use crate::api::admission::{Admission, Arrival, admit};
use crate::api::extract::{JsonObject, required_string, stream_flag};
use crate::api::state::{AppState, SharedState};
use crate::gateway::dispatch::{
    CallContext, Dispatched, Prepared, Reply, dispatch_on, json_payload,
};
use crate::gateway::relay::answer::{relay_answer, relay_translated};
use crate::gateway::relay::passthrough::{Passthrough, StreamFlavor};
use crate::gateway::routing::Plan;
use crate::gateway::upstream::Endpoint;
use crate::shared::error::ApiError;
use crate::shared::labels::Route;
use crate::shared::request::RequestId;
use crate::telemetry::estimate::{chat_prompt_words, responses_prompt_words};
use crate::telemetry::handle::OutcomeHandle;
use crate::wire::translate::request::responses_to_chat_request;

pub async fn responses(
    State(state): State<SharedState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(outcome): Extension<OutcomeHandle>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let model = required_string(&body, "model")?.to_owned();
    let streaming = stream_flag(&body)?;
    let arrival = Arrival {
        route: Route::Responses,
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
    forward_responses(&state, &call, model, Value::Object(body)).await
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
    let plan = match request.get("previous_response_id").and_then(Value::as_str) {
        Some(previous) => continuation_plan(state, model, previous)?,
        None => state.gateway.routing.plan(model),
    };
    let mut native = request.clone();
    let dispatched = dispatch_on(&state.gateway, call, plan, |candidate| {
        let upstream_model = state.upstream_model(candidate.model);
        if state.upstream(candidate.upstream).responses {
            native["model"] = upstream_model.into();
            call.outcome
                .set_prompt_estimate(responses_prompt_words(&request));
            return Prepared::encode(Endpoint::Responses, &native, ResponsesMode::Native);
        }
        let chat_request = chat_request(state, &request, upstream_model)?;
        call.outcome
            .set_prompt_estimate(chat_prompt_words(chat_request.get("messages")));
        Ok(Prepared {
            endpoint: Endpoint::ChatCompletions,
            payload: json_payload(&chat_request)?,
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
            let mut passthrough = Passthrough::new(StreamFlavor::Responses, false);
            if request.get("store") != Some(&Value::Bool(false)) {
                let (pins, upstream) = (state.pins.clone(), answer.candidate.upstream);
                match &answer.reply {
                    Reply::Complete(reply) => {
                        let id = reply.json.as_ref().and_then(|body| body.get("id"));
                        if let Some(id) = id.and_then(Value::as_str) {
                            pins.pin(id, upstream);
                        }
                    }
                    Reply::Stream(_) => {
                        passthrough =
                            passthrough.on_response_id(Box::new(move |id| pins.pin(id, upstream)));
                    }
                }
            }
            Ok(relay_answer(call, answer.reply, answer.in_flight, passthrough).await)
        }
        ResponsesMode::Translated { chat_request } => {
            relay_translated(
                &state.store,
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

/// Where a continued response lives decides where its continuation goes,
/// whatever the model's strategy: a response the proxy translated is in its
/// store, so only chat upstreams can continue it; a native one only on the
/// upstream that made it; an id the proxy never saw (made before a restart,
/// or elsewhere) only on native upstreams, which may know it. A request no
/// upstream of the model can serve that way is refused before any is tried.
fn continuation_plan<'s>(
    state: &'s AppState,
    model: usize,
    previous: &str,
) -> Result<Plan<'s>, ApiError> {
    let holder = if state.store.contains(previous) {
        Holder::Store
    } else {
        match state.pins.upstream(previous) {
            Some(upstream) => Holder::Upstream(upstream),
            None => Holder::Unknown,
        }
    };
    let allowed = move |upstream: usize| match holder {
        Holder::Store => !state.upstream(upstream).responses,
        Holder::Upstream(pinned) => upstream == pinned,
        Holder::Unknown => state.upstream(upstream).responses,
    };
    let routing = &state.gateway.routing;
    if routing.reachable(model).any(allowed) {
        return Ok(routing.plan_within(model, allowed));
    }
    let model_name = &state.config.models[model].name;
    Err(match holder {
        Holder::Unknown => ApiError::PreviousResponseNotFound(previous.to_owned()),
        Holder::Store => ApiError::invalid_request(
            format!(
                "Previous response '{previous}' was translated by the proxy from a chat upstream, \
                 and model '{model_name}' has no chat upstream to continue it on."
            ),
            Some("previous_response_id"),
        ),
        Holder::Upstream(pinned) => ApiError::invalid_request(
            format!(
                "Previous response '{previous}' is held by upstream '{}', which does not serve \
                 model '{model_name}'; continue it with a model that upstream serves.",
                state.upstream(pinned).name
            ),
            Some("previous_response_id"),
        ),
    })
}

#[derive(Clone, Copy)]
enum Holder {
    /// The proxy's own store (a translated response).
    Store,
    /// The upstream, by position, that produced a native response.
    Upstream(usize),
    Unknown,
}

/// The chat request a Responses request becomes for one model, with the
/// conversation its `previous_response_id` continues and its item references
/// resolved to the output items the proxy produced.
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
    let items = |id: &str| state.store.item(id);
    responses_to_chat_request(request, &history, &items, upstream_model).map_err(|err| {
        match err.missing_item {
            Some(id) => ApiError::ItemNotFound(id),
            None => ApiError::InvalidRequest {
                message: err.message,
                param: err.param,
            },
        }
    })
}
