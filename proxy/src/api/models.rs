//! The proxy's own informational endpoints: `/health`, `/status` (config and
//! upstream health for operators), `/v1/models` and `/v1/models/{id}`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::Uri;
use serde_json::{Value, json};

use crate::api::state::SharedState;
use crate::shared::error::ApiError;
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
        .map(|model| model_object(&state, &model.name))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// One configured model, as `models.retrieve` reads it; any other id is the
/// API's 404 `model_not_found`. The id may hold slashes (`org/model`); one
/// that does not decode to UTF-8 names no model either, and is shown as sent.
pub async fn retrieve_model(
    State(state): State<SharedState>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Result<Json<Value>, ApiError> {
    let id = match id {
        Ok(Path(id)) => id,
        Err(_) => uri
            .path()
            .strip_prefix("/v1/models/")
            .unwrap_or_default()
            .to_owned(),
    };
    match state.config.models.iter().find(|model| model.name == id) {
        Some(model) => Ok(Json(model_object(&state, &model.name))),
        None => Err(ApiError::ModelNotFound(id)),
    }
}

fn model_object(state: &SharedState, id: &str) -> Value {
    json!({
        "id": id,
        "object": "model",
        "created": state.started_unix,
        "owned_by": "switchyard",
    })
}
