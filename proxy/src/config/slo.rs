//! The `[slo]` table: the success target and the latency window of `/stats`.

use serde::{Deserialize, Deserializer};

/// The `[slo]` table.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SloConfig {
    /// Fraction of requests that must succeed (status < 400).
    #[serde(deserialize_with = "success_target")]
    pub success_target: f64,
    /// How many recent latencies the `/stats` percentiles are computed from.
    #[serde(deserialize_with = "latency_window")]
    pub latency_window: usize,
}

impl Default for SloConfig {
    fn default() -> Self {
        SloConfig {
            success_target: 0.99,
            latency_window: 100_000,
        }
    }
}

fn latency_window<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    match usize::deserialize(deserializer)? {
        0 => Err(serde::de::Error::custom("must be greater than 0")),
        window => Ok(window),
    }
}

// A target of 1 leaves no error budget to divide by; 0 or less is no target.
fn success_target<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(
            "must be greater than 0 and less than 1",
        ))
    }
}
