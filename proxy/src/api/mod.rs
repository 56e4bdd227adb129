//! The handlers: thin functions per endpoint (chat, responses, stored
//! responses, models, admin) that read the request, call the gateway, and answer; the request
//! body extraction; and the application state they share.

pub mod admin;
pub mod admission;
pub mod chat;
pub mod extract;
pub mod models;
pub mod responses;
pub mod state;
pub mod stored;
