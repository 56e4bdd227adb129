//! Reading a request body as a JSON object, with every failure (including an
//! oversized body) reported as an OpenAI-format error rather than axum's plain text.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::api::state::SharedState;
use crate::shared::error::ApiError;

pub struct JsonObject(pub Map<String, Value>);

impl FromRequest<SharedState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &SharedState) -> Result<Self, ApiError> {
        let limit = state.config.server.request_body_timeout();
        // A client that stops sending part-way would otherwise hold the
        // request (and its connection) open for as long as it likes.
        let read = tokio::time::timeout(limit, Bytes::from_request(request, state))
            .await
            .map_err(|_elapsed| ApiError::RequestTimeout {
                limit_ms: limit.as_millis() as u64,
            })?;
        let bytes = read.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: state.config.server.max_body_bytes,
                }
            } else {
                ApiError::invalid_request(rejection.body_text(), None)
            }
        })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(object)) => Ok(JsonObject(object)),
            Ok(_) => Err(ApiError::invalid_request(
                "The request body must be a JSON object",
                None,
            )),
            Err(err) => Err(ApiError::invalid_request(
                format!("The request body is not valid JSON: {err}"),
                None,
            )),
        }
    }
}

pub fn required_string<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(value)) => Ok(value),
        None | Some(Value::Null) => Err(ApiError::invalid_request(
            format!("Missing required parameter: '{field}'"),
            Some(field),
        )),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

pub fn optional_string<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(wrong_type(field, "a string")),
    }
}

pub fn required_array(body: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    match body.get(field) {
        Some(Value::Array(_)) => Ok(()),
        None | Some(Value::Null) => Err(ApiError::invalid_request(
            format!("Missing required parameter: '{field}'"),
            Some(field),
        )),
        Some(_) => Err(wrong_type(field, "an array")),
    }
}

/// `stream` defaults to false when absent or null.
pub fn stream_flag(body: &Map<String, Value>) -> Result<bool, ApiError> {
    match body.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(flag)) => Ok(*flag),
        Some(_) => Err(wrong_type("stream", "a boolean")),
    }
}

fn wrong_type(field: &str, expected: &str) -> ApiError {
    ApiError::invalid_request(
        format!("Invalid type for '{field}': expected {expected}"),
        Some(field),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_support::object;
    use serde_json::json;

    fn param(err: ApiError) -> Option<String> {
        err.param().map(str::to_owned)
    }

    #[test]
    fn field_checks_name_the_offending_parameter() {
        let body = object(json!({"model": 3, "messages": {}, "stream": "yes", "id": null}));
        assert_eq!(
            param(required_string(&body, "model").unwrap_err()).as_deref(),
            Some("model")
        );
        assert_eq!(
            param(required_array(&body, "messages").unwrap_err()).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param(stream_flag(&body).unwrap_err()).as_deref(),
            Some("stream")
        );
        assert_eq!(optional_string(&body, "id").unwrap(), None);
        assert!(required_string(&body, "absent").is_err());
    }

    #[test]
    fn valid_fields_are_returned() {
        let body = object(json!({"model": "m", "messages": [], "stream": true, "id": "r"}));
        assert_eq!(required_string(&body, "model").unwrap(), "m");
        assert!(required_array(&body, "messages").is_ok());
        assert!(stream_flag(&body).unwrap());
        assert_eq!(optional_string(&body, "id").unwrap(), Some("r"));
        assert!(!stream_flag(&Map::new()).unwrap());
    }
}
