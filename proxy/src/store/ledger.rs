//! The usage ledger: one record per finished model request, with its tokens
//! and cost, kept per tenant.
//!
//! All storage work happens on one dedicated writer thread fed by a channel,
//! so `append` never blocks the async request path and SQLite's fsyncs are
//! shared by whole batches (group commit): whatever queued up while one
//! transaction was being written goes into the next one. Reads travel through
//! the same channel, which is what makes "a read sees every request completed
//! before it" hold without further locking.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, Row, params};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::ledger::{LedgerBackend, LedgerConfig, Prices};
use crate::shared::labels::{CLIENT_CLOSED, Route};
use crate::telemetry::outcome::RequestOutcome;

/// One ledger row, serialized exactly as `/v1/usage` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerRecord {
    pub tenant: String,
    pub request_id: String,
    /// The request path: `/v1/chat/completions` or `/v1/responses`.
    pub endpoint: String,
    pub model: String,
    pub upstream: Option<String>,
    pub attempts: u32,
    pub stream: bool,
    pub cached: bool,
    pub status: u16,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// USD.
    pub cost: f64,
    pub latency_ms: f64,
    /// Only for streams that delivered a first byte.
    pub ttft_ms: Option<f64>,
    /// Unix seconds, when the request finished.
    pub created_at: f64,
}

impl LedgerRecord {
    pub fn from_outcome(outcome: &RequestOutcome, prices: &Prices) -> LedgerRecord {
        // A 499 is a request the client abandoned: the upstream was sent the
        // prompt (and a stream relayed some deltas), so what it consumed is
        // recorded and costed. Any other failure produced nothing the client
        // can be charged for.
        let billable = outcome.succeeded() || outcome.status == CLIENT_CLOSED;
        let (prompt_tokens, completion_tokens) = if billable {
            (outcome.prompt_tokens, outcome.completion_tokens)
        } else {
            (0, 0)
        };
        // A cache hit keeps the original tokens (what the answer is worth) but
        // no upstream was paid for it.
        let cost = if outcome.cached() {
            0.0
        } else {
            prices.cost(&outcome.model, prompt_tokens, completion_tokens)
        };
        LedgerRecord {
            tenant: outcome.tenant.clone(),
            request_id: outcome.request_id.clone(),
            endpoint: endpoint_path(outcome.route).to_owned(),
            model: outcome.model.clone(),
            upstream: outcome.upstream.clone().filter(|name| !name.is_empty()),
            attempts: outcome.attempts,
            stream: outcome.stream,
            cached: outcome.cached(),
            status: outcome.status,
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            cost,
            latency_ms: milliseconds(outcome.latency),
            ttft_ms: outcome.ttft.filter(|_| outcome.stream).map(milliseconds),
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
        }
    }
}

fn endpoint_path(route: Route) -> &'static str {
    match route {
        Route::ChatCompletions => "/v1/chat/completions",
        Route::Responses => "/v1/responses",
    }
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// USD.
    pub cost: f64,
}

impl Totals {
    fn add(&mut self, record: &LedgerRecord) {
        self.requests += 1;
        self.prompt_tokens += record.prompt_tokens;
        self.completion_tokens += record.completion_tokens;
        self.total_tokens += record.total_tokens;
        self.cost += record.cost;
    }
}

/// The `/v1/usage` body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Usage {
    pub tenant: String,
    /// Over all of the tenant's records, not just the ones listed.
    pub totals: Totals,
    /// Newest first.
    pub records: Vec<LedgerRecord>,
}

pub struct Ledger {
    commands: Sender<Command>,
    writer: Option<JoinHandle<()>>,
}

enum Command {
    Append(LedgerRecord),
    /// Runs on the writer thread once every record appended before it has been
    /// committed (or the commit failed, see `Writer::commit`).
    After(Box<dyn FnOnce(&Store) + Send>),
    Stop,
}

const WRITER_GONE: &str = "the ledger writer thread has stopped";

