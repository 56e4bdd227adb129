//! The one error type every handler returns, rendered in the OpenAI error format
//! `{"error": {"message", "type", "param", "code"}}` so clients written against
//! OpenAI parse proxy-generated errors the same way as upstream ones.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },

    #[error("The model `{0}` does not exist or is not served by this proxy")]
    ModelNotFound(String),

    #[error("Previous response with id '{0}' not found")]
    PreviousResponseNotFound(String),

    /// `responses.retrieve`, `delete` or `input_items.list` of an id no
    /// upstream of the proxy's and not its own store holds.
    #[error("Response with id '{0}' not found.")]
    ResponseNotFound(String),

    /// An `item_reference` to an item the proxy does not keep.
    #[error("Item with id '{0}' not found.")]
    ItemNotFound(String),

    #[error("Request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },

    #[error("Invalid URL ({method} {path})")]
    RouteNotFound { method: String, path: String },

    #[error("Method {method} is not allowed for {path}")]
    MethodNotAllowed { method: String, path: String },

    #[error("Upstream \"{upstream}\" is unreachable")]
    UpstreamUnreachable { upstream: String },

    #[error("Upstream \"{upstream}\" did not answer in time")]
    UpstreamTimeout { upstream: String },

    #[error("Upstream \"{upstream}\" sent an unusable response: {detail}")]
    UpstreamBadResponse { upstream: String, detail: String },

    #[error("Upstream \"{upstream}\" closed the connection before its answer was complete")]
    UpstreamDisconnected { upstream: String },

    /// A whole upstream body (an answer or an error) beyond the upstream's
    /// `max_body_bytes`.
    #[error("Upstream \"{upstream}\" sent a body larger than the limit of {limit} bytes")]
    UpstreamBodyTooLarge { upstream: String, limit: usize },

    /// One event of an upstream stream beyond the upstream's `max_event_bytes`.
    #[error("Upstream \"{upstream}\" sent a stream event larger than the limit of {limit} bytes")]
    UpstreamEventTooLarge { upstream: String, limit: usize },

    // What ends a stream whose 200 head the client already has; rendered as
    // the stream's last event rather than as a response.
    #[error("Upstream \"{upstream}\" stopped sending data")]
    UpstreamStalled { upstream: String },

    #[error("Upstream \"{upstream}\" did not finish in time")]
    UpstreamOvertime { upstream: String },

    #[error("Upstream \"{upstream}\" closed the stream early")]
    UpstreamStreamCut { upstream: String },

    /// `what` completes "sent ...": a chunk that is not JSON, a line that is not SSE.
    #[error("Upstream \"{upstream}\" sent {what}")]
    UpstreamMalformedStream {
        upstream: String,
        what: &'static str,
    },

    #[error("Upstream \"{upstream}\" ended the stream before the answer was complete")]
    UpstreamTruncated { upstream: String },

    /// An error the upstream reported inside its stream, relayed with its own
    /// code and message.
    #[error("{message}")]
    UpstreamReported { code: String, message: String },

    #[error("The request body did not arrive within {limit_ms} ms")]
    RequestTimeout { limit_ms: u64 },

    #[error("{0}")]
    Forbidden(String),

    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid_request(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    /// An error event from an upstream stream (`{"code", "message", ...}`).
    pub fn reported(error: &Value) -> Self {
        let text = |field: &str| error.get(field).and_then(Value::as_str).map(str::to_owned);
        ApiError::UpstreamReported {
            code: text("code").unwrap_or_else(|| "upstream_error".to_owned()),
            message: text("message").unwrap_or_else(|| "Upstream stream failed".to_owned()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::ModelNotFound(_)
            | ApiError::PreviousResponseNotFound(_)
            | ApiError::ResponseNotFound(_)
            | ApiError::ItemNotFound(_)
            | ApiError::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UpstreamUnreachable { .. }
            | ApiError::UpstreamBadResponse { .. }
            | ApiError::UpstreamDisconnected { .. }
            | ApiError::UpstreamBodyTooLarge { .. }
            | ApiError::UpstreamEventTooLarge { .. }
            | ApiError::UpstreamStreamCut { .. }
            | ApiError::UpstreamMalformedStream { .. }
            | ApiError::UpstreamTruncated { .. }
            | ApiError::UpstreamReported { .. } => StatusCode::BAD_GATEWAY,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::UpstreamTimeout { .. }
            | ApiError::UpstreamStalled { .. }
            | ApiError::UpstreamOvertime { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::UpstreamUnreachable { .. }
            | ApiError::UpstreamTimeout { .. }
            | ApiError::UpstreamBadResponse { .. }
            | ApiError::UpstreamDisconnected { .. }
            | ApiError::UpstreamBodyTooLarge { .. }
            | ApiError::UpstreamEventTooLarge { .. }
            | ApiError::UpstreamStalled { .. }
            | ApiError::UpstreamOvertime { .. }
            | ApiError::UpstreamStreamCut { .. }
            | ApiError::UpstreamMalformedStream { .. }
            | ApiError::UpstreamTruncated { .. }
            | ApiError::UpstreamReported { .. } => "upstream_error",
            ApiError::Internal(_) => "server_error",
            _ => "invalid_request_error",
        }
    }

    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::InvalidRequest { .. }
            | ApiError::ItemNotFound(_)
            | ApiError::ResponseNotFound(_) => None,
            ApiError::ModelNotFound(_) => Some("model_not_found"),
            ApiError::PreviousResponseNotFound(_) => Some("previous_response_not_found"),
            ApiError::PayloadTooLarge { .. } => Some("request_too_large"),
            ApiError::RouteNotFound { .. } => Some("unknown_url"),
            ApiError::MethodNotAllowed { .. } => Some("method_not_allowed"),
            ApiError::UpstreamUnreachable { .. } => Some("upstream_unreachable"),
            ApiError::UpstreamTimeout { .. }
            | ApiError::UpstreamStalled { .. }
            | ApiError::UpstreamOvertime { .. } => Some("upstream_timeout"),
            ApiError::UpstreamBadResponse { .. } | ApiError::UpstreamMalformedStream { .. } => {
                Some("upstream_bad_response")
            }
            ApiError::UpstreamDisconnected { .. } | ApiError::UpstreamStreamCut { .. } => {
                Some("upstream_disconnected")
            }
            ApiError::UpstreamTruncated { .. } => Some("upstream_truncated"),
            ApiError::UpstreamBodyTooLarge { .. } => Some("upstream_body_too_large"),
            ApiError::UpstreamEventTooLarge { .. } => Some("upstream_event_too_large"),
            ApiError::UpstreamReported { code, .. } => Some(code),
            ApiError::RequestTimeout { .. } => Some("request_timeout"),
            ApiError::Forbidden(_) => Some("insufficient_permissions"),
            ApiError::Internal(_) => None,
        }
    }

    pub fn param(&self) -> Option<&str> {
        match self {
            ApiError::InvalidRequest { param, .. } => param.as_deref(),
            ApiError::ModelNotFound(_) => Some("model"),
            ApiError::PreviousResponseNotFound(_) => Some("previous_response_id"),
            ApiError::ItemNotFound(_) => Some("input"),
            _ => None,
        }
    }

    pub fn body(&self) -> Value {
        error_body(
            &self.to_string(),
            self.error_type(),
            self.param(),
            self.code(),
        )
    }
}

