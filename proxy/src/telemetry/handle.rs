//! The outcome of one request while it is being served: a handle the
//! handler, the dispatch loop and the streaming body fill in, turned into
//! the one `RequestOutcome` when the request is finished.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::shared::labels::{CLIENT_CLOSED, CacheResult, Route};
use crate::shared::usage::Usage;
use crate::telemetry::outcome::RequestOutcome;

/// What the middleware knows of a model request besides the handle: who
/// asked, for which route, and the response head it got.
#[derive(Clone, Debug)]
pub struct OutcomeHead {
    pub tenant: String,
    pub request_id: String,
    pub route: Route,
    /// Status of the response head; `None` until the handler produced one.
    pub status: Option<u16>,
    pub error_tag: Option<String>,
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

    pub fn headline(&self) -> (Option<String>, Option<String>, u32, CacheResult) {
        let draft = self.lock();
        (
            draft.model.clone(),
            draft.upstream.clone(),
            draft.attempts,
            draft.cache,
        )
    }

    /// The finished request, from what the handler filled in and what the
    /// middleware saw of the response head; `client_left` when the client went
    /// away before the response was complete.
    pub fn finish(&self, head: &OutcomeHead, client_left: bool) -> RequestOutcome {
        let draft = self.lock();
        let head_status = head.status.unwrap_or(CLIENT_CLOSED);
        let cut = client_left && !draft.delivered;
        let (status, error_type) = match (&draft.stream_failure, cut) {
            (Some((status, code)), _) => (*status, Some(code.clone())),
            (None, true) => (CLIENT_CLOSED, Some("client_closed_request".to_owned())),
            (None, false) => (head_status, head.error_tag.clone()),
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
            tenant: head.tenant.clone(),
            request_id: head.request_id.clone(),
            route: head.route,
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
