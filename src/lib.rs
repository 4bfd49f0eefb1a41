//! mfi-ledger: an append-only, double-entry ledger service for microfinance.
//!
//! See `ARCHITECTURE.md` for the map: `domain` (rules, pure), `store`
//! (durable journal and derived-state cache), `ledger` (the single writer
//! with group commit), `api` (gRPC), `cli` (the client commands) and
//! `verify` (offline replay and check).

pub mod api;
pub mod auth;
pub mod checkpoint;
pub mod cli;
pub use mfi_ledger_domain as domain;
pub mod ledger;
pub mod load;
pub mod metrics;
pub mod report;
pub mod serve_config;
pub mod sim;
pub mod store;
pub mod verify;

/// Generated protobuf messages and gRPC services of `mfi.ledger.v1`.
pub use mfi_ledger_pb as pb;
