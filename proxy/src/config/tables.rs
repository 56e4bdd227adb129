//! The core tables: `[server]`, `[[upstreams]]`, `[[models]]`, `[retry]`
//! and `[health]`.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub bind: String,
    pub port: u16,
    pub shutdown_grace_ms: u64,
    pub max_body_bytes: usize,
    pub response_store_capacity: usize,
    /// The response store's byte budget (the JSON size of what it holds);
    /// beyond it the oldest responses are forgotten first.
    pub response_store_bytes: usize,
    /// How long a client may take to send a request's body once its headers
    /// are in; a slower one gets 408.
    pub request_body_timeout_ms: u64,
    /// How long a client may take to send a request's headers; a slower one
    /// (slowloris) has its connection closed.
    pub header_read_timeout_ms: u64,
    /// Client connections open at once; beyond it new ones wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Serve cleartext HTTP/2 (h2c) besides HTTP/1. Off by default: an
    /// HTTP/2 connection has no header timeout once its preface is in.
    pub http2: bool,
    /// Client headers forwarded upstream besides the built-in allowlist, even
    /// when the upstream gets the proxy's key (e.g. `openai-organization`).
    pub forward_headers: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1".to_owned(),
            port: 8080,
            shutdown_grace_ms: 10_000,
            max_body_bytes: 4 * 1024 * 1024,
            response_store_capacity: 10_000,
            response_store_bytes: 64 * 1024 * 1024,
            request_body_timeout_ms: 30_000,
            header_read_timeout_ms: 30_000,
            max_connections: 10_000,
            http2: false,
            forward_headers: Vec::new(),
        }
    }
}

impl ServerConfig {
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    pub base_url: String,
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub responses: bool,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// No limit when absent: some upstreams legitimately pause for a long time
    /// (e.g. while reasoning) and the operator has to opt in to cutting them off.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// Whole attempt, body included; none by default for the same reason.
    #[serde(default)]
    pub total_timeout_ms: Option<u64>,
    /// Share of requests under the `weighted` strategy.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The most a whole upstream body (an answer or an error) may hold; a
    /// larger one is a failed attempt, 502 `upstream_body_too_large`.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The most one event of an upstream stream (its lines together, the one
    /// still arriving included) may hold; a larger one ends the stream with
    /// the error event `upstream_event_too_large`.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// The key actually sent upstream, from `api_key` or the `api_key_env`
    /// variable, resolved once at load time.
    #[serde(skip)]
    pub resolved_api_key: Option<Secret>,
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}

fn default_timeout_ms() -> u64 {
    30_000
}

fn default_weight() -> u32 {
    1
}

fn default_max_body_bytes() -> usize {
    32 * 1024 * 1024
}

fn default_max_event_bytes() -> usize {
    4 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub upstreams: Vec<String>,
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Models whose upstreams are tried, in order, after this model's own.
    #[serde(default)]
    pub fallback_models: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    Weighted,
    LeastInFlight,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Total attempts per request, retries and fallbacks together.
    pub max_attempts: u32,
    pub attempts_per_upstream: u32,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub respect_retry_after: bool,
    pub max_retry_after_ms: u64,
    /// All attempts of one request; for a stream, until its first byte.
    pub deadline_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            attempts_per_upstream: 1,
            base_backoff_ms: 50,
            max_backoff_ms: 2_000,
            respect_retry_after: true,
            max_retry_after_ms: 5_000,
            deadline_ms: 30_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Consecutive failed attempts that eject an upstream.
    pub failure_threshold: u32,
    pub cooldown_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failure_threshold: 3,
            cooldown_ms: 5_000,
        }
    }
}

/// A string that must never show up in logs or debug output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
