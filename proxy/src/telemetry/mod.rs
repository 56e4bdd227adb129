//! What the proxy reports about requests: the one outcome per request (and
//! the handle that collects it), Prometheus metrics and `/stats`, and token
//! estimates for streams the client cut; and the log writer.

pub mod estimate;
pub mod handle;
pub mod logging;
pub mod metrics;
pub mod outcome;
