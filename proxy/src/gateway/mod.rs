//! Getting an answer from an upstream: dispatch (the attempt loop and its
//! backoff), routing (plans, strategies, passive health), the upstream client
//! and its header policy, the cache's part in a request, and the one relay
//! for streamed and whole answers.

pub mod caching;
pub mod dispatch;
pub mod headers;
pub mod relay;
pub mod routing;
pub mod upstream;
