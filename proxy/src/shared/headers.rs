//! The proxy's own header names, set by one layer and read by another.

use axum::http::HeaderName;

/// Every response carries it, and the upstream receives it.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The upstream that produced (or last tried) a model request's answer.
pub const UPSTREAM_HEADER: HeaderName = HeaderName::from_static("x-switchyard-upstream");
/// HIT, MISS or BYPASS.
pub const CACHE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-cache");
/// Upstream attempts made for a model request.
pub const ATTEMPTS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-attempts");
