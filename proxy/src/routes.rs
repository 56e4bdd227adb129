//! The router, the proxy's own informational endpoints, and OpenAI-format
//! answers for unknown routes and methods.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::proxy;
use crate::request_id::track_request;
use crate::state::SharedState;

pub fn router(state: SharedState) -> Router {
    let max_body_bytes = state.config.server.max_body_bytes;
    Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/responses", post(proxy::responses))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(track_request))
        .with_state(state)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Configuration overview for operators; keys are deliberately absent.
async fn status(State(state): State<SharedState>) -> Json<Value> {
    let upstreams: Vec<Value> = state
        .config
        .upstreams
        .iter()
        .map(|upstream| {
            json!({
                "name": upstream.name,
                "base_url": upstream.base_url,
                "responses": upstream.responses,
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
