//! The ledger tests: records from outcomes, the SQLite and memory stores, batching, shutdown and the usage reads.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::shared::labels::CacheResult;

fn prices() -> Prices {
    toml::from_str(
        r#"
"priced" = { input = 1.0, output = 2 }
"cheap" = { input = 0.5, output = 0.25 }
"#,
    )
    .unwrap()
}

fn outcome(tenant: &str, request_id: &str) -> RequestOutcome {
    RequestOutcome {
        tenant: tenant.to_owned(),
        request_id: request_id.to_owned(),
        route: Route::ChatCompletions,
        model: "priced".to_owned(),
        upstream: Some("mock-a".to_owned()),
        attempts: 1,
        fallbacks: 0,
        retries: 0,
        stream: false,
        cache: CacheResult::Miss,
        status: 200,
        error_type: None,
        prompt_tokens: 1_000,
        completion_tokens: 500,
        latency: Duration::from_millis(120),
        upstream_time: Duration::from_millis(100),
        ttft: None,
    }
}

fn record(tenant: &str, request_id: &str) -> LedgerRecord {
    LedgerRecord::from_outcome(&outcome(tenant, request_id), &prices())
}

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-ledger-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite(dir: &TempDir) -> Ledger {
    let config = LedgerConfig {
        backend: LedgerBackend::Sqlite,
        path: "ledger.sqlite3".to_owned(),
        ..LedgerConfig::default()
    };
    Ledger::open(&config, &dir.0).unwrap()
}

fn memory() -> Ledger {
    let config = LedgerConfig {
        backend: LedgerBackend::Memory,
        path: String::new(),
        ..LedgerConfig::default()
    };
    Ledger::open(&config, Path::new("/nonexistent")).unwrap()
}

#[test]
fn ledger_can_be_shared_across_tasks() {
    fn shared<T: Send + Sync>() {}
    shared::<Ledger>();
}

#[test]
fn successful_request_is_costed_from_its_tokens() {
    let record = record("acme", "r1");
    assert_eq!(record.prompt_tokens, 1_000);
    assert_eq!(record.completion_tokens, 500);
    assert_eq!(record.total_tokens, 1_500);
    // 1000 * $1/M + 500 * $2/M
    assert!((record.cost - 0.002).abs() < 1e-12, "{}", record.cost);
    assert!(!record.cached);
    assert_eq!(record.endpoint, "/v1/chat/completions");
    assert_eq!(record.upstream.as_deref(), Some("mock-a"));
    assert_eq!(record.latency_ms, 120.0);
    assert_eq!(record.ttft_ms, None);
    assert!(record.created_at > 1.6e9);
}

#[test]
fn cost_arithmetic_and_unknown_models() {
    let prices = prices();
    assert_eq!(prices.cost("cheap", 2_000_000, 4_000_000), 2.0);
    assert_eq!(prices.cost("priced", 0, 0), 0.0);
    assert_eq!(prices.cost("unpriced", 1_000_000, 1_000_000), 0.0);
}

#[test]
fn failed_requests_cost_nothing_and_have_no_tokens() {
    for status in [400, 401, 404, 429, 500, 502, 504] {
        let mut failed = outcome("acme", "r");
        failed.status = status;
        let record = LedgerRecord::from_outcome(&failed, &prices());
        assert_eq!(
            (
                record.prompt_tokens,
                record.completion_tokens,
                record.total_tokens
            ),
            (0, 0, 0),
            "{status}"
        );
        assert_eq!(record.cost, 0.0, "{status}");
        assert_eq!(record.status, status);
    }
}

#[test]
fn a_stream_cut_by_the_client_is_billed_for_what_it_produced() {
    let mut cut = outcome("acme", "r");
    cut.status = 499;
    cut.stream = true;
    cut.completion_tokens = 2;
    cut.ttft = Some(Duration::from_millis(15));
    let record = LedgerRecord::from_outcome(&cut, &prices());
    assert_eq!(record.total_tokens, 1_002);
    assert!((record.cost - 0.001004).abs() < 1e-12, "{}", record.cost);
    assert_eq!(record.ttft_ms, Some(15.0));
}

