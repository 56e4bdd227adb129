//! The header policy: which headers cross the proxy in each direction, the
//! upstream's key in place of the client's, and the proxy's request id.
//!
//! Upstream, an allowlist: what describes the request ([`FORWARDED_UPSTREAM`]),
//! the harness's and the SDK's own headers (by prefix), and the client's
//! account headers ([`ACCOUNT_SCOPED`]) only when the client's own key goes
//! upstream too, since with the proxy's key they would name another account's
//! organisation, or hand its cookies to an upstream that never set them.
//! `[server] forward_headers` adds names that go in every case. Downstream, a
//! blocklist: no hop-by-hop headers, none the proxy recomputes.

use std::sync::OnceLock;

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

/// Client headers forwarded upstream as they are. Everything else is dropped,
/// among them those the proxy recomputes or replaces: the body is re-serialised
/// as JSON (length, type), the upstream is a different host, the key is the
/// upstream's own (set apart), and the response is relayed without decoding, so
/// compression must not be negotiated.
const FORWARDED_UPSTREAM: &[&str] = &["accept", "user-agent", "openai-beta", "idempotency-key"];

/// Forwarded by prefix: the mock upstream's controls (a proxy under the
/// harness's tests must pass them) and the OpenAI SDKs' own description of
/// themselves.
const FORWARDED_UPSTREAM_PREFIXES: &[&str] = &["x-mock-", "x-stainless-"];

/// The client's account: forwarded only with the client's own key (an
/// upstream without a key of its own), or when `[server] forward_headers`
/// names them.
const ACCOUNT_SCOPED: &[&str] = &["cookie", "openai-organization", "openai-project"];

/// Never forwarded, whatever the config says: set by the proxy itself.
pub const NEVER_FORWARDED_UPSTREAM: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept-encoding",
    "authorization",
    "expect",
    "x-request-id",
];

/// `[server] forward_headers`, set once from the config (by the router).
static CONFIGURED: OnceLock<Vec<HeaderName>> = OnceLock::new();

/// The client headers forwarded upstream besides the built-in allowlist,
/// whoever's key goes with them. Set once per process; a second, different
/// list is refused (logged), so an operator never gets a policy other than
/// the config's.
pub fn configure_forwarding(names: &[String]) {
    let names: Vec<HeaderName> = names
        .iter()
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .filter(|name| {
            let never = NEVER_FORWARDED_UPSTREAM.contains(&name.as_str())
                || HOP_BY_HOP.contains(&name.as_str());
            if never {
                tracing::warn!("server.forward_headers: {name} is set by the proxy, not forwarded");
            }
            !never
        })
        .collect();
    if let Err(names) = CONFIGURED.set(names)
        && CONFIGURED.get() != Some(&names)
    {
        tracing::warn!("header forwarding was already configured; {names:?} ignored");
    }
}

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

/// Whether the client's header goes upstream: `own_key` when the client's own
/// credentials go with it, `configured` from `[server] forward_headers`.
fn forwarded_upstream(name: &HeaderName, own_key: bool, configured: &[HeaderName]) -> bool {
    let name_str = name.as_str();
    if NEVER_FORWARDED_UPSTREAM.contains(&name_str) || HOP_BY_HOP.contains(&name_str) {
        return false;
    }
    FORWARDED_UPSTREAM.contains(&name_str)
        || FORWARDED_UPSTREAM_PREFIXES
            .iter()
            .any(|prefix| name_str.starts_with(prefix))
        || (own_key && ACCOUNT_SCOPED.contains(&name_str))
        || configured.contains(name)
}

pub fn upstream_request_headers(
    client: &HeaderMap,
    upstream_authorization: Option<&HeaderValue>,
    request_id: &str,
) -> HeaderMap {
    let configured = CONFIGURED.get().map_or(&[][..], Vec::as_slice);
    upstream_headers_with(client, upstream_authorization, request_id, configured)
}

fn upstream_headers_with(
    client: &HeaderMap,
    upstream_authorization: Option<&HeaderValue>,
    request_id: &str,
    configured: &[HeaderName],
) -> HeaderMap {
    let own_key = upstream_authorization.is_none();
    let listed = connection_listed(client);
    let mut headers = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        if forwarded_upstream(name, own_key, configured) && !listed.contains(name) {
            headers.append(name.clone(), value.clone());
        }
    }
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

    /// Which client headers reach the upstream: (name, with the proxy's key,
    /// with the client's own key, with the proxy's key and the name in
    /// `[server] forward_headers`).
    const FORWARDING: &[(&str, bool, bool, bool)] = &[
        ("accept", true, true, true),
        ("user-agent", true, true, true),
        ("openai-beta", true, true, true),
        ("idempotency-key", true, true, true),
        ("x-mock-tag", true, true, true),
        ("x-mock-fault", true, true, true),
        ("x-stainless-lang", true, true, true),
        ("cookie", false, true, true),
        ("openai-organization", false, true, true),
        ("openai-project", false, true, true),
        ("x-custom", false, false, true),
        ("referer", false, false, true),
        // Never, configured or not: the proxy sets or recomputes them.
        ("host", false, false, false),
        ("content-length", false, false, false),
        ("accept-encoding", false, false, false),
        ("expect", false, false, false),
        ("connection", false, false, false),
        ("keep-alive", false, false, false),
        ("te", false, false, false),
        ("transfer-encoding", false, false, false),
        ("upgrade", false, false, false),
        ("proxy-authorization", false, false, false),
    ];

    #[test]
    fn client_headers_cross_only_as_the_allowlist_says() {
        let key = HeaderValue::from_static("Bearer upstream-key");
        let client = headers(
            &FORWARDING
                .iter()
                .map(|(name, ..)| (*name, "v"))
                .collect::<Vec<_>>(),
        );
        let configured: Vec<HeaderName> = FORWARDING
            .iter()
            .map(|(name, ..)| HeaderName::from_static(name))
            .collect();
        let proxy_key = upstream_headers_with(&client, Some(&key), "rid", &[]);
        let own_key = upstream_headers_with(&client, None, "rid", &[]);
        let configured = upstream_headers_with(&client, Some(&key), "rid", &configured);
        for &(name, with_proxy_key, with_own_key, when_configured) in FORWARDING {
            assert_eq!(
                proxy_key.contains_key(name),
                with_proxy_key,
                "{name}, proxy's key"
            );
            assert_eq!(
                own_key.contains_key(name),
                with_own_key,
                "{name}, client's key"
            );
            assert_eq!(
                configured.contains_key(name),
                when_configured,
                "{name}, configured"
            );
        }
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
                "x-mock-tag",
                "x-request-id"
            ]
        );
        assert_eq!(forwarded["x-mock-tag"], "t1");
        assert_eq!(forwarded["content-type"], "application/json");
    }

    #[test]
    fn a_header_the_connection_header_lists_is_not_forwarded_even_if_allowed() {
        let client = headers(&[("connection", "x-mock-tag"), ("x-mock-tag", "t")]);
        assert!(!upstream_request_headers(&client, None, "r").contains_key("x-mock-tag"));
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
