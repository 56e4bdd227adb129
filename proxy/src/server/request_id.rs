//! The request-id middleware: the `x-request-id` every response carries (and the
//! upstream receives), the `x-switchyard-upstream` header, and the one log line
//! per request.

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use crate::shared::headers::{REQUEST_ID_HEADER, UPSTREAM_HEADER};
use crate::shared::request::{RequestId, RouteTag};

const MAX_REQUEST_ID_LEN: usize = 128;

/// The client's id is reused only when it cannot corrupt logs or headers:
/// 1-128 visible ASCII characters, nothing else.
pub fn client_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let acceptable = (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_graphic());
    acceptable.then(|| value.to_owned())
}

pub async fn track_request(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id =
        client_request_id(request.headers()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));

    let mut response = next.run(request).await;

    let route = response
        .extensions()
        .get::<RouteTag>()
        .cloned()
        .unwrap_or_default();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    if let Some(value) = route
        .upstream
        .as_deref()
        .and_then(|name| HeaderValue::from_str(name).ok())
    {
        headers.insert(UPSTREAM_HEADER, value);
    }

    // For streams this is the time to the response head; the body may still be flowing.
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        model = %route.model.as_deref().unwrap_or("-"),
        upstream = %route.upstream.as_deref().unwrap_or("-"),
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_from(raw: &[u8]) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_bytes(raw).unwrap());
        client_request_id(&headers)
    }

    #[test]
    fn accepts_visible_ascii_up_to_128_chars() {
        assert_eq!(id_from(b"abc-123_~!").as_deref(), Some("abc-123_~!"));
        let longest = "x".repeat(128);
        assert_eq!(id_from(longest.as_bytes()), Some(longest));
    }

    #[test]
    fn rejects_empty_long_spaced_or_non_ascii_ids() {
        assert_eq!(id_from(b""), None);
        assert_eq!(id_from("x".repeat(129).as_bytes()), None);
        assert_eq!(id_from(b"has space"), None);
        assert_eq!(id_from(b"tab\there"), None);
        assert_eq!(id_from("caf\u{e9}".as_bytes()), None);
        assert_eq!(id_from(&[0x80, 0x41]), None);
    }

    #[test]
    fn missing_header_gives_none() {
        assert_eq!(client_request_id(&HeaderMap::new()), None);
    }
}
