//! Reading what the proxy recorded: per-tenant usage from the ledger
//! (`/v1/usage`, `/admin/usage`), Prometheus metrics (`/metrics`) and the
//! JSON summary (`/stats`).

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::state::SharedState;
use crate::shared::caller::Caller;
use crate::shared::error::ApiError;
use crate::store::ledger::Usage;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 100_000;

/// A tenant reads its own usage; the admin key reads any tenant's with
/// `?tenant=` (its own, "admin", without).
pub async fn usage(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Usage>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::invalid_request(format!("Invalid query string: {rejection}"), None)
    })?;
    let own = caller.tenant_name();
    let tenant = match query.get("tenant").map(String::as_str) {
        None => own,
        Some(asked) if asked == own || caller == Caller::Admin => asked,
        Some(_) => {
            return Err(ApiError::Forbidden(
                "This key may only read its own tenant's usage".into(),
            ));
        }
    };
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .trim()
            .parse::<usize>()
            .map_err(|_| {
                ApiError::invalid_request(
                    "Invalid 'limit': expected a non-negative integer",
                    Some("limit"),
                )
            })?
            .min(MAX_LIMIT),
    };
    state
        .ledger
        .usage(tenant, limit)
        .await
        .map(Json)
        .map_err(ledger_unavailable)
}

/// Every tenant's totals; admin key only.
pub async fn admin_usage(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    if caller != Caller::Admin {
        return Err(ApiError::Forbidden(
            "This endpoint requires the admin key".into(),
        ));
    }
    let tenants = state
        .ledger
        .totals_by_tenant()
        .await
        .map_err(ledger_unavailable)?;
    Ok(Json(json!({ "tenants": tenants })))
}

fn ledger_unavailable(err: String) -> ApiError {
    tracing::error!("usage read failed: {err}");
    ApiError::Internal("The usage ledger cannot be read right now".into())
}

pub async fn metrics(State(state): State<SharedState>) -> Response {
    let mut response = state.render_metrics().into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub async fn stats(State(state): State<SharedState>) -> Json<Value> {
    Json(state.metrics.stats())
}
