//! The response cache (docs/contracts.md section 3, "Cache").
//!
//! The cache is an optimisation, never a dependency: every backend failure is
//! reported as [`Lookup::Unavailable`] or a `false` store, bounded in time, so
//! the proxy keeps serving (answering BYPASS) while Redis is down and resumes
//! caching on its own once Redis is back.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::CACHE_CONTROL;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::url_without_credentials;
use crate::outcome::Route;

/// The request fields that select a response; everything else (`user`,
/// `metadata`, ...) describes the caller, not the answer.
const KEY_FIELDS: [&str; 19] = [
    "model",
    "messages",
    "input",
    "instructions",
    "previous_response_id",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
    "tools",
    "tool_choice",
    "response_format",
    "text",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
];

/// Hashed ahead of the request so that a change to the key derivation can be
/// made incompatible with entries already sitting in a shared Redis.
const KEY_VERSION: &str = "switchyard-cache-key-v1";

const REDIS_KEY_PREFIX: &str = "switchyard:cache:";

/// Upper bound on any one Redis round trip, connecting included: a cache that
/// is slower than this costs more than it saves, so the request goes on without it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackendKind {
    #[default]
    Memory,
    Redis,
    Off,
}

/// The `[cache]` table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub backend: CacheBackendKind,
    pub redis_url: Option<String>,
    pub ttl_seconds: u64,
    /// Only the memory backend is bounded by count; Redis has its own eviction policy.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            backend: CacheBackendKind::Memory,
            redis_url: None,
            ttl_seconds: 300,
            max_entries: 10_000,
        }
    }
}

// Written by hand because a Redis URL may carry a password, and configs get logged.
impl fmt::Debug for CacheConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheConfig")
            .field("backend", &self.backend)
            .field(
                "redis_url",
                &self.redis_url.as_deref().map(url_without_credentials),
            )
            .field("ttl_seconds", &self.ttl_seconds)
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl CacheConfig {
    /// Checks what serde cannot; the message starts with the offending key so
    /// the config loader only has to prefix the file name.
    pub fn validate(&self) -> Result<(), String> {
        if self.backend != CacheBackendKind::Off && self.ttl_seconds == 0 {
            return Err("cache.ttl_seconds: must be greater than 0".into());
        }
        if self.backend == CacheBackendKind::Memory && self.max_entries == 0 {
            return Err("cache.max_entries: must be greater than 0".into());
        }
        if self.backend == CacheBackendKind::Redis {
            let url = self
                .redis_url
                .as_deref()
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .ok_or_else(|| {
                    "cache.redis_url: required when cache.backend = \"redis\"".to_owned()
                })?;
            // Only parses: the server may legitimately be down while the proxy starts.
            redis::Client::open(url)
                .map_err(|err| format!("cache.redis_url: invalid Redis URL: {err}"))?;
        }
        Ok(())
    }
}

/// SHA-256 (hex) of the route and the response-selecting request fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn redis_key(&self) -> String {
        format!("{REDIS_KEY_PREFIX}{}", self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key for a request body as the client sent it (before the proxy adds
/// anything such as `stream_options.include_usage`). Absent and `null` fields
/// are the same request; object keys are sorted at every depth so that the
/// client's JSON key order does not matter. Numbers are kept as written, so
/// `1` and `1.0` are different entries.
pub fn cache_key(route: Route, body: &Map<String, Value>) -> CacheKey {
    let selected: BTreeMap<&str, &Value> = KEY_FIELDS
        .iter()
        .filter_map(|field| {
            body.get(*field)
                .filter(|value| !value.is_null())
                .map(|value| (*field, value))
        })
        .collect();

    let mut canonical = String::new();
    canonical.push_str(KEY_VERSION);
    canonical.push('\n');
    canonical.push_str(route.as_str());
    canonical.push('\n');
    canonical.push('{');
    for (index, (field, value)) in selected.into_iter().enumerate() {
        if index > 0 {
            canonical.push(',');
        }
        write_json_string(field, &mut canonical);
        canonical.push(':');
        write_canonical_json(value, &mut canonical);
    }
    canonical.push('}');

    CacheKey(hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// Compact JSON with object keys sorted recursively. serde_json's own output
/// follows `Map` order, which is insertion order whenever any crate in the
/// build enables `preserve_order`, so it cannot be relied on for hashing.
fn write_canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_json_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(object) => {
            let mut entries: Vec<(&String, &Value)> = object.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                write_canonical_json(item, out);
            }
            out.push('}');
        }
    }
}

fn write_json_string(text: &str, out: &mut String) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if u32::from(control) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// What the client's `Cache-Control` asks of the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheDirectives {
    /// Skip the lookup; the fresh answer is still stored.
    pub no_cache: bool,
    /// Do not store the answer.
    pub no_store: bool,
}

impl CacheDirectives {
    /// Reads every `Cache-Control` header, each possibly a comma-separated list.
    /// Directive names are case-insensitive and may carry an argument
    /// (`no-cache="x"`), which does not narrow the directive here. Values that
    /// are not valid text are still scanned byte-wise rather than ignored, so a
    /// stray byte elsewhere in the header cannot cancel a `no-store`.
    pub fn from_headers(headers: &HeaderMap) -> CacheDirectives {
        let mut directives = CacheDirectives::default();
        for value in headers.get_all(CACHE_CONTROL) {
            for directive in value.as_bytes().split(|byte| *byte == b',') {
                let name = directive
                    .split(|byte| *byte == b'=')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                if name.eq_ignore_ascii_case(b"no-cache") {
                    directives.no_cache = true;
                } else if name.eq_ignore_ascii_case(b"no-store") {
                    directives.no_store = true;
                }
            }
        }
        directives
    }
}

