//! The attempt loop: try the routing plan's candidates in order, retrying one
//! upstream with backoff and moving on to the next candidate at once, until an
//! upstream answers, the attempt budget or the deadline runs out.
//!
//! For a stream the loop ends at the upstream's response head: once a 2xx
//! event stream flows to the client there is no going back, and a later failure
//! ends that stream with an error event (see `relay::stream`).

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;

use crate::config::file::Config;
use crate::config::tables::RetryConfig;
use crate::gateway::caching::CacheWrite;
use crate::gateway::headers::is_event_stream;
use crate::gateway::routing::{Candidate, InFlight, Plan, Routing};
use crate::gateway::upstream::{BufferedReply, Endpoint, Upstream, UpstreamBody};
use crate::shared::error::ApiError;
use crate::telemetry::handle::OutcomeHandle;

/// The upstreams, their routing and health, and the retry policy: what the
/// attempt loop works with.
pub struct Gateway {
    pub retry: RetryConfig,
    /// In config order: `Candidate::upstream` indexes it.
    upstreams: Vec<Upstream>,
    pub routing: Routing,
}

impl Gateway {
    pub fn new(config: &Config) -> Result<Self, String> {
        let upstreams = config
            .upstreams
            .iter()
            .map(Upstream::new)
            .collect::<Result<_, reqwest::Error>>()
            .map_err(|err| format!("cannot create HTTP client: {err}"))?;
        Ok(Gateway {
            retry: config.retry.clone(),
            upstreams,
            routing: Routing::new(config),
        })
    }

    pub fn upstream(&self, index: usize) -> &Upstream {
        &self.upstreams[index]
    }
}

/// What the request needs from the client to be sent upstream, identical on
/// every attempt.
pub struct CallContext<'a> {
    pub headers: &'a HeaderMap,
    pub request_id: &'a str,
    pub streaming: bool,
    pub outcome: &'a OutcomeHandle,
    /// Where a complete 2xx answer is stored, if it may be.
    pub cache: Option<CacheWrite>,
}

/// The request as one candidate receives it. `extra` is whatever the caller
/// needs later to relay that candidate's answer (e.g. how to translate it).
pub struct Prepared<P> {
    pub endpoint: Endpoint,
    pub payload: Bytes,
    pub extra: P,
}

impl<P> Prepared<P> {
    /// `body` as the JSON payload for `endpoint`.
    pub fn encode(
        endpoint: Endpoint,
        body: &impl serde::Serialize,
        extra: P,
    ) -> Result<Self, ApiError> {
        Ok(Prepared {
            endpoint,
            payload: json_payload(body)?,
            extra,
        })
    }
}

/// A request body as the JSON bytes sent upstream.
pub fn json_payload(body: &impl serde::Serialize) -> Result<Bytes, ApiError> {
    serde_json::to_vec(body).map(Bytes::from).map_err(|err| {
        ApiError::invalid_request(format!("request body cannot be encoded: {err}"), None)
    })
}

pub enum Dispatched<P> {
    /// A 2xx answer to relay.
    Answer(Answer<P>),
    /// An upstream error to relay as is: not retryable, or the last one when
    /// every attempt failed.
    Refused(BufferedReply),
}

pub struct Answer<P> {
    pub candidate: Candidate,
    pub extra: P,
    pub reply: Reply,
    /// Held until the answer has been relayed (for a stream: until it ends).
    pub in_flight: InFlight,
}

pub enum Reply {
    Stream(UpstreamStream),
    Complete(BufferedReply),
}

/// An event stream whose head has arrived; the body is read as it is relayed.
pub struct UpstreamStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

/// Why an attempt did not produce an answer; the last one is what the client
/// gets when no attempt is left.
enum Failure {
    Reply(BufferedReply),
    Error(ApiError),
}

impl Failure {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Reply(reply) => retry_after(&reply.headers),
            Failure::Error(_) => None,
        }
    }
}

#[derive(Default)]
struct Tally {
    attempts: u32,
    retries: u32,
    fallbacks: u32,
}

pub async fn dispatch<P>(
    gateway: &Gateway,
    call: &CallContext<'_>,
    model: usize,
    prepare: impl FnMut(Candidate) -> Result<Prepared<P>, ApiError>,
) -> Result<Dispatched<P>, ApiError> {
    dispatch_on(gateway, call, gateway.routing.plan(model), prepare).await
}

