//! The proxied OpenAI endpoints: validate just enough to route, rewrite the
//! model, and relay to the model's upstream.

use axum::Extension;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::extract::{JsonObject, required_array, required_string, stream_flag};
use crate::request_id::{RequestId, RouteTag};
use crate::responses;
use crate::state::SharedState;
use crate::streaming::{StreamContext, StreamFlavor, passthrough_body};
use crate::upstream::{
    BufferedReply, Endpoint, Upstream, build_response, client_response_headers, is_event_stream,
};

pub async fn chat_completions(
    State(state): State<SharedState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Response {
    let mut tag = RouteTag::default();
    let outcome = forward_chat(&state, &request_id, &headers, body, &mut tag).await;
    tagged(outcome, tag)
}

pub async fn responses(
    State(state): State<SharedState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> Response {
    let mut tag = RouteTag::default();
    let outcome = forward_responses(&state, &request_id, &headers, body, &mut tag).await;
    tagged(outcome, tag)
}

/// Errors get the tag too, so a 502 still says which upstream failed.
fn tagged(outcome: Result<Response, ApiError>, tag: RouteTag) -> Response {
    let mut response = outcome.into_response();
    response.extensions_mut().insert(tag);
    response
}

async fn forward_chat(
    state: &SharedState,
    request_id: &str,
    headers: &HeaderMap,
    mut body: Map<String, Value>,
    tag: &mut RouteTag,
) -> Result<Response, ApiError> {
    let model = required_string(&body, "model")?.to_owned();
    tag.model = Some(model.clone());
    required_array(&body, "messages")?;
    let streaming = stream_flag(&body)?;
    let route = state.route(&model)?;
    tag.upstream = Some(route.upstream.name.clone());
    body.insert("model".into(), route.upstream_model().into());
    let call = UpstreamCall {
        upstream: route.upstream,
        headers,
        request_id,
    };
    call.relay(
        Endpoint::ChatCompletions,
        StreamFlavor::Chat,
        &body,
        streaming,
    )
    .await
}

async fn forward_responses(
    state: &SharedState,
    request_id: &str,
    headers: &HeaderMap,
    mut body: Map<String, Value>,
    tag: &mut RouteTag,
) -> Result<Response, ApiError> {
    let model = required_string(&body, "model")?.to_owned();
    tag.model = Some(model.clone());
    let streaming = stream_flag(&body)?;
    let route = state.route(&model)?;
    tag.upstream = Some(route.upstream.name.clone());
    let call = UpstreamCall {
        upstream: route.upstream,
        headers,
        request_id,
    };
    if route.upstream.responses {
        body.insert("model".into(), route.upstream_model().into());
        call.relay(
            Endpoint::Responses,
            StreamFlavor::Responses,
            &body,
            streaming,
        )
        .await
    } else {
        responses::via_chat(state, &call, route.upstream_model(), body, streaming).await
    }
}

/// One request's view of its upstream: the client headers to forward and the
/// request id to propagate.
pub struct UpstreamCall<'a> {
    pub upstream: &'a Upstream,
    pub headers: &'a HeaderMap,
    pub request_id: &'a str,
}

impl UpstreamCall<'_> {
    pub async fn send(
        &self,
        endpoint: Endpoint,
        body: &impl Serialize,
    ) -> Result<reqwest::Response, ApiError> {
        self.upstream
            .post_json(endpoint, self.headers, self.request_id, body)
            .await
    }

    pub async fn read(&self, response: reqwest::Response) -> Result<BufferedReply, ApiError> {
        BufferedReply::read(self.upstream, response, self.request_id).await
    }

    pub fn stream_context(&self) -> StreamContext {
        StreamContext {
            request_id: self.request_id.to_owned(),
            upstream: self.upstream.name.clone(),
        }
    }

    /// Streams are relayed only when the upstream actually answered with one;
    /// anything else (errors above all) is read whole and relayed as is.
    async fn relay(
        &self,
        endpoint: Endpoint,
        flavor: StreamFlavor,
        body: &Map<String, Value>,
        streaming: bool,
    ) -> Result<Response, ApiError> {
        let response = self.send(endpoint, body).await?;
        if streaming && response.status().is_success() && is_event_stream(response.headers()) {
            let status = response.status();
            let headers = client_response_headers(response.headers());
            let body =
                passthrough_body(self.upstream.body(response), flavor, self.stream_context());
            return Ok(build_response(status, headers, body));
        }
        Ok(self.read(response).await?.into_client_response())
    }
}
