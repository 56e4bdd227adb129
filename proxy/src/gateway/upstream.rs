//! Talking to one upstream: its pooled HTTP client, the key swap, reading
//! its body within the timeouts, and turning transport failures and timeouts
//! into 502/504. Which headers cross is `gateway::headers`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use bytes::{Bytes, BytesMut};

use crate::config::tables::UpstreamConfig;
use crate::gateway::headers::{client_response_headers, upstream_request_headers};
use crate::shared::error::{ApiError, ErrorTag, error_body};

const MAX_WRAPPED_MESSAGE_CHARS: usize = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
}

impl Endpoint {
    fn path(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Responses => "/responses",
        }
    }
}

/// Deliberately not `Debug`: it holds the upstream's Authorization value.
pub struct Upstream {
    pub name: String,
    pub base_url: String,
    pub responses: bool,
    authorization: Option<HeaderValue>,
    /// The upstream's key itself, so an error body that echoes it can be scrubbed.
    key: Option<String>,
    client: reqwest::Client,
    /// Until the response head.
    pub timeout: Duration,
    idle_timeout: Option<Duration>,
    /// The whole attempt, body included.
    pub total_timeout: Option<Duration>,
    /// The most a whole body may hold (`BufferedReply::read`).
    pub max_body_bytes: usize,
    /// The most one event of a stream may hold (the relay's SSE parser).
    pub max_event_bytes: usize,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            // The proxy's routing must not depend on HTTP(S)_PROXY in its environment,
            // and an upstream redirect is not something to follow on a client's behalf.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .build()?;
        let authorization = config.resolved_api_key.as_ref().and_then(|key| {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose())).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        Ok(Upstream {
            name: config.name.clone(),
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            responses: config.responses,
            authorization,
            key: config
                .resolved_api_key
                .as_ref()
                .map(|key| key.expose().to_owned())
                .filter(|key| !key.is_empty()),
            client,
            timeout: Duration::from_millis(config.timeout_ms),
            idle_timeout: config.idle_timeout_ms.map(Duration::from_millis),
            total_timeout: config.total_timeout_ms.map(Duration::from_millis),
            max_body_bytes: config.max_body_bytes,
            max_event_bytes: config.max_event_bytes,
        })
    }

    /// Sends the request and waits for the response head until `head_deadline`.
    pub async fn send(
        &self,
        endpoint: Endpoint,
        client_headers: &HeaderMap,
        request_id: &str,
        payload: Bytes,
        head_deadline: Instant,
    ) -> Result<reqwest::Response, ApiError> {
        let request = self
            .client
            .post(format!("{}{}", self.base_url, endpoint.path()))
            .headers(upstream_request_headers(
                client_headers,
                self.authorization.as_ref(),
                request_id,
            ))
            .body(payload);
        self.response_head(request, request_id, head_deadline).await
    }

    /// A request without a body about a stored response (`path_and_query`
    /// follows the base URL, e.g. `/responses/{id}/input_items?limit=5`),
    /// read whole within the upstream's timeouts. Never retried: the one
    /// upstream that holds the response is the only one to ask.
    pub async fn fetch(
        &self,
        method: Method,
        path_and_query: &str,
        client_headers: &HeaderMap,
        request_id: &str,
    ) -> Result<BufferedReply, ApiError> {
        let started = Instant::now();
        let request = self
            .client
            .request(method, format!("{}{}", self.base_url, path_and_query))
            .headers(upstream_request_headers(
                client_headers,
                self.authorization.as_ref(),
                request_id,
            ));
        let response = self
            .response_head(request, request_id, started + self.timeout)
            .await?;
        let body_deadline = self.total_timeout.map(|limit| started + limit);
        BufferedReply::read(self, response, request_id, body_deadline).await
    }

    async fn response_head(
        &self,
        request: reqwest::RequestBuilder,
        request_id: &str,
        head_deadline: Instant,
    ) -> Result<reqwest::Response, ApiError> {
        match tokio::time::timeout_at(head_deadline.into(), request.send()).await {
            Err(_elapsed) => {
                tracing::warn!(
                    request_id = %request_id,
                    upstream = %self.name,
                    "upstream timed out before responding"
                );
                Err(ApiError::UpstreamTimeout {
                    upstream: self.name.clone(),
                })
            }
            Ok(Err(err)) => {
                // The URL may carry credentials (`https://user:secret@host`): never logged.
                let err = err.without_url();
                tracing::warn!(
                    request_id = %request_id,
                    upstream = %self.name,
                    error = %error_chain(&err),
                    "upstream request failed"
                );
                Err(if err.is_timeout() {
                    ApiError::UpstreamTimeout {
                        upstream: self.name.clone(),
                    }
                } else {
                    ApiError::UpstreamUnreachable {
                        upstream: self.name.clone(),
                    }
                })
            }
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// `deadline` bounds the whole body (the attempt's total timeout).
    pub fn body(&self, response: reqwest::Response, deadline: Option<Instant>) -> UpstreamBody {
        UpstreamBody {
            response,
            idle_timeout: self.idle_timeout,
            deadline,
            waited: Duration::ZERO,
            max_event_bytes: self.max_event_bytes,
        }
    }
}

/// reqwest's top-level message ("error sending request") hides the cause;
/// the chain says "connection refused" or "dns error".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An upstream response body read chunk by chunk, each wait bounded by the
/// upstream's idle timeout and the attempt's deadline. Dropping it drops the
/// upstream connection, which is how a client that left cancels the upstream.
pub struct UpstreamBody {
    response: reqwest::Response,
    idle_timeout: Option<Duration>,
    deadline: Option<Instant>,
    /// Time spent waiting for chunks not yet taken by `take_waited`.
    waited: Duration,
    /// The upstream's limit on one event, for whoever parses this body as SSE.
    pub max_event_bytes: usize,
}

pub enum BodyChunk {
    Data(Bytes),
    End,
    IdleTimeout,
    /// The attempt's total timeout (or the request's deadline) ran out.
    TimedOut,
    Failed(reqwest::Error),
}

impl UpstreamBody {
    pub async fn next_chunk(&mut self) -> BodyChunk {
        let started = Instant::now();
        let chunk = self.wait_for_chunk(started).await;
        self.waited += started.elapsed();
        chunk
    }

    async fn wait_for_chunk(&mut self, now: Instant) -> BodyChunk {
        let idle_deadline = self.idle_timeout.map(|limit| now + limit);
        let (limit, on_expiry) = match (idle_deadline, self.deadline) {
            (Some(idle), Some(total)) if total <= idle => (Some(total), BodyChunk::TimedOut),
            (Some(idle), _) => (Some(idle), BodyChunk::IdleTimeout),
            (None, Some(total)) => (Some(total), BodyChunk::TimedOut),
            (None, None) => (None, BodyChunk::End),
        };
        let read = self.response.chunk();
        let outcome = match limit {
            Some(limit) => match tokio::time::timeout_at(limit.into(), read).await {
                Ok(outcome) => outcome,
                Err(_elapsed) => return on_expiry,
            },
            None => read.await,
        };
        match outcome {
            Ok(Some(data)) => BodyChunk::Data(data),
            Ok(None) => BodyChunk::End,
            Err(err) => BodyChunk::Failed(err.without_url()),
        }
    }

    /// Upstream waiting time since the last call, for the request's outcome.
    pub fn take_waited(&mut self) -> Duration {
        std::mem::take(&mut self.waited)
    }
}

/// `body` with every occurrence of `secret` replaced by a marker.
pub fn scrub(body: Bytes, secret: &str) -> Bytes {
    if secret.is_empty() || !contains(&body, secret.as_bytes()) {
        return body;
    }
    let mut out = BytesMut::with_capacity(body.len());
    let mut rest = &body[..];
    while let Some(at) = find(rest, secret.as_bytes()) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(REDACTED.as_bytes());
        rest = &rest[at + secret.len()..];
    }
    out.extend_from_slice(rest);
    out.freeze()
}

