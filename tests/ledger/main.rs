//! Integration tests: the real server over real gRPC on 127.0.0.1, port 0,
//! with a temporary store. One binary; each module is one area of the spec.

mod access_log;
mod access_table;
mod approvals;
mod as_of;
mod batch;
mod books;
mod closing;
mod collection;
mod concurrency;
mod crash;
mod durability;
mod exactly_once;
mod export;
mod fixture;
mod fixture_books;
mod fixture_v4;
mod funding;
mod input_bounds;
mod interest;
mod loans;
mod portfolio;
mod products;
mod proofs;
mod reads_under_load;
mod refusals;
mod rules;
mod server_limits;
mod shutdown;
mod span_capture;
mod support;
mod tokens;
mod totals;
mod verify;
mod writer_faults;
mod writes;
