//! Turning each request to a model endpoint into exactly one `RequestOutcome`.
//!
//! The middleware hands the handler an [`OutcomeHandle`] to fill in (model,
//! attempts, usage, stream progress) and wraps the response body so the
//! outcome is reported when the client has received the last byte, or when the
//! body (or the whole request) is dropped because the client went away.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use serde_json::Value;

use crate::access::tenant_of;
use crate::auth::Caller;
use crate::caching::CACHE_HEADER;
use crate::error::ErrorTag;
use crate::metrics;
use crate::outcome::{CacheResult, RequestOutcome, Route};
use crate::request_id::{RequestId, RouteTag};
use crate::state::SharedState;

pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempts");

/// Status recorded when the client went away before the response was complete
/// (nginx's convention; never sent on the wire).
pub const CLIENT_CLOSED: u16 = 499;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Usage {
    /// Reads a chat (`prompt_tokens`/`completion_tokens`) or Responses
    /// (`input_tokens`/`output_tokens`) usage object.
    pub fn from_json(usage: &Value) -> Option<Usage> {
        let count = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|name| usage.get(name).and_then(Value::as_u64))
        };
        let prompt_tokens = count(["prompt_tokens", "input_tokens"]);
        let completion_tokens = count(["completion_tokens", "output_tokens"]);
        if prompt_tokens.is_none() && completion_tokens.is_none() {
            return None;
        }
        Some(Usage {
            prompt_tokens: prompt_tokens.unwrap_or(0),
            completion_tokens: completion_tokens.unwrap_or(0),
        })
    }
}

/// The request's outcome while it is being served; shared between the
/// handler, the dispatch loop and the streaming body.
#[derive(Clone)]
pub struct OutcomeHandle(Arc<Mutex<Draft>>);

struct Draft {
    started: Instant,
    model: Option<String>,
    upstream: Option<String>,
    attempts: u32,
    retries: u32,
    fallbacks: u32,
    stream: bool,
    cache: CacheResult,
    /// A stream that broke after its head was sent: the status it counts as.
    stream_failure: Option<(u16, String)>,
    delivered: bool,
    usage: Option<Usage>,
    /// Whitespace words of the input texts: the prompt tokens of a request the
    /// client abandoned before the upstream reported usage.
    prompt_estimate: u64,
    content_deltas: u64,
    upstream_time: Duration,
    first_byte: Option<Duration>,
    first_content: Option<Duration>,
}

