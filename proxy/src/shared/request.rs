//! What the server's middleware attaches to a request and its response for
//! the layers below and above it.

/// The id of the current request, available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// What a model request was routed to (attached by the outcome middleware),
/// so the request middleware can log it and set `x-switchyard-upstream` in
/// one place.
#[derive(Clone, Debug, Default)]
pub struct RouteTag {
    pub model: Option<String>,
    pub upstream: Option<String>,
}
