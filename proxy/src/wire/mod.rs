//! What travels on the wire and how it is rewritten: server-sent events
//! (parsing and encoding) and the Responses <-> Chat Completions translation.
//! Pure functions of bytes and JSON; it uses only `shared`.

pub mod sse;
pub mod translate;
