//! The ledger's rules: money, ids, commands, entries and the state machine.
//!
//! Architecture invariant: nothing in `domain` does I/O, reads a clock, or
//! knows about gRPC or storage. It is pure and deterministic (the books
//! rebuilt from the cache's records merge their lines on as many threads
//! as the caller asks for, with the same result on any number).

pub mod access;
pub mod account;
pub mod books;
pub mod codec;
pub mod command;
pub mod dated;
pub mod day_changes;
pub mod day_log;
pub mod entry;
pub mod error;
pub mod ids;
pub mod merkle;
pub mod money;
pub mod product;
pub mod request_index;
pub mod savings_interest;
pub mod schedule;
pub mod state;
pub mod stored;
pub mod totals;
mod varint;

pub use error::DomainError;
