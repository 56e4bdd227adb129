//! What travels on the wire and how it is rewritten: server-sent events
//! (parsing and encoding), the Responses <-> Chat Completions translation, and
//! stored responses' items and pages. Pure functions of bytes and JSON; it
//! uses only `shared`.

pub mod items;
pub mod sse;
pub mod translate;
