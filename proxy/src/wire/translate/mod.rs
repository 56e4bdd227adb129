//! The Responses API on top of an upstream that only speaks Chat
//! Completions: requests are rewritten into chat requests, and chat replies
//! (whole or streamed) into Response objects and Responses streaming events.

pub mod request;
pub mod response;
pub mod stream;

#[cfg(test)]
mod tests;
