//! The backends: memory (with a test clock) and Redis (against a
//! redis-server of each test's own, skipped when none is installed).

use super::*;
use redis::aio::MultiplexedConnection;
use serde_json::json;

use crate::shared::labels::Route;
use crate::shared::test_support::object;
use crate::store::cache::entry::sample;
use crate::store::cache::key::cache_key;

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
    let store = MemoryStore::new(Duration::from_secs(10), 10, usize::MAX, clock.clock());
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
    let store = MemoryStore::new(Duration::from_secs(10), 10, usize::MAX, clock.clock());
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
    let store = MemoryStore::new(Duration::from_secs(10), 3, usize::MAX, clock.clock());
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

#[test]
fn memory_evicts_oldest_beyond_max_bytes() {
    let clock = TestClock::new();
    let body = "b".repeat(1000);
    let one = entry_bytes(&test_key(1), &sample(&body));
    assert!(one > 1000);
    let store = MemoryStore::new(Duration::from_secs(10), 100, 3 * one, clock.clock());
    for n in 1..=3 {
        assert!(store.put(&test_key(n), &sample(&body)));
    }
    assert_eq!(store.lock().bytes, 3 * one);
    assert!(store.put(&test_key(4), &sample(&body)));
    assert_eq!(store.get(&test_key(1)), None, "the oldest went first");
    for n in 2..=4 {
        assert!(store.get(&test_key(n)).is_some(), "{n}");
    }
    assert_eq!(store.lock().bytes, 3 * one);
    // A bigger answer takes as many of the oldest as it needs.
    let double = "d".repeat(2 * one - (one - 1000));
    assert!(store.put(&test_key(5), &sample(&double)));
    assert_eq!(store.get(&test_key(2)), None);
    assert_eq!(store.get(&test_key(3)), None);
    assert!(store.get(&test_key(4)).is_some());
    assert!(store.lock().bytes <= 3 * one);
    // One larger than the whole budget is not stored and evicts nothing.
    assert!(!store.put(&test_key(6), &sample(&"h".repeat(3 * one))));
    assert_eq!(store.get(&test_key(6)), None);
    assert!(store.get(&test_key(4)).is_some() && store.get(&test_key(5)).is_some());
    // Expiry and overwrites give their bytes back.
    clock.advance(Duration::from_secs(11));
    assert_eq!(store.get(&test_key(4)), None);
    assert!(store.put(&test_key(5), &sample("small")));
    let entries = store.lock();
    assert_eq!(entries.bytes, entry_bytes(&test_key(5), &sample("small")));
    assert_eq!((entries.by_key.len(), entries.by_age.len()), (1, 1));
}

#[tokio::test]
async fn a_memory_cache_reports_an_answer_larger_than_its_budget_as_not_stored() {
    let config = CacheConfig {
        max_bytes: 1024,
        ..CacheConfig::default()
    };
    let cache = ResponseCache::new(&config).await;
    assert!(cache.store(&test_key(1), &sample("small")).await);
    assert!(!cache.store(&test_key(2), &sample(&"x".repeat(2048))).await);
    assert_eq!(cache.lookup(&test_key(2)).await, Lookup::Miss);
    assert_eq!(
        cache.lookup(&test_key(1)).await,
        Lookup::Hit(sample("small"))
    );
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
