//! The response cache's part in a request: the lookup before dispatch (and
//! the replay of a hit), and the write after a complete 2xx answer, whole or
//! streamed. The cache itself (keys, backends) lives in `store::cache`.
//!
//! A write leaves the response path: it runs on a task of its own, so the
//! client's last byte never waits for Redis. Until it is done the answer is
//! held here as a pending write, and a lookup of the same key in this process
//! finds it, so the next identical request is a hit as it was when the write
//! was awaited. Pending writes are bounded in bytes; beyond the bound an
//! answer is not stored. Writes still pending when the process exits are lost.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

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

/// The bodies of writes in flight, at most: a Redis that is slow (each write
/// is bounded by its timeout) must not make them pile up without end.
const MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// Writes in flight, by cache (its address: the write's task holds the cache,
/// so the address is not reused while an entry names it) and key.
static PENDING: LazyLock<Mutex<PendingWrites>> = LazyLock::new(Mutex::default);

#[derive(Default)]
struct PendingWrites {
    by_key: HashMap<(usize, CacheKey), (u64, CachedResponse)>,
    bytes: usize,
    next_seq: u64,
}

fn pending() -> MutexGuard<'static, PendingWrites> {
    // Plain inserts and removals: a poisoned map is still consistent.
    PENDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn cache_id(cache: &Arc<ResponseCache>) -> usize {
    Arc::as_ptr(cache) as usize
}

/// The answer a write in flight is storing under this key, if any.
fn pending_answer(cache: &Arc<ResponseCache>, key: &CacheKey) -> Option<CachedResponse> {
    pending()
        .by_key
        .get(&(cache_id(cache), key.clone()))
        .map(|(_, response)| response.clone())
}

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
    if let Some(entry) = pending_answer(cache, &key).filter(|entry| servable(entry)) {
        outcome.set_cache(CacheResult::Hit);
        return Consulted::Hit(replay(entry, outcome));
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
    /// Stores a complete 2xx answer on a task of its own, and returns at
    /// once: the next identical request finds it pending meanwhile. (Async
    /// for its callers' sake; it never waits.)
    pub async fn store(&self, response: CachedResponse) {
        if !(200..300).contains(&response.status) {
            return;
        }
        let id = cache_id(&self.cache);
        let seq = {
            let mut pending = pending();
            let size = response.body.len();
            if pending.bytes + size > MAX_PENDING_BYTES {
                tracing::debug!(key = %self.key, "response not stored: too many cache writes in flight");
                return;
            }
            let seq = pending.next_seq;
            pending.next_seq += 1;
            pending.bytes += size;
            let replaced = pending
                .by_key
                .insert((id, self.key.clone()), (seq, response.clone()));
            if let Some((_, previous)) = replaced {
                pending.bytes -= previous.body.len();
            }
            seq
        };
        let write = self.clone();
        tokio::spawn(async move {
            if !write.cache.store(&write.key, &response).await {
                tracing::debug!(key = %write.key, "response not stored in the cache");
            }
            let mut pending = pending();
            let entry = (id, write.key.clone());
            // A later write of the same key is its own to remove.
            if pending
                .by_key
                .get(&entry)
                .is_some_and(|(held, _)| *held == seq)
            {
                pending.by_key.remove(&entry);
                pending.bytes -= response.body.len();
            }
        });
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures_util::FutureExt;
    use serde_json::json;

    use super::*;
    use crate::config::cache::{CacheBackendKind, CacheConfig};
    use crate::shared::test_support::object;

    fn answer(text: &str) -> CachedResponse {
        CachedResponse {
            status: 200,
            content_type: "application/json".into(),
            body: Bytes::from(text.to_owned()),
            stream: false,
            upstream: "u".into(),
            prompt_tokens: 1,
            completion_tokens: 1,
        }
    }

    fn request(text: &str) -> Map<String, Value> {
        object(json!({"model": "m", "messages": [{"role": "user", "content": text}]}))
    }

    /// A Redis that takes connections (the kernel does, into the backlog) and
    /// never answers: every command waits until its timeout.
    async fn silent_redis() -> (Arc<ResponseCache>, std::net::TcpListener) {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = CacheConfig {
            backend: CacheBackendKind::Redis,
            redis_url: Some(format!("redis://{}", silent.local_addr().unwrap())),
            ..CacheConfig::default()
        };
        (Arc::new(ResponseCache::new(&config).await), silent)
    }

    fn consulted(cache: &Arc<ResponseCache>, text: &str) -> Option<Consulted> {
        let outcome = OutcomeHandle::new(Instant::now());
        let (headers, body) = (HeaderMap::new(), request(text));
        consult(
            cache,
            Route::ChatCompletions,
            &headers,
            &body,
            &outcome,
            |_| true,
        )
        .now_or_never()
    }

    #[tokio::test]
    async fn a_write_returns_without_waiting_for_redis_and_is_found_meanwhile() {
        let (cache, _silent) = silent_redis().await;
        let write = CacheWrite {
            cache: cache.clone(),
            key: cache_key(Route::ChatCompletions, &request("whole")),
        };
        // Ready at its first poll: nothing in it waits for Redis (which never answers).
        assert!(write.store(answer("whole")).now_or_never().is_some());
        let mut capture = CacheWrite {
            cache: cache.clone(),
            key: cache_key(Route::ChatCompletions, &request("stream")),
        }
        .capture(&HeaderMap::new(), "u".into());
        capture.record(&Bytes::from_static(b"data: [DONE]\n\n"));
        assert!(capture.store(Usage::default()).now_or_never().is_some());

        // The next identical request is a hit without asking Redis.
        for text in ["whole", "stream"] {
            match consulted(&cache, text) {
                Some(Consulted::Hit(response)) => assert_eq!(response.status(), 200),
                Some(Consulted::Proceed(_)) => panic!("{text}: not found while pending"),
                None => panic!("{text}: the lookup waited for Redis"),
            }
        }
    }

    #[tokio::test]
    async fn a_finished_write_leaves_the_answer_in_the_cache_and_nothing_pending() {
        let cache = Arc::new(ResponseCache::new(&CacheConfig::default()).await);
        let key = cache_key(Route::ChatCompletions, &request("memory"));
        let write = CacheWrite {
            cache: cache.clone(),
            key: key.clone(),
        };
        write.store(answer("memory")).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while pending_answer(&cache, &key).is_some() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            pending_answer(&cache, &key).is_none(),
            "the write never finished"
        );
        assert_eq!(cache.lookup(&key).await, Lookup::Hit(answer("memory")));
    }

    #[tokio::test]
    async fn errors_are_neither_stored_nor_pending() {
        let cache = Arc::new(ResponseCache::new(&CacheConfig::default()).await);
        let key = cache_key(Route::ChatCompletions, &request("error"));
        let write = CacheWrite {
            cache: cache.clone(),
            key: key.clone(),
        };
        write
            .store(CachedResponse {
                status: 500,
                ..answer("error")
            })
            .await;
        assert!(pending_answer(&cache, &key).is_none());
        assert!(matches!(
            consulted(&cache, "error"),
            Some(Consulted::Proceed(Some(_)))
        ));
    }
}