/// A complete 2xx response as the client received it. For a stream, `body` is
/// the exact SSE bytes sent, replayed as-is on a hit.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
    pub stream: bool,
    /// The upstream that produced the original answer.
    pub upstream: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Start of every encoded entry; bumping the digit retires old entries as misses.
const ENTRY_MAGIC: &[u8; 4] = b"SYC1";
const FLAG_STREAM: u8 = 1;

/// Why a stored entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt cache entry: {0}")]
pub struct CorruptEntry(&'static str);

impl CachedResponse {
    /// The Redis value format, all integers big-endian:
    ///
    /// ```text
    /// "SYC1"                      4 bytes, magic and format version
    /// status                      u16
    /// flags                       u8, bit 0 = stream, other bits zero
    /// prompt_tokens               u64
    /// completion_tokens           u64
    /// content_type length, bytes  u64 + UTF-8
    /// upstream length, bytes      u64 + UTF-8
    /// body length, bytes          u64 + raw bytes, which end the value
    /// ```
    ///
    /// Binary rather than JSON so an SSE or JSON body is stored verbatim,
    /// without escaping or base64.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            ENTRY_MAGIC.len()
                + 2
                + 1
                + 8 * 5
                + self.content_type.len()
                + self.upstream.len()
                + self.body.len(),
        );
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&self.status.to_be_bytes());
        out.push(if self.stream { FLAG_STREAM } else { 0 });
        out.extend_from_slice(&self.prompt_tokens.to_be_bytes());
        out.extend_from_slice(&self.completion_tokens.to_be_bytes());
        for field in [
            self.content_type.as_bytes(),
            self.upstream.as_bytes(),
            &self.body,
        ] {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }

    /// Parses [`encode`](Self::encode)'s format. Anything else (truncated,
    /// trailing bytes, another version, an impossible status) is rejected so
    /// that the caller treats it as a miss; the body is sliced, not copied.
    pub fn decode(bytes: Bytes) -> Result<CachedResponse, CorruptEntry> {
        let mut reader = EntryReader { bytes, at: 0 };
        if reader.take(ENTRY_MAGIC.len())? != ENTRY_MAGIC[..] {
            return Err(CorruptEntry("unknown format"));
        }
        let status = u16::from_be_bytes(reader.array()?);
        if !(100..=999).contains(&status) {
            return Err(CorruptEntry("invalid status"));
        }
        let [flags] = reader.array()?;
        if flags & !FLAG_STREAM != 0 {
            return Err(CorruptEntry("unknown flags"));
        }
        let prompt_tokens = u64::from_be_bytes(reader.array()?);
        let completion_tokens = u64::from_be_bytes(reader.array()?);
        let content_type = reader.text()?;
        let upstream = reader.text()?;
        let body = reader.sized()?;
        if reader.at != reader.bytes.len() {
            return Err(CorruptEntry("trailing bytes"));
        }
        Ok(CachedResponse {
            status,
            content_type,
            body,
            stream: flags & FLAG_STREAM != 0,
            upstream,
            prompt_tokens,
            completion_tokens,
        })
    }
}

struct EntryReader {
    bytes: Bytes,
    at: usize,
}

impl EntryReader {
    fn take(&mut self, len: usize) -> Result<Bytes, CorruptEntry> {
        let end = self
            .at
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(CorruptEntry("truncated"))?;
        let slice = self.bytes.slice(self.at..end);
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CorruptEntry> {
        let slice = self.take(N)?;
        <[u8; N]>::try_from(slice.as_ref()).map_err(|_| CorruptEntry("truncated"))
    }

    fn sized(&mut self) -> Result<Bytes, CorruptEntry> {
        let len = u64::from_be_bytes(self.array()?);
        let len = usize::try_from(len).map_err(|_| CorruptEntry("truncated"))?;
        self.take(len)
    }

    fn text(&mut self) -> Result<String, CorruptEntry> {
        let raw = self.sized()?;
        String::from_utf8(raw.to_vec()).map_err(|_| CorruptEntry("invalid UTF-8"))
    }
}

/// Result of a cache lookup.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Hit(CachedResponse),
    Miss,
    /// Backend off, or Redis failed or was too slow: the caller answers BYPASS.
    Unavailable,
}

/// The response cache shared by all requests (wrap it in an `Arc` to store
/// from a spawned task).
pub struct ResponseCache {
    backend: Backend,
}

enum Backend {
    Off,
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.backend {
            Backend::Off => CacheBackendKind::Off,
            Backend::Memory(_) => CacheBackendKind::Memory,
            Backend::Redis(_) => CacheBackendKind::Redis,
        };
        f.debug_struct("ResponseCache")
            .field("backend", &backend)
            .field("errors", &self.errors())
            .finish()
    }
}

