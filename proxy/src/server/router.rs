//! The router: which handler serves which path, the middleware around them
//! (request id, auth, outcome tracking, body limit), and OpenAI-format
//! answers for unknown routes and methods.

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::{Router, middleware};

use crate::api::admin;
use crate::api::chat;
use crate::api::models;
use crate::api::responses;
use crate::api::state::SharedState;
use crate::api::stored;
use crate::gateway::headers::configure_forwarding;
use crate::server::auth::require_key;
use crate::server::request_id::track_request;
use crate::server::tracking::track_outcome;
use crate::shared::error::ApiError;

pub fn router(state: SharedState) -> Router {
    let max_body_bytes = state.config.server.max_body_bytes;
    configure_forwarding(&state.config.server.forward_headers);
    // Metrics label only the models served here, whatever names clients send.
    state
        .metrics
        .label_models(state.config.models.iter().map(|model| model.name.clone()));
    // Authentication comes first: a refused request is not a model request
    // and leaves no outcome.
    let model_endpoints = Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/responses", post(responses::responses))
        .route_layer(middleware::from_fn_with_state(state.clone(), track_outcome));
    let keyed = Router::new()
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{*id}", get(models::retrieve_model))
        .route(
            "/v1/responses/{id}",
            get(stored::retrieve).delete(stored::delete),
        )
        .route("/v1/responses/{id}/input_items", get(stored::input_items))
        .route("/v1/usage", get(admin::usage))
        .route("/admin/usage", get(admin::admin_usage))
        .merge(model_endpoints)
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(models::health))
        .route("/status", get(models::status))
        .route("/metrics", get(admin::metrics))
        .route("/stats", get(admin::stats))
        .merge(keyed)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(track_request))
        .with_state(state)
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
