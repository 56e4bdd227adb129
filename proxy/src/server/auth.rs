//! The auth middleware: the API key check in front of `/v1/*` and `/admin/*`.
//! With no keys configured every caller is tenant "anonymous".

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::state::SharedState;

/// Refuses a missing or unknown key with 401; otherwise the `Caller` is
/// available to what follows as a request extension.
pub async fn require_key(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    // A header that is not text cannot hold a valid key; it counts as malformed.
    let authorization = request
        .headers()
        .get(AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or("invalid"));
    match state.auth.authenticate(authorization) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => {
            state.metrics.auth_failure();
            (refusal.status(), Json(refusal.body())).into_response()
        }
    }
}