const REDACTED: &str = "<redacted>";

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// A fully read upstream answer, for non-streaming requests and error replies.
pub struct BufferedReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// A 2xx body as parsed by dispatch (which refuses any that is not a JSON
    /// object), so it is parsed once; `None` for other replies.
    pub json: Option<serde_json::Map<String, serde_json::Value>>,
}

impl BufferedReply {
    pub async fn read(
        upstream: &Upstream,
        response: reqwest::Response,
        request_id: &str,
        deadline: Option<Instant>,
    ) -> Result<Self, ApiError> {
        let status = response.status();
        let headers = response.headers().clone();
        let limit = upstream.max_body_bytes;
        let too_large = |size: u64| {
            tracing::warn!(
                request_id = %request_id,
                upstream = %upstream.name,
                status = status.as_u16(),
                bytes = size,
                limit,
                "upstream body is larger than max_body_bytes"
            );
            ApiError::UpstreamBodyTooLarge {
                upstream: upstream.name.clone(),
                limit,
            }
        };
        // A body that says it is too large is not read at all.
        if let Some(length) = response.content_length()
            && length > limit as u64
        {
            return Err(too_large(length));
        }
        let mut body = upstream.body(response, deadline);
        let mut collected = BytesMut::new();
        loop {
            match body.next_chunk().await {
                BodyChunk::Data(data) => {
                    let size = collected.len() + data.len();
                    if size > limit {
                        return Err(too_large(size as u64));
                    }
                    collected.extend_from_slice(&data);
                }
                BodyChunk::End => break,
                BodyChunk::IdleTimeout | BodyChunk::TimedOut => {
                    tracing::warn!(
                        request_id = %request_id,
                        upstream = %upstream.name,
                        "upstream body stalled"
                    );
                    return Err(ApiError::UpstreamTimeout {
                        upstream: upstream.name.clone(),
                    });
                }
                BodyChunk::Failed(err) => {
                    tracing::warn!(
                        request_id = %request_id,
                        upstream = %upstream.name,
                        error = %error_chain(&err),
                        "upstream body broke off"
                    );
                    return Err(ApiError::UpstreamDisconnected {
                        upstream: upstream.name.clone(),
                    });
                }
            }
        }
        let mut body = collected.freeze();
        let mut headers = headers;
        // An upstream that refuses its key may quote it back ("Incorrect API key
        // provided: sk-..."); that key is the proxy's secret, not the client's.
        if !status.is_success()
            && let Some(key) = &upstream.key
        {
            body = scrub(body, key);
            let quoting: Vec<HeaderName> = headers
                .iter()
                .filter(|(_, value)| contains(value.as_bytes(), key.as_bytes()))
                .map(|(name, _)| name.clone())
                .collect();
            for name in quoting {
                headers.remove(name);
            }
        }
        Ok(BufferedReply {
            status,
            headers,
            body,
            json: None,
        })
    }

