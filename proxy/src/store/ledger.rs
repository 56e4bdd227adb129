//! The usage ledger: one record per finished model request, with its tokens
//! and cost, kept per tenant.
//!
//! All storage work happens on one dedicated writer thread fed by a channel,
//! so `append` never blocks the async request path and SQLite's fsyncs are
//! shared by whole batches (group commit): whatever queued up while one
//! transaction was being written goes into the next one. Reads travel through
//! the same channel, which is what makes "a read sees every request completed
//! before it" hold without further locking.
//!
//! Everything it holds is bounded: the channel (`queue_capacity` commands),
//! the records held for a failing database (`max_pending`), and the memory
//! backend's records (`memory_records`, the newest; what leaves that window is
//! kept as per-tenant totals, so totals stay the sum of every record). A
//! record beyond the first two bounds is dropped: logged in full, as a record
//! that cannot be stored always is, and counted (`Ledger::dropped`). `append`
//! never blocks; a read waits for room in the channel off the async runtime.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
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
    commands: SyncSender<Command>,
    writer: Option<JoinHandle<()>>,
    /// Records dropped since startup (a full queue, a failing database).
    dropped: Arc<AtomicU64>,
}

enum Command {
    Append(LedgerRecord),
    /// Runs on the writer thread once every record appended before it has been
    /// committed (or the commit failed, see `Writer::commit`).
    After(Box<dyn FnOnce(&Store) + Send>),
    Stop,
}

const WRITER_GONE: &str = "the ledger writer thread has stopped";
const QUEUE_FULL: &str = "the ledger queue is full";
const TOO_MANY_PENDING: &str = "the database is failing and ledger.max_pending records are waiting";

impl Ledger {
    /// Opens (creating if needed) the database now, so a bad path or an
    /// unusable file fails at startup rather than on the first request.
    pub fn open(config: &LedgerConfig, base_dir: &Path) -> Result<Ledger, String> {
        let store = match config.backend {
            LedgerBackend::Memory => Store::Memory(MemoryRecords::new(config.memory_records)),
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
        let (commands, receiver) = mpsc::sync_channel(config.queue_capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer::new(store, config.max_pending, dropped.clone());
        let writer = std::thread::Builder::new()
            .name("switchyard-ledger".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|err| format!("cannot start the ledger writer thread: {err}"))?;
        Ok(Ledger {
            commands,
            writer: Some(writer),
            dropped,
        })
    }

    /// Queues the record; never blocks. With the queue full (the writer far
    /// behind) the record is dropped: logged in full and counted.
    pub fn append(&self, record: LedgerRecord) {
        let (record, reason) = match self.commands.try_send(Command::Append(record)) {
            Ok(()) => return,
            Err(TrySendError::Full(Command::Append(record))) => (record, QUEUE_FULL),
            Err(TrySendError::Disconnected(Command::Append(record))) => (record, WRITER_GONE),
            Err(_) => return,
        };
        self.dropped.fetch_add(1, Ordering::Relaxed);
        lost(&record, reason);
    }

    /// Records dropped since startup rather than stored: the queue was full,
    /// the database kept failing with `max_pending` records waiting, or the
    /// writer was gone. Each is in the log in full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
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
        match self.commands.try_send(command) {
            Ok(()) => {}
            // A read is never dropped: it waits for room, off the runtime.
            Err(TrySendError::Full(command)) => {
                let commands = self.commands.clone();
                let sent = tokio::task::spawn_blocking(move || commands.send(command).is_ok());
                if !sent.await.unwrap_or(false) {
                    return Err(WRITER_GONE.to_owned());
                }
            }
            Err(TrySendError::Disconnected(_)) => return Err(WRITER_GONE.to_owned()),
        }
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
    /// The most `pending` may hold.
    max_pending: usize,
    dropped: Arc<AtomicU64>,
    /// Consecutive failed commits.
    failures: u32,
}

impl Writer {
    fn new(store: Store, max_pending: usize, dropped: Arc<AtomicU64>) -> Writer {
        Writer {
            store,
            pending: Vec::new(),
            max_pending: max_pending.max(1),
            dropped,
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
            while self.pending.len() < MAX_BATCH.min(self.max_pending) {
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
            // Only a failing database leaves records pending between batches.
            Command::Append(record) if self.pending.len() >= self.max_pending => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                lost(&record, TOO_MANY_PENDING);
            }
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
    Memory(MemoryRecords),
}

/// The memory backend: a window of the newest records, and the totals of
/// those that left it.
struct MemoryRecords {
    window: usize,
    /// Oldest first.
    records: VecDeque<LedgerRecord>,
    /// Per tenant, the records no longer in the window.
    dropped: BTreeMap<String, Totals>,
}

impl MemoryRecords {
    fn new(window: usize) -> MemoryRecords {
        MemoryRecords {
            window: window.max(1),
            records: VecDeque::new(),
            dropped: BTreeMap::new(),
        }
    }

    fn append(&mut self, batch: &mut Vec<LedgerRecord>) {
        self.records.extend(batch.drain(..));
        while self.records.len() > self.window {
            if let Some(old) = self.records.pop_front() {
                self.dropped
                    .entry(old.tenant.clone())
                    .or_default()
                    .add(&old);
            }
        }
    }
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
            Store::Memory(memory) => memory.append(batch),
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
            Store::Memory(memory) => {
                let mine = || {
                    memory
                        .records
                        .iter()
                        .filter(|record| record.tenant == tenant)
                };
                let mut totals = memory.dropped.get(&tenant).cloned().unwrap_or_default();
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
            Store::Memory(memory) => {
                let mut tenants = memory.dropped.clone();
                for record in &memory.records {
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
mod tests;