impl Ledger {
    /// Opens (creating if needed) the database now, so a bad path or an
    /// unusable file fails at startup rather than on the first request.
    pub fn open(config: &LedgerConfig, base_dir: &Path) -> Result<Ledger, String> {
        let store = match config.backend {
            LedgerBackend::Memory => Store::Memory(Vec::new()),
            LedgerBackend::Sqlite => {
                if config.path.is_empty() {
                    return Err("ledger.path: must not be empty".to_owned());
                }
                let path = base_dir.join(&config.path);
                Store::Sqlite(open_sqlite(&path).map_err(|err| {
                    format!(
                        "ledger.path: cannot use SQLite database {}: {err}",
                        path.display()
                    )
                })?)
            }
        };
        let (commands, receiver) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("switchyard-ledger".to_owned())
            .spawn(move || Writer::new(store).run(receiver))
            .map_err(|err| format!("cannot start the ledger writer thread: {err}"))?;
        Ok(Ledger {
            commands,
            writer: Some(writer),
        })
    }

    /// Queues the record; never blocks.
    pub fn append(&self, record: LedgerRecord) {
        if let Err(mpsc::SendError(Command::Append(record))) =
            self.commands.send(Command::Append(record))
        {
            lost(&record, WRITER_GONE);
        }
    }

    /// Returns once every record appended before the call is durable. If the
    /// database is failing, it returns after the failed attempt; the writer
    /// logs the error and keeps the records queued for retry.
    pub async fn flush(&self) {
        let _ = self.after(|_| Ok(())).await;
    }

    /// The blocking form of `flush`, for shutdown paths outside async code.
    /// The writer keeps running: a record appended later (a stream finishing
    /// during the drain) is still written, at the latest when the `Ledger` is
    /// dropped.
    pub fn close(&self) {
        let (done, finished) = mpsc::sync_channel(1);
        let command = Command::After(Box::new(move |_| {
            let _ = done.send(());
        }));
        if self.commands.send(command).is_ok() {
            // An error here means the writer died, and with it the reply.
            let _ = finished.recv();
        }
    }

    /// The tenant's totals and its newest `limit` records.
    pub async fn usage(&self, tenant: &str, limit: usize) -> Result<Usage, String> {
        let tenant = tenant.to_owned();
        self.after(move |store| store.usage(tenant, limit)).await
    }

    pub async fn totals_by_tenant(&self) -> Result<BTreeMap<String, Totals>, String> {
        self.after(Store::totals_by_tenant).await
    }

    /// Runs `query` on the writer thread after everything appended so far, so
    /// the async runtime never waits on SQLite and reads are never stale.
    async fn after<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Store) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        let command = Command::After(Box::new(move |store| {
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(query(store));
        }));
        self.commands
            .send(command)
            .map_err(|_| WRITER_GONE.to_owned())?;
        answer.await.map_err(|_| WRITER_GONE.to_owned())?
    }
}

impl Drop for Ledger {
    /// Blocks until every queued record is written: none may be lost at shutdown.
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("{WRITER_GONE} after a panic");
        }
    }
}

/// Last resort for a record that cannot be stored: the log keeps it, in full,
/// so it can be replayed by hand.
fn lost(record: &LedgerRecord, reason: &str) {
    let json = serde_json::to_string(record).unwrap_or_else(|err| format!("<{err}>"));
    tracing::error!("ledger record not persisted ({reason}): {json}");
}

const MAX_BATCH: usize = 4096;
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
const SHUTDOWN_ATTEMPTS: u32 = 5;

struct Writer {
    store: Store,
    /// Appended but not yet committed, oldest first.
    pending: Vec<LedgerRecord>,
    /// Consecutive failed commits.
    failures: u32,
}

impl Writer {
    fn new(store: Store) -> Writer {
        Writer {
            store,
            pending: Vec::new(),
            failures: 0,
        }
    }

