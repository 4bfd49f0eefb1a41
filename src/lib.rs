//! mfi-ledger: an append-only, double-entry ledger service for microfinance.
//!
//! See `ARCHITECTURE.md` for the map: `domain` (rules, pure), `store`
//! (durable journal and derived-state cache), `ledger` (the single writer
//! with group commit), `api` (gRPC), `cli` (the client commands) and
//! `verify` (offline replay and check).

pub mod allocator;
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
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("mfi.ledger.v1");

    /// Encoded descriptor set of the protos, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("mfi_ledger_descriptor");
}
