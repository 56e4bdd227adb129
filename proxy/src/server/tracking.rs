//! The outcome middleware: each request to a model endpoint becomes exactly
//! one `RequestOutcome`.
//!
//! The middleware hands the handler an `OutcomeHandle` to fill in (model,
//! attempts, usage, stream progress) and wraps the response body so the
//! outcome is reported when the client has received the last byte, or when the
//! body (or the whole request) is dropped because the client went away.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use crate::api::state::SharedState;
use crate::shared::caller::{Caller, tenant_of};
use crate::shared::error::ErrorTag;
use crate::shared::headers::{ATTEMPTS_HEADER, CACHE_HEADER};
use crate::shared::labels::Route;
use crate::shared::request::{RequestId, RouteTag};
use crate::telemetry::handle::{OutcomeHandle, OutcomeHead};
use crate::telemetry::metrics;

/// Reports the outcome once: explicitly when the response body has ended, or
/// on drop (the client went away; the handler's future or the body was dropped).
struct PendingOutcome {
    handle: OutcomeHandle,
    state: SharedState,
    head: OutcomeHead,
    reported: bool,
    /// `switchyard_in_flight_requests` counts the request until it is reported.
    _in_flight: metrics::InFlight,
}

impl PendingOutcome {
    fn finish(&mut self, client_left: bool) {
        if std::mem::replace(&mut self.reported, true) {
            return;
        }
        let outcome = self.handle.finish(&self.head, client_left);
        self.state.report(&outcome);
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
        head: OutcomeHead {
            tenant: tenant_of(extensions.get::<Caller>()),
            request_id: extensions
                .get::<RequestId>()
                .map(|id| id.0.clone())
                .unwrap_or_default(),
            route,
            status: None,
            error_tag: None,
        },
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
    pending.head.status = Some(response.status().as_u16());
    pending.head.error_tag = response
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
