//! Where cached answers live: nowhere (off), in process memory (bounded by
//! count, bytes and TTL), or in Redis.
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

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::cache::{CacheBackendKind, CacheConfig};
use crate::store::cache::entry::CachedResponse;
use crate::store::cache::key::CacheKey;

/// Upper bound on any one Redis round trip, connecting included: a cache that
/// is slower than this costs more than it saves, so the request goes on without it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
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
                config.max_bytes,
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
    /// (backend off, not a 2xx response, larger than the memory cache's
    /// whole byte budget, Redis failed or was too slow).
    pub async fn store(&self, key: &CacheKey, response: &CachedResponse) -> bool {
        // The contract caches successes only; an error replayed from cache
        // would outlive the outage that caused it.
        if !(200..300).contains(&response.status) {
            return false;
        }
        match &self.backend {
            Backend::Off => false,
            Backend::Memory(store) => store.put(key, response),
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
    /// What the entries may hold together, as counted by [`entry_bytes`].
    max_bytes: usize,
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
    /// The sum of the entries' `bytes`.
    bytes: usize,
}

impl MemoryEntries {
    fn remove(&mut self, key: &CacheKey) -> Option<MemoryEntry> {
        let entry = self.by_key.remove(key)?;
        self.by_age.remove(&entry.seq);
        self.bytes -= entry.bytes;
        Some(entry)
    }
}

struct MemoryEntry {
    seq: u64,
    expires_at: Instant,
    /// What it counts against `max_bytes`.
    bytes: usize,
    response: CachedResponse,
}

/// What an entry counts against the byte budget: its body and strings, its
/// key (held twice, in both maps), and a fixed allowance for the rest.
fn entry_bytes(key: &CacheKey, response: &CachedResponse) -> usize {
    const OVERHEAD: usize = 128;
    response.body.len()
        + response.content_type.len()
        + response.upstream.len()
        + 2 * key.as_str().len()
        + OVERHEAD
}

impl MemoryStore {
    fn new(ttl: Duration, max_entries: usize, max_bytes: usize, clock: Clock) -> MemoryStore {
        MemoryStore {
            ttl,
            // A zero bound would make every store a no-op that still reports success.
            max_entries: max_entries.max(1),
            max_bytes,
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
        entries.remove(key);
        None
    }

    /// Stores the answer, evicting the oldest entries until it fits both
    /// bounds; false (and nothing evicted) for one larger than the whole
    /// byte budget.
    fn put(&self, key: &CacheKey, response: &CachedResponse) -> bool {
        let now = (self.clock)();
        let bytes = entry_bytes(key, response);
        let mut entries = self.lock();
        // The previous answer under this key is stale either way.
        entries.remove(key);
        if bytes > self.max_bytes {
            return false;
        }
        while let Some((_, oldest)) = entries.by_age.first_key_value() {
            let oldest = oldest.clone();
            let expired = entries
                .by_key
                .get(&oldest)
                .is_none_or(|entry| entry.expires_at <= now);
            let fits =
                entries.by_key.len() < self.max_entries && entries.bytes + bytes <= self.max_bytes;
            if !expired && fits {
                break;
            }
            entries.remove(&oldest);
        }
        let seq = entries.next_seq;
        entries.next_seq += 1;
        entries.by_age.insert(seq, key.clone());
        entries.bytes += bytes;
        entries.by_key.insert(
            key.clone(),
            MemoryEntry {
                seq,
                expires_at: now + self.ttl,
                bytes,
                response: response.clone(),
            },
        );
        true
    }
}

/// Redis through redis-rs's `ConnectionManager`: created lazily, so a Redis
/// that is down at startup is no error, and it replaces a dropped connection in
/// the background by itself. Every command is still bounded by
/// [`REDIS_TIMEOUT`], so a down or hung Redis costs a request at most that long.
/// A command that fails because the connection is gone is sent once more on
/// the manager's fresh connection (within the same bound), so the first call
/// after Redis returns already succeeds.
struct RedisStore {
    client: redis::Client,
    ttl_seconds: u64,
    manager: ConnectionManager,
    errors: AtomicU64,
    /// Turns per-request failures into one warning per outage and one recovery line.
    healthy: AtomicBool,
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
        // No retries inside the manager: a refused connection fails at once,
        // and the next command starts a fresh attempt.
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(REDIS_TIMEOUT));
        let manager = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)
            .map_err(|err| format!("cannot set up the Redis connection: {err}"))?;
        Ok(RedisStore {
            client,
            ttl_seconds: config.ttl_seconds.max(1),
            manager,
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

    /// Runs one command within [`REDIS_TIMEOUT`] and keeps the error count and
    /// the health log up to date.
    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, ()> {
        let attempt = async {
            let mut connection = self.manager.clone();
            match command.query_async::<T>(&mut connection).await {
                // The manager has started a new connection; this waits for it.
                Err(err) if err.is_io_error() || err.is_unrecoverable_error() => {
                    command.query_async::<T>(&mut connection).await
                }
                done => done,
            }
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
}

#[cfg(test)]
mod tests;
