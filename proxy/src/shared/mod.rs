//! The leaf every layer may use and which uses none of them: the one error
//! type and its OpenAI rendering, and the little names and values that cross
//! layers (header names, request labels, token usage, the caller, URL redaction).

pub mod caller;
pub mod error;
pub mod headers;
pub mod labels;
pub mod request;
#[cfg(test)]
pub mod test_support;
pub mod time;
pub mod url;
pub mod usage;
