//! The response cache's part in a request: the lookup before dispatch (and
//! the replay of a hit), and the write after a complete 2xx answer, whole or
//! streamed. The cache itself (keys, backends) lives in `store::cache`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use crate::shared::labels::{CacheResult, Route};
use crate::shared::usage::Usage;
use crate::store::cache::backend::{Lookup, ResponseCache};
use crate::store::cache::entry::CachedResponse;
use crate::store::cache::key::{CacheDirectives, CacheKey, cache_key};
use crate::telemetry::handle::OutcomeHandle;

/// A stream larger than this is relayed but not stored: holding it in memory
/// for the cache would cost more than replaying it saves.
const MAX_CAPTURED_STREAM_BYTES: usize = 8 * 1024 * 1024;

pub enum Consulted {
    /// Answered from the cache.
    Hit(Response),
    /// Go upstream; store the answer through the write when there is one.
    Proceed(Option<CacheWrite>),
}

/// Looks the request up unless the backend is off or the client said
/// `no-cache`, and decides whether its answer may be stored (`no-store`).
/// `body` is the request as the client sent it. A hit that `servable` turns
/// down (a response whose id nothing holds any more) counts as a miss, and
/// the fresh answer replaces it.
pub async fn consult(
    cache: &Arc<ResponseCache>,
    route: Route,
    headers: &HeaderMap,
    body: &Map<String, Value>,
    outcome: &OutcomeHandle,
    servable: impl Fn(&CachedResponse) -> bool,
) -> Consulted {
    if !cache.is_enabled() {
        outcome.set_cache(CacheResult::Bypass);
        return Consulted::Proceed(None);
    }
    let directives = CacheDirectives::from_headers(headers);
    let key = cache_key(route, body);
    let write = (!directives.no_store).then(|| CacheWrite {
        cache: cache.clone(),
        key: key.clone(),
    });
    if directives.no_cache {
        outcome.set_cache(CacheResult::Bypass);
        return Consulted::Proceed(write);
    }
    match cache.lookup(&key).await {
        Lookup::Hit(entry) if servable(&entry) => {
            outcome.set_cache(CacheResult::Hit);
            Consulted::Hit(replay(entry, outcome))
        }
        Lookup::Hit(_) | Lookup::Miss => {
            outcome.set_cache(CacheResult::Miss);
            Consulted::Proceed(write)
        }
        // The backend is down: it was just given its bounded chance; a write
        // would only add another wait to this request.
        Lookup::Unavailable => {
            outcome.set_cache(CacheResult::Bypass);
            Consulted::Proceed(None)
        }
    }
}

/// The stored answer as the original client got it; the outcome keeps the
/// original usage and upstream, with no attempt made.
fn replay(entry: CachedResponse, outcome: &OutcomeHandle) -> Response {
    outcome.set_attempts(&entry.upstream, 0, 0, 0);
    outcome.set_usage(Usage {
        prompt_tokens: entry.prompt_tokens,
        completion_tokens: entry.completion_tokens,
    });
    if entry.stream {
        // The whole replay leaves at once: its first content byte is now.
        outcome.stream_progress(0, std::time::Duration::ZERO);
    }
    let mut response = Response::new(Body::from(entry.body));
    *response.status_mut() = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    if let Ok(content_type) = HeaderValue::from_str(&entry.content_type) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    response
}

/// Permission and destination to store one request's answer.
#[derive(Clone)]
pub struct CacheWrite {
    cache: Arc<ResponseCache>,
    key: CacheKey,
}

impl CacheWrite {
    /// Stores a complete 2xx answer; awaited before the client's response ends
    /// so that the next identical request already finds it.
    pub async fn store(&self, response: CachedResponse) {
        if !self.cache.store(&self.key, &response).await {
            tracing::debug!(key = %self.key, "response not stored in the cache");
        }
    }

    pub fn capture(self, content_type: &HeaderMap, upstream: String) -> StreamCapture {
        StreamCapture {
            write: self,
            content_type: content_type
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("text/event-stream")
                .to_owned(),
            upstream,
            bytes: BytesMut::new(),
            oversized: false,
        }
    }
}

/// The bytes of a stream as the client gets them, stored once it completed.
pub struct StreamCapture {
    write: CacheWrite,
    content_type: String,
    upstream: String,
    bytes: BytesMut,
    oversized: bool,
}

impl StreamCapture {
    pub fn record(&mut self, sent: &Bytes) {
        if self.oversized {
            return;
        }
        if self.bytes.len() + sent.len() > MAX_CAPTURED_STREAM_BYTES {
            self.oversized = true;
            self.bytes = BytesMut::new();
            return;
        }
        self.bytes.extend_from_slice(sent);
    }

    pub async fn store(self, usage: Usage) {
        if self.oversized {
            return;
        }
        let response = CachedResponse {
            status: 200,
            content_type: self.content_type,
            body: self.bytes.freeze(),
            stream: true,
            upstream: self.upstream,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
        };
        self.write.store(response).await;
    }
}
