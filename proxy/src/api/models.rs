//! The proxy's own informational endpoints: `/health`, `/status` (config and
//! upstream health for operators) and `/v1/models`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::api::state::SharedState;
use crate::shared::url::url_without_credentials;

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Configuration and upstream health for operators; keys are deliberately absent.
pub async fn status(State(state): State<SharedState>) -> Json<Value> {
    let upstreams: Vec<Value> = state
        .config
        .upstreams
        .iter()
        .enumerate()
        .map(|(index, upstream)| {
            let health = state.gateway.routing.health(index);
            json!({
                "name": upstream.name,
                "base_url": url_without_credentials(&upstream.base_url),
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

pub async fn list_models(State(state): State<SharedState>) -> Json<Value> {
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
