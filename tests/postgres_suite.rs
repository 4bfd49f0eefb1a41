//! The ledger's in-process tests again, on the PostgreSQL store: the same
//! files as `tests/main.rs` names under `tests/ledger/`, with
//! `support::start_in` opening each data directory's journal in a database
//! of one PostgreSQL server this binary starts (and stops at exit). The
//! tests that reach into the embedded store's journal file or stand in for
//! it (crash states, forged or torn frames, the committed fixture journals,
//! a read-only copy, proofs over a rewritten journal, faulty stores, the
//! SIGTERM drain checked against the file) run on it alone; `verify` here
//! checks a copy with the database's journal copied in.

#[path = "common/mod.rs"]
mod common;

/// The ledger's tests here run on the PostgreSQL store.
const ON_POSTGRES: bool = true;

#[path = "ledger/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "ledger/access_log.rs"]
mod access_log;

#[path = "ledger/approvals.rs"]
mod approvals;

#[path = "ledger/as_of.rs"]
mod as_of;

#[path = "ledger/batch.rs"]
mod batch;

#[path = "ledger/books.rs"]
mod books;

#[path = "ledger/closing.rs"]
mod closing;

#[path = "ledger/collection.rs"]
mod collection;

#[path = "ledger/concurrency.rs"]
mod concurrency;

#[path = "ledger/exactly_once.rs"]
mod exactly_once;

#[path = "ledger/export.rs"]
mod export;

#[path = "ledger/funding.rs"]
mod funding;

#[path = "ledger/input_bounds.rs"]
mod input_bounds;

#[path = "ledger/interest.rs"]
mod interest;

#[path = "ledger/loans.rs"]
mod loans;

#[path = "ledger/portfolio.rs"]
mod portfolio;

#[path = "ledger/products.rs"]
mod products;

#[path = "ledger/reads_under_load.rs"]
mod reads_under_load;

#[path = "ledger/refusals.rs"]
mod refusals;

#[path = "ledger/rules.rs"]
mod rules;

#[path = "ledger/server_limits.rs"]
mod server_limits;

#[path = "ledger/tokens.rs"]
mod tokens;

#[path = "ledger/totals.rs"]
mod totals;

#[path = "ledger/writes.rs"]
mod writes;