/// The attempt loop over a given plan (e.g. one narrowed to the upstream that
/// holds the response a request continues).
pub async fn dispatch_on<P>(
    gateway: &Gateway,
    call: &CallContext<'_>,
    plan: Plan<'_>,
    mut prepare: impl FnMut(Candidate) -> Result<Prepared<P>, ApiError>,
) -> Result<Dispatched<P>, ApiError> {
    let retry = &gateway.retry;
    let deadline = Instant::now() + Duration::from_millis(retry.deadline_ms);
    let mut tally = Tally::default();
    let mut last: Option<Failure> = None;
    let mut last_upstream = None;

    'plan: for candidate in plan {
        let prepared = prepare(candidate)?;
        let upstream = gateway.upstream(candidate.upstream);
        for try_index in 0..retry.attempts_per_upstream {
            if tally.attempts >= retry.max_attempts {
                break 'plan;
            }
            if try_index > 0 {
                let wait = backoff(
                    retry,
                    try_index,
                    last.as_ref().and_then(Failure::retry_after),
                );
                if Instant::now() + wait >= deadline {
                    break 'plan;
                }
                tokio::time::sleep(wait).await;
                // Waiting out the upstream's trouble is not the proxy's own overhead.
                call.outcome.add_upstream_time(wait);
            }
            if Instant::now() >= deadline {
                break 'plan;
            }
            if try_index > 0 {
                tally.retries += 1;
            } else if tally.attempts > 0 {
                tally.fallbacks += 1;
            }
            tally.attempts += 1;
            last_upstream = Some(upstream.name.as_str());
            call.outcome.set_attempts(
                &upstream.name,
                tally.attempts,
                tally.retries,
                tally.fallbacks,
            );

            let in_flight = gateway.routing.start(candidate.upstream);
            let failure = match attempt(upstream, &prepared, call, deadline).await {
                Ok(Reply::Complete(reply)) if is_retryable(reply.status) => Failure::Reply(reply),
                Ok(Reply::Complete(reply)) if !reply.status.is_success() => {
                    in_flight.record_success();
                    return Ok(Dispatched::Refused(reply));
                }
                Ok(reply) => {
                    in_flight.record_success();
                    return Ok(Dispatched::Answer(Answer {
                        candidate,
                        extra: prepared.extra,
                        reply,
                        in_flight,
                    }));
                }
                Err(error) => Failure::Error(error),
            };
            let ejected = in_flight.record_failure();
            log_failure(call, upstream, tally.attempts, &failure, ejected);
            last = Some(failure);
        }
    }

    match last {
        Some(Failure::Reply(reply)) => Ok(Dispatched::Refused(reply)),
        Some(Failure::Error(error)) => Err(error),
        // The deadline passed before the first attempt could start.
        None => Err(ApiError::UpstreamTimeout {
            upstream: last_upstream.unwrap_or("-").to_owned(),
        }),
    }
}