#[test]
fn cache_hits_keep_tokens_but_cost_nothing() {
    let mut hit = outcome("acme", "r");
    hit.cache = CacheResult::Hit;
    hit.attempts = 0;
    hit.upstream = None;
    let record = LedgerRecord::from_outcome(&hit, &prices());
    assert!(record.cached);
    assert_eq!(record.cost, 0.0);
    assert_eq!(record.total_tokens, 1_500);
    assert_eq!(record.upstream, None);
}

#[test]
fn record_serializes_exactly_the_contract_fields() {
    let mut responses = outcome("acme", "r");
    responses.route = Route::Responses;
    let value = serde_json::to_value(LedgerRecord::from_outcome(&responses, &prices())).unwrap();
    let keys: BTreeSet<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected = BTreeSet::from([
        "tenant",
        "request_id",
        "endpoint",
        "model",
        "upstream",
        "attempts",
        "stream",
        "cached",
        "status",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost",
        "latency_ms",
        "ttft_ms",
        "created_at",
    ]);
    assert_eq!(keys, expected);
    assert_eq!(value["ttft_ms"], serde_json::Value::Null);
    assert_eq!(value["endpoint"], "/v1/responses");
}

#[test]
fn config_tables_parse_with_defaults_and_reject_bad_values() {
    let config: LedgerConfig = toml::from_str("").unwrap();
    assert_eq!(config.backend, LedgerBackend::Sqlite);
    assert_eq!(config.path, "switchyard-ledger.sqlite3");
    assert_eq!(
        (
            config.memory_records,
            config.queue_capacity,
            config.max_pending
        ),
        (100_000, 65_536, 100_000)
    );
    let config: LedgerConfig = toml::from_str("backend = \"memory\"").unwrap();
    assert_eq!(config.backend, LedgerBackend::Memory);
    let config: LedgerConfig =
        toml::from_str("memory_records = 3\nqueue_capacity = 4\nmax_pending = 5").unwrap();
    assert_eq!(
        (
            config.memory_records,
            config.queue_capacity,
            config.max_pending
        ),
        (3, 4, 5)
    );
    assert!(toml::from_str::<LedgerConfig>("backend = \"postgres\"").is_err());
    assert!(toml::from_str::<LedgerConfig>("paht = \"x\"").is_err());

    for bad in [
        "m = { input = -1.0, output = 1.0 }",
        "m = { input = nan, output = 1.0 }",
        "m = { input = 1.0, output = inf }",
        "m = { input = 1.0 }",
        "m = { input = 1.0, output = 1.0, cached = 0.5 }",
    ] {
        let err = toml::from_str::<Prices>(bad).unwrap_err().to_string();
        assert!(!err.is_empty(), "{bad}");
    }
    let err = toml::from_str::<Prices>("m = { input = -1.0, output = 1.0 }")
        .unwrap_err()
        .to_string();
    assert!(err.contains("must be a finite number >= 0"), "{err}");
}

#[tokio::test]
async fn sqlite_records_survive_closing_and_reopening() {
    let dir = TempDir::new();
    let mut written = Vec::new();
    {
        let ledger = sqlite(&dir);
        for index in 0..50 {
            let mut outcome = outcome("acme", &format!("r{index}"));
            outcome.stream = index % 2 == 0;
            outcome.ttft = Some(Duration::from_micros(1_500 + index));
            outcome.upstream = (index % 3 != 0).then(|| "mock-b".to_owned());
            let record = LedgerRecord::from_outcome(&outcome, &prices());
            written.push(record.clone());
            ledger.append(record);
        }
        // Dropped without an explicit flush: Drop must write everything.
    }
    assert!(dir.0.join("ledger.sqlite3").exists());
    let ledger = sqlite(&dir);
    let usage = ledger.usage("acme", 1_000).await.unwrap();
    written.reverse();
    assert_eq!(usage.records, written);
    assert_eq!(usage.totals.requests, 50);
}

