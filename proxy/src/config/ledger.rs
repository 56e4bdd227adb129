//! The `[ledger]` and `[prices]` tables: where usage records are kept, and
//! what tokens cost.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

/// The `[ledger]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    pub backend: LedgerBackend,
    /// Relative paths are resolved against the config file's directory.
    pub path: String,
    /// The memory backend lists at most this many of the newest records; the
    /// older ones still count in every tenant's totals.
    pub memory_records: usize,
    /// Records (and reads) waiting for the writer thread; beyond it a record
    /// is dropped, logged in full and counted.
    pub queue_capacity: usize,
    /// Records held for a database that keeps failing; beyond it a record is
    /// dropped, logged in full and counted.
    pub max_pending: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            backend: LedgerBackend::Sqlite,
            path: "switchyard-ledger.sqlite3".to_owned(),
            memory_records: 100_000,
            queue_capacity: 65_536,
            max_pending: 100_000,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerBackend {
    #[default]
    Sqlite,
    /// Nothing survives the process; for tests and embedding.
    Memory,
}

/// USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    #[serde(deserialize_with = "price_per_million")]
    pub input: f64,
    #[serde(deserialize_with = "price_per_million")]
    pub output: f64,
}

// Checked while parsing rather than in a separate validation step nobody can
// forget: TOML accepts `nan` and `inf`, and one NaN cost would be refused by the
// database's NOT NULL constraint and hold up every record queued behind it.
fn price_per_million<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(serde::de::Error::custom("must be a finite number >= 0"))
    }
}

/// The `[prices]` table: model name (as the client sends it) -> price.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Prices(pub HashMap<String, Price>);

impl Prices {
    /// USD; a model without a price costs nothing.
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        self.0.get(model).map_or(0.0, |price| {
            (prompt_tokens as f64 * price.input + completion_tokens as f64 * price.output)
                / 1_000_000.0
        })
    }
}