impl ResponseCache {
    /// Never fails: a Redis that is down at startup is only reported (and
    /// counted) and tried again on each later call. The startup probe is
    /// bounded like every other Redis call.
    pub async fn new(config: &CacheConfig) -> ResponseCache {
        let ttl = Duration::from_secs(config.ttl_seconds);
        let backend = match config.backend {
            CacheBackendKind::Off => Backend::Off,
            CacheBackendKind::Memory => Backend::Memory(MemoryStore::new(
                ttl,
                config.max_entries,
                Arc::new(Instant::now),
            )),
            CacheBackendKind::Redis => match RedisStore::open(config) {
                Ok(store) => {
                    tracing::info!(
                        "response cache: redis at {}",
                        store.client.get_connection_info().addr()
                    );
                    store.ping().await;
                    Backend::Redis(store)
                }
                // Config validation rejects this first; serving uncached beats not serving.
                Err(message) => {
                    tracing::error!("response cache disabled: {message}");
                    Backend::Off
                }
            },
        };
        ResponseCache { backend }
    }

    pub fn is_enabled(&self) -> bool {
        !matches!(self.backend, Backend::Off)
    }

    pub async fn lookup(&self, key: &CacheKey) -> Lookup {
        match &self.backend {
            Backend::Off => Lookup::Unavailable,
            Backend::Memory(store) => store.get(key).map_or(Lookup::Miss, Lookup::Hit),
            Backend::Redis(store) => store.get(key).await,
        }
    }

    /// Stores with the configured TTL; `false` when nothing was stored
    /// (backend off, not a 2xx response, Redis failed or was too slow).
    pub async fn store(&self, key: &CacheKey, response: &CachedResponse) -> bool {
        // The contract caches successes only; an error replayed from cache
        // would outlive the outage that caused it.
        if !(200..300).contains(&response.status) {
            return false;
        }
        match &self.backend {
            Backend::Off => false,
            Backend::Memory(store) => {
                store.put(key, response);
                true
            }
            Backend::Redis(store) => store.set(key, response).await,
        }
    }

    /// Backend errors since startup (`switchyard_cache_errors_total`).
    pub fn errors(&self) -> u64 {
        match &self.backend {
            Backend::Redis(store) => store.errors.load(Ordering::Relaxed),
            Backend::Off | Backend::Memory(_) => 0,
        }
    }
}

type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

struct MemoryStore {
    ttl: Duration,
    max_entries: usize,
    clock: Clock,
    entries: Mutex<MemoryEntries>,
}

#[derive(Default)]
struct MemoryEntries {
    by_key: HashMap<CacheKey, MemoryEntry>,
    /// Insertion sequence -> key. With one TTL for every entry, the oldest
    /// insertion is also the first to expire, so both eviction and expiry
    /// purging work from the front.
    by_age: BTreeMap<u64, CacheKey>,
    next_seq: u64,
}

struct MemoryEntry {
    seq: u64,
    expires_at: Instant,
    response: CachedResponse,
}

impl MemoryStore {
    fn new(ttl: Duration, max_entries: usize, clock: Clock) -> MemoryStore {
        MemoryStore {
            ttl,
            // A zero bound would make every store a no-op that still reports success.
            max_entries: max_entries.max(1),
            clock,
            entries: Mutex::new(MemoryEntries::default()),
        }
    }

    // A panic elsewhere while holding the lock leaves the maps consistent
    // (every mutation is a single insert/remove pair), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, MemoryEntries> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self, key: &CacheKey) -> Option<CachedResponse> {
        let now = (self.clock)();
        let mut entries = self.lock();
        let entry = entries.by_key.get(key)?;
        if now < entry.expires_at {
            return Some(entry.response.clone());
        }
        let seq = entry.seq;
        entries.by_key.remove(key);
        entries.by_age.remove(&seq);
        None
    }

    fn put(&self, key: &CacheKey, response: &CachedResponse) {
        let now = (self.clock)();
        let mut entries = self.lock();
        if let Some(previous) = entries.by_key.remove(key) {
            entries.by_age.remove(&previous.seq);
        }
        while let Some((&seq, oldest)) = entries.by_age.first_key_value() {
            let expired = entries
                .by_key
                .get(oldest)
                .is_none_or(|entry| entry.expires_at <= now);
            if !expired && entries.by_key.len() < self.max_entries {
                break;
            }
            if let Some(oldest) = entries.by_age.remove(&seq) {
                entries.by_key.remove(&oldest);
            }
        }
        let seq = entries.next_seq;
        entries.next_seq += 1;
        entries.by_age.insert(seq, key.clone());
        entries.by_key.insert(
            key.clone(),
            MemoryEntry {
                seq,
                expires_at: now + self.ttl,
                response: response.clone(),
            },
        );
    }
}

/// Redis access without a connection that must exist up front: one shared
/// multiplexed connection, dropped on any failure and re-established by the
/// next call. A refused connection fails at once and a hung one is cut by
/// [`REDIS_TIMEOUT`], so a down Redis costs a request at most that long, and
/// the first call after Redis returns already succeeds.
struct RedisStore {
    client: redis::Client,
    ttl_seconds: u64,
    connection: Mutex<Slot>,
    /// Serialises reconnects so a burst of requests opens one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
    errors: AtomicU64,
    /// Turns per-request failures into one warning per outage and one recovery line.
    healthy: AtomicBool,
}

