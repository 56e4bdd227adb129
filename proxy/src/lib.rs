//! switchyard: an OpenAI-compatible proxy that routes models to upstreams and
//! serves the Responses API on top of Chat-Completions-only upstreams.

pub mod config;
pub mod error;
pub mod extract;
pub mod proxy;
pub mod request_id;
pub mod responses;
pub mod routes;
pub mod state;
pub mod store;
pub mod streaming;
pub mod translate;
pub mod upstream;