/// Builds an OpenAI error body; also used for errors that are not `ApiError`s,
/// such as wrapped upstream bodies and mid-stream error events.
pub fn error_body(
    message: &str,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Value {
    json!({
        "error": {
            "message": message,
            "type": error_type,
            "param": param,
            "code": code,
        }
    })
}

/// What went wrong, attached to error responses (proxy-made or relayed) so the
/// request's outcome can count errors by type without re-parsing the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorTag(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let tag = ErrorTag(self.code().unwrap_or(self.error_type()).to_owned());
        let mut response = (self.status(), Json(self.body())).into_response();
        response.extensions_mut().insert(tag);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn rendered(error: ApiError) -> (StatusCode, Value) {
        let response = error.into_response();
        let status = response.status();
        let content_type = response.headers()[axum::http::header::CONTENT_TYPE].clone();
        assert_eq!(content_type, "application/json");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn every_variant_renders_the_openai_shape() {
        let cases = [
            (
                ApiError::invalid_request("bad", Some("messages")),
                400,
                "invalid_request_error",
                Value::Null,
                json!("messages"),
            ),
            (
                ApiError::ModelNotFound("x".into()),
                404,
                "invalid_request_error",
                json!("model_not_found"),
                json!("model"),
            ),
            (
                ApiError::PreviousResponseNotFound("resp_1".into()),
                404,
                "invalid_request_error",
                json!("previous_response_not_found"),
                json!("previous_response_id"),
            ),
            (
                ApiError::ResponseNotFound("resp_1".into()),
                404,
                "invalid_request_error",
                Value::Null,
                Value::Null,
            ),
            (
                ApiError::ItemNotFound("fc_1".into()),
                404,
                "invalid_request_error",
                Value::Null,
                json!("input"),
            ),
            (
                ApiError::PayloadTooLarge { limit: 10 },
                413,
                "invalid_request_error",
                json!("request_too_large"),
                Value::Null,
            ),
            (
                ApiError::RouteNotFound {
                    method: "GET".into(),
                    path: "/nope".into(),
                },
                404,
                "invalid_request_error",
                json!("unknown_url"),
                Value::Null,
            ),
            (
                ApiError::MethodNotAllowed {
                    method: "GET".into(),
                    path: "/v1/chat/completions".into(),
                },
                405,
                "invalid_request_error",
                json!("method_not_allowed"),
                Value::Null,
            ),
            (
                ApiError::UpstreamUnreachable {
                    upstream: "a".into(),
                },
                502,
                "upstream_error",
                json!("upstream_unreachable"),
                Value::Null,
            ),
            (
                ApiError::UpstreamTimeout {
                    upstream: "a".into(),
                },
                504,
                "upstream_error",
                json!("upstream_timeout"),
                Value::Null,
            ),
            (
                ApiError::UpstreamBadResponse {
                    upstream: "a".into(),
                    detail: "not JSON".into(),
                },
                502,
                "upstream_error",
                json!("upstream_bad_response"),
                Value::Null,
            ),
            (
                ApiError::UpstreamDisconnected {
                    upstream: "a".into(),
                },
                502,
                "upstream_error",
                json!("upstream_disconnected"),
                Value::Null,
            ),
            (
                ApiError::UpstreamBodyTooLarge {
                    upstream: "a".into(),
                    limit: 10,
                },
                502,
                "upstream_error",
                json!("upstream_body_too_large"),
                Value::Null,
            ),
            (
                ApiError::UpstreamEventTooLarge {
                    upstream: "a".into(),
                    limit: 10,
                },
                502,
                "upstream_error",
                json!("upstream_event_too_large"),
                Value::Null,
            ),
            (
                ApiError::UpstreamStalled {
                    upstream: "a".into(),
                },
                504,
                "upstream_error",
                json!("upstream_timeout"),
                Value::Null,
            ),
            (
                ApiError::UpstreamOvertime {
                    upstream: "a".into(),
                },
                504,
                "upstream_error",
                json!("upstream_timeout"),
                Value::Null,
            ),
            (
                ApiError::UpstreamStreamCut {
                    upstream: "a".into(),
                },
                502,
                "upstream_error",
                json!("upstream_disconnected"),
                Value::Null,
            ),
            (
                ApiError::UpstreamMalformedStream {
                    upstream: "a".into(),
                    what: "a stream chunk that is not JSON",
                },
                502,
                "upstream_error",
                json!("upstream_bad_response"),
                Value::Null,
            ),
            (
                ApiError::UpstreamTruncated {
                    upstream: "a".into(),
                },
                502,
                "upstream_error",
                json!("upstream_truncated"),
                Value::Null,
            ),
            (
                ApiError::reported(&json!({"code": "rate_limited", "message": "slow down"})),
                502,
                "upstream_error",
                json!("rate_limited"),
                Value::Null,
            ),
            (
                ApiError::reported(&json!({})),
                502,
                "upstream_error",
                json!("upstream_error"),
                Value::Null,
            ),
            (
                ApiError::RequestTimeout { limit_ms: 10 },
                408,
                "invalid_request_error",
                json!("request_timeout"),
                Value::Null,
            ),
        ];
        for (error, status, error_type, code, param) in cases {
            let message = error.to_string();
            let (actual_status, body) = rendered(error).await;
            assert_eq!(actual_status.as_u16(), status, "{message}");
            let object = body["error"].as_object().unwrap();
            assert_eq!(object.len(), 4, "exactly message/type/param/code: {body}");
            assert_eq!(object["message"], json!(message));
            assert_eq!(object["type"], json!(error_type));
            assert_eq!(object["code"], code);
            assert_eq!(object["param"], param);
        }
    }

    #[test]
    fn stream_failures_keep_their_messages() {
        let upstream = || "up".to_owned();
        let cases = [
            (
                ApiError::UpstreamStalled {
                    upstream: upstream(),
                },
                "Upstream \"up\" stopped sending data",
            ),
            (
                ApiError::UpstreamOvertime {
                    upstream: upstream(),
                },
                "Upstream \"up\" did not finish in time",
            ),
            (
                ApiError::UpstreamStreamCut {
                    upstream: upstream(),
                },
                "Upstream \"up\" closed the stream early",
            ),
            (
                ApiError::UpstreamMalformedStream {
                    upstream: upstream(),
                    what: "a stream chunk that is not JSON",
                },
                "Upstream \"up\" sent a stream chunk that is not JSON",
            ),
            (
                ApiError::UpstreamTruncated {
                    upstream: upstream(),
                },
                "Upstream \"up\" ended the stream before the answer was complete",
            ),
            (
                ApiError::reported(&json!({"message": "overloaded"})),
                "overloaded",
            ),
            (ApiError::reported(&json!(null)), "Upstream stream failed"),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