#[derive(Default)]
struct Slot {
    /// Counts connections made, so a failure on an old connection does not
    /// discard a newer one that another request has already set up.
    generation: u64,
    current: Option<MultiplexedConnection>,
}

enum RedisFailure {
    Error(redis::RedisError),
    Timeout,
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisFailure::Error(err) => err.fmt(f),
            RedisFailure::Timeout => write!(f, "no answer within {} ms", REDIS_TIMEOUT.as_millis()),
        }
    }
}

impl RedisStore {
    fn open(config: &CacheConfig) -> Result<RedisStore, String> {
        let url = config
            .redis_url
            .as_deref()
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .ok_or("cache.redis_url is not set")?;
        let client =
            redis::Client::open(url).map_err(|err| format!("invalid cache.redis_url: {err}"))?;
        Ok(RedisStore {
            client,
            ttl_seconds: config.ttl_seconds.max(1),
            connection: Mutex::new(Slot::default()),
            connecting: tokio::sync::Mutex::new(()),
            errors: AtomicU64::new(0),
            healthy: AtomicBool::new(true),
        })
    }

    /// Run for its side effects only: a Redis that is down at startup shows up
    /// in the log and the error count before the first request needs it.
    async fn ping(&self) {
        let _ = self.run::<String>(&redis::cmd("PING")).await;
    }

    async fn get(&self, key: &CacheKey) -> Lookup {
        let mut command = redis::cmd("GET");
        command.arg(key.redis_key());
        match self.run::<Option<Bytes>>(&command).await {
            Ok(Some(raw)) => match CachedResponse::decode(raw) {
                Ok(response) => Lookup::Hit(response),
                // Redis itself is fine; the fresh answer will overwrite the entry.
                Err(err) => {
                    tracing::warn!("response cache: {err} under key {key}; treated as a miss");
                    Lookup::Miss
                }
            },
            Ok(None) => Lookup::Miss,
            Err(()) => Lookup::Unavailable,
        }
    }

    async fn set(&self, key: &CacheKey, response: &CachedResponse) -> bool {
        let mut command = redis::cmd("SET");
        command
            .arg(key.redis_key())
            .arg(response.encode())
            .arg("EX")
            .arg(self.ttl_seconds);
        self.run::<()>(&command).await.is_ok()
    }

