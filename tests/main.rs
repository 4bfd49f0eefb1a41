//! The integration tests: one test binary, so that the whole service is
//! linked once and every test runs beside the others on the test threads
//! (the simulated branch's years, the longest, beside all the rest) rather
//! than binary after binary. Each module is one file: `tests/ledger/`
//! holds the tests of the ledger served in process (`support.rs` starts
//! the real server over real gRPC on 127.0.0.1, port 0, with a temporary
//! store); the other files of `tests/` run the built `mfi-ledger` binary
//! as processes (the server, the CLI, the load generator, the simulator,
//! the report in a browser; `common/` starts them).

#[path = "common/mod.rs"]
mod common;

/// The ledger's tests here run on the embedded store;
/// `tests/postgres_suite.rs` runs most of them again on PostgreSQL.
const ON_POSTGRES: bool = false;

/// The longest tests (three simulated years of a branch) under a name that
/// comes first: the test threads take tests in name order, so these start
/// at once and the rest run beside them, instead of starting last and
/// leaving the run waiting for them alone.
#[path = "simulate.rs"]
mod _simulate;

#[path = "access_cli.rs"]
mod access_cli;

#[path = "approvals_cli.rs"]
mod approvals_cli;

#[path = "audit_cli.rs"]
mod audit_cli;

#[path = "checkpoint_interop.rs"]
mod checkpoint_interop;

#[path = "cli.rs"]
mod cli;

#[path = "fuzz.rs"]
mod fuzz;

#[path = "load.rs"]
mod load;

#[path = "mtls_principals.rs"]
mod mtls_principals;

#[path = "postgres_failover.rs"]
mod postgres_failover;

#[path = "readme.rs"]
mod readme;

#[path = "report_html.rs"]
mod report_html;

#[path = "tamper.rs"]
mod tamper;

#[path = "tls.rs"]
mod tls;

#[path = "ledger/access_log.rs"]
mod access_log;

#[path = "ledger/access_table.rs"]
mod access_table;

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

#[path = "ledger/crash.rs"]
mod crash;

#[path = "ledger/durability.rs"]
mod durability;

#[path = "ledger/exactly_once.rs"]
mod exactly_once;

#[path = "ledger/export.rs"]
mod export;

#[path = "ledger/fixture.rs"]
mod fixture;

#[path = "ledger/fixture_books.rs"]
mod fixture_books;

#[path = "ledger/fixture_v4.rs"]
mod fixture_v4;

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

#[path = "ledger/postgres_store.rs"]
mod postgres_store;

#[path = "ledger/products.rs"]
mod products;

#[path = "ledger/proofs.rs"]
mod proofs;

#[path = "ledger/reads_under_load.rs"]
mod reads_under_load;

#[path = "ledger/refusals.rs"]
mod refusals;

#[path = "ledger/rules.rs"]
mod rules;

#[path = "ledger/server_limits.rs"]
mod server_limits;

#[path = "ledger/shutdown.rs"]
mod shutdown;

#[path = "ledger/span_capture.rs"]
mod span_capture;

#[path = "ledger/support.rs"]
mod support;

#[path = "ledger/tokens.rs"]
mod tokens;

#[path = "ledger/totals.rs"]
mod totals;

#[path = "ledger/verify.rs"]
mod verify;

#[path = "ledger/writer_faults.rs"]
mod writer_faults;

#[path = "ledger/writes.rs"]
mod writes;

/// `autotests = false` in Cargo.toml: a file of `tests/` or `tests/ledger/`
/// is a test only when named above, so a new one left out would never run.
#[test]
fn every_file_of_tests_is_a_module_of_this_binary() {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let this = std::fs::read_to_string(tests.join("main.rs")).unwrap();
    for (dir, prefix) in [(tests.clone(), ""), (tests.join("ledger"), "ledger/")] {
        for file in std::fs::read_dir(&dir).unwrap() {
            let name = file.unwrap().file_name().into_string().unwrap();
            // The PostgreSQL suite is a test binary of its own.
            if name.ends_with(".rs") && name != "main.rs" && name != "postgres_suite.rs" {
                assert!(
                    this.contains(&format!("#[path = \"{prefix}{name}\"]\nmod ")),
                    "tests/{prefix}{name} is not a module of tests/main.rs: its tests would not run"
                );
            }
        }
    }
}