    /// Relays status, headers and body; an error body that is not in the OpenAI
    /// format is wrapped so clients only ever have to parse one error shape.
    pub fn into_client_response(self) -> Response {
        let mut headers = client_response_headers(&self.headers);
        let error_tag = (!self.status.is_success()).then(|| upstream_error_tag(&self.body));
        let body = if self.status.is_success() || is_openai_error(&self.body) {
            self.body
        } else {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Bytes::from(wrap_upstream_error(self.status, &self.body).to_string())
        };
        let mut response = build_response(self.status, headers, Body::from(body));
        if let Some(tag) = error_tag {
            response.extensions_mut().insert(tag);
        }
        response
    }
}

/// The upstream error's code (or type), for errors-by-type in the outcome.
fn upstream_error_tag(body: &[u8]) -> ErrorTag {
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let error = parsed.as_ref().and_then(|value| value.get("error"));
    let field = |name: &str| {
        error
            .and_then(|error| error.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    ErrorTag(
        field("code")
            .or_else(|| field("type"))
            .unwrap_or_else(|| "upstream_error".to_owned()),
    )
}

pub fn build_response(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn is_openai_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|value| value.get("error").is_some_and(|error| error.is_object()))
}

fn wrap_upstream_error(status: StatusCode, body: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("Upstream returned HTTP {}", status.as_u16())
    } else {
        text.chars().take(MAX_WRAPPED_MESSAGE_CHARS).collect()
    };
    error_body(&message, "upstream_error", None, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_support::headers;

    #[test]
    fn openai_error_bodies_pass_and_others_are_wrapped() {
        assert!(is_openai_error(br#"{"error": {"message": "x"}}"#));
        assert!(!is_openai_error(br#"{"detail": "x"}"#));
        assert!(!is_openai_error(b"<html>Bad Gateway</html>"));

        let wrapped = wrap_upstream_error(StatusCode::BAD_GATEWAY, b"<html>Bad Gateway</html>");
        assert_eq!(wrapped["error"]["message"], "<html>Bad Gateway</html>");
        assert_eq!(wrapped["error"]["type"], "upstream_error");
        let empty = wrap_upstream_error(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(empty["error"]["message"], "Upstream returned HTTP 503");
    }

    #[tokio::test]
    async fn wrapped_error_keeps_status_and_becomes_json() {
        let reply = BufferedReply {
            status: StatusCode::SERVICE_UNAVAILABLE,
            headers: headers(&[("content-type", "text/plain"), ("retry-after", "2")]),
            body: Bytes::from_static(b"overloaded"),
            json: None,
        };
        let response = reply.into_client_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["retry-after"], "2");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"]["message"], "overloaded");
    }

    /// An upstream on a local socket that answers every connection with
    /// `head` and then `chunks` of a chunked body, `size` bytes each.
    async fn chunked_upstream(max_body_bytes: usize, chunks: usize, size: usize) -> Upstream {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                        transfer-encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..chunks {
                let chunk = format!("{size:x}\r\n{}\r\n", "x".repeat(size));
                if socket.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
            let _ = socket.write_all(b"0\r\n\r\n").await;
        });
        let config: UpstreamConfig = toml::from_str(&format!(
            "name = \"u\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nmax_body_bytes = {max_body_bytes}"
        ))
        .unwrap();
        Upstream::new(&config).unwrap()
    }

    async fn read_whole(upstream: &Upstream) -> Result<BufferedReply, ApiError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let response = upstream
            .send(
                Endpoint::ChatCompletions,
                &HeaderMap::new(),
                "req",
                Bytes::new(),
                deadline,
            )
            .await?;
        assert!(response.content_length().is_none(), "a chunked body");
        BufferedReply::read(upstream, response, "req", Some(deadline)).await
    }

    #[tokio::test]
    async fn a_chunked_body_past_max_body_bytes_is_refused_while_it_is_read() {
        let upstream = chunked_upstream(10_000, 100, 1_000).await;
        match read_whole(&upstream).await {
            Err(ApiError::UpstreamBodyTooLarge { upstream, limit }) => {
                assert_eq!((upstream.as_str(), limit), ("u", 10_000));
            }
            other => panic!("expected upstream_body_too_large, got {:?}", other.err()),
        }
    }

    #[tokio::test]
    async fn a_chunked_body_up_to_max_body_bytes_is_read_whole() {
        let upstream = chunked_upstream(10_000, 10, 1_000).await;
        let reply = read_whole(&upstream).await.unwrap();
        assert_eq!(reply.body.len(), 10_000);
    }
}