    fn run(mut self, commands: Receiver<Command>) {
        'serve: loop {
            // Pending records here mean the last commit failed: wait for more
            // work, but not longer than the retry delay.
            let first = if self.pending.is_empty() {
                commands.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                commands.recv_timeout(self.retry_delay())
            };
            match first {
                Ok(command) => {
                    if !self.handle(command) {
                        break 'serve;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break 'serve,
            }
            // Everything that queued up meanwhile joins the same transaction.
            while self.pending.len() < MAX_BATCH {
                let Ok(command) = commands.try_recv() else {
                    break;
                };
                if !self.handle(command) {
                    break 'serve;
                }
            }
            self.commit();
        }
        self.finish();
    }

    /// False once asked to stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Append(record) => self.pending.push(record),
            Command::After(action) => {
                self.commit();
                action(&self.store);
            }
            Command::Stop => return false,
        }
        true
    }

    /// On failure the batch stays pending and is retried as a whole: the
    /// transaction rolled back, so retrying cannot duplicate a record.
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        match self.store.insert(&mut self.pending) {
            Ok(()) => {
                if self.failures > 0 {
                    tracing::info!(
                        "ledger writes succeed again after {} failed attempts",
                        self.failures
                    );
                }
                self.failures = 0;
            }
            Err(err) => {
                self.failures += 1;
                // Logarithmic, so a dead disk does not flood the log.
                if self.failures.is_power_of_two() {
                    tracing::error!(
                        "ledger write failed (attempt {}, {} records waiting, will retry): {err}",
                        self.failures,
                        self.pending.len()
                    );
                }
            }
        }
    }

    fn retry_delay(&self) -> Duration {
        let exponent = self.failures.saturating_sub(1).min(10);
        (Duration::from_millis(50) * 2u32.pow(exponent)).min(MAX_RETRY_DELAY)
    }

    fn finish(mut self) {
        for _ in 0..SHUTDOWN_ATTEMPTS {
            self.commit();
            if self.pending.is_empty() {
                return;
            }
            std::thread::sleep(self.retry_delay());
        }
        for record in &self.pending {
            lost(record, "the database kept failing at shutdown");
        }
    }
}

enum Store {
    Sqlite(Connection),
    Memory(Vec<LedgerRecord>),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    request_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    upstream TEXT,
    attempts INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    cached INTEGER NOT NULL,
    status INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_tenant ON ledger (tenant);
";

const COLUMNS: &str = "tenant, request_id, endpoint, model, upstream, attempts, stream, cached, \
    status, prompt_tokens, completion_tokens, total_tokens, cost, latency_ms, ttft_ms, created_at";

const TOTALS: &str = "COUNT(*), COALESCE(SUM(prompt_tokens), 0), \
    COALESCE(SUM(completion_tokens), 0), COALESCE(SUM(total_tokens), 0), COALESCE(SUM(cost), 0.0)";

fn insert_sql() -> String {
    format!(
        "INSERT INTO ledger ({COLUMNS}) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
    )
}

fn open_sqlite(path: &Path) -> Result<Connection, rusqlite::Error> {
    let connection = Connection::open(path)?;
    // Another process (a backup, an operator's sqlite3 shell) may briefly hold a lock.
    connection.busy_timeout(Duration::from_secs(5))?;
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode WAL is not available (got {mode})"
        )));
    }
    // Billing data: a commit must survive a power cut, not just a crash.
    // Batching keeps the fsync count low.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.execute_batch(SCHEMA)?;
    // A table left by an incompatible version fails here, at startup.
    connection.prepare_cached(&insert_sql())?;
    connection.prepare_cached(&format!("SELECT {COLUMNS} FROM ledger LIMIT 0"))?;
    Ok(connection)
}

fn to_sql_integer(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn column_u64(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Integer,
            Box::new(err),
        )
    })
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<LedgerRecord> {
    Ok(LedgerRecord {
        tenant: row.get(0)?,
        request_id: row.get(1)?,
        endpoint: row.get(2)?,
        model: row.get(3)?,
        upstream: row.get(4)?,
        attempts: row.get(5)?,
        stream: row.get(6)?,
        cached: row.get(7)?,
        status: row.get(8)?,
        prompt_tokens: column_u64(row, 9)?,
        completion_tokens: column_u64(row, 10)?,
        total_tokens: column_u64(row, 11)?,
        cost: row.get(12)?,
        latency_ms: row.get(13)?,
        ttft_ms: row.get(14)?,
        created_at: row.get(15)?,
    })
}

/// Reads the `TOTALS` columns starting at `first`.
fn totals_from_row(row: &Row<'_>, first: usize) -> rusqlite::Result<Totals> {
    Ok(Totals {
        requests: column_u64(row, first)?,
        prompt_tokens: column_u64(row, first + 1)?,
        completion_tokens: column_u64(row, first + 2)?,
        total_tokens: column_u64(row, first + 3)?,
        cost: row.get(first + 4)?,
    })
}

