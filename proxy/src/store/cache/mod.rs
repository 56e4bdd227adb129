//! The response cache (docs/contracts.md section 3, "Cache"): the key, the
//! stored entry, and the backends that keep entries.

pub mod backend;
pub mod entry;
pub mod key;
