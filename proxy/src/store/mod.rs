//! What the proxy keeps: the response cache, the conversation memory behind
//! `previous_response_id`, where native responses live, and the usage ledger.

pub mod cache;
pub mod conversations;
pub mod ledger;
pub mod pins;