    /// Runs one command within [`REDIS_TIMEOUT`], connecting first if needed,
    /// and keeps the error count and the health log up to date.
    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, ()> {
        let mut used_generation = None;
        let attempt = async {
            let (generation, mut connection) = self.connection().await?;
            used_generation = Some(generation);
            command.query_async::<T>(&mut connection).await
        };
        let failure = match tokio::time::timeout(REDIS_TIMEOUT, attempt).await {
            Ok(Ok(value)) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("response cache: redis is reachable again, caching resumed");
                }
                return Ok(value);
            }
            Ok(Err(err)) => RedisFailure::Error(err),
            Err(_elapsed) => RedisFailure::Timeout,
        };
        // Whatever went wrong, a fresh connection is the cheapest way to rule
        // out a dead or wedged one.
        if let Some(generation) = used_generation {
            self.discard(generation);
        }
        self.errors.fetch_add(1, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "response cache: redis unavailable ({failure}); requests bypass the cache until it is back"
            );
        } else {
            tracing::debug!("response cache: redis still unavailable ({failure})");
        }
        Err(())
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // The slot is replaced wholesale under the lock, so it is consistent even if poisoned.
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        let slot = self.slot();
        slot.current
            .as_ref()
            .map(|connection| (slot.generation, connection.clone()))
    }

    async fn connection(&self) -> redis::RedisResult<(u64, MultiplexedConnection)> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let _connecting = self.connecting.lock().await;
        // Another request may have connected while this one waited for the turn.
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let connection = self.client.get_multiplexed_async_connection().await?;
        let mut slot = self.slot();
        slot.generation += 1;
        slot.current = Some(connection.clone());
        Ok((slot.generation, connection))
    }

    fn discard(&self, generation: u64) {
        let mut slot = self.slot();
        if slot.generation == generation {
            slot.current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn base_body() -> Map<String, Value> {
        object(json!({
            "model": "mock-chat",
            "messages": [{"role": "user", "content": "hello"}],
            "temperature": 0.5,
            "user": "alice",
            "metadata": {"trace": "1"},
        }))
    }

    fn key_with(field: &str, value: Value) -> CacheKey {
        let mut body = base_body();
        body.insert(field.to_owned(), value);
        cache_key(Route::ChatCompletions, &body)
    }

    fn key_without(field: &str) -> CacheKey {
        let mut body = base_body();
        body.remove(field);
        cache_key(Route::ChatCompletions, &body)
    }

    /// One test per key field: two values of the field give two entries, and
    /// so does leaving the field out, while `null` is the same as absent.
    macro_rules! key_field_tests {
        ($($name:ident: $field:literal => $a:expr, $b:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    let a = key_with($field, $a);
                    let b = key_with($field, $b);
                    assert_ne!(a, b, "{} must be part of the key", $field);
                    assert_ne!(a, key_without($field));
                    assert_eq!(key_with($field, Value::Null), key_without($field));
                }
            )*

            #[test]
            fn every_key_field_has_a_test() {
                let tested = [$($field),*];
                assert_eq!(tested.len(), KEY_FIELDS.len());
                for field in KEY_FIELDS {
                    assert!(tested.contains(&field), "no test for {field}");
                }
            }
        };
    }

    key_field_tests! {
        key_depends_on_model: "model" => json!("mock-a"), json!("mock-b");
        key_depends_on_messages: "messages" =>
            json!([{"role": "user", "content": "hi"}]), json!([{"role": "user", "content": "ho"}]);
        key_depends_on_input: "input" => json!("hi"), json!([{"role": "user", "content": "hi"}]);
        key_depends_on_instructions: "instructions" => json!("be brief"), json!("be verbose");
        key_depends_on_previous_response_id: "previous_response_id" => json!("resp_1"), json!("resp_2");
        key_depends_on_temperature: "temperature" => json!(0.2), json!(0.7);
        key_depends_on_top_p: "top_p" => json!(0.9), json!(1);
        key_depends_on_max_tokens: "max_tokens" => json!(10), json!(11);
        key_depends_on_max_completion_tokens: "max_completion_tokens" => json!(10), json!(11);
        key_depends_on_max_output_tokens: "max_output_tokens" => json!(10), json!(11);
        key_depends_on_tools: "tools" =>
            json!([{"type": "function", "function": {"name": "a"}}]),
            json!([{"type": "function", "function": {"name": "b"}}]);
        key_depends_on_tool_choice: "tool_choice" => json!("auto"), json!("none");
        key_depends_on_response_format: "response_format" =>
            json!({"type": "json_object"}), json!({"type": "text"});
        key_depends_on_text: "text" => json!({"format": {"type": "text"}}), json!({"format": {"type": "json_object"}});
        key_depends_on_seed: "seed" => json!(1), json!(2);
        key_depends_on_stop: "stop" => json!("\n"), json!(["\n", "END"]);
        key_depends_on_n: "n" => json!(1), json!(2);
        key_depends_on_stream: "stream" => json!(true), json!(false);
        key_depends_on_stream_options: "stream_options" =>
            json!({"include_usage": true}), json!({"include_usage": false});
    }

    #[test]
    fn caller_fields_do_not_change_the_key() {
        let reference = cache_key(Route::ChatCompletions, &base_body());
        for (field, value) in [
            ("user", json!("bob")),
            ("metadata", json!({"trace": "2"})),
            ("unrelated_extension", json!(true)),
        ] {
            assert_eq!(key_with(field, value), reference, "{field}");
            assert_eq!(key_without(field), reference, "{field}");
        }
    }

    #[test]
    fn key_depends_on_route() {
        let body = base_body();
        assert_ne!(
            cache_key(Route::ChatCompletions, &body),
            cache_key(Route::Responses, &body)
        );
    }

    #[test]
    fn key_is_a_sha256_hex_digest() {
        let key = cache_key(Route::Responses, &base_body());
        assert_eq!(key.as_str().len(), 64);
        assert!(key.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key.redis_key(), format!("switchyard:cache:{key}"));
    }

    #[test]
    fn key_ignores_json_key_order_at_every_depth() {
        let a: Map<String, Value> = serde_json::from_str(
            r#"{"model": "m", "temperature": 1, "tools": [{"type": "function",
                "function": {"name": "f", "parameters": {"b": 1, "a": {"y": 2, "x": 1}}}}]}"#,
        )
        .unwrap();
        let b: Map<String, Value> = serde_json::from_str(
            r#"{"tools": [{"function": {"parameters": {"a": {"x": 1, "y": 2}, "b": 1},
                "name": "f"}, "type": "function"}], "temperature": 1, "model": "m"}"#,
        )
        .unwrap();
        assert_eq!(
            cache_key(Route::Responses, &a),
            cache_key(Route::Responses, &b)
        );
    }

    #[test]
    fn canonical_json_sorts_keys_and_round_trips() {
        let value = json!({"b": [1, {"d": null, "c": "x\"\\\n\u{1}é"}], "a": true, "á": 1.5});
        let mut out = String::new();
        write_canonical_json(&value, &mut out);
        assert_eq!(
            out,
            r#"{"a":true,"b":[1,{"c":"x\"\\\n\u0001é","d":null}],"á":1.5}"#
        );
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), value);
    }

    fn directives(values: &[&str]) -> CacheDirectives {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        }
        CacheDirectives::from_headers(&headers)
    }

    #[test]
    fn directives_are_parsed_from_cache_control() {
        assert_eq!(directives(&[]), CacheDirectives::default());
        assert_eq!(
            directives(&["no-cache"]),
            CacheDirectives {
                no_cache: true,
                no_store: false
            }
        );
        assert_eq!(
            directives(&["No-Store"]),
            CacheDirectives {
                no_cache: false,
                no_store: true
            }
        );
        let both = CacheDirectives {
            no_cache: true,
            no_store: true,
        };
        assert_eq!(directives(&["no-cache, no-store"]), both);
        assert_eq!(directives(&[" NO-STORE ,max-age=0,No-Cache"]), both);
        assert_eq!(directives(&["no-cache", "no-store"]), both);
        assert!(directives(&["no-cache=\"set-cookie\""]).no_cache);
        assert_eq!(
            directives(&["max-age=0, no-cachex, xno-store, private"]),
            CacheDirectives::default()
        );
    }

    #[test]
    fn directives_survive_non_text_header_bytes() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_bytes(b"no-store, x=\xff").unwrap(),
        );
        assert!(CacheDirectives::from_headers(&headers).no_store);
    }

    fn sample(body: &str) -> CachedResponse {
        CachedResponse {
            status: 200,
            content_type: "text/event-stream".into(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            stream: true,
            upstream: "mock-a".into(),
            prompt_tokens: 12,
            completion_tokens: u64::MAX,
        }
    }

    #[test]
    fn entry_round_trips() {
        for response in [
            sample("data: {\"x\":1}\n\ndata: [DONE]\n\n"),
            CachedResponse {
                status: 201,
                content_type: String::new(),
                body: Bytes::new(),
                stream: false,
                upstream: "é".into(),
                prompt_tokens: 0,
                completion_tokens: 0,
            },
        ] {
            let encoded = Bytes::from(response.encode());
            assert_eq!(CachedResponse::decode(encoded), Ok(response));
        }
    }

    #[test]
    fn corrupt_entries_are_rejected() {
        let good = sample("data: [DONE]\n\n").encode();
        let mut cases: Vec<Vec<u8>> = vec![Vec::new(), b"garbage".to_vec(), b"SYC2".to_vec()];
        // Every truncation, and one byte too many.
        cases.extend((0..good.len()).map(|len| good[..len].to_vec()));
        cases.push([good.as_slice(), b"!"].concat());
        // Wrong version, out-of-range status, unknown flag.
        for (index, byte) in [(3, b'2'), (4, 0xff), (6, 0x02)] {
            let mut bad = good.clone();
            bad[index] = byte;
            cases.push(bad);
        }
        // A length that points past the end, and one that overflows usize arithmetic.
        let content_type_len_at = 4 + 2 + 1 + 8 + 8;
        for len in [1_000_000u64, u64::MAX] {
            let mut bad = good.clone();
            bad[content_type_len_at..content_type_len_at + 8].copy_from_slice(&len.to_be_bytes());
            cases.push(bad);
        }
        // Invalid UTF-8 in the upstream name.
        let mut bad = sample("x").encode();
        let upstream_at = content_type_len_at + 8 + "text/event-stream".len() + 8;
        bad[upstream_at] = 0xff;
        cases.push(bad);

        for case in cases {
            assert!(
                CachedResponse::decode(Bytes::from(case.clone())).is_err(),
                "accepted {case:?}"
            );
        }
    }

    #[derive(Clone)]
    struct TestClock(Arc<Mutex<Instant>>);

    impl TestClock {
        fn new() -> TestClock {
            TestClock(Arc::new(Mutex::new(Instant::now())))
        }

        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }

        fn clock(&self) -> Clock {
            let now = self.0.clone();
            Arc::new(move || *now.lock().unwrap())
        }
    }

    fn test_key(n: u32) -> CacheKey {
        cache_key(
            Route::ChatCompletions,
            &object(json!({"model": "m", "seed": n})),
        )
    }

    #[test]
    fn memory_hit_miss_and_overwrite() {
        let clock = TestClock::new();
        let store = MemoryStore::new(Duration::from_secs(10), 10, clock.clock());
        assert_eq!(store.get(&test_key(1)), None);
        store.put(&test_key(1), &sample("one"));
        assert_eq!(store.get(&test_key(1)), Some(sample("one")));
        assert_eq!(store.get(&test_key(2)), None);
        store.put(&test_key(1), &sample("uno"));
        assert_eq!(store.get(&test_key(1)), Some(sample("uno")));
        assert_eq!(store.lock().by_key.len(), 1);
        assert_eq!(store.lock().by_age.len(), 1);
    }

    #[test]
    fn memory_entries_expire_after_ttl() {
        let clock = TestClock::new();
        let store = MemoryStore::new(Duration::from_secs(10), 10, clock.clock());
        store.put(&test_key(1), &sample("one"));
        clock.advance(Duration::from_secs(5));
        store.put(&test_key(2), &sample("two"));
        clock.advance(Duration::from_millis(4_999));
        assert!(store.get(&test_key(1)).is_some());
        clock.advance(Duration::from_millis(1));
        assert_eq!(store.get(&test_key(1)), None);
        assert!(store.get(&test_key(2)).is_some());
        // The expired entry is gone, not just hidden.
        assert_eq!(store.lock().by_key.len(), 1);
        assert_eq!(store.lock().by_age.len(), 1);

        // Expired entries are also purged by writes, without a read.
        clock.advance(Duration::from_secs(10));
        store.put(&test_key(3), &sample("three"));
        assert_eq!(store.lock().by_key.len(), 1);
        assert!(store.get(&test_key(3)).is_some());
    }

    #[test]
    fn memory_evicts_oldest_beyond_max_entries() {
        let clock = TestClock::new();
        let store = MemoryStore::new(Duration::from_secs(10), 3, clock.clock());
        for n in 1..=3 {
            store.put(&test_key(n), &sample("x"));
        }
        // Re-storing makes an entry the newest again.
        store.put(&test_key(1), &sample("y"));
        store.put(&test_key(4), &sample("z"));
        assert_eq!(store.get(&test_key(2)), None);
        for n in [1, 3, 4] {
            assert!(store.get(&test_key(n)).is_some(), "{n}");
        }
        store.put(&test_key(5), &sample("z"));
        assert_eq!(store.get(&test_key(3)), None);
        assert_eq!(store.lock().by_key.len(), 3);
        assert_eq!(store.lock().by_age.len(), 3);
    }

    #[tokio::test]
    async fn memory_backend_through_the_cache() {
        let cache = ResponseCache::new(&CacheConfig::default()).await;
        assert!(cache.is_enabled());
        assert_eq!(cache.lookup(&test_key(1)).await, Lookup::Miss);
        assert!(cache.store(&test_key(1), &sample("one")).await);
        assert_eq!(cache.lookup(&test_key(1)).await, Lookup::Hit(sample("one")));
        assert_eq!(cache.errors(), 0);

        for status in [199, 304, 429, 500] {
            let failed = CachedResponse {
                status,
                ..sample("error")
            };
            assert!(!cache.store(&test_key(2), &failed).await, "{status}");
        }
        assert_eq!(cache.lookup(&test_key(2)).await, Lookup::Miss);
    }

    #[tokio::test]
    async fn off_backend_is_always_unavailable() {
        let config = CacheConfig {
            backend: CacheBackendKind::Off,
            ..CacheConfig::default()
        };
        let cache = ResponseCache::new(&config).await;
        assert!(!cache.is_enabled());
        assert!(!cache.store(&test_key(1), &sample("one")).await);
        assert_eq!(cache.lookup(&test_key(1)).await, Lookup::Unavailable);
        assert_eq!(cache.errors(), 0);
    }

    #[test]
    fn config_defaults_and_parsing() {
        let config: CacheConfig = toml::from_str("").unwrap();
        assert_eq!(config.backend, CacheBackendKind::Memory);
        assert_eq!(config.redis_url, None);
        assert_eq!(config.ttl_seconds, 300);
        assert_eq!(config.max_entries, 10_000);

        let config: CacheConfig = toml::from_str(
            "backend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nttl_seconds = 5",
        )
        .unwrap();
        assert_eq!(config.backend, CacheBackendKind::Redis);
        assert_eq!(config.ttl_seconds, 5);
        assert_eq!(config.validate(), Ok(()));

        assert!(toml::from_str::<CacheConfig>("backend = \"memcached\"").is_err());
        assert!(toml::from_str::<CacheConfig>("ttl = 5").is_err());
    }

    #[test]
    fn config_validation_names_the_key() {
        let redis = |url: Option<&str>| CacheConfig {
            backend: CacheBackendKind::Redis,
            redis_url: url.map(str::to_owned),
            ..CacheConfig::default()
        };
        assert_eq!(
            redis(None).validate(),
            Err("cache.redis_url: required when cache.backend = \"redis\"".into())
        );
        assert!(redis(Some(" ")).validate().is_err());
        let err = redis(Some("http://nope")).validate().unwrap_err();
        assert!(err.starts_with("cache.redis_url: "), "{err}");

        let zero_ttl = CacheConfig {
            ttl_seconds: 0,
            ..CacheConfig::default()
        };
        assert_eq!(
            zero_ttl.validate(),
            Err("cache.ttl_seconds: must be greater than 0".into())
        );
        let zero_entries = CacheConfig {
            max_entries: 0,
            ..CacheConfig::default()
        };
        assert_eq!(
            zero_entries.validate(),
            Err("cache.max_entries: must be greater than 0".into())
        );
        let off = CacheConfig {
            backend: CacheBackendKind::Off,
            ttl_seconds: 0,
            max_entries: 0,
            ..CacheConfig::default()
        };
        assert_eq!(off.validate(), Ok(()));
    }

    #[test]
    fn config_debug_hides_the_redis_password() {
        let config = CacheConfig {
            backend: CacheBackendKind::Redis,
            redis_url: Some("redis://user:hunter2@cache.internal:6379/0".into()),
            ..CacheConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redis://cache.internal:6379/0"), "{shown}");
        assert_eq!(
            url_without_credentials("redis://127.0.0.1/0"),
            "redis://127.0.0.1/0"
        );
    }

    /// A redis-server owned by one test: killed and reaped on drop, so a
    /// failing assertion never leaves it running.
    struct RedisServer {
        child: Option<std::process::Child>,
        port: u16,
    }

    impl RedisServer {
        /// `None` (with a note on stderr) when redis-server is not installed.
        fn start() -> Option<RedisServer> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map(|addr| addr.port())
                .unwrap();
            let mut server = RedisServer { child: None, port };
            match server.spawn() {
                Ok(()) => Some(server),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("skipped: redis-server is not on PATH");
                    None
                }
                Err(err) => panic!("cannot start redis-server: {err}"),
            }
        }

        fn spawn(&mut self) -> std::io::Result<()> {
            let child = std::process::Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()?;
            self.child = Some(child);
            self.wait_ready();
            Ok(())
        }

        fn wait_ready(&self) {
            use std::io::{Read, Write};
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut reply = [0u8; 7];
                    if stream.write_all(b"PING\r\n").is_ok()
                        && stream.read_exact(&mut reply).is_ok()
                        && &reply == b"+PONG\r\n"
                    {
                        return;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            panic!("redis-server on port {} did not come up", self.port);
        }

        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        fn restart(&mut self) {
            self.stop();
            self.spawn().unwrap();
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/0", self.port)
        }

        async fn connection(&self) -> MultiplexedConnection {
            redis::Client::open(self.url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap()
        }

        async fn cache(&self) -> ResponseCache {
            ResponseCache::new(&CacheConfig {
                backend: CacheBackendKind::Redis,
                redis_url: Some(self.url()),
                ttl_seconds: 120,
                ..CacheConfig::default()
            })
            .await
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// Generous compared to REDIS_TIMEOUT, tight compared to a stalled request.
    const FAILURE_BOUND: Duration = Duration::from_millis(1_000);

    #[tokio::test]
    async fn redis_hit_miss_and_ttl() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let cache = server.cache().await;
        assert!(cache.is_enabled());
        let key = test_key(1);
        assert_eq!(cache.lookup(&key).await, Lookup::Miss);
        assert!(cache.store(&key, &sample("data: [DONE]\n\n")).await);
        assert_eq!(
            cache.lookup(&key).await,
            Lookup::Hit(sample("data: [DONE]\n\n"))
        );
        assert_eq!(cache.lookup(&test_key(2)).await, Lookup::Miss);

        let mut raw = server.connection().await;
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("switchyard:cache:{key}"))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!((110..=120).contains(&ttl), "TTL {ttl}");
        assert_eq!(cache.errors(), 0);
    }

    #[tokio::test]
    async fn redis_corrupt_entry_is_a_miss() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let cache = server.cache().await;
        let key = test_key(1);
        let mut raw = server.connection().await;
        let () = redis::cmd("SET")
            .arg(key.redis_key())
            .arg("not an entry")
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(cache.lookup(&key).await, Lookup::Miss);
        assert_eq!(cache.errors(), 0);
    }

    /// Whether the cache currently considers Redis up, which is what decides
    /// between one warning per outage and a line per request.
    fn redis_healthy(cache: &ResponseCache) -> bool {
        match &cache.backend {
            Backend::Redis(store) => store.healthy.load(Ordering::Relaxed),
            Backend::Off | Backend::Memory(_) => panic!("not a redis cache"),
        }
    }

    #[tokio::test]
    async fn redis_outage_is_bounded_and_recovers() {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        let cache = server.cache().await;
        let key = test_key(1);
        assert!(cache.store(&key, &sample("one")).await);

        server.stop();
        let started = Instant::now();
        assert_eq!(cache.lookup(&key).await, Lookup::Unavailable);
        assert!(!cache.store(&key, &sample("one")).await);
        assert_eq!(cache.lookup(&key).await, Lookup::Unavailable);
        // A refused connection fails at once; the timeout is only for a hung server.
        assert!(started.elapsed() < REDIS_TIMEOUT, "{:?}", started.elapsed());
        assert_eq!(cache.errors(), 3);
        assert!(!redis_healthy(&cache));

        // Same port, same cache object: the next call reconnects by itself.
        server.restart();
        assert_eq!(cache.lookup(&key).await, Lookup::Miss);
        assert!(cache.store(&key, &sample("two")).await);
        assert_eq!(cache.lookup(&key).await, Lookup::Hit(sample("two")));
        assert_eq!(cache.errors(), 3);
        assert!(redis_healthy(&cache));
    }

    #[tokio::test]
    async fn redis_down_at_startup_is_not_fatal() {
        let Some(mut server) = RedisServer::start() else {
            return;
        };
        server.stop();
        let started = Instant::now();
        let cache = server.cache().await;
        assert!(cache.is_enabled());
        assert_eq!(cache.lookup(&test_key(1)).await, Lookup::Unavailable);
        assert!(started.elapsed() < FAILURE_BOUND, "{:?}", started.elapsed());
        assert_eq!(cache.errors(), 2, "the startup probe and the lookup");
        assert!(!redis_healthy(&cache));

        server.restart();
        assert!(cache.store(&test_key(1), &sample("one")).await);
        assert_eq!(cache.lookup(&test_key(1)).await, Lookup::Hit(sample("one")));
        assert!(redis_healthy(&cache));
    }

    #[tokio::test]
    async fn redis_that_stops_answering_is_cut_off_by_the_timeout() {
        let Some(server) = RedisServer::start() else {
            return;
        };
        let cache = server.cache().await;
        let key = test_key(1);
        assert!(cache.store(&key, &sample("one")).await);

        // The server keeps the connection open but answers nothing for a while.
        let pause = Duration::from_millis(600);
        let mut raw = server.connection().await;
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(pause.as_millis() as u64)
            .arg("ALL")
            .query_async(&mut raw)
            .await
            .unwrap();
        let paused_at = Instant::now();
        let started = Instant::now();
        assert_eq!(cache.lookup(&key).await, Lookup::Unavailable);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= REDIS_TIMEOUT && elapsed < FAILURE_BOUND,
            "{elapsed:?}"
        );
        assert_eq!(cache.errors(), 1);

        tokio::time::sleep(pause.saturating_sub(paused_at.elapsed())).await;
        assert_eq!(cache.lookup(&key).await, Lookup::Hit(sample("one")));
    }
}