/// One try on one upstream: until the response head for a 2xx stream, until
/// the whole body otherwise (nothing has reached the client yet, so a body
/// that breaks off can still be retried).
async fn attempt<P>(
    upstream: &Upstream,
    prepared: &Prepared<P>,
    call: &CallContext<'_>,
    deadline: Instant,
) -> Result<Reply, ApiError> {
    let started = Instant::now();
    let attempt_deadline = upstream.total_timeout.map(|limit| started + limit);
    let head_deadline = [
        Some(started + upstream.timeout),
        Some(deadline),
        attempt_deadline,
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(deadline);
    let sent = upstream
        .send(
            prepared.endpoint,
            call.headers,
            call.request_id,
            prepared.payload.clone(),
            head_deadline,
        )
        .await;
    call.outcome.add_upstream_time(started.elapsed());
    let response = sent?;

    if call.streaming && response.status().is_success() && is_event_stream(response.headers()) {
        return Ok(Reply::Stream(UpstreamStream {
            status: response.status(),
            headers: response.headers().clone(),
            body: upstream.body(response, attempt_deadline),
        }));
    }
    let body_deadline = attempt_deadline.map_or(deadline, |limit| limit.min(deadline));
    let read_started = Instant::now();
    let reply = BufferedReply::read(upstream, response, call.request_id, Some(body_deadline)).await;
    call.outcome.add_upstream_time(read_started.elapsed());
    let mut reply = reply?;
    if !reply.status.is_success() {
        return Ok(Reply::Complete(reply));
    }
    // A stream was asked for and a whole body came back (an upstream that
    // ignores `stream`): relaying it would hand an SSE client JSON, and
    // translating it would count a success the client never gets.
    if call.streaming {
        tracing::warn!(
            request_id = %call.request_id,
            upstream = %upstream.name,
            "upstream answered a streaming request 2xx without text/event-stream"
        );
        return Err(ApiError::UpstreamBadResponse {
            upstream: upstream.name.clone(),
            detail: "a streaming request was answered without text/event-stream".to_owned(),
        });
    }
    // A success the proxy cannot read is no answer: it could not be costed,
    // translated or cached, and the client's SDK could not parse it either. It
    // counts as a failed attempt, so another upstream may still answer.
    match serde_json::from_slice(&reply.body) {
        Ok(json) => {
            reply.json = Some(json);
            Ok(Reply::Complete(reply))
        }
        Err(_) => {
            tracing::warn!(
                request_id = %call.request_id,
                upstream = %upstream.name,
                bytes = reply.body.len(),
                "upstream answered 2xx with a body that is not a JSON object"
            );
            Err(ApiError::UpstreamBadResponse {
                upstream: upstream.name.clone(),
                detail: "the body is not a JSON object".to_owned(),
            })
        }
    }
}

fn log_failure(
    call: &CallContext<'_>,
    upstream: &Upstream,
    attempt: u32,
    failure: &Failure,
    ejected: bool,
) {
    let cause = match failure {
        Failure::Reply(reply) => format!("HTTP {}", reply.status.as_u16()),
        Failure::Error(error) => error.to_string(),
    };
    tracing::warn!(
        request_id = %call.request_id,
        upstream = %upstream.name,
        attempt,
        cause,
        "attempt failed"
    );
    if ejected {
        tracing::warn!(upstream = %upstream.name, "upstream ejected after consecutive failures");
    }
}

/// 429 and 5xx may well succeed elsewhere or a moment later; other statuses
/// are the upstream's considered answer to this request.
pub fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The wait before retry number `retry_number` (1 for the first retry) on the
/// same upstream: the upstream's own Retry-After when allowed (capped), else
/// exponential backoff with full jitter.
pub fn backoff(retry: &RetryConfig, retry_number: u32, retry_after: Option<Duration>) -> Duration {
    if retry.respect_retry_after
        && let Some(after) = retry_after
    {
        return after.min(Duration::from_millis(retry.max_retry_after_ms));
    }
    let exponent = retry_number.saturating_sub(1).min(32);
    let ceiling = retry
        .base_backoff_ms
        .saturating_mul(1u64 << exponent)
        .min(retry.max_backoff_ms);
    Duration::from_millis(fastrand::u64(0..=ceiling))
}

/// `retry-after-ms` (OpenAI's, more precise) or `Retry-After` in seconds.
/// HTTP-date values are ignored: upstreams of this kind send delays.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| {
        headers
            .get(name)?
            .to_str()
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite() && *value >= 0.0)
    };
    let millis = number("retry-after-ms").or_else(|| number("retry-after").map(|s| s * 1000.0))?;
    // Absurd values are capped later; this only keeps the conversion in range.
    Some(Duration::from_millis(millis.min(1e12) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::test_support::headers;

    #[test]
    fn retry_after_reads_seconds_and_milliseconds() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1"), ("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            None
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn backoff_is_jittered_under_an_exponential_cap() {
        let retry = RetryConfig {
            base_backoff_ms: 100,
            max_backoff_ms: 350,
            ..RetryConfig::default()
        };
        for (retry_number, ceiling) in [(1, 100), (2, 200), (3, 350), (10, 350), (200, 350)] {
            let waits: Vec<u128> = (0..200)
                .map(|_| backoff(&retry, retry_number, None).as_millis())
                .collect();
            assert!(
                waits.iter().all(|&w| w <= ceiling),
                "{retry_number}: {waits:?}"
            );
            // Full jitter: spread over the range, not pinned to the cap.
            assert!(waits.iter().any(|&w| w < ceiling / 2), "{retry_number}");
        }
    }

    #[test]
    fn retry_after_replaces_backoff_and_is_capped() {
        let retry = RetryConfig {
            max_retry_after_ms: 1_000,
            ..RetryConfig::default()
        };
        assert_eq!(
            backoff(&retry, 1, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(
            backoff(&retry, 1, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
        let ignoring = RetryConfig {
            respect_retry_after: false,
            base_backoff_ms: 10,
            max_backoff_ms: 10,
            ..RetryConfig::default()
        };
        assert!(backoff(&ignoring, 1, Some(Duration::from_secs(30))) <= Duration::from_millis(10));
    }

    #[test]
    fn retryable_statuses() {
        for status in [429, 500, 502, 503, 504] {
            assert!(
                is_retryable(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
        for status in [200, 400, 401, 403, 404, 409, 413, 422] {
            assert!(
                !is_retryable(StatusCode::from_u16(status).unwrap()),
                "{status}"
            );
        }
    }
}
