//! The router, the proxy's own informational endpoints, and OpenAI-format
//! answers for unknown routes and methods.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde_json::{Value, json};

use crate::access::require_key;
use crate::error::ApiError;
use crate::proxy;
use crate::reports;
use crate::request_id::track_request;
use crate::state::SharedState;
use crate::tracking::track_outcome;

pub fn router(state: SharedState) -> Router {
    let max_body_bytes = state.config.server.max_body_bytes;
    // Authentication comes first: a refused request is not a model request
    // and leaves no outcome.
    let model_endpoints = Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/responses", post(proxy::responses))
        .route_layer(middleware::from_fn_with_state(state.clone(), track_outcome));
    let keyed = Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/usage", get(reports::usage))
        .route("/admin/usage", get(reports::admin_usage))
        .merge(model_endpoints)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(reports::metrics))
        .route("/stats", get(reports::stats))
        .merge(keyed)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(track_request))
        .with_state(state)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Configuration and upstream health for operators; keys are deliberately absent.
async fn status(State(state): State<SharedState>) -> Json<Value> {
    let upstreams: Vec<Value> = state
        .config
        .upstreams
        .iter()
        .enumerate()
        .map(|(index, upstream)| {
            let health = state.routing.health(index);
            json!({
                "name": upstream.name,
                "base_url": crate::config::url_without_credentials(&upstream.base_url),
                "responses": upstream.responses,
                "weight": upstream.weight,
                "healthy": health.healthy,
                "consecutive_failures": health.consecutive_failures,
                "ejected_until_ms": health.ejected_until_ms,
                "in_flight": health.in_flight,
            })
        })
        .collect();
    let models: Vec<Value> = state
        .config
        .models
        .iter()
        .map(|model| json!({"name": model.name, "upstreams": model.upstreams}))
        .collect();
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "upstreams": upstreams,
        "models": models,
    }))
}

async fn list_models(State(state): State<SharedState>) -> Json<Value> {
    let data: Vec<Value> = state
        .config
        .models
        .iter()
        .map(|model| {
            json!({
                "id": model.name,
                "object": "model",
                "created": state.started_unix,
                "owned_by": "switchyard",
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