#[tokio::test]
async fn close_makes_appended_records_durable_while_the_ledger_lives() {
    let dir = TempDir::new();
    let ledger = sqlite(&dir);
    for index in 0..10 {
        ledger.append(record("acme", &format!("r{index}")));
    }
    ledger.close();
    // A second connection sees the rows: they are committed, not just queued.
    let reader = Connection::open(dir.0.join("ledger.sqlite3")).unwrap();
    let rows: i64 = reader
        .query_row("SELECT COUNT(*) FROM ledger", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 10);
    // Still usable after close.
    ledger.append(record("acme", "late"));
    assert_eq!(ledger.usage("acme", 1).await.unwrap().totals.requests, 11);
}

async fn concurrent_appends_are_recorded_exactly_once(ledger: Ledger) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 500;
    let ledger = Arc::new(ledger);
    let writers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let ledger = Arc::clone(&ledger);
            std::thread::spawn(move || {
                for index in 0..PER_THREAD {
                    let tenant = format!("tenant{}", thread % 3);
                    let mut outcome = outcome(&tenant, &format!("{thread}-{index}"));
                    outcome.prompt_tokens = index as u64;
                    outcome.completion_tokens = 1;
                    ledger.append(LedgerRecord::from_outcome(&outcome, &prices()));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let tenants = ledger.totals_by_tenant().await.unwrap();
    let requests: u64 = tenants.values().map(|totals| totals.requests).sum();
    assert_eq!(requests, (THREADS * PER_THREAD) as u64);

    let mut ids = HashSet::new();
    for (tenant, totals) in &tenants {
        let usage = ledger.usage(tenant, usize::MAX).await.unwrap();
        // Float sums may differ in the last bits with summation order.
        assert!((usage.totals.cost - totals.cost).abs() < 1e-9);
        assert_eq!(
            Totals {
                cost: totals.cost,
                ..usage.totals.clone()
            },
            *totals
        );
        assert_eq!(usage.records.len() as u64, totals.requests);
        let threads = (0..THREADS)
            .filter(|thread| format!("tenant{}", thread % 3) == *tenant)
            .count() as u64;
        let per_thread_prompt = (PER_THREAD * (PER_THREAD - 1) / 2) as u64;
        assert_eq!(totals.prompt_tokens, threads * per_thread_prompt);
        assert_eq!(totals.completion_tokens, threads * PER_THREAD as u64);
        assert_eq!(
            totals.total_tokens,
            totals.prompt_tokens + totals.completion_tokens
        );
        let summed: f64 = usage.records.iter().map(|record| record.cost).sum();
        assert!((summed - totals.cost).abs() < 1e-9);
        for record in usage.records {
            assert!(
                ids.insert(record.request_id.clone()),
                "duplicate {record:?}"
            );
        }
    }
    assert_eq!(ids.len(), THREADS * PER_THREAD);
}

#[tokio::test]
async fn sqlite_concurrent_appends_are_recorded_exactly_once() {
    let dir = TempDir::new();
    concurrent_appends_are_recorded_exactly_once(sqlite(&dir)).await;
    let reopened = sqlite(&dir);
    let tenants = reopened.totals_by_tenant().await.unwrap();
    let requests: u64 = tenants.values().map(|totals| totals.requests).sum();
    assert_eq!(requests, 8 * 500);
}

#[tokio::test]
async fn memory_concurrent_appends_are_recorded_exactly_once() {
    concurrent_appends_are_recorded_exactly_once(memory()).await;
}

async fn usage_is_newest_first_limited_and_per_tenant(ledger: Ledger) {
    for index in 0..5 {
        ledger.append(record("acme", &format!("acme-{index}")));
        ledger.append(record("globex", &format!("globex-{index}")));
    }
    let mut failed = outcome("acme", "acme-failed");
    failed.status = 500;
    ledger.append(LedgerRecord::from_outcome(&failed, &prices()));

    // No flush: reads must see every append made before them.
    let usage = ledger.usage("acme", 3).await.unwrap();
    assert_eq!(usage.tenant, "acme");
    let ids: Vec<&str> = usage
        .records
        .iter()
        .map(|r| r.request_id.as_str())
        .collect();
    assert_eq!(ids, ["acme-failed", "acme-4", "acme-3"]);
    assert_eq!(
        usage.totals,
        Totals {
            requests: 6,
            prompt_tokens: 5_000,
            completion_tokens: 2_500,
            total_tokens: 7_500,
            cost: usage.totals.cost,
        }
    );
    assert!((usage.totals.cost - 0.01).abs() < 1e-12);
    assert!(
        usage.records.iter().all(|r| r.tenant == "acme"),
        "{usage:?}"
    );

    let none = ledger.usage("nobody", 10).await.unwrap();
    assert_eq!(none.totals, Totals::default());
    assert!(none.records.is_empty());
    assert!(ledger.usage("acme", 0).await.unwrap().records.is_empty());

    let tenants = ledger.totals_by_tenant().await.unwrap();
    assert_eq!(tenants.keys().collect::<Vec<_>>(), ["acme", "globex"]);
    assert_eq!(tenants["acme"], usage.totals);
    assert_eq!(tenants["globex"].requests, 5);

    let body = serde_json::to_value(&usage).unwrap();
    assert_eq!(body["totals"]["requests"], 6);
    assert_eq!(body["records"][0]["request_id"], "acme-failed");
}

#[tokio::test]
async fn sqlite_usage_is_newest_first_limited_and_per_tenant() {
    let dir = TempDir::new();
    usage_is_newest_first_limited_and_per_tenant(sqlite(&dir)).await;
}

#[tokio::test]
async fn memory_usage_is_newest_first_limited_and_per_tenant() {
    usage_is_newest_first_limited_and_per_tenant(memory()).await;
}

#[test]
fn relative_paths_resolve_against_the_base_dir_and_bad_paths_fail_at_open() {
    let dir = TempDir::new();
    let config = LedgerConfig {
        backend: LedgerBackend::Sqlite,
        path: "nested.sqlite3".to_owned(),
        ..LedgerConfig::default()
    };
    drop(Ledger::open(&config, &dir.0).unwrap());
    assert!(dir.0.join("nested.sqlite3").exists());

    let missing = LedgerConfig {
        backend: LedgerBackend::Sqlite,
        path: "no/such/dir/ledger.sqlite3".to_owned(),
        ..LedgerConfig::default()
    };
    let err = Ledger::open(&missing, &dir.0).err().unwrap();
    assert!(
        err.starts_with("ledger.path: cannot use SQLite database "),
        "{err}"
    );
    assert!(err.contains("no/such/dir/ledger.sqlite3"), "{err}");

    let empty = LedgerConfig {
        backend: LedgerBackend::Sqlite,
        path: String::new(),
        ..LedgerConfig::default()
    };
    assert_eq!(
        Ledger::open(&empty, &dir.0).err().unwrap(),
        "ledger.path: must not be empty"
    );
}

#[test]
fn an_incompatible_existing_table_is_refused_at_open() {
    let dir = TempDir::new();
    let path = dir.0.join("ledger.sqlite3");
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE ledger (id INTEGER PRIMARY KEY, tenant TEXT)")
        .unwrap();
    let config = LedgerConfig {
        backend: LedgerBackend::Sqlite,
        path: "ledger.sqlite3".to_owned(),
        ..LedgerConfig::default()
    };
    let err = Ledger::open(&config, &dir.0).err().unwrap();
    assert!(
        err.starts_with("ledger.path: cannot use SQLite database "),
        "{err}"
    );
}

fn memory_with(config: LedgerConfig) -> Ledger {
    let config = LedgerConfig {
        backend: LedgerBackend::Memory,
        ..config
    };
    Ledger::open(&config, Path::new("/nonexistent")).unwrap()
}

#[tokio::test]
async fn the_memory_ledger_lists_a_window_and_totals_everything() {
    let ledger = memory_with(LedgerConfig {
        memory_records: 3,
        ..LedgerConfig::default()
    });
    for index in 0..5 {
        ledger.append(record("acme", &format!("a{index}")));
    }
    ledger.append(record("other", "o0"));
    let one = record("acme", "x");
    let acme = ledger.usage("acme", 100).await.unwrap();
    let ids: Vec<&str> = acme.records.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["a4", "a3"], "only the three newest records are held");
    assert_eq!(acme.totals.requests, 5, "the dropped ones still count");
    assert_eq!(acme.totals.prompt_tokens, 5 * one.prompt_tokens);
    assert_eq!(acme.totals.total_tokens, 5 * one.total_tokens);
    assert!((acme.totals.cost - 5.0 * one.cost).abs() < 1e-12);
    let tenants = ledger.totals_by_tenant().await.unwrap();
    assert_eq!(tenants["acme"], acme.totals);
    assert_eq!(tenants["other"].requests, 1);
    assert_eq!(
        ledger.dropped(),
        0,
        "leaving the window is not losing a record"
    );
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_what_does_not_fit() {
    let ledger = memory_with(LedgerConfig {
        queue_capacity: 4,
        ..LedgerConfig::default()
    });
    // Hold the writer inside a read, so nothing leaves the queue.
    let (started, running) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let hold = Command::After(Box::new(move |_| {
        started.send(()).unwrap();
        let _ = released.recv();
    }));
    ledger.commands.try_send(hold).ok().unwrap();
    running.recv().unwrap();
    for index in 0..10 {
        ledger.append(record("acme", &format!("r{index}")));
    }
    assert_eq!(ledger.dropped(), 6, "four fit the queue");
    release.send(()).unwrap();
    let usage = ledger.usage("acme", 100).await.unwrap();
    let ids: Vec<&str> = usage
        .records
        .iter()
        .map(|r| r.request_id.as_str())
        .collect();
    assert_eq!(ids, ["r3", "r2", "r1", "r0"]);
    assert_eq!(usage.totals.requests, 4);
}

#[tokio::test]
async fn a_read_waits_for_room_in_a_full_queue() {
    let ledger = memory_with(LedgerConfig {
        queue_capacity: 1,
        ..LedgerConfig::default()
    });
    let (started, running) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let hold = Command::After(Box::new(move |_| {
        started.send(()).unwrap();
        let _ = released.recv();
    }));
    ledger.commands.try_send(hold).ok().unwrap();
    running.recv().unwrap();
    ledger.append(record("acme", "queued"));
    let read = ledger.usage("acme", 10);
    release.send(()).unwrap();
    let usage = read.await.unwrap();
    assert_eq!(
        usage.totals.requests, 1,
        "the read came after the queued record"
    );
    assert_eq!(ledger.dropped(), 0);
}

#[test]
fn a_failing_database_holds_at_most_max_pending_records() {
    let dir = TempDir::new();
    let path = dir.0.join("ledger.sqlite3");
    let dropped = Arc::new(AtomicU64::new(0));
    let mut writer = Writer::new(
        Store::Sqlite(open_sqlite(&path).unwrap()),
        5,
        dropped.clone(),
    );
    let other = Connection::open(&path).unwrap();
    other.execute_batch("DROP TABLE ledger").unwrap();
    for index in 0..8 {
        assert!(writer.handle(Command::Append(record("acme", &format!("r{index}")))));
        writer.commit();
    }
    assert!(writer.failures > 0, "the commits failed");
    assert_eq!(writer.pending.len(), 5);
    assert_eq!(dropped.load(Ordering::Relaxed), 3);
    // The database comes back: what was held is written, once.
    other.execute_batch(SCHEMA).unwrap();
    writer.commit();
    assert!(writer.pending.is_empty());
    let rows: Vec<String> = other
        .prepare("SELECT request_id FROM ledger ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, ["r0", "r1", "r2", "r3", "r4"]);
}
