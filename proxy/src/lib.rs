//! switchyard: an OpenAI-compatible proxy that routes models to upstreams and
//! serves the Responses API on top of Chat-Completions-only upstreams.
//!
//! A request reads in one direction, each layer using only the ones below it:
//! `server` (accept loop, router, middleware) -> `api` (handlers) ->
//! `gateway` (dispatch, routing, upstream client, relay) -> `wire` (SSE,
//! translation) -> `store` (cache, conversations, ledger) -> `telemetry`
//! (outcomes, metrics) -> `config` -> `shared`.

pub mod api;
pub mod config;
pub mod gateway;
pub mod server;
pub mod shared;
pub mod store;
pub mod telemetry;
pub mod wire;
