//! switchyard: an OpenAI-compatible proxy that routes models to upstreams and
//! serves the Responses API on top of Chat-Completions-only upstreams.

pub mod access;
pub mod auth;
pub mod cache;
pub mod caching;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod estimate;
pub mod extract;
pub mod ledger;
pub mod metrics;
pub mod outcome;
pub mod proxy;
pub mod reports;
pub mod request_id;
pub mod responses;
pub mod routes;
pub mod routing;
pub mod serve;
pub mod state;
pub mod store;
pub mod streaming;
pub mod tracking;
pub mod translate;
pub mod upstream;