impl OutcomeHandle {
    pub fn new(started: Instant) -> Self {
        OutcomeHandle(Arc::new(Mutex::new(Draft {
            started,
            model: None,
            upstream: None,
            attempts: 0,
            retries: 0,
            fallbacks: 0,
            stream: false,
            cache: CacheResult::Bypass,
            stream_failure: None,
            delivered: false,
            usage: None,
            prompt_estimate: 0,
            content_deltas: 0,
            upstream_time: Duration::ZERO,
            first_byte: None,
            first_content: None,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Draft> {
        // Plain field assignments only: a poisoned draft is still consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn describe(&self, model: &str, stream: bool) {
        let mut draft = self.lock();
        draft.model = Some(model.to_owned());
        draft.stream = stream;
    }

    pub fn set_cache(&self, cache: CacheResult) {
        self.lock().cache = cache;
    }

    pub fn set_attempts(&self, upstream: &str, attempts: u32, retries: u32, fallbacks: u32) {
        let mut draft = self.lock();
        draft.upstream = Some(upstream.to_owned());
        draft.attempts = attempts;
        draft.retries = retries;
        draft.fallbacks = fallbacks;
    }

    pub fn add_upstream_time(&self, waited: Duration) {
        self.lock().upstream_time += waited;
    }

    pub fn set_usage(&self, usage: Usage) {
        self.lock().usage = Some(usage);
    }

    pub fn set_prompt_estimate(&self, words: u64) {
        self.lock().prompt_estimate = words;
    }

    /// A chunk is about to go to the client, carrying `content_deltas` deltas.
    pub fn stream_progress(&self, content_deltas: u64, upstream_waited: Duration) {
        let mut draft = self.lock();
        let elapsed = draft.started.elapsed();
        draft.first_byte.get_or_insert(elapsed);
        if content_deltas > 0 {
            draft.first_content.get_or_insert(elapsed);
        }
        draft.content_deltas += content_deltas;
        draft.upstream_time += upstream_waited;
    }

    /// The stream's whole answer has been handed to the client: a hang-up
    /// from now on is not a cut stream.
    pub fn stream_delivered(&self) {
        self.lock().delivered = true;
    }

    pub fn stream_failed(&self, status: u16, code: &str) {
        self.lock()
            .stream_failure
            .get_or_insert_with(|| (status, code.to_owned()));
    }

    pub fn upstream(&self) -> Option<String> {
        self.lock().upstream.clone()
    }

    pub fn usage(&self) -> Option<Usage> {
        self.lock().usage
    }

    /// The usage the upstream reported, or else what was produced so far
    /// (estimated prompt, content deltas).
    pub fn produced_usage(&self) -> Usage {
        let draft = self.lock();
        draft.usage.unwrap_or(Usage {
            prompt_tokens: draft.prompt_estimate,
            completion_tokens: draft.content_deltas,
        })
    }

    fn headline(&self) -> (Option<String>, Option<String>, u32, CacheResult) {
        let draft = self.lock();
        (
            draft.model.clone(),
            draft.upstream.clone(),
            draft.attempts,
            draft.cache,
        )
    }
}

/// Reports the outcome once: explicitly when the response body has ended, or
/// on drop (the client went away; the handler's future or the body was dropped).
struct PendingOutcome {
    handle: OutcomeHandle,
    state: SharedState,
    tenant: String,
    request_id: String,
    route: Route,
    /// Status of the response head; `None` until the handler produced one.
    status: Option<u16>,
    error_tag: Option<String>,
    reported: bool,
    /// `switchyard_in_flight_requests` counts the request until it is reported.
    _in_flight: metrics::InFlight,
}

impl PendingOutcome {
    fn finish(&mut self, client_left: bool) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let outcome = self.build(client_left);
        self.state.report(&outcome);
    }

    fn build(&self, client_left: bool) -> RequestOutcome {
        let draft = self.handle.lock();
        let head_status = self.status.unwrap_or(CLIENT_CLOSED);
        let cut = client_left && !draft.delivered;
        let (status, error_type) = match (&draft.stream_failure, cut) {
            (Some((status, code)), _) => (*status, Some(code.clone())),
            (None, true) => (CLIENT_CLOSED, Some("client_closed_request".to_owned())),
            (None, false) => (head_status, self.error_tag.clone()),
        };
        let produced = Usage {
            prompt_tokens: draft.prompt_estimate,
            completion_tokens: draft.content_deltas,
        };
        let reached_upstream = draft.attempts > 0 && draft.cache != CacheResult::Hit;
        let usage = if status >= 400 && status != CLIENT_CLOSED {
            // Failed calls cost nothing.
            Usage::default()
        } else if let Some(usage) = draft.usage {
            usage
        } else if reached_upstream && (draft.stream || status == CLIENT_CLOSED) {
            // The upstream was sent the prompt whether or not the client
            // stayed for the answer, stream or not.
            produced
        } else {
            Usage::default()
        };
        RequestOutcome {
            tenant: self.tenant.clone(),
            request_id: self.request_id.clone(),
            route: self.route,
            model: draft.model.clone().unwrap_or_default(),
            upstream: draft.upstream.clone(),
            attempts: draft.attempts,
            fallbacks: draft.fallbacks,
            retries: draft.retries,
            stream: draft.stream,
            cache: draft.cache,
            status,
            error_type,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            latency: draft.started.elapsed(),
            upstream_time: draft.upstream_time,
            ttft: if draft.stream {
                draft.first_content.or(draft.first_byte)
            } else {
                None
            },
        }
    }
}

impl Drop for PendingOutcome {
    fn drop(&mut self) {
        self.finish(true);
    }
}

/// Middleware for the model endpoints: the outcome, and the routing headers
/// (`x-switchyard-attempts`; `x-switchyard-upstream` via the route tag).
pub async fn track_outcome(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = match request.uri().path() {
        "/v1/responses" => Route::Responses,
        _ => Route::ChatCompletions,
    };
    // A wrong method gets a 405 that is not a model request.
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let handle = OutcomeHandle::new(Instant::now());
    let extensions = request.extensions();
    let mut pending = PendingOutcome {
        handle: handle.clone(),
        state: state.clone(),
        tenant: tenant_of(extensions.get::<Caller>()),
        request_id: extensions
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default(),
        route,
        status: None,
        error_tag: None,
        reported: false,
        _in_flight: state.metrics.in_flight(),
    };
    request.extensions_mut().insert(handle.clone());

    let mut response = next.run(request).await;

    let (model, upstream, attempts, cache) = handle.headline();
    let headers = response.headers_mut();
    headers.insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
    headers.insert(CACHE_HEADER, HeaderValue::from_static(cache.as_str()));
    response
        .extensions_mut()
        .insert(RouteTag { model, upstream });
    pending.status = Some(response.status().as_u16());
    pending.error_tag = response
        .extensions()
        .get::<ErrorTag>()
        .map(|tag| tag.0.clone());
    response.map(|inner| {
        Body::new(ReportingBody {
            inner,
            pending: Some(pending),
        })
    })
}

/// The response body, reporting the outcome when its end has been handed to
/// the server, or when it is dropped before that.
struct ReportingBody {
    inner: Body,
    pending: Option<PendingOutcome>,
}

impl ReportingBody {
    fn finish(&mut self, client_left: bool) {
        if let Some(mut pending) = self.pending.take() {
            pending.finish(client_left);
        }
    }
}

impl HttpBody for ReportingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended {
            this.finish(false);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ReportingBody {
    fn drop(&mut self) {
        // A body the server never polled can still be complete (an empty one).
        let complete = self.inner.is_end_stream();
        // The stream's own state goes first: it releases the upstream connection.
        drop(std::mem::take(&mut self.inner));
        self.finish(!complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_reads_chat_and_responses_shapes() {
        assert_eq!(
            Usage::from_json(&json!({"prompt_tokens": 3, "completion_tokens": 4})),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4
            })
        );
        assert_eq!(
            Usage::from_json(&json!({"input_tokens": 5, "output_tokens": 6})),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 6
            })
        );
        assert_eq!(Usage::from_json(&json!({"total": 1})), None);
        assert_eq!(Usage::from_json(&Value::Null), None);
    }
}
