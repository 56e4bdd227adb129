//! What happened to one request, reported exactly once when it is finished
//! (for a stream: when the stream ends, however it ends). The ledger, the
//! metrics and the stats all read this one record, so they always agree.

use std::time::Duration;

use crate::shared::labels::{CacheResult, Route};

/// The finished request. Token counts are what the upstream reported (or, for a
/// stream the client cut, the estimate described in docs/contracts.md).
#[derive(Clone, Debug)]
pub struct RequestOutcome {
    pub tenant: String,
    pub request_id: String,
    pub route: Route,
    pub model: String,
    /// The upstream that produced the response, or the last one tried.
    pub upstream: Option<String>,
    /// Attempts made upstream (0 for a cache hit or a request refused before routing).
    pub attempts: u32,
    /// Attempts that moved to another upstream or fallback model.
    pub fallbacks: u32,
    /// Attempts that repeated the same upstream.
    pub retries: u32,
    pub stream: bool,
    pub cache: CacheResult,
    /// HTTP status sent to the client; 499 when the client went away mid-stream.
    pub status: u16,
    /// OpenAI error type or code of a failed request, for errors-by-type.
    pub error_type: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Whole request, as the client saw it (for a stream: until its last byte).
    pub latency: Duration,
    /// Time spent waiting on upstreams; `latency - upstream_time` is the proxy's overhead.
    pub upstream_time: Duration,
    /// Time to the first content byte sent to the client, for streams.
    pub ttft: Option<Duration>,
}

impl RequestOutcome {
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    pub fn succeeded(&self) -> bool {
        self.status < 400
    }

    pub fn cached(&self) -> bool {
        self.cache == CacheResult::Hit
    }
}

/// Receives every finished request. Called synchronously on the request path
/// (possibly from a `Drop`), so implementations must not block: hand the record
/// to a channel or update in-memory counters.
pub trait OutcomeSink: Send + Sync {
    fn report(&self, outcome: &RequestOutcome);
}

/// The default sink: a debug log line per request.
pub struct LogSink;

impl OutcomeSink for LogSink {
    fn report(&self, outcome: &RequestOutcome) {
        tracing::debug!(
            tenant = %outcome.tenant,
            request_id = %outcome.request_id,
            route = outcome.route.as_str(),
            model = %outcome.model,
            upstream = %outcome.upstream.as_deref().unwrap_or("-"),
            attempts = outcome.attempts,
            retries = outcome.retries,
            fallbacks = outcome.fallbacks,
            stream = outcome.stream,
            cache = outcome.cache.as_str(),
            status = outcome.status,
            error_type = %outcome.error_type.as_deref().unwrap_or("-"),
            prompt_tokens = outcome.prompt_tokens,
            completion_tokens = outcome.completion_tokens,
            latency_ms = outcome.latency.as_millis() as u64,
            upstream_ms = outcome.upstream_time.as_millis() as u64,
            ttft_ms = outcome.ttft.map(|ttft| ttft.as_millis() as u64),
            "outcome"
        );
    }
}
