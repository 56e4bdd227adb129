//! The TOML configuration: every table's types, their validation, and the
//! secrets resolved at load time. A low layer: it uses only `shared`.

pub mod auth;
pub mod cache;
pub mod file;
pub mod ledger;
pub mod slo;
pub mod tables;
