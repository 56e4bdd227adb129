//! The header policy: which headers cross the proxy in each direction (no
//! hop-by-hop ones, none the proxy recomputes), the upstream's key in place of
//! the client's, and the proxy's request id.

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::shared::headers::REQUEST_ID_HEADER;

/// Headers that describe a single connection rather than the message (RFC 9110 7.6.1),
/// so they must not be relayed in either direction.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client headers that the proxy recomputes or replaces: the body is re-serialised
/// as JSON (length, type), the upstream is a different host, the key is the
/// upstream's own, and the response is relayed without decoding, so compression
/// must not be negotiated. `expect` is dropped because the body is already fully read.
const NOT_FORWARDED_UPSTREAM: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept-encoding",
    "authorization",
    "expect",
];

/// Recomputed for the client: the proxy re-frames bodies, and `accept-encoding`
/// was never forwarded, so any encoding header would be a lie.
const NOT_FORWARDED_DOWNSTREAM: &[&str] = &["content-length", "content-encoding"];

pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("text/event-stream"))
}

/// Names listed in a `Connection` header are hop-by-hop for that message too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

fn filtered(headers: &HeaderMap, also_dropped: &[&str]) -> HeaderMap {
    let listed = connection_listed(headers);
    let mut kept = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name_str = name.as_str();
        if HOP_BY_HOP.contains(&name_str)
            || also_dropped.contains(&name_str)
            || listed.contains(name)
        {
            continue;
        }
        kept.append(name.clone(), value.clone());
    }
    kept
}

pub fn upstream_request_headers(
    client: &HeaderMap,
    upstream_authorization: Option<&HeaderValue>,
    request_id: &str,
) -> HeaderMap {
    let mut headers = filtered(client, NOT_FORWARDED_UPSTREAM);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // Without an upstream key the client's own credentials are what the upstream expects.
    let authorization = upstream_authorization.or_else(|| client.get(header::AUTHORIZATION));
    if let Some(value) = authorization {
        headers.insert(header::AUTHORIZATION, value.clone());
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, value);
    }
    headers
}

pub fn client_response_headers(upstream: &HeaderMap) -> HeaderMap {
    filtered(upstream, NOT_FORWARDED_DOWNSTREAM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_support::headers;

    fn client_headers() -> HeaderMap {
        headers(&[
            ("host", "proxy.local"),
            ("content-length", "12"),
            ("accept-encoding", "gzip"),
            ("authorization", "Bearer client-key"),
            ("connection", "keep-alive, x-per-hop"),
            ("keep-alive", "timeout=5"),
            ("x-per-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic abc"),
            ("x-mock-tag", "t1"),
            ("x-request-id", "client-supplied"),
            ("openai-organization", "org"),
            ("accept", "text/event-stream"),
            ("content-type", "text/plain"),
        ])
    }

    #[test]
    fn request_headers_drop_hop_by_hop_and_recomputed_ones() {
        let key = HeaderValue::from_static("Bearer upstream-key");
        let forwarded = upstream_request_headers(&client_headers(), Some(&key), "rid-1");
        let mut names: Vec<&str> = forwarded.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "authorization",
                "content-type",
                "openai-organization",
                "x-mock-tag",
                "x-request-id"
            ]
        );
        assert_eq!(forwarded["x-mock-tag"], "t1");
        assert_eq!(forwarded["content-type"], "application/json");
    }

    #[test]
    fn upstream_key_replaces_client_authorization() {
        let key = HeaderValue::from_static("Bearer upstream-key");
        let forwarded = upstream_request_headers(&client_headers(), Some(&key), "rid-1");
        assert_eq!(forwarded.get_all("authorization").iter().count(), 1);
        assert_eq!(forwarded["authorization"], "Bearer upstream-key");
    }

    #[test]
    fn client_authorization_passes_when_upstream_has_no_key() {
        let forwarded = upstream_request_headers(&client_headers(), None, "rid-1");
        assert_eq!(forwarded["authorization"], "Bearer client-key");
        let without = upstream_request_headers(&HeaderMap::new(), None, "rid-1");
        assert!(without.get("authorization").is_none());
    }

    #[test]
    fn proxy_request_id_replaces_the_clients() {
        let forwarded = upstream_request_headers(&client_headers(), None, "rid-1");
        assert_eq!(forwarded.get_all("x-request-id").iter().count(), 1);
        assert_eq!(forwarded["x-request-id"], "rid-1");
    }

    #[test]
    fn response_headers_drop_framing_and_encoding_but_keep_the_rest() {
        let upstream = headers(&[
            ("content-type", "application/json"),
            ("content-length", "42"),
            ("content-encoding", "gzip"),
            ("transfer-encoding", "chunked"),
            ("connection", "close"),
            ("x-mock-upstream", "mock-a"),
            ("retry-after", "1"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
        ]);
        let relayed = client_response_headers(&upstream);
        let mut names: Vec<&str> = relayed.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "content-type",
                "retry-after",
                "set-cookie",
                "x-mock-upstream"
            ]
        );
        assert_eq!(relayed.get_all("set-cookie").iter().count(), 2);
    }

    #[test]
    fn event_stream_detection_ignores_parameters() {
        assert!(is_event_stream(&headers(&[(
            "content-type",
            "text/event-stream; charset=utf-8"
        )])));
        assert!(!is_event_stream(&headers(&[(
            "content-type",
            "application/json"
        )])));
        assert!(!is_event_stream(&HeaderMap::new()));
    }
}
