//! The top layer: the accept loop with its connection limits and graceful
//! shutdown, the router, and the middleware every request passes (request
//! id, auth, outcome tracking) before it reaches an `api` handler.

pub mod auth;
pub mod request_id;
pub mod router;
pub mod serve;
pub mod tracking;
