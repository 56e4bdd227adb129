//! A response after it was made: `GET /v1/responses/{id}`
//! (`responses.retrieve`), `DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`. A response the proxy translated is
//! served from its own store; a native one is asked of the upstream that made
//! it; any other id is the API's 404.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::state::SharedState;
use crate::shared::error::ApiError;
use crate::shared::request::RequestId;
use crate::wire::items::{PageQuery, page};

type QueryPairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

pub async fn retrieve(
    State(state): State<SharedState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: QueryPairs,
    uri: Uri,
) -> Result<Response, ApiError> {
    if let Some(response) = state.store.response(&id) {
        // Replaying a finished translation as events would be a stream the
        // upstream never sent; a client that asks for it is told so.
        if query_pairs(query)?
            .iter()
            .any(|(name, value)| name == "stream" && value != "false")
        {
            return Err(ApiError::invalid_request(
                "This response was translated by the proxy from a chat upstream and cannot be streamed again; retrieve it without 'stream'.",
                Some("stream"),
            ));
        }
        return Ok(Json(response.as_ref().clone()).into_response());
    }
    on_upstream(&state, &id, Method::GET, &uri, &headers, &request_id).await
}

pub async fn delete(
    State(state): State<SharedState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: Uri,
) -> Result<Response, ApiError> {
    if state.store.remove(&id) {
        return Ok(Json(json!({"id": id, "object": "response", "deleted": true})).into_response());
    }
    let answer = on_upstream(&state, &id, Method::DELETE, &uri, &headers, &request_id).await?;
    if answer.status().is_success() {
        state.pins.unpin(&id);
    }
    Ok(answer)
}

pub async fn input_items(
    State(state): State<SharedState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: QueryPairs,
    uri: Uri,
) -> Result<Response, ApiError> {
    if let Some(items) = state.store.input_items(&id) {
        let query = PageQuery::parse(&query_pairs(query)?)
            .map_err(|bad| ApiError::invalid_request(bad.message, Some(bad.param)))?;
        return Ok(Json(page(&items, &query)).into_response());
    }
    on_upstream(&state, &id, Method::GET, &uri, &headers, &request_id).await
}

/// The same request, sent to the upstream that made the response (its base
/// URL stands for `/v1`), answered as that upstream answered.
async fn on_upstream(
    state: &SharedState,
    id: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    request_id: &str,
) -> Result<Response, ApiError> {
    let upstream = state
        .pins
        .upstream(id)
        .ok_or_else(|| ApiError::ResponseNotFound(id.to_owned()))?;
    let path = uri
        .path_and_query()
        .map_or(uri.path(), |path| path.as_str());
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let reply = state
        .upstream(upstream)
        .fetch(method, path, headers, request_id)
        .await?;
    Ok(reply.into_client_response())
}

fn query_pairs(query: QueryPairs) -> Result<Vec<(String, String)>, ApiError> {
    query
        .map(|Query(pairs)| pairs)
        .map_err(|rejection| ApiError::invalid_request(rejection.body_text(), None))
}