impl Store {
    /// Writes the whole batch in one transaction and empties it, or leaves it
    /// untouched on error.
    fn insert(&mut self, batch: &mut Vec<LedgerRecord>) -> rusqlite::Result<()> {
        match self {
            Store::Memory(records) => records.append(batch),
            Store::Sqlite(connection) => {
                let transaction = connection.transaction()?;
                {
                    let mut statement = transaction.prepare_cached(&insert_sql())?;
                    for record in batch.iter() {
                        statement.execute(params![
                            record.tenant,
                            record.request_id,
                            record.endpoint,
                            record.model,
                            record.upstream,
                            record.attempts,
                            record.stream,
                            record.cached,
                            record.status,
                            to_sql_integer(record.prompt_tokens),
                            to_sql_integer(record.completion_tokens),
                            to_sql_integer(record.total_tokens),
                            record.cost,
                            record.latency_ms,
                            record.ttft_ms,
                            record.created_at,
                        ])?;
                    }
                }
                transaction.commit()?;
                batch.clear();
            }
        }
        Ok(())
    }

    fn usage(&self, tenant: String, limit: usize) -> Result<Usage, String> {
        match self {
            Store::Memory(records) => {
                let mine = || records.iter().filter(|record| record.tenant == tenant);
                let mut totals = Totals::default();
                mine().for_each(|record| totals.add(record));
                let records = mine().rev().take(limit).cloned().collect();
                Ok(Usage {
                    tenant,
                    totals,
                    records,
                })
            }
            Store::Sqlite(connection) => {
                let read = || -> rusqlite::Result<Usage> {
                    let totals = connection
                        .prepare_cached(&format!("SELECT {TOTALS} FROM ledger WHERE tenant = ?1"))?
                        .query_row([&tenant], |row| totals_from_row(row, 0))?;
                    let records = connection
                        .prepare_cached(&format!(
                            "SELECT {COLUMNS} FROM ledger WHERE tenant = ?1 ORDER BY id DESC LIMIT ?2"
                        ))?
                        .query_map(params![tenant, to_sql_integer(limit as u64)], record_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok(Usage {
                        tenant: tenant.clone(),
                        totals,
                        records,
                    })
                };
                read().map_err(|err| format!("cannot read the ledger: {err}"))
            }
        }
    }

    fn totals_by_tenant(&self) -> Result<BTreeMap<String, Totals>, String> {
        match self {
            Store::Memory(records) => {
                let mut tenants: BTreeMap<String, Totals> = BTreeMap::new();
                for record in records {
                    tenants
                        .entry(record.tenant.clone())
                        .or_default()
                        .add(record);
                }
                Ok(tenants)
            }
            Store::Sqlite(connection) => {
                let read = || -> rusqlite::Result<BTreeMap<String, Totals>> {
                    connection
                        .prepare_cached(&format!(
                            "SELECT tenant, {TOTALS} FROM ledger GROUP BY tenant"
                        ))?
                        .query_map([], |row| Ok((row.get(0)?, totals_from_row(row, 1)?)))?
                        .collect()
                };
                read().map_err(|err| format!("cannot read the ledger: {err}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
        };
        Ledger::open(&config, &dir.0).unwrap()
    }

    fn memory() -> Ledger {
        let config = LedgerConfig {
            backend: LedgerBackend::Memory,
            path: String::new(),
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
        let value =
            serde_json::to_value(LedgerRecord::from_outcome(&responses, &prices())).unwrap();
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
        let config: LedgerConfig = toml::from_str("backend = \"memory\"").unwrap();
        assert_eq!(config.backend, LedgerBackend::Memory);
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
        };
        drop(Ledger::open(&config, &dir.0).unwrap());
        assert!(dir.0.join("nested.sqlite3").exists());

        let missing = LedgerConfig {
            backend: LedgerBackend::Sqlite,
            path: "no/such/dir/ledger.sqlite3".to_owned(),
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
        };
        let err = Ledger::open(&config, &dir.0).err().unwrap();
        assert!(
            err.starts_with("ledger.path: cannot use SQLite database "),
            "{err}"
        );
    }
}
