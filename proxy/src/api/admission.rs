//! What both generation handlers do before going upstream: name the request
//! in its outcome, resolve its model, and let the cache answer it or arm the
//! write of its answer.

use axum::http::header::HeaderMap;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::api::state::SharedState;
use crate::gateway::caching::{Consulted, consult};
use crate::gateway::dispatch::CallContext;
use crate::shared::error::ApiError;
use crate::shared::labels::Route;
use crate::store::cache::entry::CachedResponse;
use crate::telemetry::handle::OutcomeHandle;
use crate::wire::items::response_id_in;

/// A request let in: answered already (a cache hit), or to forward.
pub enum Admission<'a> {
    Answered(Response),
    Forward { model: usize, call: CallContext<'a> },
}

/// The request's facts as both handlers read them.
pub struct Arrival<'a> {
    pub route: Route,
    pub model: &'a str,
    pub streaming: bool,
    pub headers: &'a HeaderMap,
    pub request_id: &'a str,
    pub outcome: &'a OutcomeHandle,
}

pub async fn admit<'a>(
    state: &SharedState,
    arrival: Arrival<'a>,
    body: &Map<String, Value>,
) -> Result<Admission<'a>, ApiError> {
    arrival.outcome.describe(arrival.model, arrival.streaming);
    let model = state.model_index(arrival.model)?;
    let kept = body.get("store") != Some(&Value::Bool(false));
    let servable =
        |entry: &CachedResponse| arrival.route != Route::Responses || !kept || held(state, entry);
    let cache = match consult(
        &state.cache,
        arrival.route,
        arrival.headers,
        body,
        arrival.outcome,
        servable,
    )
    .await
    {
        Consulted::Hit(response) => return Ok(Admission::Answered(response)),
        Consulted::Proceed(write) => write,
    };
    let call = CallContext {
        headers: arrival.headers,
        request_id: arrival.request_id,
        streaming: arrival.streaming,
        outcome: arrival.outcome,
        cache,
    };
    Ok(Admission::Forward { model, call })
}

/// Whether the response a cached Response names is still held, so a client
/// may continue or retrieve it: by the proxy's store (translated), by the
/// upstream it is pinned to, or, for an answer another proxy cached through a
/// shared backend, by the native upstream of this config that made it (now
/// pinned here too).
fn held(state: &SharedState, entry: &CachedResponse) -> bool {
    let Some(id) = response_id_in(&entry.body, entry.stream) else {
        return false;
    };
    if state.store.contains(&id) || state.pins.upstream(&id).is_some() {
        return true;
    }
    let maker = state
        .config
        .upstreams
        .iter()
        .position(|upstream| upstream.responses && upstream.name == entry.upstream);
    if let Some(upstream) = maker {
        state.pins.pin(&id, upstream);
    }
    maker.is_some()
}
